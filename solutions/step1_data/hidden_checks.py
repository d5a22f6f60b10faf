"""Hidden tests of step 1, one function per exercise, named after its grade_id (`<f>_hidden`).

Each takes the learner's module `ex` and the reference module `ref`, and optionally the data the
notebook has loaded (the tokenizer, the raw records, the training conversations, dirty.jsonl);
what is not given is loaded here the same way. It runs `ex.<f>` on fixed edge cases and seeded
random cases, compares with `ref.<f>` and raises `course.grading.HiddenTestFailure` (an
AssertionError) whose first line names the failing case kinds. A function that calls another
exercise function is tested with the reference version of that helper (`patched`), so one bug
costs points in one test only. In the notebook a hidden cell is then two lines:

    from course.grading import load_reference
    load_reference("step1_data", "hidden_checks").alpaca_prompt_hidden(
        ex, load_reference("step1_data", "data_exercise"), records)
"""
from __future__ import annotations

import copy
import random

from course.data import SHAPES, iter_jsonl, load_split, raw_path
from course.grading import (HiddenTestFailure, compare_with_reference, patched,
                            random_conversation, random_text)

STEP, MODULE = "step1_data", "data_exercise"


# --- the notebook's data, when the caller has not loaded it ---------------------------------------
def _tokenizer(tokenizer=None):
    if tokenizer is not None:
        return tokenizer
    from course.models import load_tokenizer
    return load_tokenizer()


def _records(records=None) -> dict[str, list[dict]]:
    """The raw training records per shape, as the notebook loads them (datasets' to_list())."""
    if records is not None:
        return records
    import datasets

    return {shape: datasets.load_dataset("json", data_files=str(raw_path("train", shape)),
                                         split="train").to_list() for shape in SHAPES}


def _conversations(conversations=None) -> list[list[dict]]:
    return conversations if conversations is not None else list(load_split("train")["messages"])


def _dirty(dirty=None) -> list[dict]:
    return dirty if dirty is not None else list(iter_jsonl(raw_path("dirty")))


# --- alpaca_prompt ----------------------------------------------------------------------------
def alpaca_prompt_hidden(ex, ref, records=None) -> None:
    """Random records with, without and with an empty input; braces in the text; real records."""
    records = _records(records)
    rng = random.Random(101)
    cases = []
    for _ in range(10):
        base = {"instruction": random_text(rng), "output": random_text(rng)}
        cases.append(("record with input", (dict(base, input=random_text(rng, 5, 30)),), {}))
        cases.append(("record with an empty input", (dict(base, input=""),), {}))
        cases.append(("record without an input key", (base,), {}))
    cases.append(("text with braces",
                  ({"instruction": "Use {input}", "input": "{x}", "output": ""},), {}))
    cases += [("real Alpaca record", (r,), {}) for r in records["alpaca"][:400:20]]
    compare_with_reference("alpaca_prompt", ex.alpaca_prompt, ref.alpaca_prompt, cases)


# --- normalize_record -------------------------------------------------------------------------
BACK = {"system": "system", "user": "human", "assistant": "gpt"}


def _kind(shape, turns, system_prompt):
    own = " with a system turn" if turns and turns[0]["role"] == "system" else ""
    return f"{shape} record{own}" + (" + system_prompt" if system_prompt else "")


def normalize_record_hidden(ex, ref, records=None) -> None:
    """All three shapes, with and without a system prompt, odd keys, real records; the input
    record is never changed through the result."""
    records = _records(records)
    rng = random.Random(202)
    cases = []
    for _ in range(12):
        sp = rng.choice([None, None, "Be brief.", random_text(rng)])
        conv = random_conversation(rng)
        cases.append((_kind("messages", conv, sp), ({"id": "m", "messages": conv},),
                      {"system_prompt": sp}))
        conv = random_conversation(rng)
        share = [{"from": BACK[t["role"]], "value": t["content"]} for t in conv]
        cases.append((_kind("ShareGPT", conv, sp), ({"id": "s", "conversations": share},),
                      {"system_prompt": sp}))
        alpaca = {"instruction": random_text(rng),
                  "input": rng.choice(["", random_text(rng, 5, 20)]),
                  "output": random_text(rng), "task": "t"}
        label = "Alpaca record" + (" with input" if alpaca["input"] else " without input")
        cases.append((label + (" + system_prompt" if sp else ""), (alpaca,),
                      {"system_prompt": sp}))
    cases.append(("record with both messages and Alpaca keys",
                  ({"instruction": "Who?", "input": "", "output": "Tom.",
                    "messages": [{"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Hello"}]},), {}))
    cases.append(("messages turns with extra keys",
                  ({"messages": [{"role": "user", "content": "Hi", "name": "x"},
                                 {"role": "assistant", "content": "Hello", "weight": 1}]},), {}))
    for shape in records:
        cases += [(f"real {shape} record", (r,), {}) for r in records[shape][:600:40]]
    compare_with_reference("normalize_record", ex.normalize_record, ref.normalize_record, cases)

    for kind, (record,), kwargs in cases[:24]:
        record = copy.deepcopy(record)
        snapshot = copy.deepcopy(record)
        result = ex.normalize_record(record, **kwargs)
        result.append({"role": "user", "content": "changed"})
        for turn in result:
            turn["content"] = "changed"
        if record != snapshot:
            raise HiddenTestFailure(f"normalize_record: changing the result changed the input "
                                    f"record ({kind}); build new dicts and lists", f"{snapshot}")
    print("normalize_record leaves its input unchanged")


