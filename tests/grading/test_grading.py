"""One grading suite for every step: step x wrong implementation x harness, from the table in
steps.py.

Harnesses, fastest first:
- hidden:   the step's hidden checks (solutions/<step>/hidden_checks.py) called directly on the
            submitted module, next to the reference; every wrong implementation.
- notebook: the instructor notebook's test cells (visible checks and hidden tests) run in this
            process as the grader runs them (`InProcessNotebook`); the table's wrong
            implementations. A classic mistake's visible check also names it (EXPECT_MESSAGE).
- trusted:  the trusted grader (course.nbgrader.trusted) on a submission folder, the learner's
            module in its jailed worker; the table's wrong implementations.
- nbgrader: release -> collect -> one real autograde batch per step; the table's few.

The same assertion everywhere: the reference passes everything (full marks), the blank release
fails every exercise test with its TODO hint (zero), and a wrong implementation loses exactly
the tests its EXPECT_LOSE names (in the hidden harness: exactly its hidden ones).
"""
from __future__ import annotations

import contextlib
import io
import os
import types

import pytest
import torch

from course import REPO_ROOT
from course.grading import load_reference
from course.nbgrader import released_steps
from course.nbgrader.fixtures import reference_module, wrong_module
from course.nbgrader.hooks import strip_solutions
from course.notebook import GRADING_ENV
from steps import NBGRADER_GROUPS, STEPS, expected, expected_message

CASES = {  # harness -> [(step, wrong file)]
    "hidden": [(s, w) for s in STEPS for w in s.wrong()],
    "notebook": [(s, w) for s in STEPS for w in s.wrong(s.notebook)],
    "nbgrader": [(s, w) for s in STEPS for w in s.wrong(s.nbgrader)],
    "trusted": [(s, w) for s in STEPS if s.trusted for w in s.wrong(s.trusted)],
}


def _ids(harness: str) -> list[str]:
    return [s.id(w) for s, w in CASES[harness]]


def submitted(step, text: str) -> types.ModuleType:
    """The module as a learner would submit it (a fresh import of `text`)."""
    name = step.module.removesuffix(".py")
    module = types.ModuleType(name)
    # dont_inherit: not this file's `from __future__ import annotations` (string annotations
    # make @dataclass look the module up in sys.modules, where a submission is not)
    exec(compile(text, f"<{name}>", "exec", dont_inherit=True), module.__dict__)  # noqa: S102
    return module


def blank_text(step) -> str:
    return strip_solutions((REPO_ROOT / "solutions" / step.name / step.module).read_text())


