"""`make feedback`: feedback HTML for every autograded submission, hidden tests redacted.

    python -m course.nbgrader.feedback                  # every released step
    python -m course.nbgrader.feedback step1_data --student alice

nbgrader's feedback shows hidden tests by default; the course config runs RedactHiddenTests
first, which finds the hidden cells by their grade_id in the instructor's source. Nothing a
learner writes can make it fail. `hidden_lines` and `leaks` are for the course's own tests,
which check the pages of their batches (a leak there fails the tests, not a learner's grading).
"""
from __future__ import annotations

import html
import re
import sys
from pathlib import Path

from course.nbgrader import HIDDEN_MARKERS, NOTEBOOK, batch_arguments, course_root, run_nbgrader
from course.nbgrader.hooks import region_lines, text_of

TAG = re.compile(r"<[^>]+>")


def page_text(path: Path) -> str:
    """The visible text of an HTML page (tags removed, entities decoded)."""
    return html.unescape(TAG.sub("", path.read_text(encoding="utf-8")))


def hidden_lines(root: Path, step: str) -> list[str]:
    """Distinctive lines of the step's hidden-test regions (the source notebook) that occur
    nowhere else in it (an import the setup cell also makes is not a secret)."""
    src = text_of(root / "source" / step / f"{NOTEBOOK}.ipynb")
    hidden = region_lines(src, HIDDEN_MARKERS)
    everywhere = [line.strip() for line in src.splitlines()]
    return [line for line in dict.fromkeys(hidden) if len(line) >= 12
            and everywhere.count(line) == hidden.count(line)]


def leaks(page: Path, secret: list[str]) -> list[str]:
    text = page_text(page)
    found = [m for m in HIDDEN_MARKERS if m in text]
    found += [line for line in secret if line in text]
    return found


def generate_feedback(root: Path, step: str, students: list[str] | None = None) -> list[Path]:
    """Run nbgrader generate_feedback (hidden tests redacted); returns the pages' paths."""
    log = root / "logs" / f"feedback-{step}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    if students:
        for student in students:
            run_nbgrader(["generate_feedback", step, "--force", "--student", student], root,
                         log=log, check=False)
    else:
        run_nbgrader(["generate_feedback", step, "--force"], root, log=log, check=False)
    pages = sorted((root / "feedback").glob(f"*/{step}/{NOTEBOOK}.html"))
    if students:
        pages = [p for p in pages if p.parent.parent.name in students]
    return pages


def main(argv: list[str] | None = None) -> int:
    steps, students = batch_arguments(__doc__.splitlines()[0], argv)
    root = course_root()
    for step in steps:
        pages = generate_feedback(root, step, students)
        print(f"{step}: {len(pages)} feedback pages (hidden tests redacted, checked):")
        for p in pages:
            print(f"  {p}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
