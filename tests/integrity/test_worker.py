"""The grading worker's protocol: how the grader's objects reach the learner's code."""
from __future__ import annotations

import textwrap

import pytest

from course.models import load_tokenizer
from course.sandbox.client import Worker

LEARNER = textwrap.dedent("""
    def seen(tokenizer):
        return id(tokenizer), tokenizer.padding_side, len(tokenizer("a b c")["input_ids"])

    def columns(batch):
        return {"kind": [type(batch).__name__] * len(batch["text"])}

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


def test_a_datasets_map_batch_goes_as_its_columns_not_the_whole_table(worker):
    from datasets import Dataset
    ex = worker.module("learner")
    table = Dataset.from_dict({"text": [f"row {i} " * 200 for i in range(20_000)]})
    subset = table.select(range(0, len(table), 1000))     # a view of the whole table
    out = subset.map(ex.columns, batched=True, batch_size=8, remove_columns=["text"],
                     keep_in_memory=True, new_fingerprint="columns")
    assert out["kind"] == ["dict"] * 20