@contextlib.contextmanager
def threads(step):
    old = torch.get_num_threads()
    if step.threads:
        torch.set_num_threads(step.threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --- the table ------------------------------------------------------------------------------------
def test_the_table_lists_every_released_step():
    assert [s.name for s in STEPS] == released_steps()


@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
def test_wrong_implementations_are_well_formed(step):
    """Every classic mistake has its file; every file names tests of the notebook, at least one
    hidden; a classic mistake that a visible check catches says what that check reports."""
    assert step.classic <= {w.stem for w in step.wrong(("classic",))}
    points = step.points()
    for wrong in step.wrong():
        names = expected(wrong)
        assert names <= set(points), f"{wrong.name}: unknown tests {names - set(points)}"
        assert any(n.endswith("_hidden") for n in names), f"{wrong.name}: no hidden test named"
        if wrong.parent == step.folder and names - {n for n in names if n.endswith("_hidden")}:
            assert expected_message(wrong), f"{wrong.name}: EXPECT_MESSAGE missing"


# --- harness 1: the hidden checks, called directly ------------------------------------------------
def _hidden_failures(checks, module, ref, names) -> dict[str, BaseException]:
    failed = {}
    for name in names:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                checks[name](module, ref)
        except (AssertionError, NotImplementedError) as err:
            failed[name] = err
    return failed


def _hidden(step):
    return (load_reference(step.name, "hidden_checks").HIDDEN_CHECKS,
            load_reference(step.name, step.module.removesuffix(".py")))


@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
def test_hidden_checks_pass_the_reference_and_fail_the_blank_release(step):
    checks, ref = _hidden(step)
    assert set(checks) == {n for n in step.points() if n.endswith("_hidden")}
    with threads(step):
        assert _hidden_failures(checks, submitted(step, reference_module(step.name, step.module)),
                                ref, checks) == {}
        blank = _hidden_failures(checks, submitted(step, blank_text(step)), ref, checks)
    assert set(blank) == set(checks)
    assert all(isinstance(e, NotImplementedError) for e in blank.values()), blank


@pytest.mark.parametrize("step, wrong", CASES["hidden"], ids=_ids("hidden"))
def test_hidden_checks_catch_exactly_the_named_tests(step, wrong):
    checks, ref = _hidden(step)
    want = {n for n in expected(wrong) if n.endswith("_hidden")}
    with threads(step):
        failed = _hidden_failures(checks, submitted(step, wrong_module(step.name, step.module,
                                                                       wrong)), ref, checks)
    assert set(failed) == want, f"{wrong.name}: expected to fail {sorted(want)}, failed " \
                                f"{sorted(failed)}"
    for name, err in failed.items():  # the public line names the function that failed
        assert str(err).split(":")[0] in (name, name.removesuffix("_hidden")), str(err)[:200]


# --- harness 2: the notebook's test cells, in-process ----------------------------------------------
def _cell_failures(notebook, step, text: str) -> dict[str, BaseException]:
    """grade_id -> the error of every test cell that fails with `text` as the module."""
    module = submitted(step, text)
    failed = {}
    old = os.environ.get(GRADING_ENV)
    os.environ[GRADING_ENV] = "autograde"
    try:
        for gid, code in notebook.tests.items():
            namespace = {**notebook.namespace, **{k: module for k in notebook.bindings}}
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(code, f"<{gid}>", "exec"), namespace)  # noqa: S102
            except Exception as err:  # noqa: BLE001 - any error fails the test, as in a notebook
                failed[gid] = err
    finally:
        if old is None:
            os.environ.pop(GRADING_ENV, None)
        else:
            os.environ[GRADING_ENV] = old
    return failed


@pytest.mark.parametrize("step", STEPS, ids=[s.name for s in STEPS])
def test_notebook_passes_the_reference_and_fails_the_blank_release(in_process, step):
    notebook = in_process(step.name)
    assert set(notebook.tests) == set(step.points())
    with threads(step):
        assert _cell_failures(notebook, step, reference_module(step.name, step.module)) == {}
        blank = _cell_failures(notebook, step, blank_text(step))
    # every test of an exercise function fails, each on the TODO's hint (a notebook solution
    # cell's check, e.g. step 1's max_tokens, does not depend on the module)
    exercise = {n for n in step.points() if n.removesuffix("_hidden") + "_hidden" in step.points()}
    assert exercise <= set(blank), sorted(exercise - set(blank))
    hints = {type(e).__name__ for e in blank.values()}
    assert hints <= {"NotImplementedError", "TodoNotDone"}, hints


@pytest.mark.parametrize("step, wrong", CASES["notebook"], ids=_ids("notebook"))
def test_notebook_tests_catch_exactly_the_named_tests(in_process, step, wrong):
    notebook = in_process(step.name)
    with threads(step):
        failed = _cell_failures(notebook, step, wrong_module(step.name, step.module, wrong))
    assert set(failed) == expected(wrong), \
        f"{wrong.name}: expected to fail {sorted(expected(wrong))}, failed {sorted(failed)}"
    message = expected_message(wrong)
    if message:  # the visible check names the mistake
        visible = [failed[n] for n in sorted(failed) if not n.endswith("_hidden")]
        assert any(message.lower() in str(e).lower() for e in visible), \
            f"{wrong.name}: no visible check says {message!r}: {[str(e)[:300] for e in visible]}"


