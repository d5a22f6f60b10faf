"""Hidden tests of step 2, one function per exercise, named after its grade_id (`<f>_hidden`).

Each takes the learner's module `ex` and the reference module `ref` (and optionally the
tokenizer), runs `ex.<f>` on fixed edge cases and seeded random cases, compares with `ref.<f>`
and raises `course.grading.HiddenTestFailure` (an AssertionError) whose first line names the
failing case kinds. A function that calls another exercise function is tested with the
reference version of that helper (`patched`), so one bug costs points in one test only.

In the notebook a hidden cell is then two lines (or the function body pasted in):

    from course.grading import load_reference
    load_reference("step2_masking", "hidden_checks").labels_for_conversation_hidden(
        ex, load_reference("step2_masking", "masking_exercise"))

tests/test_step2_wrong.py proves that every wrong implementation in tests/wrong/step2_masking/
fails the checks its EXPECT_LOSE names, and that the reference passes them all.
"""
from __future__ import annotations

import contextlib
import itertools
import random

import torch

from course.data import iter_jsonl, raw_path, to_messages
from course.grading import (HiddenTestFailure, compare_with_reference, patched,
                            random_conversation, random_text, short)

STEP, MODULE = "step2_masking", "masking_exercise"


# --- shared case generators ------------------------------------------------------------------
def _tokenizer(tokenizer=None):
    if tokenizer is not None:
        return tokenizer
    from course.models import load_tokenizer
    return load_tokenizer()


def _tame(text: str, rng: random.Random) -> str:
    """No content starts with two or more whitespace characters: there, tokenizing the header
    and the content apart or together may differ for some tokenizers, and both ways are fine."""
    if len(text) - len(text.lstrip()) >= 2:
        text = rng.choice(["", " ", "\n"]) + text.lstrip()
    return text


def _without_generation_markers(tokenizer):
    import copy
    import re

    plain = copy.deepcopy(tokenizer)
    plain.chat_template = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "",
                                 tokenizer.chat_template or "")
    return plain


def _conversation(rng: random.Random, max_exchanges: int = 3) -> list[dict]:
    return [{"role": m["role"], "content": _tame(m["content"], rng)}
            for m in random_conversation(rng, max_exchanges=max_exchanges)]


def _real(shape: str, n: int, step: int = 37) -> list[dict]:
    """Every `step`-th record of a raw train file, first `n` of them (read lazily: fast)."""
    return list(itertools.islice(iter_jsonl(raw_path("train", shape)), 0, n * step, step))


def _ints(value) -> list[int]:
    return [int(v) for v in value]


def _same_encoding(got, want) -> bool:
    try:
        return all(_ints(got[k]) == want[k] for k in ("input_ids", "attention_mask", "labels"))
    except (KeyError, TypeError, ValueError):
        return False