# --- format_conversation ----------------------------------------------------------------------
def _same(got, want):
    return (isinstance(got, dict) and got.get("text") == want["text"]
            and list(got.get("input_ids", [])) == want["input_ids"])


def format_conversation_hidden(ex, ref, tokenizer=None, conversations=None) -> None:
    """Random conversations with and without the generation prompt, edge cases (newlines,
    unicode, template text inside content, no turns), real conversations: text and ids."""
    tokenizer, conversations = _tokenizer(tokenizer), _conversations(conversations)
    rng = random.Random(303)
    cases = []
    for gen in (False, True):
        label = "random conversation" + (" + generation prompt" if gen else "")
        cases += [(label, (random_conversation(rng), tokenizer), {"add_generation_prompt": gen})
                  for _ in range(25)]
    edge = [
        ("one user turn + generation prompt", [{"role": "user", "content": "Who?"}], True),
        ("system + user + generation prompt",
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who?"}], True),
        ("newlines around content", [{"role": "user", "content": "\n\nWho?\n"},
                                     {"role": "assistant", "content": "Tom.\n\n"}], False),
        ("unicode content", [{"role": "user", "content": "Ünïcödé 🙂?"},
                             {"role": "assistant", "content": "Ja — 🙂"}], False),
        ("template text inside content", [{"role": "user", "content": "### Response:\nuser\n"},
                                          {"role": "assistant", "content": "assistant\n"}],
         False),
        ("single assistant turn", [{"role": "assistant", "content": "Hello."}], False),
        ("no turns + generation prompt", [], True),
    ]
    cases += [(label, (m, tokenizer), {"add_generation_prompt": g}) for label, m, g in edge]
    cases += [("real conversation", (c, tokenizer), {}) for c in conversations[:3000:100]]
    compare_with_reference("format_conversation", ex.format_conversation,
                           ref.format_conversation, cases, equal=_same)


# --- validate_conversation --------------------------------------------------------------------
BAD_CONTENT = [None, 42, 3.5, ["a", "list"], {"text": "x"}, True]
BLANK = ["", " ", "   ", "\n", "\t\n "]
KINDS = ["non-string content", "blank content", "swapped turns", "last turn removed",
         "user turn appended", "system turn inside", "unknown role", "first turn removed"]


def _defect(conv, kind, rng):
    conv = copy.deepcopy(conv)
    i = rng.randrange(len(conv))
    if kind == "non-string content":
        conv[i]["content"] = rng.choice(BAD_CONTENT)
    elif kind == "blank content":
        conv[i]["content"] = rng.choice(BLANK)
    elif kind == "swapped turns" and len(conv) > 1:
        j = rng.randrange(len(conv) - 1)
        conv[j], conv[j + 1] = conv[j + 1], conv[j]
    elif kind == "last turn removed":
        conv = conv[:-1]
    elif kind == "user turn appended":
        conv.append({"role": "user", "content": "Thanks!"})
    elif kind == "system turn inside":
        conv.insert(rng.randint(1, len(conv)), {"role": "system", "content": "Be brief."})
    elif kind == "unknown role":
        conv[i]["role"] = rng.choice(["bot", "human", "gpt", "User", "tool"])
    elif kind == "first turn removed":
        conv = conv[1:]
    return conv


def validate_conversation_hidden(ex, ref, dirty=None) -> None:
    """Valid conversations, each kind of defect alone and two at a time, fixed edge cases and
    every record of dirty.jsonl: the same problem codes, in the same order."""
    dirty = _dirty(dirty)
    rng = random.Random(404)
    cases = [("valid conversation", (random_conversation(rng),), {}) for _ in range(15)]
    for kind in KINDS:
        cases += [(kind, (_defect(random_conversation(rng), kind, rng),), {}) for _ in range(6)]
    for _ in range(12):
        a, b = rng.sample(KINDS, 2)
        cases.append(("two defects",
                      (_defect(_defect(random_conversation(rng), a, rng), b, rng),), {}))
    cases += [("all three problems", ([{"role": "assistant", "content": None},
                                        {"role": "user", "content": " "}],), {}),
              ("non-string and blank content", ([{"role": "user", "content": 42},
                                                 {"role": "assistant", "content": ""}],), {}),
              ("empty conversation", ([],), {}),
              ("system turn only", ([{"role": "system", "content": "Be brief."}],), {}),
              ("user turn only", ([{"role": "user", "content": "Hi"}],), {})]
    cases += [("dirty.jsonl record", (r["messages"],), {}) for r in dirty]
    compare_with_reference("validate_conversation", ex.validate_conversation,
                           ref.validate_conversation, cases)


# --- clean_conversations ----------------------------------------------------------------------
def _norm(out):
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        return ("bad result", repr(out)[:200])
    kept, dropped = out
    return [list(k) for k in kept], [tuple(d) for d in dropped]


def _pool(rng):
    good = [random_conversation(rng) for _ in range(5)]
    same_question = copy.deepcopy(good[0])
    same_question[-1]["content"] += " (another answer)"  # not a duplicate
    bad = [[{"role": "user", "content": None}, {"role": "assistant", "content": "x"}],
           [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}],
           [{"role": "user", "content": " "}, {"role": "assistant", "content": "x"}],
           [{"role": "assistant", "content": "\n"}],  # two problems
           [{"role": "user", "content": "y"}, {"role": "assistant", "content": "x"},
            {"role": "user", "content": "z"}]]
    good.append(same_question)
    items = [rng.choice(good + bad) for _ in range(rng.randint(4, 14))]
    return [copy.deepcopy(c) for c in items]