# --- harness 3: the trusted grader, directly -------------------------------------------------------
def _trusted_losses(step, text: str, folder) -> set[str]:
    from course.nbgrader.trusted import grader_for
    folder.mkdir(parents=True, exist_ok=True)
    (folder / step.module).write_text(text, encoding="utf-8")
    # the instructor notebook: its solution cells (a value the learner chooses) are answered
    notebook = REPO_ROOT / "solutions" / step.name / "tutorial.ipynb"
    (folder / notebook.name).write_bytes(notebook.read_bytes())
    grading = grader_for(step.name).grade(folder)
    return {gid for gid, verdict in grading.verdicts.items() if not verdict.passed}


@pytest.mark.slow
@pytest.mark.parametrize("step", [s for s in STEPS if s.trusted], ids=lambda s: s.name)
def test_trusted_grader_gives_the_reference_full_marks(step, tmp_path):
    assert _trusted_losses(step, reference_module(step.name, step.module), tmp_path) == set()


@pytest.mark.slow
@pytest.mark.parametrize("step, wrong", CASES["trusted"], ids=_ids("trusted"))
def test_trusted_grader_takes_exactly_the_named_tests(step, wrong, tmp_path):
    lost = _trusted_losses(step, wrong_module(step.name, step.module, wrong), tmp_path)
    assert lost == expected(wrong), f"{wrong.name}: lost {sorted(lost)}"


# --- harness 4: real nbgrader ---------------------------------------------------------------------
def nbgrader(step) -> list:
    """Marks of a real-nbgrader test: the batches run one after the other on one xdist worker,
    except step 1's (the longest, with its hostile submissions), which has a worker to itself."""
    return [pytest.mark.slow, pytest.mark.xdist_group(NBGRADER_GROUPS.get(step.name, "nbgrader"))]


@pytest.mark.parametrize("step", [pytest.param(s, marks=nbgrader(s)) for s in STEPS],
                         ids=[s.name for s in STEPS])
def test_nbgrader_gives_the_reference_full_marks_and_the_blank_release_zero(graded, step):
    batch = graded(step.name)
    ref, blank = batch.results["reference"], batch.results["blank"]
    assert ref.status == "ok", ref.notes
    assert ref.max_score == step.max_score() and ref.score == ref.max_score, batch.lost("reference")
    assert blank.status == "ok", blank.notes
    assert blank.max_score == step.max_score() and blank.score == 0, blank.tests
    assert any("unfinished TODOs:" in n for n in blank.notes), blank.notes
    errors = batch.error_names("blank")
    assert errors <= {"NotImplementedError", "TodoNotDone"}, "every failure is a TODO's hint"


@pytest.mark.parametrize("step, wrong", [pytest.param(s, w, marks=nbgrader(s))
                                         for s, w in CASES["nbgrader"]], ids=_ids("nbgrader"))
def test_nbgrader_takes_exactly_the_named_tests_points(graded, step, wrong):
    batch = graded(step.name)
    result = batch.results[f"wrong-{wrong.stem}"]
    assert result.status == "ok", result.notes
    lost = batch.lost(f"wrong-{wrong.stem}")
    assert lost == expected(wrong), f"{wrong.name}: lost {sorted(lost)}"
    points = step.points()
    assert result.score == pytest.approx(step.max_score() - sum(points[n] for n in lost))


@pytest.mark.parametrize("step", [pytest.param(s, marks=nbgrader(s)) for s in STEPS],
                         ids=[s.name for s in STEPS])
def test_nbgrader_autograde_fits_its_budget(graded, step):
    """60 s per submission on 2 cores (step 3: 90 s), as CPU time (a shared, overloaded machine
    does not inflate it; step 1's hostile submissions include two deliberate cell timeouts)."""
    batch = graded(step.name)
    print(f"{step.name}: release {batch.release_s:.1f} s; autograde {batch.autograde_s:.1f} s "
          f"({batch.autograde_cpu_s:.1f} s CPU) for {len(batch.results)} submissions")
    assert batch.release_s <= 60
    assert batch.autograde_cpu_s / len(batch.results) <= step.budget_s
