"""Visible checks for step 2 (loss masking), with a diagnosis for each classic mistake.

    from course.checks import step2_masking as checks
    checks.check_labels_for_conversation(ex, tokenizer)   # ex = the learner's masking_exercise

Every expected value comes from the library way -- `apply_chat_template`'s assistant mask
(`course.data.tokenize_for_sft`), the transformers loss, `DataCollatorForSeq2Seq` -- never from
the answer key.
"""
from __future__ import annotations

import copy
import hashlib
import math
import pickle
import time
import warnings
from types import ModuleType
from typing import Sequence

import torch

from course import REPO_ROOT
from course.data import IGNORE_INDEX, tokenize_for_sft
from course.grading import call, fail, passed, short
from course.notebook import is_grading

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CACHE_DIR = REPO_ROOT / "build" / "cache"
GRADING_SAMPLE = 40  # check_labels_all: every 40th conversation while nbgrader grades
_ENCODINGS: dict[str, list] = {}  # library_encodings in this process, by key


def _conv(*turns) -> list[dict]:
    return [{"role": r, "content": c} for r, c in turns]


ONE_EXCHANGE = _conv(("user", "Who found the kite?"), ("assistant", "Mira found it."))
MULTI_TURN = _conv(("system", "Answer in one short sentence."),
                   ("user", "Who is the story about?\n\nTom went to the park."),
                   ("assistant", "The story is about Tom."),
                   ("user", "Where did he go?"),
                   ("assistant", "He went to the park."))


# --- the library way, position by position ---------------------------------------------------
def token_parts(messages: list[dict], tokenizer) -> list[tuple[int, str, str]]:
    """(turn index, role, part) for every token of the templated conversation; part is one of
    header, content, end, newline. Found with the library only: the tokens of turn i are those
    that `apply_chat_template(messages[:i + 1])` adds to `apply_chat_template(messages[:i])`."""
    parts: list[tuple[int, str, str]] = []
    done = 0
    for i, turn in enumerate(messages):
        n = len(tokenize_for_sft(messages[:i + 1], tokenizer)["input_ids"])
        header = len(tokenizer(f"{IM_START}{turn['role']}\n", add_special_tokens=False)
                     ["input_ids"])
        size = n - done
        for k in range(size):
            part = ("header" if k < header else "end" if k == size - 2 else
                    "newline" if k == size - 1 else "content")
            parts.append((i, turn["role"], part))
        done = n
    return parts


def expected_labels(messages: list[dict], tokenizer, last_turn_only: bool = False) -> dict:
    """The library's encoding (`tokenize_for_sft`); with last_turn_only, earlier answers -100."""
    enc = tokenize_for_sft(messages, tokenizer)
    if last_turn_only:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        enc["labels"] = [lab if turn == last else IGNORE_INDEX
                         for lab, (turn, _, _) in zip(enc["labels"], token_parts(messages,
                                                                                 tokenizer))]
    return enc


def label_difference(got: list[int], want: dict, parts: list[tuple[int, str, str]],
                     tokenizer) -> str:
    """Where `got` first differs from the expected labels, said in tokens and turns (long
    label lists cut to the same-looking text tell nothing)."""
    labels = want["labels"]
    wrong = [k for k, (g, w) in enumerate(zip(got, labels)) if g != w]
    if not wrong:
        return f"expected {len(labels)} labels, got {len(got)}"
    k = wrong[0]
    turn, role, part = parts[k] if k < len(parts) else (None, "?", "?")
    token = tokenizer.decode([want["input_ids"][k]])

    def said(v: int) -> str:
        return "-100 (ignored)" if v == IGNORE_INDEX else f"{v} (trained)"
    return (f"{len(wrong)} of {len(labels)} labels differ; the first at position {k}, token "
            f"{token!r}, the {part} of turn {turn} ({role}): expected {said(labels[k])}, "
            f"got {said(got[k])}")


