"""Step 2: the answer key (solutions/step2_masking/masking_exercise.py) equals the
library way -- apply_chat_template's assistant mask, TRL's SFTTrainer, the transformers loss and
DataCollatorForSeq2Seq -- so the hidden tests, which compare learners with the answer key, hold
them to something no one here wrote.
"""
from __future__ import annotations

import copy
import dataclasses
import html.parser
import math
import random
import re
import warnings

import datasets
import pytest
import torch
from transformers import DataCollatorForSeq2Seq
from transformers.loss.loss_utils import ForCausalLMLoss

from course.data import IGNORE_INDEX, iter_jsonl, load_split, raw_path, tokenize_for_sft
from course.grading import load_reference, random_conversation
from course.models import load_base_model, load_tokenizer

STEP = "step2_masking"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def ref():
    return load_reference(STEP, "masking_exercise")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def train():
    datasets.disable_progress_bars()
    return load_split("train")


@pytest.fixture(scope="module")
def conversations(train):
    return list(train["messages"])


@pytest.fixture(scope="module")
def hand(ref, tok, train):
    """The answer key on the whole train split, through its datasets.map function."""
    return train.map(ref.labels_for_batch, batched=True, with_indices=True,
                     fn_kwargs={"tokenizer": tok}, remove_columns=train.column_names,
                     keep_in_memory=True)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_base_model(device="cpu")


def rows(ds) -> list[dict]:
    return [dict(zip(ds.column_names, values)) for values in zip(*(ds[c] for c in ds.column_names))]


# --- labels by hand == apply_chat_template's {% generation %} mask ------------------------------
def test_hand_labels_equal_the_chat_template_mask_on_the_whole_train_split(tok, conversations,
                                                                          hand):
    # No difference at all on the course data: ids (the template's text, tokenized at once) and
    # labels (assistant content + <|im_end|>) agree for all 12,000 conversations. The one place
    # where the piecewise ids could differ is an assistant content starting with two or more
    # whitespace characters, whose first one BPE may merge with the header's "\n" (see the next
    # test); no training content starts with whitespace at all.
    assert len(hand) == len(conversations) == 12_000
    for i, (messages, ids, labels) in enumerate(zip(conversations, hand["input_ids"],
                                                    hand["labels"])):
        lib = tokenize_for_sft(messages, tok)
        assert (ids, labels) == (lib["input_ids"], lib["labels"]), f"conversation {i}"
    assert all(m["content"] == m["content"].lstrip() for c in conversations for m in c)


def test_hand_labels_equal_the_template_on_random_conversations(ref, tok):
    rng = random.Random(5)
    merges_newline = tok("\n  x", add_special_tokens=False)["input_ids"] != (
        tok("\n", add_special_tokens=False)["input_ids"]
        + tok("  x", add_special_tokens=False)["input_ids"])
    for _ in range(300):
        messages = random_conversation(rng, max_exchanges=4)  # contents with edge whitespace
        risky = any(len(m["content"]) - len(m["content"].lstrip()) >= 2 for m in messages)
        if risky and merges_newline:
            continue  # this tokenizer merges "\n" + whitespace: piecewise ids differ there
        lib = tokenize_for_sft(messages, tok)
        assert ref.labels_for_conversation(messages, tok) == lib
        last = ref.labels_for_conversation(messages, tok, last_turn_only=True)
        assert last["input_ids"] == lib["input_ids"]


def test_encode_batch_equals_the_tokenizer_call_even_after_a_truncating_call(ref, tok):
    texts = ["Tom found a red kite.", "", "Ünï 🙂\n\n", "a" * 300]
    want = [list(x) for x in tok(texts, add_special_tokens=False)["input_ids"]]
    assert ref.encode_batch(tok, texts) == want
    tok2 = copy.deepcopy(tok)
    tok2(texts, truncation=True, max_length=5)  # leaves truncation set on the Rust tokenizer
    assert ref.encode_batch(tok2, texts) == want


# --- labels by hand == TRL's SFTTrainer --------------------------------------------------------
def _sft_dataset(model, tok, dataset, tmp_path, **options):
    """The dataset SFTTrainer trains on (tokenized, labelled, truncated); no training."""
    from trl import SFTConfig, SFTTrainer

    names = {f.name for f in dataclasses.fields(SFTConfig)}
    off = "activation_checkpointing" if "activation_checkpointing" in names else \
        "gradient_checkpointing"  # renamed in transformers 5.x; either must be off on CPU
    settings = dict(bf16=False, report_to=[], use_cpu=True, shuffle_dataset=False,
                    max_length=None, **{off: False})
    config = SFTConfig(output_dir=str(tmp_path), **{**settings, **options})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset,
                             processing_class=tok)
    return trainer