def _length_limits(tokenizer, conversations, dirty) -> tuple[int, int]:
    """(longest training conversation, shortest over-long dirty record), in tokens."""
    from course.checks.step1_data import library_encode, library_ids

    longest = max(len(ids) for ids in library_encode(tokenizer, conversations)[1])
    too_long = [len(library_ids(tokenizer, r["messages"]))
                for r in dirty if r["defect"] == "too_long"]
    return longest, min(too_long)


def clean_conversations_hidden(ex, ref, tokenizer=None, dirty=None, lengths=None,
                               too_long=None, conversations=None) -> None:
    """Random mixes of good, invalid, duplicate and over-long conversations at limits around
    their lengths, dirty.jsonl at the notebook's limits, no conversations, the same question with
    another answer, conversations that differ only in whitespace (not duplicates: both kept),
    all with the reference's validate_conversation and format_conversation; kept holds the
    input conversations themselves. `lengths` / `too_long`: the token counts of the training
    conversations and of dirty.jsonl's over-long records (computed when not given)."""
    tokenizer, dirty = _tokenizer(tokenizer), _dirty(dirty)
    if lengths is None or too_long is None:
        longest, shortest_too_long = _length_limits(tokenizer, _conversations(conversations),
                                                    dirty)
    else:
        longest, shortest_too_long = max(lengths), min(too_long)
    rng = random.Random(505)
    cases = []
    for _ in range(30):
        convs = _pool(rng)
        sizes = [len(ref.format_conversation(c, tokenizer)["input_ids"]) for c in convs
                 if not ref.validate_conversation(c)] or [10]
        limit = rng.choice(sizes) + rng.choice([-1, 0, 0, 1])
        cases.append(("random mix of good, bad, duplicate and long", (convs, tokenizer, limit),
                      {}))
    dirty_convs = [r["messages"] for r in dirty]
    for limit in (longest, shortest_too_long - 1, shortest_too_long, 40):
        cases.append(("dirty.jsonl", (dirty_convs, tokenizer, limit), {}))
    cases.append(("no conversations", ([], tokenizer, 100), {}))
    first = random_conversation(random.Random(8), system=0)
    other_answer = copy.deepcopy(first)
    other_answer[-1]["content"] += " (another answer)"
    cases.append(("same question, different answer",
                  ([first, other_answer, copy.deepcopy(first)], tokenizer, 10_000), {}))
    kite = [{"role": "user", "content": "Who found the kite?"},
            {"role": "assistant", "content": "Mira found the kite."}]
    spaced = copy.deepcopy(kite)
    spaced[0]["content"] = "Who found  the kite?"
    cases.append(("conversations that differ only in whitespace",
                  ([kite, spaced], tokenizer, 10_000), {}))
    with patched(ex, validate_conversation=ref.validate_conversation,
                 format_conversation=ref.format_conversation):
        compare_with_reference("clean_conversations", ex.clean_conversations,
                               ref.clean_conversations, cases,
                               equal=lambda a, b: _norm(a) == _norm(b))
        convs = _pool(random.Random(7))
        kept_, _ = ex.clean_conversations(convs, tokenizer, 10_000)
        if not all(any(k is c for c in convs) for k in kept_):
            raise HiddenTestFailure("clean_conversations: kept must hold the input "
                                    "conversations themselves, not copies")


HIDDEN_CHECKS = {f.__name__: f for f in (
    alpaca_prompt_hidden, normalize_record_hidden, format_conversation_hidden,
    validate_conversation_hidden, clean_conversations_hidden)}