def _diagnose_labels(got: list[int], want: dict, parts: list[tuple[int, str, str]],
                     last_turn_only: bool) -> str | None:
    """The classic mistake `got` (labels) shows against `want` (the library's encoding)."""
    ids, labels = want["input_ids"], want["labels"]
    if got == ids or all(g == t for g, t in zip(got, ids)):
        return ("no mask at all: labels = input_ids trains the system prompt, the user's "
                "questions and every template token; only the assistant's answers and their "
                "<|im_end|> are trained, everything else is -100")
    if got == labels[1:] + [IGNORE_INDEX]:
        return ("labels shifted by hand: the model shifts them itself (logits at t are scored "
                "against the label at t + 1); keep each label at its own token's position")
    if any(g != IGNORE_INDEX and g != t for g, t in zip(got, ids)):
        return "a trained label must be the token id at its own position (labels[t] = ids[t])"
    trained = [g != IGNORE_INDEX for g in got]
    should = [lab != IGNORE_INDEX for lab in labels]
    answers = sorted({turn for (turn, role, _), s in zip(parts, should) if s})
    starts = {turn: next(k for k, p in enumerate(parts) if p[0] == turn and p[2] == "content")
              for turn in {p[0] for p in parts if p[1] == "assistant"}}
    for turn, start in starts.items():
        if trained[start - 1]:
            return ("mask starts one token early: the last token of '<|im_start|>assistant\\n' "
                    "is trained, but the template writes it, not the model")
    for k, ((turn, role, part), t, s) in enumerate(zip(parts, trained, should)):
        if t and not s and role in ("user", "system") and part == "content":
            return (f"{role} turns trained: only what the assistant says is trained; the "
                    f"model must not learn to write questions and stories")
        if t and not s and part == "newline":
            return "the newline after <|im_end|> is trained: the template writes it"
        if t and not s and part in ("header", "end") and role != "assistant":
            return "template tokens of a user or system turn are trained"
        if t and not s and role == "assistant" and last_turn_only:
            return ("last_turn_only ignored: with last_turn_only=True only the last assistant "
                    "turn is trained, earlier ones are context")
    for turn in answers:
        mine = [k for k, p in enumerate(parts) if p[0] == turn and should[k]]
        if not any(trained[k] for k in mine):
            if turn != answers[0] and any(trained[k] for k in range(len(parts))
                                          if parts[k][0] == answers[0]):
                return ("only the first assistant turn trained: every assistant turn of a "
                        "multi-turn conversation is trained")
            return "an assistant turn is not trained at all"
        start, end = mine[0], mine[-1]
        if not trained[start] and all(trained[k] for k in mine[1:-1] or [end]):
            return ("mask starts one token late: the first token of the answer is not trained, "
                    "so the model never learns how an answer begins")
        if not trained[end] and all(trained[k] for k in mine[:-1]):
            return ("end token not trained: <|im_end|> after an answer must be trained, or the "
                    "model never learns to stop")
    return None


# --- check_conversation ----------------------------------------------------------------------
BAD_CONVERSATIONS = [  # (label, messages, record id, word the message must contain, mistake)
    ("no assistant turn", _conv(("user", "Who?")), "train-04242", "assistant",
     "no assistant turn accepted: its labels would be all -100, a sample that teaches nothing"),
    ("an empty conversation", [], "train-00001", "assistant",
     "no assistant turn accepted (an empty list has none)"),
    ("unknown role 'bot'", _conv(("user", "Who?"), ("bot", "Tom.")), "train-00917", "bot",
     "unknown role accepted: say which role, so the record can be fixed"),
    ("content None", _conv(("user", "Who?"), ("assistant", None)), 31, "content",
     "non-string content accepted: None cannot be tokenized"),
    ("content 42", _conv(("user", 42), ("assistant", "Tom.")), "train-00042", "content",
     "non-string content accepted"),
]


