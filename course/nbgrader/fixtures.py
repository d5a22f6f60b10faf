"""Submissions made from the instructor source, for tests and benchmarks.

    reference_module("step1_data", "data_exercise.py")      # solutions kept, markers removed
    wrong_module(step, module, Path("tests/wrong/step1_data/missing_end_token.py"))
    solved_notebook(root, step)                             # release + the source's answers

A wrong implementation (docs/AUTHORING.md) is the reference module with the wrong file's source
appended, so its later `def`s replace the reference's.
"""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import nbformat

from course.grading import solutions_dir
from course.nbgrader import NOTEBOOK, SOLUTION_MARKERS
from course.nbgrader.structure import grade_id


def without_markers(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(m in line for m in SOLUTION_MARKERS))


def reference_module(step: str, module: str) -> str:
    return without_markers((solutions_dir() / step / module).read_text(encoding="utf-8"))


def expected_losses(wrong_file: Path) -> list[str]:
    """The `EXPECT_LOSE` list of a wrong implementation (read without importing it)."""
    for node in ast.parse(wrong_file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPECT_LOSE"
                                                for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise ValueError(f"{wrong_file}: no EXPECT_LOSE list")


def wrong_module(step: str, module: str, wrong_file: Path) -> str:
    return (reference_module(step, module) + f"\n\n# --- wrong implementation: {wrong_file.name}\n"
            + wrong_file.read_text(encoding="utf-8"))


def solved_notebook(root: Path, step: str) -> nbformat.NotebookNode:
    """The released notebook with every solution cell answered as in the instructor source."""
    release = nbformat.read(str(root / "release" / step / f"{NOTEBOOK}.ipynb"), as_version=4)
    source = nbformat.read(str(root / "source" / step / f"{NOTEBOOK}.ipynb"), as_version=4)
    answers = {grade_id(c): without_markers(c.source) for c in source.cells
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def write_submission(folder: Path, notebook: nbformat.NotebookNode | str | bytes,
                     modules: dict[str, str]) -> Path:
    """A submission folder: the notebook (a node, or raw text/bytes for broken ones) and modules."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{NOTEBOOK}.ipynb"
    if isinstance(notebook, bytes):
        path.write_bytes(notebook)
    elif isinstance(notebook, str):
        path.write_text(notebook, encoding="utf-8")
    else:
        nbformat.write(notebook, str(path))
    for name, text in modules.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder
