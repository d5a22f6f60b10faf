"""nbgrader preprocessors of the course: restore tracked cells before autograde, redact hidden
tests in feedback.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

from course.nbgrader import HIDDEN_MARKERS
from course.nbgrader.execute import KERNEL_DIED, NOT_RUN, TIMEOUT, UNRESPONSIVE, error_output
from course.nbgrader.structure import grade_id, repair


class RestoreCells(NbGraderPreprocessor):
    """Before autograde: put back the test, locked and solution cells a submission deleted (or
    renamed), taken from the release; cells with unknown grade_ids become plain cells. nbgrader's
    own `OverwriteCells.add_missing_cells` fails when the cell before a missing one is a locked
    markdown cell, and never handles renamed ids.

    Runs with the course root as working directory (nbgrader's converters chdir there)."""

    release_directory = Unicode("release", help="nbgrader's release folder").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        path = Path(os.getcwd()) / self.release_directory / info["assignment"] / (
            f"{info['notebook']}.ipynb")
        if not path.exists():
            self.log.warning("RestoreCells: no released notebook at %s; nothing restored", path)
            return nb, resources
        released = nbformat.read(str(path), as_version=4)
        nb.cells, events = repair(nb.cells, released.cells)
        for event in events:
            self.log.warning("%s/%s: %s", info["student"], info["assignment"], event)
        return nb, resources


class RedactHiddenTests(NbGraderPreprocessor):
    """For feedback: every cell that holds hidden tests in the instructor's source notebook
    (found by its grade_id, never by what the submitted cell contains) shows the source's visible
    part with the hidden region replaced by a comment, and its outputs become one line: the
    error's name and, only for errors whose message is meant for learners, its first line
    (HiddenTestFailure's public summary, a TODO hint, a time limit). Nothing a learner writes or
    prints decides what is redacted.

    Runs with the course root as working directory (nbgrader's converters chdir there)."""

    source_directory = Unicode("source", help="nbgrader's source folder").tag(config=True)
    placeholder = Unicode("# (hidden tests ran here; their code is not shown)").tag(config=True)
    public_errors = List(
        ["HiddenTestFailure", "NotImplementedError", "TodoNotDone", TIMEOUT, KERNEL_DIED,
         UNRESPONSIVE, NOT_RUN, "ImportError", "Tampering", "NoVerdict", "ShortcutUsed"],
        help="Error names whose first message line may be shown to learners.",
    ).tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        path = Path(os.getcwd()) / self.source_directory / info["assignment"] / (
            f"{info['notebook']}.ipynb")
        self.remember(nbformat.read(str(path), as_version=4))  # missing: no feedback goes out
        return super().preprocess(nb, resources)

    def remember(self, source: nbformat.NotebookNode) -> None:
        """Take the hidden-test cells (grade_id -> instructor source) of `source`."""
        self._hidden = {grade_id(c): c.source for c in source.cells
                        if c.cell_type == "code" and HIDDEN_MARKERS[0] in c.source}

    def _visible_part(self, source: str) -> str:
        lines, inside = [], False
        for line in source.splitlines():
            if HIDDEN_MARKERS[0] in line:
                inside = True
                lines.append(line[: len(line) - len(line.lstrip())] + self.placeholder)
            elif HIDDEN_MARKERS[1] in line:
                inside = False
            elif not inside:
                lines.append(line)
        return "\n".join(lines)

    def preprocess_cell(self, cell, resources, index):
        source = self._hidden.get(grade_id(cell)) if cell.cell_type == "code" and \
            grade_id(cell) else None
        if source is None:
            return cell, resources
        cell.source = self._visible_part(source)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                   text="hidden tests passed\n")]
            return cell, resources
        ename = errors[0].get("ename", "Error")
        first = str(errors[0].get("evalue", "")).strip().splitlines()[:1]
        message = first[0] if first and ename in self.public_errors else (
            "a hidden test failed (details are not shown)")
        cell.outputs = [error_output(ename, message)]
        return cell, resources
