"""Step 1: the answer key equals the library way (course.data, apply_chat_template) on every
record. (That the tests catch each wrong implementation: tests/grading/.)"""
from __future__ import annotations

from collections import Counter

import pytest

from course.checks import step1_data as checks
from course.data import iter_jsonl, load_split, raw_path, to_messages
from course.grading import load_reference
from course.models import load_tokenizer

STEP = "step1_data"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def ref():
    return load_reference(STEP, "data_exercise")


@pytest.fixture(scope="module")
def raw():
    return {s: list(iter_jsonl(raw_path("train", s))) for s in ("alpaca", "sharegpt", "messages")}


@pytest.fixture(scope="module")
def dirty():
    return list(iter_jsonl(raw_path("dirty")))


@pytest.fixture(scope="module")
def train():
    return list(load_split("train")["messages"])


# --- the reference equals the library way --------------------------------------------------------
def test_normalize_record_equals_course_data_on_every_record(ref, raw):
    for shape, records in raw.items():
        for r in records:
            assert ref.normalize_record(r) == to_messages(r), (shape, r["id"])
        for r in records[:200]:
            assert ref.normalize_record(r, "Be brief.") == to_messages(r, "Be brief.")


def test_format_conversation_equals_apply_chat_template_on_every_record(ref, tok, train):
    texts, ids = checks.library_encode(tok, train)
    for m, text, id_ in zip(train, texts, ids):
        assert ref.format_conversation(m, tok) == {"text": text, "input_ids": id_}
    for m in train[:300]:
        got = ref.format_conversation(m[:-1], tok, add_generation_prompt=True)
        assert got["text"] == tok.apply_chat_template(m[:-1], tokenize=False,
                                                      add_generation_prompt=True)
        assert got["input_ids"] == checks.library_ids(tok, m[:-1], add_generation_prompt=True)


def test_cleaning_matches_the_answer_key_and_a_length_limit_exists(ref, tok, dirty, train):
    for r in dirty:
        problems = ref.validate_conversation(r["messages"])
        expected = r["defect"] if r["defect"] in ref.PROBLEMS else None
        assert (problems[0] if problems else None) == expected, r["id"]
    longest = max(len(i) for i in checks.library_encode(tok, train)[1])
    too_long = [len(checks.library_ids(tok, r["messages"])) for r in dirty
                if r["defect"] == "too_long"]
    assert longest < min(too_long) and longest <= tok.model_max_length, \
        "the data must allow a MAX_TOKENS that keeps all training data and drops the long ones"
    _, dropped = ref.clean_conversations([r["messages"] for r in dirty], tok, longest)
    assert Counter(reason for _, reason in dropped) == Counter(r["defect"] for r in dirty
                                                               if r["defect"])
