"""Issue 5, step 2: the hidden checks catch every wrong implementation, and pass the reference.

Each file of tests/wrong/step2_masking/ (classic mistakes) and its more/ folder (subtler
variants) is appended to the reference module, as the autograde harness does
(`course.nbgrader.fixtures.wrong_module`); the hidden checks of
solutions/step2_masking/hidden_checks.py named in its EXPECT_LOSE must then fail. Only those
are run for a wrong implementation (all of them run on the reference), which keeps this file
at a few seconds. The notebook's visible checks (also named in EXPECT_LOSE) are covered by
tests/test_hidden_tests_step2.py and the nbgrader batch by tests/test_autograde_step2.py.
"""
from __future__ import annotations

import types

import pytest

from course import REPO_ROOT
from course.grading import load_reference
from course.models import load_tokenizer
from course.nbgrader.fixtures import expected_losses, reference_module, wrong_module

STEP, MODULE = "step2_masking", "masking_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
WRONG = sorted(FOLDER.glob("*.py")) + sorted((FOLDER / "more").glob("*.py"))
CLASSIC = {  # the mistakes issue 5 lists; each must have its own wrong implementation
    "mask_starts_one_early", "mask_starts_one_late", "end_token_not_trained",
    "padding_labels_not_ignored", "pad_equals_eos_masks_eos", "user_turns_trained",
    "only_first_assistant_turn", "labels_shifted_by_hand", "mean_of_sequence_means",
    "nan_on_fully_masked_batch"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def checks():
    return load_reference(STEP, "hidden_checks").HIDDEN_CHECKS


@pytest.fixture(scope="module")
def ref():
    return load_reference(STEP, "masking_exercise")


def submitted(text: str) -> types.ModuleType:
    """The module as a learner would submit it (a fresh import of `text`)."""
    module = types.ModuleType("masking_exercise")
    exec(compile(text, "<masking_exercise>", "exec"), module.__dict__)  # noqa: S102
    return module


def failures(module, ref, tok, checks, names) -> dict[str, str]:
    failed = {}
    for name in names:
        try:
            checks[name](module, ref, tok)
        except AssertionError as err:
            failed[name] = str(err).splitlines()[0]
    return failed


def test_every_classic_mistake_has_a_wrong_implementation():
    assert CLASSIC <= {w.stem for w in FOLDER.glob("*.py")}


def test_reference_passes_every_hidden_check(ref, tok, checks):
    # the module text with markers stripped, exactly as the harness builds it
    module = submitted(reference_module(STEP, MODULE))
    assert failures(module, ref, tok, checks, checks) == {}


@pytest.mark.parametrize("wrong", WRONG, ids=[w.relative_to(FOLDER).as_posix() for w in WRONG])
def test_wrong_implementation_fails_the_checks_it_names(ref, tok, checks, wrong):
    expected = [g for g in expected_losses(wrong) if g.endswith("_hidden")]  # visible: elsewhere
    assert expected and set(expected) <= set(checks), \
        f"{wrong.name}: EXPECT_LOSE must name hidden checks from {sorted(checks)}"
    failed = failures(submitted(wrong_module(STEP, MODULE, wrong)), ref, tok, checks, expected)
    assert set(failed) == set(expected), \
        f"{wrong.name}: expected to fail {expected}, failed only {sorted(failed)}"