def test_labels_equal_trl_assistant_only_loss(model, tok, train, hand, tmp_path):
    trainer = _sft_dataset(model, tok, train, tmp_path, assistant_only_loss=True)
    ds = trainer.train_dataset
    assert ds["input_ids"] == hand["input_ids"]
    assert ds["labels"] == hand["labels"]


def test_last_turn_only_equals_trl_completion_only_loss(ref, model, tok, train, tmp_path):
    subset = train.select(range(0, len(train), 4))  # 3,000 conversations: keeps this test short
    split = subset.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                       remove_columns=["messages"])
    mine = [ref.labels_for_conversation(m, tok, last_turn_only=True) for m in subset["messages"]]
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    # completion-only: TRL trains everything after the prompt, which includes the template's
    # "\n" after the final <|im_end|>. Ours stops at <|im_end|> (the model stops generating there,
    # the "\n" is never produced), so TRL has exactly that one extra label per conversation.
    ds = _sft_dataset(model, tok, split, tmp_path, completion_only_loss=True).train_dataset
    for enc, ids, labels in zip(mine, ds["input_ids"], ds["labels"]):
        assert ids == enc["input_ids"] and ids[-len(newline):] == newline
        assert labels == enc["labels"][:-len(newline)] + newline
    # completion-only AND assistant-only (TRL keeps a token only if both masks keep it): exact.
    ds = _sft_dataset(model, tok, split, tmp_path, completion_only_loss=True,
                      assistant_only_loss=True).train_dataset
    assert ds["labels"] == [enc["labels"] for enc in mine]


def test_alpaca_labels_equal_trl_completion_only_loss(ref, model, tok, tmp_path):
    records = list(iter_jsonl(raw_path("train", "alpaca")))
    step1 = load_reference("step1_data", "data_exercise")
    assert all(ref.alpaca_prompt(r) == step1.alpaca_prompt(r) for r in records)  # no drift
    dataset = datasets.Dataset.from_list(
        [{"prompt": ref.alpaca_prompt(r), "completion": r["output"]} for r in records])
    ds = _sft_dataset(model, tok, dataset, tmp_path, completion_only_loss=True).train_dataset
    mine = [ref.labels_for_alpaca(r, tok, r["id"]) for r in records]
    assert ds["input_ids"] == [e["input_ids"] for e in mine]  # TRL appends EOS to completions
    assert ds["labels"] == [e["labels"] for e in mine]


def test_truncation_equals_trl_and_counts_what_trl_drops_silently(ref, model, tok, train, hand,
                                                                 tmp_path):
    subset = train.select(range(0, len(train), 6))
    max_length = 110  # about half the answers start after token 110
    ds = _sft_dataset(model, tok, subset, tmp_path, assistant_only_loss=True,
                      max_length=max_length).train_dataset
    examples = rows(hand.select(range(0, len(hand), 6)))
    kept, dropped = ref.truncate_and_filter(examples, max_length)
    assert [k["input_ids"] for k in kept] == ds["input_ids"]
    assert [k["labels"] for k in kept] == ds["labels"]
    assert len(dropped) == len(subset) - len(ds) > 0  # TRL drops them too, without a word
    assert {reason for _, reason in dropped} == {"answer_truncated"}
    assert all(len(k["input_ids"]) <= max_length for k in kept)


# --- the loss ------------------------------------------------------------------------------
def _batch(ref, tok, hand, n=6, start=100):
    features = rows(hand.select(range(start, start + n)))
    return ref.collate(features, tok.pad_token_id)


@pytest.mark.parametrize("fraction", [1.0, 0.3])
def test_masked_cross_entropy_equals_the_transformers_loss(ref, tok, hand, model, fraction):
    batch = _batch(ref, tok, hand)
    labels = batch["labels"].clone()
    if fraction < 1.0:  # fewer labels: a different count to divide by
        keep = torch.rand(labels.shape, generator=torch.Generator().manual_seed(1)) < fraction
        labels[~keep] = IGNORE_INDEX
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                labels=labels)
    logits = out.logits.detach().requires_grad_(True)
    mine = ref.masked_cross_entropy(logits, labels)
    # the same sums in the same order as transformers: equal to the bit (1e-6 is the contract)
    assert abs(mine.item() - out.loss.item()) <= 1e-6, (mine.item(), out.loss.item())
    mine.backward()
    hf_logits = out.logits.detach().requires_grad_(True)
    ForCausalLMLoss(hf_logits, labels, vocab_size=hf_logits.size(-1)).backward()
    torch.testing.assert_close(logits.grad, hf_logits.grad, rtol=1e-5, atol=1e-7)


