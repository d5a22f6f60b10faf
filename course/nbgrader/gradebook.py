"""Read scores through nbgrader's Gradebook API (never by parsing notebooks), print and save them.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from course.nbgrader import COURSE_ID, path_with_interpreter_bin


def open_gradebook(root: Path):
    """nbgrader's Gradebook of course root `root` (a context manager). Creating a new database
    runs the `alembic` script in this process, so PATH must lead to this environment's."""
    from nbgrader.api import Gradebook

    os.environ["PATH"] = path_with_interpreter_bin(os.environ.get("PATH", ""))
    return Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE_ID)


@dataclass
class Scores:
    student: str
    score: float
    max_score: float
    tests: dict[str, tuple[float, float]] = field(default_factory=dict)  # grade_id -> points
    needs_manual_grade: bool = False


def read_scores(root: Path, step: str) -> dict[str, Scores]:
    """Every submission of `step` in the gradebook of course root `root`, by learner id."""
    out: dict[str, Scores] = {}
    with open_gradebook(root) as gb:
        for sub in gb.assignment_submissions(step):
            tests, manual = {}, False
            for nb in sub.notebooks:
                for grade in nb.grades:
                    tests[grade.name] = (float(grade.score), float(grade.max_score))
                    manual |= bool(grade.needs_manual_grade)
            out[sub.student.id] = Scores(sub.student.id, float(sub.score), float(sub.max_score),
                                         tests, manual)
    return out


def register_learners(root: Path, students: list[str]) -> None:
    """Add learners to the gradebook under their id as last name, so formgrader lists "ada, "
    rather than "None, None". Names an instructor already set are kept."""
    from nbgrader.api import MissingEntry

    with open_gradebook(root) as gb:
        for student in students:
            try:
                known = gb.find_student(student)
            except MissingEntry:
                known = None
            if known is None or (known.first_name is None and known.last_name is None):
                gb.update_or_create_student(student, last_name=student, first_name="")


def test_order(root: Path, step: str) -> list[str]:
    """grade_ids of the step's test cells, in notebook order (from the gradebook)."""
    with open_gradebook(root) as gb:
        assignment = gb.find_assignment(step)
        names = [c.name for nb in assignment.notebooks for c in nb.grade_cells]
        order = [c.name for nb in assignment.notebooks for c in nb.source_cells]
    return sorted(names, key=lambda n: order.index(n) if n in order else len(order))


def format_table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
