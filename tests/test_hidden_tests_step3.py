"""Issue 6, step 3: the notebook's test cells (visible checks and hidden tests) take points off
wrong implementations, run in-process as the grader runs them (NBGRADER_EXECUTION set).

The reference fails none. A sample of wrong implementations (one per TODO family) must fail the
tests their EXPECT_LOSE names; every file of tests/wrong/step3_sft/ and more/ is checked against
the same check functions, without the notebook, in tests/test_step3_wrong.py (each test cell
of this notebook is one call of them), which keeps this file at about a minute.
"""
from __future__ import annotations

import pytest
import torch

from course import REPO_ROOT
from course.nbgrader.fixtures import InProcessNotebook, reference_module

STEP, MODULE = "step3_sft", "sft_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
WRONG = [FOLDER / f"{name}.py" for name in (
    "mean_per_micro_batch", "no_warmup", "decay_on_norms", "eval_in_train_mode",
    "early_stopping_never_resets", "non_atomic_checkpoint", "resume_forgets_rng",
    "total_steps_ignores_accumulation")]


@pytest.fixture(scope="module")
def notebook():
    threads = torch.get_num_threads()
    nb = InProcessNotebook(STEP)
    torch.set_num_threads(1)  # the notebook asks for 2; the test cells are small
    yield nb
    torch.set_num_threads(threads)


def test_reference_passes_every_test(notebook):
    assert len(notebook.tests) == 17
    assert notebook.failures(reference_module(STEP, MODULE)) == set()


@pytest.mark.parametrize("wrong", WRONG, ids=[w.relative_to(FOLDER).as_posix() for w in WRONG])
def test_wrong_implementation_fails_the_tests_it_names(notebook, wrong):
    expected, failed = notebook.catches(MODULE, wrong)
    assert "sft_run" not in failed or "train_step" in expected or "evaluate" in expected
