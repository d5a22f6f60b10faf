"""End to end: release -> collect -> one nbgrader autograde batch -> gradebook -> feedback.

One batch grades, side by side: the reference solution (full marks), the untouched learner
release (zero, no crash), every wrong implementation in tests/wrong/step1_data/ (each loses the
tests its EXPECT_LOSE names) and the hostile submissions (each gets its status; the others are
still graded right and every one of them is in the gradebook).
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from course import REPO_ROOT
from course.nbgrader.feedback import generate_feedback, page_text
from course.nbgrader.fixtures import (GradedBatch, environment, expected_losses, grade_batch,
                                      lost_tests)
from course.nbgrader.gradebook import read_scores
from course.nbgrader.structure import grade_id

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]

STEP, MODULE = "step1_data", "data_exercise.py"
WRONG = sorted((REPO_ROOT / "tests" / "wrong" / STEP).glob("*.py"))
CELL_TIMEOUT = 40  # seconds; the slowest legitimate cell takes about 4 s alone, 15+ on a busy machine
GRACE = 5          # seconds an interrupted kernel has to answer


def _edit(nb, gid, fn):
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        if grade_id(cell) == gid:
            fn(cell)
    return nb


def _answer(nb, code):
    return _edit(nb, "choose_max_tokens", lambda c: setattr(c, "source", code))


def hostile_submissions(solved, reference):
    """name -> (notebook, module source). Each is graded next to the good submissions."""
    ignore_interrupt = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                        "while True:\n    time.sleep(0.05)\n")
    kernel_death = reference.replace(
        "    kept, dropped, seen = [], [], set()",
        "    import os\n    os._exit(3)\n    kept, dropped, seen = [], [], set()")
    assert kernel_death != reference

    def rename(cell):
        cell.metadata.nbgrader["grade_id"] = "my_validate_check"

    return {
        "infinite_loop": (_answer(solved, "while True:\n    pass\n"), reference),
        "ignores_interrupt": (_answer(solved, ignore_interrupt), reference),
        "kernel_death": (solved, kernel_death),
        "edited_locked_cell": (_edit(_edit(solved, "alpaca_prompt",
                                           lambda c: setattr(c, "source", "pass  # trust me")),
                                     "setup", lambda c: setattr(c, "source", c.source + "\nx = 1")),
                               reference),
        "deleted_test_cell": (nbformat.from_dict({**solved, "cells": [
            c for c in solved.cells if grade_id(c) not in ("format_conversation_hidden",
                                                           "clean_conversations")]}), reference),
        "renamed_grade_id": (_edit(solved, "validate_conversation", rename), reference),
        "module_raises_on_import": (solved,
                                    reference + "\nraise RuntimeError('broken on purpose')\n"),
        "invalid_json": (nbformat.writes(solved)[:-200] + "\n}{", reference),
    }


@pytest.fixture(scope="session")
def batch(tmp_path_factory) -> GradedBatch:
    hostile = lambda solved, reference: {  # noqa: E731
        f"hostile-{name}": v for name, v in hostile_submissions(solved, reference).items()}
    with environment(COURSE_CELL_TIMEOUT=str(CELL_TIMEOUT), COURSE_INTERRUPT_GRACE=str(GRACE)):
        return grade_batch(tmp_path_factory.mktemp("course"), STEP, MODULE, WRONG, hostile)


@pytest.fixture(scope="session")
def feedback(batch) -> dict[str, Path]:
    """The feedback page of each graded learner."""
    return {p.parent.parent.name: p for p in generate_feedback(batch.root, STEP)}


# --- good and blank ---------------------------------------------------------------------------
def test_reference_gets_full_marks(batch):
    ref = batch.results["reference"]
    assert ref.status == "ok", ref.notes
    assert ref.max_score == 16 and ref.score == ref.max_score, lost_tests(ref)


def test_blank_release_scores_zero_and_runs_to_the_end(batch):
    blank = batch.results["blank"]
    assert blank.status == "ok", blank.notes
    assert blank.max_score == 16 and blank.score == 0
    assert any("unfinished TODOs: alpaca_prompt" in n for n in blank.notes)
    errors = batch.error_names("blank")
    assert errors == {"NotImplementedError", "TodoNotDone"}, "every failure is a TODO's hint"


# --- wrong implementations -----------------------------------------------------------------------
@pytest.mark.parametrize("wrong", WRONG, ids=[w.stem for w in WRONG])
def test_wrong_implementation_loses_its_tests(batch, wrong):
    result = batch.results[f"wrong-{wrong.stem}"]
    assert result.status == "ok", result.notes
    expected = set(expected_losses(wrong))
    assert expected <= set(result.tests), f"EXPECT_LOSE names unknown tests: {expected}"
    assert expected <= lost_tests(result), (f"{wrong.name} should lose {sorted(expected)}, "
                                      f"lost only {sorted(lost_tests(result))}")


def test_every_hidden_test_catches_some_wrong_implementation(batch):
    caught = set().union(*(lost_tests(batch.results[f"wrong-{w.stem}"]) for w in WRONG))
    hidden = {n for n in batch.results["reference"].tests if n.endswith("_hidden")}
    assert hidden <= caught


# --- hostile submissions -------------------------------------------------------------------------
def test_infinite_loop_is_interrupted_and_the_rest_graded(batch):
    r = batch.results["hostile-infinite_loop"]
    assert r.status == "timeout", r.notes
    # only what needs the looping cell is lost
    assert lost_tests(r) == {"max_tokens", "clean_conversations"}, lost_tests(r)


def test_loop_ignoring_interrupts_kills_the_kernel_not_the_batch(batch):
    r = batch.results["hostile-ignores_interrupt"]
    assert r.status == "unresponsive", r.notes
    assert r.tests["validate_conversation_hidden"][0] == 2      # before the loop: graded
    assert r.tests["clean_conversations_hidden"][0] == 0         # after it: not run


def test_kernel_death_keeps_earlier_points(batch):
    r = batch.results["hostile-kernel_death"]
    assert r.status == "kernel-died", r.notes
    assert r.tests["format_conversation_hidden"][0] == 2 and r.tests["max_tokens"][0] == 1
    assert r.tests["clean_conversations"][0] == 0 and r.tests["clean_conversations_hidden"][0] == 0


@pytest.mark.parametrize("name, event", [
    ("edited_locked_cell", "locked cell 'alpaca_prompt' was edited"),
    ("deleted_test_cell", "missing cell 'format_conversation_hidden' restored"),
    ("renamed_grade_id", "unknown grade_id 'my_validate_check'"),
])
def test_tampered_notebooks_are_repaired_and_graded_in_full(batch, name, event):
    r = batch.results[f"hostile-{name}"]
    assert r.status == "repaired" and any(event in n for n in r.notes), r.notes
    assert r.score == r.max_score == 16, lost_tests(r)


def test_module_raising_on_import_scores_zero_with_a_clear_status(batch):
    r = batch.results["hostile-module_raises_on_import"]
    assert r.status == "import-error", r.notes
    assert any("RuntimeError: broken on purpose" in n for n in r.notes)
    assert r.score == 0


def test_invalid_notebook_is_flagged_for_manual_grading(batch):
    r = batch.results["hostile-invalid_json"]
    assert r.status == "invalid" and any("not valid JSON" in n for n in r.notes), r.notes
    scores = read_scores(batch.root, STEP)["hostile-invalid_json"]
    assert scores.score == 0 and scores.needs_manual_grade


def test_nothing_is_lost_from_the_gradebook(batch):
    scores = read_scores(batch.root, STEP)
    assert set(scores) == set(batch.results)
    for student, result in batch.results.items():
        assert scores[student].score == result.score


# --- feedback ------------------------------------------------------------------------------------
def test_feedback_hides_hidden_tests_but_keeps_public_hints(batch, feedback):
    graded = {s for s, r in batch.results.items() if r.status != "invalid"}
    assert graded <= set(feedback)
    ref = page_text(feedback["reference"])
    assert "hidden tests passed" in ref and "load_reference" not in ref
    wrong = page_text(feedback["wrong-missing_end_token"])
    assert "format_conversation: " in wrong and "hidden cases differ from the reference" in wrong
    assert "random_conversation" not in wrong and "BEGIN HIDDEN" not in wrong
    assert "missing end token" in wrong  # the visible check's diagnosis is shown in full


# --- performance ---------------------------------------------------------------------------------
def test_release_and_autograde_fit_their_budgets(batch):
    print(f"release of {STEP}: {batch.release_s:.1f} s; autograde: {batch.autograde_s:.1f} s for "
          f"{len(batch.results)} submissions")
    assert batch.release_s <= 60
    # hostile submissions include two deliberate cell timeouts; the rest must average <= 60 s
    slow = 2 * CELL_TIMEOUT + GRACE + 10
    assert (batch.autograde_s - slow) / len(batch.results) <= 60
