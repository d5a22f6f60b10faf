"""The pieces of the grading machinery, each on a small input."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course.grading import (CheckFailed, HiddenTestFailure, ReferenceUnavailable,
                            compare_with_reference, load_reference)
from course.nbgrader.collect import submit
from course.nbgrader.preprocessors import RedactHiddenTests
from course.nbgrader.source import build, parse
from course.nbgrader.structure import edited_locked, grade_id, repair


def _cell(gid, source="x", kind="code", **meta):
    cell = new_code_cell(source) if kind == "code" else new_markdown_cell(source)
    cell.metadata["nbgrader"] = {"grade_id": gid, "locked": True, "grade": False,
                                 "solution": False, "schema_version": 3, "task": False, **meta}
    return cell


# --- notebook source -----------------------------------------------------------------------------
def test_percent_source_builds_nbgrader_cells():
    nb = build("header\n# %% [markdown] intro\n# # Title\n#\n# text\n# %%\nx = 1\n\n"
               "# %% solution answer\ny = 2\n# %% test check_y points=2\nassert y == 2\n"
               "# %% free\nscratch = 0\n")
    assert [c.id for c in nb.cells] == ["intro", "code-01", "answer", "check_y", "free-01"]
    assert nb.cells[0].source == "# Title\n\ntext" and nb.cells[1].source == "x = 1"
    meta = [c.metadata.get("nbgrader", {}) for c in nb.cells]
    assert meta[0]["locked"] and meta[1]["locked"] and not meta[2]["locked"]
    assert meta[2]["solution"] and meta[3] == {"grade": True, "grade_id": "check_y",
                                               "locked": True, "schema_version": 3,
                                               "solution": False, "task": False, "points": 2}
    assert meta[4] == {}


@pytest.mark.parametrize("text, message", [
    ("# %% test t\nx", "points=N"),
    ("# %% solution\nx", "needs a name"),
    ("# %% a\n# %% a\n", "duplicate"),
    ("# %% [markdown]\nnot a comment", "must start with"),
])
def test_percent_source_errors_name_the_line(text, message):
    with pytest.raises(ValueError, match=message):
        build(text)
    assert parse("# %%\nx\n")[0]["where"] == "<source>:1"


# --- structural repair ---------------------------------------------------------------------------
def test_repair_restores_deleted_and_renamed_cells_in_place():
    released = [_cell("md-1", kind="md"), _cell("setup"), _cell("answer", solution=True,
                                                                    locked=False),
                _cell("test_a", grade=True, points=1), _cell("md-2", kind="md"),
                _cell("test_b", grade=True, points=1)]
    renamed = _cell("my_test", "mine", grade=True, points=1)
    submitted = [released[0], released[1], released[2], renamed, released[4]]  # a renamed, b gone
    cells, events = repair(submitted, released)
    assert [grade_id(c) for c in cells] == ["md-1", "setup", "answer", "test_a", None, "md-2",
                                            "test_b"]
    assert cells[4].source == "mine" and "nbgrader" not in cells[4].metadata
    assert {e.kind for e in events} == {"unknown_grade_id", "restored"}
    edited = [released[0], _cell("setup", "import os"), *released[2:]]
    assert [e.grade_id for e in edited_locked(edited, released)] == ["setup"]


# --- feedback redaction --------------------------------------------------------------------------
def _redact(source, outputs, submitted=None):
    """Redact the submitted version (default: `source`) of a cell whose instructor source is
    `source`."""
    meta = {"nbgrader": {"grade_id": "t", "grade": True, "points": 1}}
    cell = new_code_cell(source if submitted is None else submitted, outputs=outputs,
                         metadata=meta)
    redact = RedactHiddenTests()
    redact.remember(new_notebook(cells=[new_code_cell(source, metadata=meta)]))
    cell, _ = redact.preprocess_cell(cell, {}, 0)
    return cell


HIDDEN = "# visible line\n### BEGIN HIDDEN TESTS\nsecret_case = 42\n### END HIDDEN TESTS\n"


def test_redaction_removes_hidden_code_and_tracebacks():
    err = new_output("error", ename="AssertionError", evalue="secret_case != 41",
                     traceback=["secret_case = 42", "AssertionError: secret_case != 41"])
    cell = _redact(HIDDEN, [new_output("stream", name="stdout", text="secret_case"), err])
    assert "secret" not in nbformat.writes(new_notebook(cells=[cell]))
    assert cell.source.startswith("# visible line\n# (hidden tests ran here")
    assert [o.ename for o in cell.outputs] == ["AssertionError"]


def test_redaction_keeps_only_the_public_line_of_a_hidden_test_failure():
    failure = HiddenTestFailure("f: 2 of 9 hidden cases differ; failing kinds: empty input",
                                "[empty input] args=('secret',)")
    err = new_output("error", ename="HiddenTestFailure", evalue=str(failure), traceback=["..."])
    cell = _redact(HIDDEN, [err])
    assert cell.outputs[0].evalue == "f: 2 of 9 hidden cases differ; failing kinds: empty input"
    assert _redact(HIDDEN, []).outputs[0].text == "hidden tests passed\n"
    assert _redact("no hidden part", []).source == "no hidden part"


def test_redaction_goes_by_the_cell_not_by_what_it_contains():
    """What the learner's copy of a cell says decides nothing: the instructor's hidden cell is
    redacted whatever the submission put there, and a cell that has no hidden tests in the
    source is shown as it is, markers and all."""
    cell = _redact(HIDDEN, [], submitted="print('my own text')")
    assert cell.source.startswith("# visible line\n# (hidden tests ran here")
    mine = "### BEGIN HIDDEN TESTS\nfrom course.grading import load_reference\n"
    assert _redact("visible = 1", [], submitted=mine).source == mine


# --- hidden-test helpers -------------------------------------------------------------------------
def test_compare_with_reference_reports_kinds_publicly_and_cases_privately():
    cases = [("small", (1,), {}), ("big", (10**6,), {}), ("big", (10**7,), {})]
    compare_with_reference("f", lambda x: x, lambda x: x, cases)
    with pytest.raises(HiddenTestFailure) as err:
        compare_with_reference("f", lambda x: x if x < 100 else 0, lambda x: x, cases)
    assert err.value.public == ("f: 2 of 3 hidden cases differ from the reference; "
                                "failing kinds: big")
    assert "1000000" in str(err.value)
    with pytest.raises(NotImplementedError, match="TODO hint"):  # a TODO shows its own hint
        compare_with_reference("f", lambda x: (_ for _ in ()).throw(NotImplementedError("TODO "
                                                                                        "hint")),
                               lambda x: x, cases)


def test_reference_loader_explains_a_missing_solutions_folder(tmp_path, monkeypatch):
    ref = load_reference("step1_data", "data_exercise")
    assert ref.__name__ != "data_exercise" and callable(ref.format_conversation)
    monkeypatch.setenv("COURSE_SOLUTIONS", str(tmp_path))
    with pytest.raises(ReferenceUnavailable, match="solutions/step1_data/data_exercise.py"):
        load_reference("step1_data", "data_exercise")
    assert issubclass(CheckFailed, AssertionError)


# --- collect -------------------------------------------------------------------------------------
def test_collect_accepts_folders_and_zips_and_refuses_unsafe_ones(tmp_path):
    folder = tmp_path / "alice" / "step1_data"
    folder.mkdir(parents=True)
    (folder / "tutorial.ipynb").write_text("{}")
    dest = submit(tmp_path / "alice", "alice", "step1_data", tmp_path / "root")
    assert (dest / "tutorial.ipynb").exists() and (dest / "timestamp.txt").exists()

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bob-work/tutorial.ipynb", "{}")
        zf.writestr("bob-work/data_exercise.py", "x = 1\n")
    (tmp_path / "bob.zip").write_bytes(buf.getvalue())
    dest = submit(tmp_path / "bob.zip", "bob", "step1_data", tmp_path / "root")
    assert sorted(p.name for p in dest.iterdir()) == ["data_exercise.py", "timestamp.txt",
                                                      "tutorial.ipynb"]
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../../escape.py", "x")
    with pytest.raises(ValueError, match="unsafe"):
        submit(tmp_path / "evil.zip", "evil", "step1_data", tmp_path / "root")
    with pytest.raises(ValueError, match="invalid learner id"):
        submit(tmp_path / "bob.zip", "../x", "step1_data", tmp_path / "root")
    assert not Path(tmp_path / "escape.py").exists()


# --- notebook setup: a TODO's hint instead of a traceback, and the cell still fails --------------
def test_unfinished_todo_shows_its_hint_and_still_fails_the_cell(tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbgrader.utils import determine_grade

    (tmp_path / "demo_exercise.py").write_text(
        "def add_one(x):\n    # TODO: add one.\n    raise NotImplementedError('add one.')\n\n\n"
        "def typo():\n    return undefined_in_module\n")
    test = new_code_cell("assert demo_exercise.add_one(1) == 2")
    test.metadata["nbgrader"] = {"grade": True, "grade_id": "add_one", "locked": True,
                                 "points": 1, "schema_version": 3, "solution": False,
                                 "task": False}
    nb = new_notebook(cells=[
        new_code_cell("from course.notebook import setup\nsetup()\nimport demo_exercise"),
        test, new_code_cell("result_of_an_earlier_cell"), new_code_cell("1 / 0"),
        new_code_cell("demo_exercise.typo()")])
    NotebookClient(nb, resources={"metadata": {"path": str(tmp_path)}}, allow_errors=True,
                   timeout=60).execute()
    (todo,) = nb.cells[1].outputs
    assert todo.output_type == "error" and todo.ename == "NotImplementedError"
    assert "TODO not done\x1b[0m: add_one() in demo_exercise.py, line 3" in todo.traceback[0]
    assert todo.traceback[1] == "  hint: add one." and len(todo.traceback) == 2
    assert determine_grade(nb.cells[1], None) == (0, 1)  # nbgrader scores it as failed
    assert "An earlier cell did not finish" in nb.cells[2].outputs[0].traceback[1]
    assert len(nb.cells[3].outputs[0].traceback) > 2  # other errors keep their traceback
    assert "An earlier cell" not in "".join(nb.cells[4].outputs[0].traceback)  # a module's typo

    nb.cells = nb.cells[:2]
    with pytest.raises(CellExecutionError, match="add one"):  # the kernel reported an error
        NotebookClient(nb, resources={"metadata": {"path": str(tmp_path)}},
                       timeout=60).execute()


# --- gradebook -----------------------------------------------------------------------------------
def test_learners_are_registered_by_id_and_instructor_names_kept(tmp_path):
    """formgrader shows "last, first": new learners get their id there (not "None, None");
    a name the instructor typed in formgrader is never overwritten."""
    from course.nbgrader.gradebook import open_gradebook, register_learners
    with open_gradebook(tmp_path) as gb:
        gb.add_student("grace", first_name="Grace", last_name="Hopper")
    register_learners(tmp_path, ["ada", "grace"])
    register_learners(tmp_path, ["ada"])  # twice: no error, no duplicate
    with open_gradebook(tmp_path) as gb:
        names = {s.id: (s.last_name, s.first_name) for s in gb.students}
    assert names == {"ada": ("ada", ""), "grace": ("Hopper", "Grace")}
