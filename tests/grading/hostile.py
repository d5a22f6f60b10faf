"""Hostile submissions of step 1, graded in its nbgrader batch next to the good ones
(tests/grading/test_autograde_step1_hostile.py checks what each gets)."""
from __future__ import annotations

import nbformat

from course.nbgrader.structure import grade_id


def _edit(nb, gid, fn):
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        if grade_id(cell) == gid:
            fn(cell)
    return nb


def _answer(nb, code):
    return _edit(nb, "choose_max_tokens", lambda c: setattr(c, "source", code))


def hostile_submissions(solved, reference):
    """"hostile-<name>" -> (notebook, module source). Each is graded next to the good
    submissions."""
    ignore_interrupt = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                        "while True:\n    time.sleep(0.05)\n")
    kernel_death = reference.replace(
        "    kept, dropped, seen = [], [], set()",
        "    import os\n    os._exit(3)\n    kept, dropped, seen = [], [], set()")
    assert kernel_death != reference

    def rename(cell):
        cell.metadata.nbgrader["grade_id"] = "my_validate_check"

    return {f"hostile-{name}": v for name, v in {
        "infinite_loop": (_answer(solved, "while True:\n    pass\n"), reference),
        "ignores_interrupt": (_answer(solved, ignore_interrupt), reference),
        "kernel_death": (solved, kernel_death),
        "edited_locked_cell": (_edit(_edit(solved, "alpaca_prompt",
                                           lambda c: setattr(c, "source", "pass  # trust me")),
                                     "setup", lambda c: setattr(c, "source", c.source + "\nx = 1")),
                               reference),
        "deleted_test_cell": (nbformat.from_dict({**solved, "cells": [
            c for c in solved.cells if grade_id(c) not in ("format_conversation_hidden",
                                                           "clean_conversations")]}), reference),
        "renamed_grade_id": (_edit(solved, "validate_conversation", rename), reference),
        "module_raises_on_import": (solved,
                                    reference + "\nraise RuntimeError('broken on purpose')\n"),
        "invalid_json": (nbformat.writes(solved)[:-200] + "\n}{", reference),
    }.items()}
