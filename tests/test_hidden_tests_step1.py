"""Issue 4: the step 1 tests check behaviour, not one example.

Every wrong implementation in tests/wrong/step1_data/ (graded by nbgrader in
test_autograde_step1.py) and in tests/wrong/step1_data/more/ (plausible variants, checked only
here to keep `make test` short) must fail the tests its EXPECT_LOSE names. The notebook's test
cells run in-process against each variant: no kernel, about half a second per variant.
"""
from __future__ import annotations

import pytest

from course import REPO_ROOT
from course.nbgrader.fixtures import InProcessNotebook, reference_module

STEP, MODULE = "step1_data", "data_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
WRONG = sorted(FOLDER.glob("*.py")) + sorted((FOLDER / "more").glob("*.py"))


@pytest.fixture(scope="module")
def notebook():
    return InProcessNotebook(STEP)


def test_reference_passes_every_test(notebook):
    assert len(notebook.tests) == 11
    assert notebook.failures(reference_module(STEP, MODULE)) == set()


@pytest.mark.parametrize("wrong", WRONG, ids=[w.relative_to(FOLDER).as_posix() for w in WRONG])
def test_wrong_implementation_fails_the_tests_it_names(notebook, wrong):
    expected, _ = notebook.catches(MODULE, wrong)
    hidden = {g for g in expected if g.endswith("_hidden")}
    assert hidden, f"{wrong.name}: name the hidden test that must catch this bug"