def check_check_conversation(ex: ModuleType) -> None:
    for label, messages in (("one exchange", ONE_EXCHANGE), ("system + two exchanges",
                                                             MULTI_TURN)):
        got = call(ex.check_conversation, copy.deepcopy(messages), record_id="ok-1",
                   what=f"check_conversation({label})")
        if got is not None:
            fail(f"{label}: returns None", got=got)
    passed("valid conversations pass (None returned, nothing raised)")
    for label, messages, record_id, word, mistake in BAD_CONVERSATIONS:
        try:
            ex.check_conversation(copy.deepcopy(messages), record_id=record_id)
        except NotImplementedError:
            raise
        except ValueError as err:
            text = str(err)
            if str(record_id) not in text:
                fail(f"{label}: the error names the record {record_id!r}",
                     mistake="error without the record id: with 12,000 records, say which one",
                     detail=f"your message: {text!r}")
            if word.lower() not in text.lower():
                fail(f"{label}: the error says what is wrong (mentions {word!r})",
                     mistake="the message does not say what is wrong with the record",
                     detail=f"your message: {text!r}")
        except Exception as err:  # noqa: BLE001
            fail(f"{label}: raises ValueError", mistake=mistake,
                 got=f"{type(err).__name__}: {err}")
        else:
            fail(f"{label}: raises ValueError", mistake=mistake)
        passed(f"{label}: ValueError naming record {record_id!r}")


# --- labels_for_conversation -----------------------------------------------------------------
LABEL_CASES = [("one exchange", ONE_EXCHANGE, False),
               ("system prompt and two exchanges", MULTI_TURN, False),
               ("two exchanges, last_turn_only=True", MULTI_TURN, True)]


def diagnose_labels(got, messages: list[dict], tokenizer, last_turn_only: bool,
                    label: str) -> None:
    """Fail with the classic mistake that `got` shows, or pass silently if it is right."""
    want = expected_labels(messages, tokenizer, last_turn_only)
    if not isinstance(got, dict) or not {"input_ids", "attention_mask", "labels"} <= set(got):
        fail(f"{label}: returns a dict with input_ids, attention_mask and labels", got=got)
    ids, mask, labels = ([int(t) for t in got[k]] for k in ("input_ids", "attention_mask",
                                                              "labels"))
    if ids != want["input_ids"]:
        fail(f"{label}: input_ids equal apply_chat_template(messages)",
             mistake="each turn is <|im_start|>{role}\\n + content + <|im_end|> + \\n, every "
                     "piece tokenized without special tokens", got=ids, expected=want["input_ids"])
    if len(labels) != len(ids) or mask != [1] * len(ids):
        fail(f"{label}: labels and attention_mask (all 1) as long as input_ids",
             got=(len(labels), mask), expected=(len(ids), "all 1"))
    if labels != want["labels"]:
        parts = token_parts(messages, tokenizer)
        mistake = _diagnose_labels(labels, want, parts, last_turn_only)
        fail(f"{label}: labels equal the chat template's assistant mask", mistake=mistake,
             detail=label_difference(labels, want, parts, tokenizer))


