"""`make feedback`: feedback HTML for every autograded submission, hidden tests redacted.

    python -m course.nbgrader.feedback                  # every released step
    python -m course.nbgrader.feedback step1_data --student alice

nbgrader's feedback shows hidden tests by default; the course config runs RedactHiddenTests
first. Because a misconfiguration would leak silently, every page is then checked: no hidden-
test marker and no line of a hidden region (from the instructor source) may appear in it.
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
    """Run nbgrader generate_feedback, verify the pages; returns their paths."""
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
    secret = hidden_lines(root, step)
    problems = {p: leaks(p, secret) for p in pages}
    bad = {p: v for p, v in problems.items() if v}
    if bad:
        for p in bad:
            p.unlink()
        raise RuntimeError("feedback pages showed hidden tests and were deleted:\n" + "\n".join(
            f"  {p}: {v[:3]}" for p, v in bad.items()))
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
