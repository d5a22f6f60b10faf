"""Train the course's byte-level BPE tokenizer and give it a ChatML chat template.

Special tokens (ids 0-3): `<|endoftext|>` separates pretraining documents, `<|im_start|>` and
`<|im_end|>` frame chat turns, and `<|pad|>` pads batches. Pad is deliberately *not* EOS: when the
two are equal, a collator that sets labels of pad positions to -100 also masks the real end token,
and the model never learns to stop.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers
from transformers import PreTrainedTokenizerFast

ENDOFTEXT, IM_START, IM_END, PAD = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, PAD]
VOCAB_SIZE = 4096

# How text is split into words before BPE: the Qwen2 tokenizer's own rules (transformers'
# `Qwen2Tokenizer.PRETOKENIZE_REGEX`). They must be these: `AutoTokenizer` loads any checkpoint
# whose config says `model_type: qwen2` as a `Qwen2Tokenizer`, which replaces whatever splitting
# tokenizer.json declares with this one. A tokenizer trained with other rules (GPT-2's, which
# keep " 7" in one piece) would then encode text differently from the tokenizer the model was
# pretrained with -- silently, and only where the rules differ (here: every number).
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
               r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

# ChatML. `{% generation %}` marks what the assistant says -- its content *and* its end token --
# so `apply_chat_template(..., return_assistant_tokens_mask=True)` returns the training mask.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on `texts` and wrap it as a transformers tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=PAD, bos_token=None,
        unk_token=None, additional_special_tokens=[ENDOFTEXT, IM_START],
        chat_template=CHAT_TEMPLATE, model_max_length=512, padding_side="right",
        clean_up_tokenization_spaces=False)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    tokenizer.save_pretrained(str(path))