def check_labels_for_conversation(ex: ModuleType, tokenizer) -> None:
    for label, messages, last in LABEL_CASES:
        got = call(ex.labels_for_conversation, copy.deepcopy(messages), tokenizer,
                   last_turn_only=last, what=f"labels_for_conversation({label})")
        diagnose_labels(got, messages, tokenizer, last, label)
        passed(f"{label}: ids and labels equal apply_chat_template's assistant mask")
    try:
        ex.labels_for_conversation(_conv(("user", "Who?")), tokenizer, record_id="train-00007")
    except ValueError:
        passed("a conversation without an answer raises ValueError (check_conversation)")
    else:
        fail("a conversation without an assistant turn raises ValueError",
             mistake="call check_conversation first: an all -100 sample must not pass silently")


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides the encodings: the vocabulary and merges (the whole
    tokenizer definition), the special tokens and the chat template. Two tokenizers of the
    same size and name but trained on different text get different fingerprints."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    parts = (vocab, repr(tokenizer.all_special_tokens), tokenizer.chat_template or "")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def library_encodings(tokenizer, dataset, info: dict | None = None
                      ) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of the library way (`tokenize_for_sft`) for every conversation of
    `dataset`, cached on disk in build/cache/ (keyed by the data and the tokenizer), so
    re-running the notebook does not redo it. `info["cached"]` says whether they were read
    from the cache (then no time of the library way was measured)."""
    key = repr((dataset._fingerprint, tokenizer_fingerprint(tokenizer)))
    path = CACHE_DIR / f"step2_library_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pkl"
    info = {} if info is None else info
    info["cached"] = True
    if key in _ENCODINGS:
        return _ENCODINGS[key]
    if path.exists():
        return _ENCODINGS.setdefault(key, pickle.loads(path.read_bytes()))
    info["cached"] = False
    out = []
    for messages in dataset["messages"]:
        enc = tokenize_for_sft(messages, tokenizer)
        out.append((enc["input_ids"], enc["labels"]))
    if not is_grading():  # a graded run checks a sample: nothing worth keeping on disk
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(out))
    return _ENCODINGS.setdefault(key, out)


def check_labels_all(ex: ModuleType, tokenizer, dataset) -> None:
    """`ex.labels_for_batch` (your labels_for_conversation) through `datasets.map(batched=True)`
    against the library's encodings (`library_encodings`, cached) on every conversation of
    `dataset`. While nbgrader grades, every GRADING_SAMPLE-th (the full check runs here)."""
    every = GRADING_SAMPLE if is_grading() else 1
    if every > 1:
        dataset = dataset.select(range(0, len(dataset), every))
    from datasets.utils import logging as datasets_logging
    bar_was_on = datasets_logging.is_progress_bar_enabled()
    if not is_grading():  # a progress bar with an estimate: this map takes seconds to minutes
        datasets_logging.enable_progress_bar()
    start = time.perf_counter()
    try:
        hand = dataset.map(ex.labels_for_batch, batched=True, with_indices=True,
                           fn_kwargs={"tokenizer": tokenizer},
                           remove_columns=dataset.column_names, keep_in_memory=True,
                           load_from_cache_file=False, desc="your labels_for_batch",
                           new_fingerprint=f"step2-hand-{time.time_ns()}")  # no hashing of fn
    finally:
        if not bar_was_on:
            datasets_logging.disable_progress_bar()
    hand_s = time.perf_counter() - start
    start = time.perf_counter()
    info: dict = {}
    library = library_encodings(tokenizer, dataset, info)
    library_s = time.perf_counter() - start
    ids_all, labels_all = hand["input_ids"], hand["labels"]
    conversations = dataset["messages"]
    for i, (ids, labels, (want_ids, want_labels)) in enumerate(zip(ids_all, labels_all,
                                                                   library)):
        if list(ids) != want_ids or list(labels) != want_labels:
            got = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
            diagnose_labels(got, conversations[i], tokenizer, False, f"conversation {i}")
            fail(f"conversation {i}: equal to the chat template's mask", got=labels,
                 expected=want_labels)
    note = f" (every {every}th, while grading)" if every > 1 else ""
    passed(f"input_ids and labels equal apply_chat_template's assistant mask on all "
           f"{len(library):,} conversations{note}")
    if info["cached"]:
        print(f"  measured now: datasets.map(labels_for_batch, batched=True) {hand_s:.2f} s; "
              f"the library way was not timed (its labels were read from build/cache/)")
    else:
        print(f"  measured now: datasets.map(labels_for_batch, batched=True) {hand_s:.2f} s; "
              f"the library way {library_s:.2f} s")


# --- labels_for_alpaca -----------------------------------------------------------------------
ALPACA = {"instruction": "Who found the kite?",
          "input": "Tom and Mira went to the park. Mira found a red kite.",
          "output": "Mira found it."}


def check_labels_for_alpaca(ex: ModuleType, tokenizer) -> None:
    for record, label in ((dict(ALPACA), "record with input"),
                          ({"instruction": ALPACA["instruction"], "output": "Mira."},
                           "record without input")):
        got = call(ex.labels_for_alpaca, dict(record), tokenizer,
                   what=f"labels_for_alpaca({label})")
        if not isinstance(got, dict) or "labels" not in got or "input_ids" not in got:
            fail(f"{label}: returns a dict with input_ids, attention_mask and labels", got=got)
        ids, labels = [int(t) for t in got["input_ids"]], [int(t) for t in got["labels"]]
        prompt = tokenizer(ex.alpaca_prompt(record), add_special_tokens=False)["input_ids"]
        answer = tokenizer(record["output"], add_special_tokens=False)["input_ids"]
        eos = tokenizer.eos_token_id
        if ids == prompt + answer:
            fail(f"{label}: input_ids end with the EOS token", mistake="EOS missing after the "
                 "response: the model never learns where a response ends")
        if ids != prompt + answer + [eos]:
            fail(f"{label}: input_ids = prompt ids + output ids + [EOS]", got=ids,
                 expected=prompt + answer + [eos])
        want = [IGNORE_INDEX] * len(prompt) + answer + [eos]
        if labels[:len(prompt)] == ids[:len(prompt)]:
            fail(f"{label}: the prompt is masked", mistake="prompt trained: instruction and "
                 "input are context, labelled -100; only the response (and EOS) is trained")
        if labels[-1] == IGNORE_INDEX:
            fail(f"{label}: EOS is trained", mistake="EOS missing from the labels: the model "
                 "never learns to stop")
        if labels != want or [int(t) for t in got.get("attention_mask", [])] != [1] * len(ids):
            fail(f"{label}: labels = -100 on the prompt, then the response ids and EOS",
                 got=labels, expected=want)
        passed(f"{label}: prompt masked, response + EOS trained")


# --- masked_cross_entropy --------------------------------------------------------------------
def library_batch(tokenizer, conversations: Sequence[list[dict]]
                  ) -> dict[str, torch.Tensor]:
    """A padded batch the library way: `tokenize_for_sft` + `DataCollatorForSeq2Seq`."""
    from transformers import DataCollatorForSeq2Seq

    features = [tokenize_for_sft(m, tokenizer) for m in conversations]
    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX,
                                  return_tensors="pt")(features)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


def check_masked_cross_entropy(ex: ModuleType, model, tokenizer,
                               conversations: Sequence[list[dict]]) -> None:
    """Against `model(input_ids, labels=labels).loss` on a real batch, then the edge cases."""
    batch = library_batch(tokenizer, conversations)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
        want = model(**batch).loss.item()
    labels = batch["labels"]
    got = call(ex.masked_cross_entropy, logits.clone(), labels.clone(),
               what="masked_cross_entropy(logits, labels)")
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        fail("returns a scalar tensor", got=short(got))
    value = got.item()
    if not _close(value, want):
        flat = torch.nn.functional.cross_entropy
        v = logits.size(-1)
        unshifted = flat(logits.reshape(-1, v), labels.reshape(-1)).item()
        twice = flat(logits[:, :-2].reshape(-1, v), labels[:, 2:].reshape(-1)).item()
        per_pos = flat(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1),
                       reduction="none").view(labels.size(0), -1)
        counted = labels[:, 1:] != IGNORE_INDEX
        seq_mean = (per_pos.sum(1) / counted.sum(1)).mean().item()
        all_pos = (per_pos.sum() / per_pos.numel()).item()
        mistake = ("not shifted: logits at t predict the label at t + 1" if _close(value,
                                                                                 unshifted) else
                   "shifted twice: shift the labels or the logits, once" if _close(value, twice)
                   else "mean of per-sequence means: 'token' averages over all labelled tokens "
                        "of the batch" if _close(value, seq_mean) else
                   "divides by every position: masked positions must not count in the mean"
                   if _close(value, all_pos) else None)
        fail("normalization='token' equals model(input_ids, labels=labels).loss",
             mistake=mistake, got=value, expected=want)
    passed(f"'token' loss {value:.6f} equals the transformers loss {want:.6f}")

    toy_logits, toy_labels = ex.normalization_example()
    for norm, expect in (("token", 1.0), ("sequence", 1.75)):
        got = call(ex.masked_cross_entropy, toy_logits.clone(), toy_labels.clone(),
                   normalization=norm, what=f"masked_cross_entropy(toy batch, {norm!r})")
        if not _close(float(got), expect):
            mistake = ("mean of per-sequence means used for 'token'" if norm == "token"
                       and _close(float(got), 1.75) else
                       "'sequence' averages each sequence's own mean over the sequences"
                       if norm == "sequence" else None)
            fail(f"toy batch of normalization_example, {norm!r}: {expect}", mistake=mistake,
                 got=float(got), expected=expect)
    passed("normalization_example: 'token' 1.0, 'sequence' 1.75")

    masked = torch.full_like(labels, IGNORE_INDEX)
    for norm in ("token", "sequence"):
        leaf = logits.clone().requires_grad_(True)
        got = call(ex.masked_cross_entropy, leaf, masked.clone(), normalization=norm,
                   what=f"masked_cross_entropy(fully masked batch, {norm!r})")
        if not torch.isfinite(got).all():
            fail(f"a fully masked batch ({norm!r}) gives a finite loss",
                 mistake="NaN on a fully masked batch: 0 / 0; divide by max(count, 1)",
                 got=got.item(), expected=0.0)
        if got.item() != 0.0:
            fail(f"a fully masked batch ({norm!r}) gives 0", got=got.item(), expected=0.0)
        if got.grad_fn is None:
            fail(f"a fully masked batch ({norm!r}): the 0 is still connected to the logits",
                 mistake="returning torch.tensor(0.0) breaks loss.backward() in the training "
                         "loop; compute it from the logits (0 * sum)")
        got.backward()
        if leaf.grad is None or leaf.grad.abs().max().item() != 0.0:
            fail(f"a fully masked batch ({norm!r}): zero gradient")
    passed("a fully masked batch: loss 0, finite, connected, zero gradient (both normalizations)")


# --- truncate_and_filter ---------------------------------------------------------------------
def check_truncate_and_filter(ex: ModuleType, tokenizer) -> None:
    examples = [tokenize_for_sft(m, tokenizer) for m in (ONE_EXCHANGE, MULTI_TURN)]
    examples.append({"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1],
                     "labels": [IGNORE_INDEX] * 3, "id": "no-answer"})
    first = min(i for i, t in enumerate(examples[0]["labels"]) if t != IGNORE_INDEX)
    before = copy.deepcopy(examples)
    out = call(ex.truncate_and_filter, examples, first + 1,
               what=f"truncate_and_filter(examples, {first + 1})")
    if examples != before:
        fail("the input examples are left unchanged",
             mistake="truncate_and_filter cut the input lists in place: build new dicts")
    if not (isinstance(out, tuple) and len(out) == 2):
        fail("returns a tuple (kept, dropped)", got=out)
    kept, dropped = out
    if len(kept) + len(dropped) != len(examples):
        fail("every example is kept or dropped with a reason",
             mistake="dropped silently: count what you drop, and why",
             got=(len(kept), dropped))
    if any(all(t == IGNORE_INDEX for t in k["labels"]) for k in kept):
        fail("no kept example is fully masked",
             mistake="examples with no label left kept: they cost compute and teach nothing",
             got=[k["labels"] for k in kept])
    if [tuple(d) for d in dropped] != [(1, "answer_truncated"), (2, "no_answer")]:
        same_indices = [d[0] for d in dropped] == [1, 2]
        fail(f"max_length={first + 1}: the multi-turn example (its answer cut away) and the one "
             "without labels are dropped, with their reasons",
             mistake=("wrong reason: 'no_answer' if it had no label even before cutting, "
                      "else 'answer_truncated'") if same_indices else
                     (f"off by one: the first answer token sits at index {first}, so "
                      f"max_length={first + 1} keeps it"),
             got=dropped, expected=[(1, "answer_truncated"), (2, "no_answer")])
    want = {k: v[:first + 1] for k, v in before[0].items()}
    if [{k: list(v) for k, v in kept[0].items()}] != [want]:
        fail(f"the kept example is its first {first + 1} tokens", got=kept[0], expected=want)
    passed(f"max_length={first + 1}: kept the example whose first answer token still fits; "
           f"dropped {dropped}")
    kept, dropped = call(ex.truncate_and_filter, before, 10_000,
                         what="truncate_and_filter(examples, 10_000)")
    if len(kept) != 2 or [tuple(d) for d in dropped] != [(2, "no_answer")]:
        fail("a long max_length keeps every example with an answer", got=dropped)
    if kept[1] != before[1]:
        fail("a long max_length leaves the examples whole", got=kept[1], expected=before[1])
    passed("max_length=10,000: the examples whole; the one without labels dropped as no_answer")


# --- collate ---------------------------------------------------------------------------------
def _pad_with_eos(tokenizer):
    eos_tok = copy.deepcopy(tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eos_tok.pad_token = eos_tok.eos_token
    return eos_tok


def check_collate(ex: ModuleType, tokenizer, features: Sequence[dict]) -> None:
    """Against `DataCollatorForSeq2Seq` on `features` (library encodings of different lengths),
    with the tokenizer's pad token and with a pad id equal to EOS."""
    from transformers import DataCollatorForSeq2Seq

    # A multiple the longest example is not already a multiple of: with one it is, a collate
    # that ignores pad_to_multiple_of would pass unnoticed.
    longest = max(len(f["input_ids"]) for f in features)
    rounding = next(m for m in (8, 7, 5, 3, 11, 13) if longest % m)
    for tok, label in ((tokenizer, "pad token"), (_pad_with_eos(tokenizer), "pad id = EOS")):
        for multiple in (None, rounding):
            what = f"{label}" + (f", pad_to_multiple_of={multiple}" if multiple else "")
            lib = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=IGNORE_INDEX,
                                         pad_to_multiple_of=multiple, return_tensors="pt")(
                [dict(f) for f in features])
            got = call(ex.collate, [dict(f) for f in features], tok.pad_token_id,
                       pad_to_multiple_of=multiple, what=f"collate({what})")
            _diagnose_collate(got, lib, tok, what)
            passed(f"{what}: equal to DataCollatorForSeq2Seq")


