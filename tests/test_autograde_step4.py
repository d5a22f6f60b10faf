"""Issue 7, step 4 end to end with real nbgrader: release -> collect -> one autograde batch.

One batch grades the answer key (full marks), the untouched learner release (zero, every failure
a TODO hint, the notebook runs to the end) and a few classic wrong implementations (each loses
the tests its EXPECT_LOSE names and its function's visible check). Every wrong implementation is
checked in-process in tests/test_hidden_tests_step4.py; this batch proves the real pipeline.
"""
from __future__ import annotations

import pytest

from course import REPO_ROOT
from course.nbgrader.fixtures import GradedBatch, expected_losses, grade_batch

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]

STEP, MODULE = "step4_lora", "lora_exercise.py"
POINTS = 33  # 13 visible checks (1 each), 13 hidden tests (19), the LORA_LR check (1)
WRONG = [REPO_ROOT / "tests" / "wrong" / STEP / f"{name}.py"
         for name in ("no_scaling", "b_random_init", "unload_without_merge")]


@pytest.fixture(scope="session")
def batch(tmp_path_factory) -> GradedBatch:
    return grade_batch(tmp_path_factory.mktemp("course4"), STEP, MODULE, WRONG)


def test_reference_gets_full_marks(batch):
    ref = batch.results["reference"]
    assert ref.status == "ok", ref.notes
    assert ref.max_score == POINTS and ref.score == POINTS, batch.lost('reference')


def test_blank_release_scores_zero_with_todo_hints(batch):
    blank = batch.results["blank"]
    assert blank.status == "ok", blank.notes
    assert blank.max_score == POINTS and blank.score == 0
    errors = batch.error_names("blank")
    assert errors == {"NotImplementedError", "TodoNotDone"}, "every failure is a TODO's hint"


@pytest.mark.parametrize("wrong", WRONG, ids=[w.stem for w in WRONG])
def test_wrong_implementation_loses_its_tests(batch, wrong):
    result = batch.results[f"wrong-{wrong.stem}"]
    assert result.status == "ok", result.notes
    expected = set(expected_losses(wrong))
    expected |= {g.removesuffix("_hidden") for g in expected}
    lost = batch.lost(f"wrong-{wrong.stem}")
    assert expected <= lost, f"{wrong.name}: lost only {sorted(lost)}"
    assert result.score < POINTS
