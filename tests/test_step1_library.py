"""Issue 4, step 1: the answer key equals the library way, and the visible checks name each
classic mistake (run in-process on every wrong implementation in tests/wrong/step1_data/)."""
from __future__ import annotations

import ast
import types
from collections import Counter
from pathlib import Path

import pytest

from course import REPO_ROOT
from course.checks import step1_data as checks
from course.data import iter_jsonl, load_split, raw_path, to_messages
from course.grading import CheckFailed, load_reference
from course.models import load_tokenizer
from course.nbgrader.fixtures import expected_losses, reference_module, wrong_module

STEP, MODULE = "step1_data", "data_exercise.py"
WRONG = sorted((REPO_ROOT / "tests" / "wrong" / STEP).glob("*.py"))


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


# --- visible checks: pass on the reference, name the mistake on each wrong implementation --------
def _module(text: str) -> types.ModuleType:
    mod = types.ModuleType("data_exercise_under_test")
    exec(compile(text, "data_exercise_under_test.py", "exec"), mod.__dict__)  # noqa: S102
    return mod


@pytest.fixture(scope="module")
def run_check(tok, raw, dirty, train):
    longest = max(len(i) for i in checks.library_encode(tok, train[:2000])[1])

    def run(grade_id: str, ex: types.ModuleType) -> None:
        {"alpaca_prompt": lambda: checks.check_alpaca_prompt(ex),
         "normalize_record": lambda: checks.check_normalize_record(ex, raw),
         "format_conversation": lambda: checks.check_format_conversation(ex, tok),
         "validate_conversation": lambda: checks.check_validate_conversation(ex, dirty),
         "clean_conversations": lambda: checks.check_clean_conversations(ex, tok, dirty,
                                                                         longest + 64),
         }[grade_id]()
    return run


VISIBLE = ["alpaca_prompt", "normalize_record", "format_conversation", "validate_conversation",
           "clean_conversations"]


@pytest.mark.parametrize("grade_id", VISIBLE)
def test_visible_checks_pass_on_the_reference(run_check, grade_id):
    run_check(grade_id, _module(reference_module(STEP, MODULE)))


def _expected_message(path: Path) -> str:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "EXPECT_MESSAGE":
            return node.value.value
    raise AssertionError(f"{path.name}: no EXPECT_MESSAGE")


@pytest.mark.parametrize("wrong", WRONG, ids=[w.stem for w in WRONG])
def test_visible_check_names_the_mistake(run_check, wrong, capsys):
    visible = [g for g in expected_losses(wrong) if g in VISIBLE]
    assert visible, f"{wrong.name}: EXPECT_LOSE names no visible check"
    with pytest.raises(CheckFailed) as err:
        run_check(visible[0], _module(wrong_module(STEP, MODULE, wrong)))
    assert _expected_message(wrong).lower() in str(err.value).lower(), str(err.value)
    assert "Looks like:" in str(err.value)