def _diagnose_collate(got, lib: dict, tok, what: str) -> None:
    keys = ("input_ids", "attention_mask", "labels")
    if not isinstance(got, dict) or not all(isinstance(got.get(k), torch.Tensor) for k in keys):
        fail(f"{what}: a dict of tensors input_ids, attention_mask, labels", got=got)
    if any(got[k].shape != lib[k].shape for k in keys):
        fail(f"{what}: shape (batch, longest{' rounded up' if 'multiple' in what else ''})",
             mistake="pad to the longest example, then up to a multiple of pad_to_multiple_of",
             got=tuple(got["input_ids"].shape), expected=tuple(lib["input_ids"].shape))
    if any(got[k].dtype != torch.long for k in keys):
        fail(f"{what}: int64 tensors", got={k: str(got[k].dtype) for k in keys})
    padding = lib["attention_mask"] == 0
    if not torch.equal(got["input_ids"], lib["input_ids"]):
        left = torch.equal(got["input_ids"][:, :1] == tok.pad_token_id, padding[:, -1:])
        fail(f"{what}: input_ids padded on the right with the pad id",
             mistake="left padding: training pads on the right" if left else None,
             got=got["input_ids"], expected=lib["input_ids"])
    if not torch.equal(got["attention_mask"], lib["attention_mask"]):
        mistake = ("attention mask on padding: it must be 0 there"
                   if bool((got["attention_mask"][padding] == 1).any()) else None)
        fail(f"{what}: attention_mask 1 on tokens, 0 on padding", mistake=mistake,
             got=got["attention_mask"], expected=lib["attention_mask"])
    if not torch.equal(got["labels"], lib["labels"]):
        real = ~padding
        if bool((got["labels"][padding] != IGNORE_INDEX).any()):
            mistake = "padding labels not -100: the model would be trained to predict padding"
        elif bool((got["labels"][real] != lib["labels"][real]).any()) and \
                tok.pad_token_id == tok.eos_token_id:
            mistake = ("EOS masked: the pad id equals EOS here, and labels were derived from "
                       "input_ids == pad id; pad the labels list itself with -100")
        else:
            mistake = None
        fail(f"{what}: labels padded with -100, the rest unchanged", mistake=mistake,
             got=got["labels"], expected=lib["labels"])
