"""Build an nbgrader notebook from its percent-format source (`solutions/<step>/tutorial.py`).

The source is plain Python with cell markers, so it diffs well and needs no JSON escaping:

    # %% [markdown]                 locked markdown cell (grade_id md-01, md-02, ...)
    # %% [markdown] intro           locked markdown cell named `intro`
    # %%                            locked code cell (grade_id code-01, ...)
    # %% setup                      locked code cell named `setup`
    # %% free                       editable code cell, not tracked by nbgrader (scratch)
    # %% solution max_tokens        solution cell: the learner writes here
    # %% test format_conversation points=2     autograded test cell, 2 points

Markdown lines start with "# " (or are a lone "#"). Text before the first marker is ignored.
Cell ids equal grade_ids, so the notebook is byte-identical on every build.

    python -m course.nbgrader.source step1_data     # writes solutions/step1_data/tutorial.ipynb
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import nbformat

from course.grading import solutions_dir

MARKER = re.compile(r"^# %%(?P<rest>.*)$")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _meta(grade_id: str, *, grade=False, solution=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def parse(text: str, origin: str = "<source>") -> list[dict]:
    """Cells as dicts {kind, name, points, lines}; kind: markdown|code|free|solution|test."""
    cells: list[dict] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = MARKER.match(line)
        if not m:
            if cells:
                cells[-1]["lines"].append(line)
            continue
        tokens = m["rest"].split()
        cell = {"kind": "code", "name": None, "points": None, "lines": [],
                "where": f"{origin}:{lineno}"}
        if tokens[:1] == ["[markdown]"]:
            cell["kind"], tokens = "markdown", tokens[1:]
        elif tokens[:1] and tokens[0] in ("free", "solution", "test"):
            cell["kind"], tokens = tokens[0], tokens[1:]
        for tok in tokens:
            if tok.startswith("points="):
                cell["points"] = float(tok.split("=", 1)[1])
            elif cell["name"] is None and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tok):
                cell["name"] = tok
            else:
                raise ValueError(f"{cell['where']}: cannot read cell marker {line!r}")
        if cell["kind"] in ("solution", "test") and not cell["name"]:
            raise ValueError(f"{cell['where']}: a {cell['kind']} cell needs a name (its grade_id)")
        if (cell["kind"] == "test") != (cell["points"] is not None):
            raise ValueError(f"{cell['where']}: points=N belongs on test cells, and only there")
        cells.append(cell)
    return cells


def _source(cell: dict) -> str:
    lines = cell["lines"]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    while lines and not lines[0].strip():
        lines = lines[1:]
    if cell["kind"] != "markdown":
        return "\n".join(lines)
    out = []
    for line in lines:
        if line == "#" or line.startswith("# "):
            out.append(line[2:])
        else:
            raise ValueError(f"{cell['where']}: markdown lines must start with '# ': {line!r}")
    return "\n".join(out)


def build(text: str, origin: str = "<source>") -> nbformat.NotebookNode:
    """The notebook for a percent-format source text."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC),
                   "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    counters: dict[str, int] = {}
    seen: set[str] = set()
    for cell in parse(text, origin):
        kind = cell["kind"]
        prefix = {"markdown": "md", "code": "code", "free": "free"}.get(kind, kind)
        counters[prefix] = counters.get(prefix, 0) + 1
        name = cell["name"] or f"{prefix}-{counters[prefix]:02d}"
        if name in seen:
            raise ValueError(f"{cell['where']}: duplicate cell name {name!r}")
        seen.add(name)
        source = _source(cell)
        if kind == "markdown":
            nb_cell = nbformat.v4.new_markdown_cell(source, metadata=_meta(name, locked=True))
        else:
            nb_cell = nbformat.v4.new_code_cell(source)
            if kind == "code":
                nb_cell.metadata = _meta(name, locked=True)
            elif kind == "solution":
                nb_cell.metadata = _meta(name, solution=True)
            elif kind == "test":
                points = cell["points"]
                nb_cell.metadata = _meta(name, grade=True, locked=True,
                                         points=int(points) if points.is_integer() else points)
        nb_cell.id = name
        nb.cells.append(nb_cell)
    nbformat.validate(nb)
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def notebook_paths(step: str, root: Path | None = None) -> tuple[Path, Path]:
    folder = (root or solutions_dir()) / step
    return folder / "tutorial.py", folder / "tutorial.ipynb"


def build_step(step: str, root: Path | None = None, check: bool = False) -> bool:
    """Write `tutorial.ipynb` from `tutorial.py` if the step has one. Returns True if the
    committed notebook was (check=True: would be) changed."""
    src, dest = notebook_paths(step, root)
    if not src.exists():
        return False
    text = dumps(build(src.read_text(encoding="utf-8"), origin=str(src)))
    changed = not dest.exists() or dest.read_text(encoding="utf-8") != text
    if changed and not check:
        dest.write_text(text, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps", nargs="+")
    ap.add_argument("--check", action="store_true", help="only report notebooks that differ")
    args = ap.parse_args(argv)
    stale = [s for s in args.steps if build_step(s, check=args.check)]
    for s in stale:
        print(f"{'stale' if args.check else 'wrote'}: solutions/{s}/tutorial.ipynb")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
