"""Compare a submitted notebook with the released one: what was deleted, renamed or edited, and
how to put the tracked cells back. Pure functions on nbformat cells, shared by the autograde
preprocessor (which repairs) and the autograde report (which explains).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import nbformat


@dataclass(frozen=True)
class Event:
    kind: str      # unknown_grade_id | restored | edited_locked
    grade_id: str
    text: str

    def __str__(self) -> str:
        return self.text


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _is_locked_or_graded(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("locked") or meta.get("grade"))


def repair(cells: list, released: list) -> tuple[list, list[Event]]:
    """Cells with (1) unknown grade_ids turned into plain cells (their code still runs, but they
    score nothing) and (2) every tracked cell of the release that is missing put back, right after
    the nearest earlier tracked cell that is present. Returns (new cells, events)."""
    known = {grade_id(c) for c in released if grade_id(c)}
    events: list[Event] = []
    out = []
    for cell in cells:
        gid = grade_id(cell)
        if gid is not None and gid not in known:
            cell = copy.deepcopy(cell)
            del cell.metadata["nbgrader"]
            events.append(Event("unknown_grade_id", gid,
                                f"cell with unknown grade_id {gid!r} (renamed?) scored as a plain "
                                "cell"))
        out.append(cell)
    position = {grade_id(c): i for i, c in reversed(list(enumerate(out))) if grade_id(c)}
    for k, src in enumerate(released):
        gid = grade_id(src)
        if gid is None or gid in position:
            continue
        at = 0
        for prev in reversed(released[:k]):
            if grade_id(prev) in position:
                at = position[grade_id(prev)] + 1
                break
        cell = copy.deepcopy(src)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        out.insert(at, cell)
        position = {grade_id(c): i for i, c in reversed(list(enumerate(out))) if grade_id(c)}
        events.append(Event("restored", gid, f"missing cell {gid!r} restored from the release"))
    return out, events


def edited_locked(cells: list, released: list) -> list[Event]:
    """Locked or test cells whose source differs from the release (autograde restores them)."""
    source = {grade_id(c): c.source for c in released if grade_id(c) and _is_locked_or_graded(c)}
    return [Event("edited_locked", grade_id(c), f"locked cell {grade_id(c)!r} was edited; the "
                  "released version was graded")
            for c in cells if grade_id(c) in source and c.source != source[grade_id(c)]]


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str | None]:
    """(notebook, None) or (None, why it cannot be read)."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        return None, f"not UTF-8 text ({err.reason} at byte {err.start})"
    except json.JSONDecodeError as err:
        return None, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        return nb, None
    except Exception as err:  # noqa: BLE001 - nbformat raises several types
        return None, f"not a valid notebook ({type(err).__name__}: {str(err)[:120]})"


def structure_events(submitted: nbformat.NotebookNode, released: nbformat.NotebookNode
                     ) -> list[Event]:
    """Everything autograde will repair in `submitted`, in words."""
    _, events = repair(submitted.cells, released.cells)
    return events + edited_locked(submitted.cells, released.cells)
