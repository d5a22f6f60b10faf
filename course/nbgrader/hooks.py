"""Strip solution regions from the `.py` exercise modules of a release, and find leaks.

`nbgrader generate_assignment` clears solutions in notebooks only and copies other files
verbatim, solutions included. Each region of a module

    # TODO: join one "<|im_start|>{role}\\n{content}<|im_end|>\\n" per turn, then tokenize.
    ### BEGIN SOLUTION
    ...
    ### END SOLUTION

becomes `raise NotImplementedError("<the TODO line>")` at the same indentation; the TODO line,
signature and docstring stay. nbgrader runs `strip_release` after generate_assignment but only
logs its failures, so release.py strips again and then verifies with `find_leaks`.
"""
from __future__ import annotations

import json
from pathlib import Path

from course.nbgrader import HIDDEN_MARKERS, SOLUTION_MARKERS

BEGIN, END = SOLUTION_MARKERS
GENERIC_HINT = "replace this line with your code"


class SolutionRegionError(ValueError):
    """A solution region that cannot be stripped (unclosed, nested, or stray END)."""


def strip_solutions(text: str, origin: str = "<module>") -> str:
    """`text` with every solution region replaced by `raise NotImplementedError(<hint>)`."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    start = None  # line number of the open BEGIN
    for lineno, line in enumerate(lines, 1):
        if BEGIN in line:
            if start is not None:
                raise SolutionRegionError(f"{origin}:{lineno}: nested '{BEGIN}' "
                                          f"(region opened at line {start})")
            start = lineno
            indent = line[: len(line) - len(line.lstrip())]
            previous = out[-1].strip() if out else ""
            hint = (previous[len("# TODO:"):].strip() if previous.startswith("# TODO:")
                    else GENERIC_HINT)
            stub = f"{indent}raise NotImplementedError({hint!r})\n"
            if len(stub) > 100:  # keep the course's line length
                stub = f"{indent}raise NotImplementedError(\n{indent}    {hint!r})\n"
            out.append(stub)
        elif END in line:
            if start is None:
                raise SolutionRegionError(f"{origin}:{lineno}: '{END}' without '{BEGIN}'")
            start = None
        elif start is None:
            out.append(line)
    if start is not None:
        raise SolutionRegionError(f"{origin}:{start}: '{BEGIN}' is never closed")
    return "".join(out)


def region_lines(text: str, markers: tuple[str, str] = SOLUTION_MARKERS) -> list[str]:
    """The stripped, non-blank lines inside the regions delimited by `markers`."""
    found, inside = [], False
    for line in text.splitlines():
        if markers[0] in line:
            inside = True
        elif markers[1] in line:
            inside = False
        elif inside and line.strip():
            found.append(line.strip())
    return found


def text_of(path: Path) -> str:
    """A file's text; for a notebook, its cell sources joined (not the JSON)."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                         for c in nb["cells"])
    return path.read_text(encoding="utf-8", errors="replace")


def find_leaks(folder: Path, sources: dict[str, Path] | None = None) -> list[str]:
    """Problems in a learner folder: a solution or hidden-test marker in any file, or a line
    that occurs only inside a solution or hidden-test region of the instructor source
    (`sources`: {file name: source path}) showing up in the released file of that name."""
    problems = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        raw = path.read_text(encoding="utf-8", errors="replace")
        for marker in (*SOLUTION_MARKERS, *HIDDEN_MARKERS):
            if marker in raw:
                problems.append(f"{path}: contains the marker {marker!r}")
        source = (sources or {}).get(path.name)
        if source is None:
            continue
        src = text_of(Path(source))
        secret = region_lines(src, SOLUTION_MARKERS) + region_lines(src, HIDDEN_MARKERS)
        public = {line.strip() for line in _outside(src)}
        released = {line.strip() for line in text_of(path).splitlines()}
        for line in secret:
            if len(line) >= 8 and line in released and line not in public:
                problems.append(f"{path}: contains the line {line!r} from a hidden region")
    return problems


def _outside(text: str) -> list[str]:
    out, inside = [], False
    for line in text.splitlines():
        if any(m in line for m in (SOLUTION_MARKERS[0], HIDDEN_MARKERS[0])):
            inside = True
        elif any(m in line for m in (SOLUTION_MARKERS[1], HIDDEN_MARKERS[1])):
            inside = False
        elif not inside:
            out.append(line)
    return out


def strip_folder(folder: Path) -> list[Path]:
    """Strip every `.py` file in `folder` in place; returns the files that changed."""
    changed = []
    for path in sorted(folder.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        new = strip_solutions(text, origin=str(path))
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def strip_release(assignment: str, student: str, notebooks: list[str]) -> None:
    """nbgrader post-convert hook for generate_assignment (run with cwd = the course root)."""
    folder = Path.cwd() / "release" / assignment
    if folder.is_dir():
        strip_folder(folder)
        leaks = find_leaks(folder)
        if leaks:
            raise RuntimeError("release still contains solutions:\n" + "\n".join(leaks))
