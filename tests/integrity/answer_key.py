"""What the answer key looks like from outside: the lines a copy of it would contain.

`needles()` are the lines of every solution region (exercise modules and notebooks) and of the
hidden checks, whitespace-normalised (stripped), long enough to be distinctive, and found in no
file a learner is given anyway (the released step folders, the `course` package). A file that
contains one holds a copy of the answer key.
"""
from __future__ import annotations

from pathlib import Path

from course import PACKAGE_DIR, REPO_ROOT
from course.nbgrader import HIDDEN_MARKERS, SOLUTION_MARKERS
from course.nbgrader.hooks import region_lines, text_of

MIN_LENGTH = 30


def _public_lines() -> set[str]:
    files = [p for step in sorted(REPO_ROOT.glob("step*_*")) for p in step.iterdir()
             if p.suffix in (".py", ".ipynb")]
    files += [p for p in PACKAGE_DIR.rglob("*.py")]
    return {line.strip() for path in files for line in text_of(path).splitlines()}


def needles() -> list[str]:
    """Distinctive lines of the answer key (see the module docstring)."""
    secret: list[str] = []
    for path in sorted((REPO_ROOT / "solutions").glob("*/*")):
        if path.suffix not in (".py", ".ipynb"):
            continue
        text = text_of(path)
        if path.name.startswith("hidden_checks"):
            secret += [line.strip() for line in text.splitlines()]
        else:
            secret += region_lines(text, SOLUTION_MARKERS) + region_lines(text, HIDDEN_MARKERS)
    public = _public_lines()
    return sorted({line for line in secret if len(line) >= MIN_LENGTH and line not in public
                   and not line.startswith("#")})
