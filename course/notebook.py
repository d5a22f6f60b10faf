"""Notebook setup shared by every step: autoreload, short hints for unfinished TODOs, tables.

    from course.notebook import setup
    setup()   # first code cell of every tutorial

After `setup()` an unfinished TODO shows two lines (which function, and the TODO's hint) instead
of a traceback, and a NameError caused by an earlier failed cell says so. The cell still fails:
the kernel reports an error, so nbgrader scores a test cell that hits a TODO as failed.
"""
from __future__ import annotations

import html
import os
import textwrap
import traceback
import warnings
from pathlib import Path
from typing import Any, Sequence

GRADING_ENV = "NBGRADER_EXECUTION"  # set by nbgrader while it autogrades or validates
RED, RESET = "\x1b[0;31m", "\x1b[0m"


def is_grading() -> bool:
    """True inside `nbgrader autograde` / `validate` (e.g. to check a sample, not every record)."""
    return bool(os.environ.get(GRADING_ENV))


class TodoNotDone(NotImplementedError):
    """A value the learner has still to provide (raised by `require`)."""


def require(value: Any, name: str, where: str) -> Any:
    """`value`, or a TodoNotDone hint saying which cell sets it."""
    if value is None:
        raise TodoNotDone(f"{name} is not set yet: complete the cell '{where}' first")
    return value


# --- short messages instead of tracebacks --------------------------------------------------------
def todo_message(etype: type, value: BaseException, tb) -> list[str] | None:
    """Lines for an unfinished TODO (a NotImplementedError raised in an `*_exercise.py` module or
    by `require`), or None for any other error."""
    frames = traceback.extract_tb(tb)
    where = frames[-1] if frames else None
    hint = str(value) or "replace `raise NotImplementedError` with your code"
    if isinstance(value, TodoNotDone):
        return [f"{RED}TODO not done{RESET}: {hint}"]
    if where is not None and where.filename.endswith("_exercise.py"):
        return [f"{RED}TODO not done{RESET}: {where.name}() in {Path(where.filename).name}, "
                f"line {where.lineno}",
                f"  hint: {hint}"]
    if where is not None and _is_cell(where.filename):  # a solution cell's stub
        return [f"{RED}TODO not done{RESET} in this cell: {hint}"]
    return None


def _raised_in_cell(tb) -> bool:
    frames = traceback.extract_tb(tb)
    return bool(frames) and _is_cell(frames[-1].filename)


def _is_cell(filename: str) -> bool:
    return filename.startswith("<") or "ipykernel_" in filename


def _handler(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: show a short message, let the cell fail as usual."""
    lines = None
    if issubclass(etype, NotImplementedError):
        lines = todo_message(etype, value, tb)
    elif issubclass(etype, NameError) and _raised_in_cell(tb):  # not a typo inside a module
        lines = [f"{RED}NameError{RESET}: {value}",
                 "  An earlier cell did not finish (often an unfinished TODO). Run the cells "
                 "above in order and fix the first one that fails."]
    if lines is None:
        lines = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    shell._showtraceback(etype, value, lines)  # sends the "error" output: the cell has failed
    return None


def setup(autoreload: bool = True) -> None:
    """Turn on `%autoreload 2` (edits to the exercise module apply without a restart) and the
    short TODO messages. Does nothing outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    if autoreload:
        if "autoreload" not in shell.extension_manager.loaded:
            shell.run_line_magic("load_ext", "autoreload")
        shell.run_line_magic("autoreload", "2")
    shell.set_custom_exc((NotImplementedError, NameError), _handler)
    # pyarrow's own deprecation notice, triggered inside 🤗 datasets: noise for learners
    warnings.filterwarnings("ignore", category=FutureWarning, module="pyarrow")


# --- small displays ------------------------------------------------------------------------------
class Table:
    """Rows of text shown as an HTML table in Jupyter and as wrapped text elsewhere."""

    def __init__(self, rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int = 38):
        self.rows = [[str(c) for c in r] for r in rows]
        self.headers = [str(h) for h in headers]
        self.width = width

    def _repr_html_(self) -> str:
        cell = ('<td style="text-align:left; vertical-align:top; white-space:pre-wrap; '
                'font-family:monospace">{}</td>')
        head = "".join(f'<th style="text-align:left">{html.escape(h)}</th>'
                       for h in self.headers)
        body = "".join("<tr>" + "".join(cell.format(html.escape(c)) for c in r) + "</tr>"
                       for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self) -> str:
        w = self.width
        out = [" | ".join(h.ljust(w)[:w] for h in self.headers),
               "-" * ((w + 3) * len(self.headers))]
        for r in self.rows:
            cols = [textwrap.wrap(c.replace("\n", " \u21b5 "), w) or [""] for c in r]
            for i in range(max(map(len, cols))):
                out.append(" | ".join((c[i] if i < len(c) else "").ljust(w) for c in cols))
            out.append("")
        return "\n".join(out)
