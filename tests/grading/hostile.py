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


CHAT_TEMPLATE_SHORTCUT = '''

def format_conversation(messages, tokenizer, add_generation_prompt=False):
    """The library's template instead of one written by hand."""
    text = tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)
    return {"text": text, "input_ids": list(tokenizer(text, add_special_tokens=False)["input_ids"])}
'''


def hidden_test_lines() -> list[str]:
    """Lines of step 1's hidden tests (the instructor's notebook)."""
    from course import REPO_ROOT
    from course.nbgrader import HIDDEN_MARKERS
    from course.nbgrader.hooks import region_lines, text_of
    source = REPO_ROOT / "solutions" / "step1_data" / "tutorial.ipynb"
    return [line for line in region_lines(text_of(source), HIDDEN_MARKERS) if len(line) >= 12]


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
        "not_implemented_on_import": (solved, reference + "\nraise NotImplementedError("
                                              "'not finished yet')\n"),
        "chat_template_shortcut": (solved, reference + CHAT_TEMPLATE_SHORTCUT),
        # the learner's own text holds lines of the hidden tests (copied from a forum, say) and
        # prints them: an honest module that must keep full marks and get its feedback page
        "hidden_lines_in_text": (solved, reference + "".join(
            f"\n# {line}" for line in hidden_test_lines()) + "\nprint(" + repr(
            "\n".join(hidden_test_lines())) + ")\n"),
    }.items()}
