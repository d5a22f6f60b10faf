"""Issue 5, end to end with real nbgrader: release -> collect -> one autograde batch for step 2.

One batch grades the reference solution (full marks), the untouched learner release (zero, every
failure a TODO hint) and a few classic wrong implementations (each loses exactly the tests its
EXPECT_LOSE names). All 44 wrong implementations run in-process in test_hidden_tests_step2.py;
the few here prove the real pipeline agrees. Runs in the "nbgrader" xdist group, so never at the
same time as step 1's batch.
"""
from __future__ import annotations

import pytest

from course import REPO_ROOT
from course.nbgrader.fixtures import GradedBatch, environment, expected_losses, grade_batch

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]

STEP, MODULE = "step2_masking", "masking_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
WRONG = [FOLDER / f"{name}.py" for name in (  # one per kind of exercise
    "end_token_not_trained", "nan_on_fully_masked_batch", "pad_equals_eos_masks_eos")]
MAX_SCORE = 19


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> GradedBatch:
    # Generous wall-clock limits: this batch tests grades, not timeouts (step 1's batch does),
    # and on an overloaded shared machine the setup cell's imports alone took over 120 s.
    with environment(COURSE_CELL_TIMEOUT="600", COURSE_NOTEBOOK_TIMEOUT="1800"):
        return grade_batch(tmp_path_factory.mktemp("course"), STEP, MODULE, WRONG)


def test_reference_gets_full_marks(batch):
    ref = batch.results["reference"]
    assert ref.status == "ok", ref.notes
    assert ref.max_score == MAX_SCORE and ref.score == ref.max_score, batch.lost('reference')


def test_blank_release_scores_zero_and_every_failure_is_a_todo_hint(batch):
    blank = batch.results["blank"]
    assert blank.status == "ok", blank.notes
    assert blank.max_score == MAX_SCORE and blank.score == 0
    assert any("unfinished TODOs: check_conversation" in n for n in blank.notes), blank.notes
    errors = batch.error_names("blank")
    assert errors == {"NotImplementedError"}, "every failure is a TODO's hint"


@pytest.mark.parametrize("wrong", WRONG, ids=[w.stem for w in WRONG])
def test_wrong_implementation_loses_exactly_its_tests(batch, wrong):
    result = batch.results[f"wrong-{wrong.stem}"]
    assert result.status == "ok", result.notes
    expected = set(expected_losses(wrong))
    lost = batch.lost(f"wrong-{wrong.stem}")
    assert lost == expected, f"{wrong.name}: lost {sorted(lost)}"
    points = sum(top for name, (_, top) in result.tests.items() if name in expected)
    assert result.score == MAX_SCORE - points


def test_autograde_fits_its_budget(batch):
    # Budget: 60 s per submission on 2 cores. Measured as CPU time, which a shared, overloaded
    # test machine does not inflate (wall time there was 86 s per submission at a load of 8).
    per_submission = batch.autograde_cpu_s / len(batch.results)
    print(f"autograde: {per_submission:.1f} s CPU per submission (wall "
          f"{batch.autograde_s / len(batch.results):.1f} s); release {batch.release_s:.1f} s")
    assert per_submission <= 60
