"""Issue 5: the step 2 notebook's tests (visible checks and hidden tests) grade behaviour.

The instructor notebook runs once in this process (`InProcessNotebook`, as under nbgrader); then
its test cells are re-run against the reference (no failure), the blank release (every test
fails, each with a TODO hint) and every wrong implementation in tests/wrong/step2_masking/ and
its more/ folder, which must fail exactly the tests its EXPECT_LOSE names: its function's hidden
test, and its visible check where that check catches it -- never another function's tests.
The nbgrader batch of test_autograde_step2.py does the same for real with a few of them.
"""
from __future__ import annotations

import contextlib
import io
import os
import types

import pytest

from course import REPO_ROOT
from course.nbgrader.fixtures import (InProcessNotebook, expected_losses, reference_module,
                                      wrong_module)
from course.notebook import GRADING_ENV

STEP, MODULE = "step2_masking", "masking_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
WRONG = sorted(FOLDER.glob("*.py")) + sorted((FOLDER / "more").glob("*.py"))
FUNCTIONS = ["check_conversation", "labels_for_conversation", "labels_for_alpaca",
             "masked_cross_entropy", "truncate_and_filter", "collate"]


@pytest.fixture(scope="module")
def notebook():
    return InProcessNotebook(STEP)


def test_notebook_has_a_visible_and_a_hidden_test_per_exercise(notebook):
    assert set(notebook.tests) == {n + s for n in FUNCTIONS for s in ("", "_hidden")}


def test_reference_passes_every_test(notebook):
    assert notebook.failures(reference_module(STEP, MODULE)) == set()


def test_blank_release_fails_every_test_with_a_todo_hint(notebook):
    blank = (REPO_ROOT / STEP / MODULE).read_text(encoding="utf-8")
    assert notebook.failures(blank) == set(notebook.tests)
    module = types.ModuleType("masking_exercise")
    exec(compile(blank, "<masking_exercise>", "exec"), module.__dict__)  # noqa: S102
    old = os.environ.get(GRADING_ENV)
    os.environ[GRADING_ENV] = "autograde"
    try:
        for gid, code in notebook.tests.items():
            namespace = {**notebook.namespace, **{k: module for k in notebook.bindings}}
            with pytest.raises(NotImplementedError), contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, f"<{gid}>", "exec"), namespace)  # noqa: S102
    finally:
        if old is None:
            os.environ.pop(GRADING_ENV, None)
        else:
            os.environ[GRADING_ENV] = old


@pytest.mark.parametrize("wrong", WRONG, ids=[w.relative_to(FOLDER).as_posix() for w in WRONG])
def test_wrong_implementation_fails_exactly_the_tests_it_names(notebook, wrong):
    expected = set(expected_losses(wrong))
    assert any(g.endswith("_hidden") for g in expected), \
        f"{wrong.name}: name the hidden test that must catch this bug"
    failed = notebook.failures(wrong_module(STEP, MODULE, wrong))
    assert failed == expected, f"{wrong.name}: expected to fail {sorted(expected)}, " \
                               f"failed {sorted(failed)}"


CLASSIC = sorted(FOLDER.glob("*.py"))


def _message(notebook, text: str, gid: str) -> str:
    """The error a test cell raises with `text` as the module ('' if it passes)."""
    module = types.ModuleType("masking_exercise")
    exec(compile(text, "<masking_exercise>", "exec"), module.__dict__)  # noqa: S102
    namespace = {**notebook.namespace, **{k: module for k in notebook.bindings}}
    old = os.environ.get(GRADING_ENV)
    os.environ[GRADING_ENV] = "autograde"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(notebook.tests[gid], f"<{gid}>", "exec"), namespace)  # noqa: S102
    except Exception as err:  # noqa: BLE001
        return str(err)
    finally:
        if old is None:
            os.environ.pop(GRADING_ENV, None)
        else:
            os.environ[GRADING_ENV] = old
    return ""


@pytest.mark.parametrize("wrong", CLASSIC, ids=[w.stem for w in CLASSIC])
def test_visible_check_names_the_classic_mistake(notebook, wrong):
    source = wrong.read_text(encoding="utf-8")
    marker = 'EXPECT_MESSAGE = "'
    assert marker in source, f"{wrong.name}: a classic mistake needs EXPECT_MESSAGE"
    message = source.split(marker, 1)[1].split('"', 1)[0]
    visible = [g for g in expected_losses(wrong) if not g.endswith("_hidden")]
    assert visible, f"{wrong.name}: the visible check must catch a classic mistake"
    text = _message(notebook, wrong_module(STEP, MODULE, wrong), visible[0])
    assert message in text, f"{wrong.name}: the check said\n{text}"


def test_every_test_catches_some_wrong_implementation(notebook):
    caught = set().union(*(expected_losses(w) for w in WRONG))
    assert caught == set(notebook.tests)
