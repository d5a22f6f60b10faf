"""Step 1's nbgrader batch beyond the shared grading suite (test_grading.py grades its
reference, blank release and classic mistakes): hostile submissions graded next to them, the
gradebook, and the feedback pages.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from course.nbgrader.feedback import generate_feedback, hidden_lines, leaks, page_text
from course.nbgrader.fixtures import GradedBatch, lost_tests
from course.nbgrader.gradebook import read_scores
from steps import BY_NAME, NBGRADER_GROUPS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(NBGRADER_GROUPS["step1_data"])]

STEP = "step1_data"
WRONG = BY_NAME[STEP].wrong(BY_NAME[STEP].nbgrader)


@pytest.fixture(scope="module")
def batch(graded) -> GradedBatch:
    return graded(STEP)


@pytest.fixture(scope="module")
def feedback(batch) -> dict[str, Path]:
    """The feedback page of each graded learner."""
    return {p.parent.parent.name: p for p in generate_feedback(batch.root, STEP)}


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
    # after it, only what needs the looping cell is lost: the trusted verdicts score the hidden
    # tests in the grader's own process, whatever became of the kernel
    assert lost_tests(r) == {"max_tokens", "clean_conversations"}, lost_tests(r)


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
    assert r.score == r.max_score == BY_NAME[STEP].max_score(), lost_tests(r)


def test_not_implemented_at_import_is_an_import_error_not_a_grading_error(batch):
    r = batch.results["hostile-not_implemented_on_import"]
    assert r.status == "import-error", r.notes
    assert any("NotImplementedError: not finished yet" in n for n in r.notes), r.notes
    assert r.score == 0 and all("could not be imported" in why for why in r.reasons.values())


def test_the_library_shortcut_loses_the_points_that_take_it(batch):
    """format_conversation through apply_chat_template: every test that runs it loses its
    points, each saying why; the rest of the module keeps them."""
    r = batch.results["hostile-chat_template_shortcut"]
    lost = lost_tests(r)
    assert {"format_conversation", "format_conversation_hidden"} <= lost, lost
    assert lost < set(r.tests), "tests that do not run format_conversation keep their points"
    for test in lost:
        assert "format_conversation calls apply_chat_template: write the template by hand" in \
            r.reasons[test], (test, r.reasons[test])


def test_hidden_test_lines_in_the_learners_text_cost_nothing(batch, feedback):
    r = batch.results["hostile-hidden_lines_in_text"]
    assert r.status == "ok" and r.score == r.max_score, (r.notes, r.reasons)
    assert "hostile-hidden_lines_in_text" in feedback
    assert "hidden tests ran here" in page_text(feedback["hostile-hidden_lines_in_text"])


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
    # no page shows a hidden test's line, but the one whose learner wrote them there
    secret = hidden_lines(batch.root, STEP)
    shown = {s: leaks(p, secret) for s, p in feedback.items()
             if s != "hostile-hidden_lines_in_text"}
    assert not any(shown.values()), {s: v for s, v in shown.items() if v}
