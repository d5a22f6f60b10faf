"""Issue 7, step 4: the notebook's test cells (visible checks and hidden tests) run in-process
against the answer key (full marks), the blank release (every test fails with a TODO hint) and
every wrong implementation in tests/wrong/step4_lora/ and more/ (each fails the tests its
EXPECT_LOSE names, and the classic ones also the visible check of that function). No kernel:
about a second per variant. The nbgrader batch is tests/test_autograde_step4.py."""
from __future__ import annotations

import pytest
import torch

from course import REPO_ROOT
from course.nbgrader.fixtures import InProcessNotebook, expected_losses, reference_module
from course.nbgrader.hooks import strip_solutions

STEP, MODULE = "step4_lora", "lora_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
CLASSIC = sorted(FOLDER.glob("*.py"))
WRONG = CLASSIC + sorted((FOLDER / "more").glob("*.py"))
POINTS = 33  # 13 visible checks (1 each), 13 hidden tests (19), the LORA_LR check (1)


@pytest.fixture(scope="module")
def notebook():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield InProcessNotebook(STEP)
    torch.set_num_threads(threads)


def test_reference_passes_every_test(notebook):
    assert len(notebook.tests) == 27
    assert notebook.failures(reference_module(STEP, MODULE)) == set()


def test_blank_release_fails_every_exercise_test(notebook):
    blank = strip_solutions((REPO_ROOT / "solutions" / STEP / MODULE).read_text())
    assert notebook.failures(blank) == set(notebook.tests) - {"lora_lr"}


@pytest.mark.parametrize("wrong", WRONG, ids=[w.relative_to(FOLDER).as_posix() for w in WRONG])
def test_wrong_implementation_fails_the_tests_it_names(notebook, wrong):
    # a classic mistake is named by its function's visible check too
    hidden = expected_losses(wrong) if wrong in CLASSIC else []
    notebook.catches(MODULE, wrong, also={g.removesuffix("_hidden") for g in hidden})
