"""The committed learner release equals a fresh `make release` and leaks nothing."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from course import REPO_ROOT
from course.grading import solutions_dir
from course.nbgrader import exercise_modules, released_steps
from course.nbgrader.hooks import find_leaks, strip_solutions
from course.nbgrader.release import check
from course.nbgrader.source import build, notebook_paths

STEPS = released_steps()


def test_steps_1_and_2_are_released():
    assert {"step1_data", "step2_masking"} <= set(STEPS)


@pytest.mark.xdist_group("nbgrader")
def test_committed_release_equals_a_fresh_release():
    problems = check(STEPS)
    assert problems == [], "run `make release` and commit:\n" + "\n".join(problems)


@pytest.mark.parametrize("step", STEPS)
def test_committed_notebook_equals_its_source(step):
    src, nb = notebook_paths(step)
    if src.exists():
        assert nb.read_text() == nbformat.writes(build(src.read_text())) + "\n", \
            f"{nb} is stale: run `make release`"


@pytest.mark.parametrize("step", STEPS)
def test_learner_files_contain_no_solution_marker_or_hidden_test(step):
    sources = {p.name: p for p in (solutions_dir() / step).iterdir() if p.is_file()}
    assert find_leaks(REPO_ROOT / step, sources) == []
    assert not (REPO_ROOT / step / "tutorial.py").exists(), "the notebook source is not released"


@pytest.mark.parametrize("step", STEPS)
def test_learner_modules_keep_signatures_and_docstrings(step):
    for module in exercise_modules(step):
        ref_text = (solutions_dir() / step / module).read_text()
        ref = ast.parse(ref_text)
        learner = ast.parse((REPO_ROOT / step / module).read_text())
        def defs(tree):
            return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert defs(ref).keys() == defs(learner).keys()
        lines = ref_text.splitlines()
        for name, fn in defs(learner).items():
            assert ast.dump(fn.args) == ast.dump(defs(ref)[name].args), name
            assert ast.get_docstring(fn) == ast.get_docstring(defs(ref)[name]), name
            body = lines[defs(ref)[name].lineno - 1:defs(ref)[name].end_lineno]
            if not any("BEGIN SOLUTION" in line for line in body):
                continue  # a helper given to learners, not a TODO
            raises = [n for n in ast.walk(fn) if isinstance(n, ast.Raise)
                      and getattr(getattr(n.exc, "func", None), "id", "") == "NotImplementedError"]
            assert raises and isinstance(raises[0].exc.args[0], ast.Constant), \
                f"{name}: the TODO became raise NotImplementedError(<hint>)"


@pytest.mark.parametrize("step", STEPS)
def test_learner_notebook_is_clean_and_framed(step):
    nb = nbformat.read(str(REPO_ROOT / step / "tutorial.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit without outputs"
    first, last = nb.cells[0].source, nb.cells[-1].source
    assert "You will" in first and "Time:" in first
    number = int(step[len("step")])
    following = f"../step{number + 1}_" if number < 4 else ""  # the checklist links the next step
    assert "Checklist" in last and following in last and f"../solutions/{step}/" in last
    tests = [c for c in code if c.metadata.get("nbgrader", {}).get("grade")]
    assert tests and all(not c.metadata.get("editable", True) for c in tests), "tests are locked"


def test_strip_solutions_turns_each_todo_into_a_hint():
    text = ("def f(x):\n    \"\"\"Doc.\"\"\"\n    # TODO: add one to x.\n"
            "    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n")
    out = strip_solutions(text)
    assert out == ("def f(x):\n    \"\"\"Doc.\"\"\"\n    # TODO: add one to x.\n"
                   "    raise NotImplementedError('add one to x.')\n")
    with pytest.raises(ValueError, match="never closed"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n")
    with pytest.raises(ValueError, match="without"):
        strip_solutions("x = 1\n### END SOLUTION\n")
    with pytest.raises(ValueError, match="nested"):
        strip_solutions("### BEGIN SOLUTION\n### BEGIN SOLUTION\n")


def test_find_leaks_catches_markers_and_solution_lines(tmp_path: Path):
    source = tmp_path / "src" / "m.py"
    source.parent.mkdir()
    source.write_text("def f():\n    ### BEGIN SOLUTION\n    return secret_value()\n"
                      "    ### END SOLUTION\n")
    learner = tmp_path / "learner"
    learner.mkdir()
    (learner / "m.py").write_text("def f():\n    return secret_value()\n")
    assert any("secret_value" in p for p in find_leaks(learner, {"m.py": source}))
    (learner / "m.py").write_text("def f():\n    raise NotImplementedError('x')\n")
    (learner / "notes.txt").write_text("### BEGIN HIDDEN TESTS\n")
    assert [p for p in find_leaks(learner, {"m.py": source})] == [
        f"{learner / 'notes.txt'}: contains the marker 'BEGIN HIDDEN TESTS'"]