def test_sequence_normalization_is_the_mean_of_each_rows_own_loss(ref, tok, hand, model):
    batch = _batch(ref, tok, hand, n=4, start=7)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        per_row = [model(input_ids=batch["input_ids"][i:i + 1],
                         attention_mask=batch["attention_mask"][i:i + 1],
                         labels=batch["labels"][i:i + 1]).loss.item() for i in range(4)]
    got = ref.masked_cross_entropy(logits, batch["labels"], normalization="sequence").item()
    assert abs(got - sum(per_row) / 4) <= 1e-5


def test_normalization_example_over_weights_the_short_answer(ref):
    logits, labels = ref.normalization_example()
    token = ref.masked_cross_entropy(logits, labels, "token").item()
    sequence = ref.masked_cross_entropy(logits, labels, "sequence").item()
    assert math.isclose(token, 1.0, abs_tol=1e-6) and math.isclose(sequence, 1.75, abs_tol=1e-6)
    assert math.isclose(ForCausalLMLoss(logits, labels, vocab_size=logits.size(-1)).item(), 1.0,
                        abs_tol=1e-6)


def test_fully_masked_batch_gives_a_finite_zero_with_zero_gradient(ref, tok, hand, model):
    batch = _batch(ref, tok, hand, n=3)
    labels = torch.full_like(batch["labels"], IGNORE_INDEX)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for normalization in ("token", "sequence"):
        model.zero_grad()
        loss = ref.masked_cross_entropy(out.logits, labels, normalization)
        assert loss.item() == 0.0 and loss.grad_fn is not None
        loss.backward(retain_graph=True)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.count_nonzero(g) == 0 for g in grads)
    with pytest.raises(ValueError, match="normalization"):
        ref.masked_cross_entropy(out.logits, labels, "tokens")


def test_double_shift_trains_the_token_after_next(ref, tok, hand, model):
    example = hand[3]
    ids = torch.tensor([example["input_ids"]])
    labels = torch.tensor([example["labels"]])
    right = ref.loss_targets(example["input_ids"], example["labels"], tok)
    shifted = ref.loss_targets(example["input_ids"], ref.pre_shifted(labels)[0].tolist(), tok)
    text = [tok.decode([t]) for t in example["input_ids"]]
    first = next(i for i, t in enumerate(example["labels"]) if t != IGNORE_INDEX)
    assert right[0] == (text[first - 1], text[first])      # read "\n", say the first answer token
    assert shifted[0] == (text[first - 2], text[first])    # read "assistant", skip the "\n"
    losses = ref.double_shift_demo(model, ids, labels)
    assert losses["labels as built"] < losses["labels shifted by hand"]


# --- the collator ---------------------------------------------------------------------------
@pytest.mark.parametrize("multiple", [None, 8])
def test_collate_equals_data_collator_for_seq2seq(ref, tok, hand, multiple):
    features = rows(hand.select(range(0, 40, 3)))
    lib = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=IGNORE_INDEX,
                                 pad_to_multiple_of=multiple, return_tensors="pt")(features)
    mine = ref.collate(features, tok.pad_token_id, pad_to_multiple_of=multiple)
    assert set(mine) == {"input_ids", "attention_mask", "labels"}
    for key in mine:
        assert mine[key].dtype == lib[key].dtype == torch.long
        assert torch.equal(mine[key], lib[key]), key


def test_collate_equals_the_library_when_pad_is_eos_and_keeps_eos_trained(ref, tok, hand):
    eos_tok = copy.deepcopy(tok)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eos_tok.pad_token = eos_tok.eos_token
    features = rows(hand.select(range(10, 20)))
    lib = DataCollatorForSeq2Seq(eos_tok, padding="longest",
                                 label_pad_token_id=IGNORE_INDEX)(features)
    mine = ref.collate(features, eos_tok.pad_token_id)
    for key in mine:
        assert torch.equal(mine[key], lib[key]), key
    trained_eos = (mine["labels"] == tok.eos_token_id).sum(dim=1)
    assert torch.equal(trained_eos, torch.tensor([f["labels"].count(tok.eos_token_id)
                                                  for f in features]))


def test_collate_equals_trl_collator(ref, tok, hand):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    features = [{"input_ids": f["input_ids"], "labels": f["labels"]}
                for f in rows(hand.select(range(50, 62)))]
    lib = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(features)
    mine = ref.collate(features, tok.pad_token_id)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(mine[key], lib[key]), key


# --- bad input ------------------------------------------------------------------------------
BAD = [
    ([{"role": "user", "content": "Who?"}], "assistant"),
    ([{"role": "user", "content": "Who?"}, {"role": "bot", "content": "Tom."}], "'bot'"),
    ([{"role": "user", "content": None}, {"role": "assistant", "content": "Tom."}], "content"),
]