@contextlib.contextmanager
def _one_thread():
    """Tiny tensors need one thread. With the cores busy (a training run next door), PyTorch's
    thread pool makes these checks a hundred times slower (measured: 1.9 s against 0.01 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fail_if_any(name: str, failures: list[tuple[str, str]], total: int, show: int = 3) -> None:
    if failures:
        kinds = sorted({kind for kind, _ in failures})
        public = (f"{name}: {len(failures)} of {total} hidden cases fail; failing kinds: "
                  f"{', '.join(kinds)}")
        raise HiddenTestFailure(public, "\n".join(f"  [{k}] {d}" for k, d in failures[:show]))
    print(f"{name}: all {total} hidden cases pass")


# --- check_conversation ----------------------------------------------------------------------
def check_conversation_hidden(ex, ref, tokenizer=None) -> None:
    """Good conversations pass silently; each kind of bad one raises ValueError naming the
    record and the problem."""
    rng = random.Random(2001)
    good = [("random conversation", _conversation(rng)) for _ in range(10)]
    good += [
        ("single assistant turn", [{"role": "assistant", "content": "Hello."}]),
        ("empty contents", [{"role": "user", "content": ""},
                            {"role": "assistant", "content": ""}]),
        ("unusual role order", [{"role": "assistant", "content": "Hi"},
                                {"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Who?"}]),
        ("two system turns", [{"role": "system", "content": "A"},
                              {"role": "system", "content": "B"},
                              {"role": "user", "content": "Q"},
                              {"role": "assistant", "content": "A"}]),
    ]
    user, answer = {"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Tom."}
    bad = [  # (kind, messages, record_id, word the message must contain)
        ("no assistant turn", [user], "train-04242", "assistant"),
        ("no assistant turn", [{"role": "system", "content": "Be brief."}, user], 7319,
         "assistant"),
        ("empty conversation", [], "rec-ÿ-17", "assistant"),
        ("unknown role", [{"role": "bot", "content": "Hi"}, answer], "train-00917", "bot"),
        ("unknown role", [user, {"role": "gpt", "content": "Tom."}, answer], 5823, "gpt"),
        ("unknown role", [user, {"role": "Assistant", "content": "Tom."}, answer], "x-31",
         "Assistant"),
        ("unknown role", [{"role": "human", "content": "Q"}, user, answer], "x-32", "human"),
        ("non-string content", [user, {"role": "assistant", "content": None}], "train-00031",
         "content"),
        ("non-string content", [{"role": "user", "content": 42}, answer], 9001, "content"),
        ("non-string content", [user, {"role": "assistant", "content": ["Tom."]}], "x-33",
         "content"),
        ("turn without content", [{"role": "user"}, answer], "x-34", "turn"),
        ("turn that is not a dict", ["Who?", answer], "x-35", "turn"),
    ]
    failures = []
    for kind, messages in good:
        try:
            result = ex.check_conversation(messages, record_id="ok-1")
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001
            failures.append((f"valid {kind}", f"raised {type(err).__name__}: {err}"))
        else:
            if result is not None:
                failures.append((f"valid {kind}", f"returned {short(result)}, expected None"))
    for kind, messages, record_id, word in bad:
        try:
            ex.check_conversation(messages, record_id=record_id)
        except NotImplementedError:
            raise
        except ValueError as err:
            text = str(err)
            if str(record_id) not in text:
                failures.append((f"{kind}: record id", f"message {text!r} lacks {record_id!r}"))
            elif word.lower() not in text.lower():
                failures.append((f"{kind}: message", f"message {text!r} lacks {word!r}"))
        except Exception as err:  # noqa: BLE001
            failures.append((kind, f"raised {type(err).__name__}: {err}, expected ValueError"))
        else:
            failures.append((kind, f"accepted {short(messages)}"))
    _fail_if_any("check_conversation", failures, len(good) + len(bad))


# --- labels_for_conversation -----------------------------------------------------------------
def labels_for_conversation_hidden(ex, ref, tokenizer=None) -> None:
    """Ids and labels equal the reference on random, multi-turn, edge and real conversations,
    with and without last_turn_only, with contents tokenized inside or passed in."""
    tok = _tokenizer(tokenizer)
    rng = random.Random(2002)
    cases = []
    for last in (False, True):
        flag = " (last turn only)" if last else ""
        cases += [("random conversation" + flag, (_conversation(rng), tok),
                   {"last_turn_only": last}) for _ in range(12)]
        cases += [("three exchanges" + flag, (_conversation(rng, 1) + _conversation(rng, 1)
                                              + _conversation(rng, 1), tok),
                   {"last_turn_only": last}) for _ in range(4)]
    s, u, a = "system", "user", "assistant"
    edge = [
        ("single assistant turn", [(a, "Hello.")]),
        ("empty answer", [(u, "Say nothing."), (a, "")]),
        ("answer that is one newline", [(u, "Who?"), (a, "\n")]),
        ("answer starting with a space", [(u, "Who?"), (a, " Tom.")]),
        ("answer ending in newlines", [(u, "Who?"), (a, "Tom.\n\n")]),
        ("unicode", [(u, "Ünïcödé 🙂?"), (a, "Ja — 🙂")]),
        ("template text inside content", [(u, "### Response:\nassistant\n"),
                                          (a, "user\nassistant\n### Input:")]),
        ("ends on a user turn", [(u, "Q1"), (a, "A1"), (u, "Q2")]),
        ("two assistant turns in a row", [(u, "Q"), (a, "A1"), (a, "A2")]),
        ("system turn in the middle", [(u, "Q1"), (a, "A1"), (s, "Now be brief."),
                                       (u, "Q2"), (a, "A2")]),
        ("assistant speaks first", [(a, "Hi, ask me."), (u, "Who?"), (a, "Tom.")]),
    ]
    for kind, turns in edge:
        messages = [{"role": r, "content": c} for r, c in turns]
        for last in (False, True):
            cases.append((kind + (" (last turn only)" if last else ""), (messages, tok),
                          {"last_turn_only": last}))
    for record in _real("messages", 8) + _real("sharegpt", 4):
        cases.append(("real train conversation", (to_messages(record), tok),
                      {"record_id": record["id"], "last_turn_only": rng.random() < 0.3}))
    for _ in range(4):  # the batched path of labels_for_batch passes the contents' ids
        messages = _conversation(rng)
        ids = [list(tok(m["content"], add_special_tokens=False)["input_ids"]) for m in messages]
        cases.append(("contents passed as token ids", (messages, tok), {"content_ids": ids}))
    plain = _without_generation_markers(tok)  # labels by hand never need the template's mask
    cases += [("tokenizer without generation markers", (_conversation(rng), plain),
               {"last_turn_only": last}) for last in (False, True, False)]
    with patched(ex, check_conversation=ref.check_conversation), _one_thread():
        compare_with_reference("labels_for_conversation", ex.labels_for_conversation,
                               ref.labels_for_conversation, cases, equal=_same_encoding)


# --- labels_for_alpaca -----------------------------------------------------------------------
def labels_for_alpaca_hidden(ex, ref, tokenizer=None) -> None:
    """Prompt masked, response + EOS trained: equal to the reference on real and random records."""
    tok = _tokenizer(tokenizer)
    rng = random.Random(2003)
    cases = [("real Alpaca record", (r, tok), {"record_id": r["id"]}) for r in _real("alpaca", 10)]
    for _ in range(8):
        record = {"instruction": random_text(rng, edge_spaces=False),
                  "output": _tame(random_text(rng, max_words=6), rng)}
        cases.append(("record with input", (dict(record, input=random_text(rng, 5, 30)), tok), {}))
        cases.append(("record with an empty input", (dict(record, input=""), tok), {}))
        cases.append(("record without an input key", (record, tok), {}))
    cases += [
        ("empty output", ({"instruction": "Say nothing.", "input": "", "output": ""}, tok), {}),
        ("output starting with a space", ({"instruction": "Who?", "output": " Tom."}, tok), {}),
        ("unicode output", ({"instruction": "Smile", "input": "🙂", "output": "Ünï 🙂"}, tok),
         {}),
    ]
    compare_with_reference("labels_for_alpaca", ex.labels_for_alpaca, ref.labels_for_alpaca,
                           cases, equal=_same_encoding)


# --- masked_cross_entropy --------------------------------------------------------------------
def _loss_cases(rng: random.Random) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(2004)

    def batch(b, t, v, p_masked, scale=3.0):
        logits = torch.randn(b, t, v, generator=gen) * scale
        labels = torch.randint(0, v, (b, t), generator=gen)
        labels[torch.rand(b, t, generator=gen) < p_masked] = -100
        return logits, labels

    cases = []
    for _ in range(10):
        b, t, v = rng.randint(1, 4), rng.randint(2, 12), rng.randint(3, 40)
        cases.append(("random batch", *batch(b, t, v, rng.choice([0.0, 0.3, 0.7]))))
    logits, labels = batch(3, 9, 11, 0.0)
    labels[:, :5] = -100
    labels[0, 5:] = -100  # one sequence without labels, two with answers of different lengths
    labels[1, 5:8] = -100
    cases.append(("a sequence without labels, answers of different lengths", logits, labels))
    logits, labels = batch(2, 6, 7, 1.0)
    labels[:, 0] = 3
    cases.append(("only the first position labelled (never predicted)", logits, labels))
    logits, labels = batch(2, 6, 7, 1.0)
    labels[0, 1], labels[1, 5] = 4, 2
    cases.append(("second and last positions labelled", logits, labels))
    cases.append(("whole batch masked", *batch(3, 5, 9, 1.0)))
    cases.append(("sequences of length 1", *batch(3, 1, 9, 0.0)))
    cases.append(("large logits", *batch(2, 8, 13, 0.2, scale=60.0)))
    return cases


def masked_cross_entropy_hidden(ex, ref, tokenizer=None) -> None:
    """Value and gradient equal the reference for both normalizations; a fully masked batch
    gives a finite 0 with a zero gradient; the inputs are left unchanged."""
    with _one_thread():
        failures, total = _compare_losses(ex, ref, _loss_cases(random.Random(2004)))
    _fail_if_any("masked_cross_entropy", failures, total)


def _compare_losses(ex, ref, cases) -> tuple[list[tuple[str, str]], int]:
    failures, total = [], 0
    for kind, logits, labels in cases:
        for norm in ("token", "sequence"):
            total += 1
            name = f"{kind} ({norm})"
            want_in = logits.clone().requires_grad_(True)
            want = ref.masked_cross_entropy(want_in, labels.clone(), normalization=norm)
            want.backward()
            got_in, got_labels = logits.clone().requires_grad_(True), labels.clone()
            try:
                got = ex.masked_cross_entropy(got_in, got_labels, normalization=norm)
                problem = _loss_problem(got, want, got_in, want_in.grad)
            except NotImplementedError:
                raise
            except Exception as err:  # noqa: BLE001
                problem = f"raised {type(err).__name__}: {err}"
            if problem is None and not (torch.equal(got_labels, labels)
                                        and torch.equal(got_in.detach(), logits)):
                problem = "modified its inputs in place"
            if problem:
                failures.append((name, problem))
    return failures, total


def _loss_problem(got, want, got_in, want_grad) -> str | None:
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        return f"returned {short(got)}, expected a scalar tensor"
    if not torch.isfinite(got).all():
        return f"returned {got.item()}, expected the finite {want.item():.6f}"
    if not torch.allclose(got.detach().double().reshape(()), want.detach().double(),
                          rtol=1e-5, atol=1e-6):
        return f"value {got.item():.6f}, expected {want.item():.6f}"
    if got.grad_fn is None:
        return "the result is not connected to the logits (no grad_fn): backward() would fail"
    got.reshape(()).backward()
    if got_in.grad is None:
        return "no gradient reached the logits"
    if not torch.isfinite(got_in.grad).all():
        return "the gradient has NaN or inf"
    if not torch.allclose(got_in.grad, want_grad, rtol=1e-5, atol=1e-7):
        worst = (got_in.grad - want_grad).abs().max().item()
        return f"gradient differs from the reference (max abs difference {worst:.3g})"
    return None


# --- truncate_and_filter ---------------------------------------------------------------------
def truncate_and_filter_hidden(ex, ref, tokenizer=None) -> None:
    """Kept examples, dropped indices and reasons equal the reference at many lengths, including
    exactly at the first and last labelled token; the input examples are not modified."""
    tok = _tokenizer(tokenizer)
    rng = random.Random(2005)
    examples = []
    for i in range(12):
        enc = ref.labels_for_conversation(_conversation(rng), tok, last_turn_only=i % 3 == 0)
        if i % 4 == 1:
            del enc["attention_mask"]
        if i % 4 == 2:
            enc["id"] = f"ex-{i}"
        examples.append(enc)
    no_answer = {"input_ids": [5, 6, 7, 8], "attention_mask": [1] * 4, "labels": [-100] * 4}
    first = min(i for i, t in enumerate(examples[0]["labels"]) if t != -100)
    last = max(i for i, t in enumerate(examples[0]["labels"]) if t != -100)
    longest = max(len(e["input_ids"]) for e in examples)
    cases = [("random batch", (examples, n), {}) for n in (8, 24, 40, 64, 100)]
    cases += [
        ("limit just before the first label", (examples[:1], first), {}),
        ("limit just after the first label", (examples[:1], first + 1), {}),
        ("limit at the last label", (examples[:1], last + 1), {}),
        ("limit longer than every example", (examples, longest + 5), {}),
        ("limit of one token", (examples[:3], 1), {}),
        ("example without any label", ([no_answer] + examples[:3], 30), {}),
        ("example without any label, long limit", ([examples[1], no_answer], 1000), {}),
        ("no examples", ([], 16), {}),
    ]
    compare_with_reference("truncate_and_filter", ex.truncate_and_filter,
                           ref.truncate_and_filter, cases, equal=_same_truncation)
    before = [dict(e, input_ids=list(e["input_ids"]), labels=list(e["labels"]))
              for e in examples]
    ex.truncate_and_filter(examples, 10)
    if examples != before:
        raise HiddenTestFailure("truncate_and_filter: modified the input examples in place")


def _same_truncation(got, want) -> bool:
    try:
        kept, dropped = got
        return ([{k: (_ints(v) if isinstance(v, (list, tuple)) else v) for k, v in e.items()}
                 for e in kept] == want[0]
                and [(int(i), r) for i, r in dropped] == want[1])
    except (TypeError, ValueError, AttributeError):
        return False


# --- collate ---------------------------------------------------------------------------------
def collate_hidden(ex, ref, tokenizer=None) -> None:
    """The padded batch equals the reference (values, shape, int64) for several pad ids, one of
    them the EOS id, with and without pad_to_multiple_of and attention masks."""
    tok = _tokenizer(tokenizer)
    rng = random.Random(2006)
    eos = tok.eos_token_id

    def feature(n, with_mask=True, end_with_eos=True):
        ids = [rng.randint(4, 200) for _ in range(n)]
        if end_with_eos:
            ids[-1] = eos
        cut = rng.randint(0, n - 1)
        f = {"input_ids": ids, "labels": [-100] * cut + ids[cut:]}
        if with_mask:
            f["attention_mask"] = [1] * n
        return f

    cases = []
    for pad_id, pad_kind in ((tok.pad_token_id, "pad token"), (eos, "pad id equal to EOS"),
                             (0, "pad id 0")):
        for multiple in (None, 8, 3):
            features = [feature(rng.randint(1, 20), with_mask=rng.random() < 0.7)
                        for _ in range(rng.randint(2, 5))]
            label = f"{pad_kind}" + (f", pad_to_multiple_of={multiple}" if multiple else "")
            cases.append((label, (features, pad_id), {"pad_to_multiple_of": multiple}))
    same = [feature(7) for _ in range(3)]
    own_mask = feature(6)
    own_mask["attention_mask"][:2] = [0, 0]
    cases += [
        ("one example", ([feature(5)], tok.pad_token_id), {}),
        ("examples of equal length", (same, tok.pad_token_id), {}),
        ("length already a multiple", (same, tok.pad_token_id), {"pad_to_multiple_of": 7}),
        ("an example's own attention mask", ([own_mask, feature(9)], tok.pad_token_id), {}),
        ("extra keys are ignored", ([dict(feature(4), id="a"), dict(feature(6), id="b")],
                                    tok.pad_token_id), {}),
        ("answers ending in EOS, pad id equal to EOS", ([feature(3), feature(8), feature(5)],
                                                        eos), {}),
    ]
    with _one_thread():
        compare_with_reference("collate", ex.collate, ref.collate, cases, equal=_same_batch)


def _same_batch(got, want) -> bool:
    try:
        return all(isinstance(got[k], torch.Tensor) and got[k].dtype == torch.long
                   and torch.equal(got[k], want[k])
                   for k in ("input_ids", "attention_mask", "labels"))
    except (KeyError, TypeError):
        return False


HIDDEN_CHECKS = {f.__name__: f for f in (
    check_conversation_hidden, labels_for_conversation_hidden, labels_for_alpaca_hidden,
    masked_cross_entropy_hidden, truncate_and_filter_hidden, collate_hidden)}
