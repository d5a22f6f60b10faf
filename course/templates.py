"""The chat template is part of the model: what a template adds, and where the assistant speaks.

    default_system_prompt(tokenizer)       # "You are Qwen, ..." for Qwen2.5; None for the course's
    messages = with_default_system(messages, tokenizer)   # that prompt made explicit in the data
    ids, mask = assistant_token_mask(messages, tokenizer) # 1 on the answers + their end token
    alpaca_prompt({"instruction": ..., "input": ..., "output": ...})  # the Alpaca prompt

`assistant_token_mask` works for any template. With `{% generation %}` markers it is the
library's own mask (`apply_chat_template(..., return_assistant_tokens_mask=True)`); without them
transformers returns an all-zero mask (and only logs it), so the answers are found by rendering
prefixes instead: the conversation up to an assistant turn, rendered with the generation prompt,
must be a prefix of the whole conversation, and the answer follows it. A template that renders
earlier turns differently depending on what follows cannot be handled that way: an error says so.
"""
from __future__ import annotations

import re
from typing import Any

_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
_PROBE_USER = "course-probe-user-7f3a"
_PROBE_SYSTEM = "course-probe-system-7f3a"


# The Alpaca prompt (Stanford Alpaca, 2023): a single-turn format with no chat template. Step 1
# fills these two by hand; later steps use `alpaca_prompt` below.
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(record: dict) -> str:
    """The Alpaca prompt of an `{instruction, input, output}` record, up to "### Response:\\n"
    (the input section only when `input` is non-empty; the output is what the model writes)."""
    template = ALPACA_PROMPT_WITH_INPUT if record.get("input") else ALPACA_PROMPT_NO_INPUT
    return template.format(instruction=record["instruction"], input=record.get("input", ""))


class TemplateError(ValueError):
    """A chat template that cannot be used the way asked; the message says why and what to do."""


def has_generation_markers(chat_template: str | None) -> bool:
    """Whether a chat template marks the assistant's text with `{% generation %}`."""
    return bool(chat_template) and bool(_GENERATION.search(chat_template))


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False,
           **kwargs: Any) -> str:
    """The text of `messages` under the tokenizer's chat template (nothing tokenized)."""
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=add_generation_prompt, **kwargs)


_DEFAULT_SYSTEM_CACHE: dict[tuple, str | None] = {}


def default_system_prompt(tokenizer) -> str | None:
    """The system prompt the chat template writes when a conversation has none, else None.

    Found by rendering one user turn with and without a system turn: when the template writes a
    system block in both cases, the text in the block without one is its default. Qwen2.5:
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."; the course's
    template, Llama 3.2 (its system header is always written, but empty), Mistral and Gemma
    (which refuses a system turn): None.
    """
    key = (type(tokenizer).__name__, str(tokenizer.chat_template), tokenizer.bos_token,
           tokenizer.eos_token)
    if key not in _DEFAULT_SYSTEM_CACHE:  # evaluation asks once per prompt: render once
        _DEFAULT_SYSTEM_CACHE[key] = _find_default_system_prompt(tokenizer)
    return _DEFAULT_SYSTEM_CACHE[key]


def _find_default_system_prompt(tokenizer) -> str | None:
    from jinja2 import TemplateError as JinjaError

    user = [{"role": "user", "content": _PROBE_USER}]
    try:
        without = render(tokenizer, user)
        with_system = render(tokenizer, [{"role": "system", "content": _PROBE_SYSTEM}] + user)
    except JinjaError:  # the template refuses a system turn: nothing is injected either
        return None
    at = with_system.find(_PROBE_SYSTEM)
    if at < 0:
        return None
    head, tail = with_system[:at], with_system[at + len(_PROBE_SYSTEM):]
    if (len(without) >= len(head) + len(tail) and without.startswith(head)
            and without.endswith(tail)):
        return without[len(head):len(without) - len(tail)] or None
    return None


def with_default_system(messages: list[dict], tokenizer) -> list[dict]:
    """`messages` with the template's default system prompt as an explicit first turn when the
    conversation has no system turn (a new list; unchanged when the template adds none).

    The rendered text is the same either way for the template itself; what changes is that every
    other piece (hand-written formatting, labels built turn by turn, evaluation prompts) now sees
    the same conversation the model sees."""
    default = default_system_prompt(tokenizer)
    if default is None or (messages and messages[0].get("role") == "system"):
        return list(messages)
    return [{"role": "system", "content": default}] + list(messages)