@pytest.mark.parametrize("messages,word", BAD)
def test_bad_conversations_raise_an_error_naming_the_record(ref, tok, messages, word):
    with pytest.raises(ValueError, match=f"train-04711.*{re.escape(word)}"):
        ref.labels_for_conversation(messages, tok, record_id="train-04711")
    good = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    batch = {"id": ["train-00001", "train-04711"], "messages": [good, messages]}
    with pytest.raises(ValueError, match=f"train-04711.*{re.escape(word)}"):
        ref.labels_for_batch(batch, tokenizer=tok)


def test_rows_without_an_id_are_named_by_their_index(ref, tok):
    ds = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "Q"},
                                                   {"role": "assistant", "content": "A"}]}] * 5
                                    + [{"messages": [{"role": "user", "content": "Q"}]}])
    with pytest.raises(ValueError, match="record 5:"):
        ds.map(ref.labels_for_batch, batched=True, batch_size=4, with_indices=True,
               fn_kwargs={"tokenizer": tok})


def test_bad_alpaca_record_names_the_record(ref, tok):
    with pytest.raises(ValueError, match="alp-9.*output"):
        ref.labels_for_alpaca({"instruction": "Who?", "input": ""}, tok, record_id="alp-9")


# --- a chat template without {% generation %} markers ---------------------------------------
def test_offsets_fallback_equals_the_generation_mask_on_the_whole_train_split(ref, tok,
                                                                            conversations):
    plain = copy.deepcopy(tok)
    plain.chat_template = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", tok.chat_template)
    assert ref.has_generation_markers(tok.chat_template)
    assert not ref.has_generation_markers(plain.chat_template)
    # Why a fallback: without markers, the library's own mask is silently empty ...
    raw = plain.apply_chat_template(conversations[0], tokenize=True, return_dict=True,
                                    return_assistant_tokens_mask=True)
    assert not any(raw["assistant_masks"])
    for i, messages in enumerate(conversations):
        assert ref.library_labels(messages, plain) == tokenize_for_sft(messages, tok), i
        if i % 10 == 0:  # ... and course.data.tokenize_for_sft finds the answers all the same
            assert tokenize_for_sft(messages, plain) == tokenize_for_sft(messages, tok), i
    rng = random.Random(9)
    for _ in range(200):  # edge whitespace, empty-ish answers, several turns
        messages = random_conversation(rng, max_exchanges=4)
        assert ref.library_labels(messages, plain) == ref.library_labels(messages, tok)
    with pytest.raises(ValueError, match="no assistant"):
        ref.library_labels([{"role": "user", "content": "Who?"}], plain)


# --- the visualiser -------------------------------------------------------------------------
class _Spans(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.spans, self._open = [], None

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class")
        if tag == "span" and cls in ("trained", "masked"):
            self._open = [cls, ""]

    def handle_data(self, data):
        if self._open is not None:
            self._open[1] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.spans.append(tuple(self._open))
            self._open = None


@pytest.mark.parametrize("answers", [1, 2])  # a single-turn and a multi-turn conversation
def test_visualize_labels_colours_every_token_by_its_label(ref, tok, conversations, hand,
                                                           answers):
    index = next(i for i, c in enumerate(conversations)
                 if sum(m["role"] == "assistant" for m in c) == answers)
    example = hand[index]
    parser = _Spans()
    parser.feed(ref.visualize_labels(example["input_ids"], example["labels"], tok))
    assert len(parser.spans) == len(example["input_ids"])
    assert [c for c, _ in parser.spans] == ["masked" if t == IGNORE_INDEX else "trained"
                                            for t in example["labels"]]
    assert [t.replace("↵\n", "\n") for _, t in parser.spans] == [
        tok.decode([i]) for i in example["input_ids"]]
    trained = "".join(t for c, t in parser.spans if c == "trained").replace("↵\n", "\n")
    answers = [m["content"] + "<|im_end|>" for m in conversations[index]
               if m["role"] == "assistant"]
    assert trained == "".join(answers)


def test_library_encodings_cache_key_changes_with_the_vocabulary(tmp_path):
    """The on-disk cache of the library's encodings (build/cache/) is keyed by the tokenizer's
    whole definition: a retrained tokenizer of the same size, name and chat template (what a
    rebuilt base model brings) must not reuse encodings of the old one."""
    import json

    from course.checks.step2_masking import tokenizer_fingerprint
    tok = load_tokenizer()
    assert tokenizer_fingerprint(tok) == tokenizer_fingerprint(load_tokenizer())
    tok.save_pretrained(tmp_path)
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    merges = spec["model"]["merges"]
    merges[0], merges[1] = merges[1], merges[0]  # same vocabulary size, different encodings
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    other = load_tokenizer(str(tmp_path))
    assert len(other) == len(tok) and other.chat_template == tok.chat_template
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tok)
