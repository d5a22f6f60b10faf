"""The grading worker's protocol: how the grader's objects reach the learner's code."""
from __future__ import annotations

import textwrap

import pytest

from course.models import load_tokenizer
from course.sandbox.client import Worker

LEARNER = textwrap.dedent("""
    def seen(tokenizer):
        return id(tokenizer), tokenizer.padding_side, len(tokenizer("a b c")["input_ids"])

    def spoil(tokenizer):
        tokenizer.padding_side = "spoiled"
        tokenizer.add_tokens(["<spoiled>"])
        return len(tokenizer)
""")


@pytest.fixture()
def worker(tmp_path):
    (tmp_path / "learner.py").write_text(LEARNER, encoding="utf-8")
    with Worker(tmp_path, jail=False) as w:
        yield w


def test_a_tokenizer_goes_once_and_is_resent_when_it_changes(worker):
    ex, tok = worker.module("learner"), load_tokenizer()
    first, second = ex.seen(tok), ex.seen(tok)
    assert first == second                        # the same object in the worker, not a copy
    assert len(worker._pins) == 1
    tok.padding_side = "left" if tok.padding_side == "right" else "right"
    changed = ex.seen(tok)
    assert changed[1] == tok.padding_side and changed[0] != first[0]   # new state: sent again
    assert len(worker._pins) == 2


def test_what_the_learner_does_to_a_tokenizer_stays_in_the_worker(worker):
    ex, tok = worker.module("learner"), load_tokenizer()
    side, size = tok.padding_side, len(tok)
    assert ex.spoil(tok) == size + 1
    assert (tok.padding_side, len(tok)) == (side, size)     # the grader's copy is untouched
    assert ex.seen(tok)[1] == "spoiled"                      # as in a notebook: one object