def _end_of_turn_tokens(tokenizer) -> list[str]:
    """Special and added token strings, longest first: the candidates for the token a template
    writes right after an answer (`<|im_end|>`, `<|eot_id|>`, `</s>`, `<end_of_turn>`, ...)."""
    tokens = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    return sorted((t for t in tokens if t), key=len, reverse=True)


def assistant_char_spans(messages: list[dict], tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and, per assistant turn, the characters [start, end) of what the
    model must write: the answer and the special token that closes it right after (the stop
    signal: `<|im_end|>`, `<|eot_id|>`, `</s>`, `<end_of_turn>`), found by rendering prefixes.

    For assistant turn i, `render(messages[:i], add_generation_prompt=True)` must be a prefix of
    the whole rendering, and the answer is the first occurrence of its content (or of its
    stripped content, for templates that trim) at or after that point. Raises TemplateError
    naming the turn when the template rewrites earlier turns (so no prefix exists) or changes
    the answer's text."""
    from jinja2 import TemplateError as JinjaError

    text = render(tokenizer, messages)
    closers = _end_of_turn_tokens(tokenizer)
    spans: list[tuple[int, int]] = []
    for i, turn in enumerate(messages):
        if turn.get("role") != "assistant":
            continue
        try:
            prefix = render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        except JinjaError as err:
            raise TemplateError(f"turn {i}: the chat template cannot render the conversation "
                                f"before this answer ({err})") from None
        if not text.startswith(prefix):
            raise TemplateError(
                f"turn {i}: the chat template renders the turns before this answer differently "
                "when more turns follow (it rewrites earlier turns), so the answer cannot be "
                "located by prefix; use a template with {% generation %} markers")
        content = turn["content"]
        start = text.find(content, len(prefix))
        if start < 0 and content.strip() != content:
            content = content.strip()
            start = text.find(content, len(prefix))
        if start < 0:
            raise TemplateError(f"turn {i}: the answer's text does not appear in the rendered "
                                "conversation (the chat template changes it)")
        end = start + len(content)
        closer = next((t for t in closers if text.startswith(t, end)), "")
        spans.append((start, end + len(closer)))
    return text, spans


def assistant_token_mask(messages: list[dict], tokenizer) -> tuple[list[int], list[int]]:
    """(input_ids, mask) of the templated conversation: mask 1 on every token the model must
    write (answers and their end token), 0 elsewhere and on an assistant turn marked
    `"train": False` (kept as context only: `loss_weight` 0 in LLaMA-Factory's format).
    input_ids equal `apply_chat_template(messages, tokenize=True)`.

    The library's mask when the template has `{% generation %}` markers; otherwise the tokens
    overlapping `assistant_char_spans` (offsets from the tokenizer), which is what transformers
    does with the spans its markers record."""
    if has_generation_markers(tokenizer.chat_template):
        enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, mask = list(enc["input_ids"]), [int(m) for m in enc["assistant_masks"]]
        return ids, _untrained_turns_masked(messages, mask)
    text, spans = assistant_char_spans(messages, tokenizer)
    trained = [t.get("train") is not False for t in messages if t.get("role") == "assistant"]
    spans = [span for span, keep in zip(spans, trained) if keep]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(a < end and b > start for start, end in spans))
            for a, b in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


def _untrained_turns_masked(messages: list[dict], mask: list[int]) -> list[int]:
    """`mask` with the runs of assistant turns marked `"train": False` set to 0 (the k-th run of
    ones is the k-th assistant turn; a template whose runs do not match its turns raises)."""
    trained = [t.get("train") is not False for t in messages if t.get("role") == "assistant"]
    if all(trained):
        return mask
    runs = [i for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1])]
    if len(runs) != len(trained):
        raise TemplateError(f"{len(runs)} runs of assistant tokens for {len(trained)} assistant "
                            "turns: cannot tell which answer is not trained")
    out = list(mask)
    for start, keep in zip(runs, trained):
        i = start
        while not keep and i < len(out) and out[i]:
            out[i] = 0
            i += 1
    return out
