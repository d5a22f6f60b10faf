"""Issue 6, step 3, end to end: release -> collect -> one nbgrader autograde batch -> gradebook.

One batch grades the reference solution (full marks), the untouched learner release (zero,
every failure a TODO hint) and a few classic wrong implementations of tests/wrong/step3_sft/
(each loses the tests its EXPECT_LOSE names). All the others are checked in-process by
tests/test_hidden_tests_step3.py; grading each with a real kernel would cost a minute apiece.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from course import REPO_ROOT
from course.nbgrader.autograde import Result, autograde
from course.nbgrader.collect import collect
from course.nbgrader.fixtures import (expected_losses, reference_module, solved_notebook,
                                      wrong_module, write_submission)
from course.nbgrader.release import generate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]

STEP, MODULE = "step3_sft", "sft_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
WRONG = [FOLDER / f"{name}.py" for name in
         ("mean_per_micro_batch", "scheduler_per_micro_batch", "eval_in_train_mode",
          "resume_forgets_rng")]
MAX_SCORE = 21
CELL_TIMEOUT = 120  # seconds; the slowest cell (the short SFT run) takes about 10 s unloaded


@dataclass
class Batch:
    root: Path
    results: dict[str, Result]
    autograde_s: float


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Batch:
    root = tmp_path_factory.mktemp("course3")
    saved = os.environ.get("COURSE_CELL_TIMEOUT")
    os.environ["COURSE_CELL_TIMEOUT"] = str(CELL_TIMEOUT)
    try:
        generate(root, [STEP])
        inbox = root / "inbox"
        solved, reference = solved_notebook(root, STEP), reference_module(STEP, MODULE)
        write_submission(inbox / "reference", solved, {MODULE: reference})
        shutil.copytree(root / "release" / STEP, inbox / "blank")
        for wrong in WRONG:
            write_submission(inbox / f"wrong-{wrong.stem}", solved,
                             {MODULE: wrong_module(STEP, MODULE, wrong)})
        collect(inbox, STEP, root)
        start = time.monotonic()
        results = {r.student: r for r in autograde(root, STEP)}
        autograde_s = time.monotonic() - start
    finally:
        if saved is None:
            os.environ.pop("COURSE_CELL_TIMEOUT", None)
        else:
            os.environ["COURSE_CELL_TIMEOUT"] = saved
    print(f"\nautograde {len(results)} submissions {autograde_s:.1f} s")
    for r in sorted(results.values(), key=lambda r: r.student):
        print(f"  {r.student:40s} {r.score:4g}/{r.max_score:g}  {r.status:12s} {r.notes}")
    return Batch(root, results, autograde_s)


def lost(result: Result) -> set[str]:
    return {name for name, (score, top) in result.tests.items() if score < top}


def test_reference_gets_full_marks(batch):
    ref = batch.results["reference"]
    assert ref.status == "ok", ref.notes
    assert ref.max_score == MAX_SCORE and ref.score == ref.max_score, lost(ref)


def test_blank_release_scores_zero_and_every_failure_is_a_todo_hint(batch):
    blank = batch.results["blank"]
    assert blank.status == "ok", blank.notes
    assert blank.max_score == MAX_SCORE and blank.score == 0, blank.tests
    graded = batch.root / "autograded" / "blank" / STEP / "tutorial.ipynb"
    errors = {o.ename for c in nbformat.read(str(graded), as_version=4).cells
              for o in c.get("outputs", []) if o.get("output_type") == "error"}
    assert errors <= {"NotImplementedError", "TodoNotDone", "NameError"}, errors


@pytest.mark.parametrize("wrong", WRONG, ids=[w.stem for w in WRONG])
def test_wrong_implementation_loses_its_tests(batch, wrong):
    result = batch.results[f"wrong-{wrong.stem}"]
    assert result.status == "ok", result.notes
    expected = set(expected_losses(wrong))
    assert expected <= set(result.tests), f"EXPECT_LOSE names unknown tests: {expected}"
    assert expected <= lost(result), (f"{wrong.name} should lose {sorted(expected)}, "
                                      f"lost only {sorted(lost(result))}")


def test_autograde_fits_its_budget(batch):
    assert batch.autograde_s / len(batch.results) <= 90  # 60 s on an unloaded 2-core machine
