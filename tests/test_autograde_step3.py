"""Issue 6, step 3, end to end: release -> collect -> one nbgrader autograde batch -> gradebook.

One batch grades the reference solution (full marks), the untouched learner release (zero,
every failure a TODO hint) and a few classic wrong implementations of tests/wrong/step3_sft/
(each loses the tests its EXPECT_LOSE names). All the others are checked in-process by
tests/test_hidden_tests_step3.py; grading each with a real kernel would cost a minute apiece.
"""
from __future__ import annotations

import pytest

from course import REPO_ROOT
from course.nbgrader.fixtures import GradedBatch, environment, expected_losses, grade_batch

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]

STEP, MODULE = "step3_sft", "sft_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
WRONG = [FOLDER / f"{name}.py" for name in
         ("mean_per_micro_batch", "scheduler_per_micro_batch", "eval_in_train_mode",
          "resume_forgets_rng")]
MAX_SCORE = 21
CELL_TIMEOUT = 120  # seconds; the slowest cell (the short SFT run) takes about 10 s unloaded


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> GradedBatch:
    with environment(COURSE_CELL_TIMEOUT=str(CELL_TIMEOUT)):
        return grade_batch(tmp_path_factory.mktemp("course3"), STEP, MODULE, WRONG)


def test_reference_gets_full_marks(batch):
    ref = batch.results["reference"]
    assert ref.status == "ok", ref.notes
    assert ref.max_score == MAX_SCORE and ref.score == ref.max_score, batch.lost('reference')


def test_blank_release_scores_zero_and_every_failure_is_a_todo_hint(batch):
    blank = batch.results["blank"]
    assert blank.status == "ok", blank.notes
    assert blank.max_score == MAX_SCORE and blank.score == 0, blank.tests
    errors = batch.error_names("blank")
    assert errors <= {"NotImplementedError", "TodoNotDone", "NameError"}, errors


@pytest.mark.parametrize("wrong", WRONG, ids=[w.stem for w in WRONG])
def test_wrong_implementation_loses_its_tests(batch, wrong):
    result = batch.results[f"wrong-{wrong.stem}"]
    assert result.status == "ok", result.notes
    expected = set(expected_losses(wrong))
    assert expected <= set(result.tests), f"EXPECT_LOSE names unknown tests: {expected}"
    lost = batch.lost(f"wrong-{wrong.stem}")
    assert expected <= lost, f"{wrong.name} should lose {sorted(expected)}, lost {sorted(lost)}"


def test_autograde_fits_its_budget(batch):
    assert batch.autograde_s / len(batch.results) <= 90  # 60 s on an unloaded 2-core machine
