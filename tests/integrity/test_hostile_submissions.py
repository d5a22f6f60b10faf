"""A grade cannot be bought, and one submission cannot touch another's grade.

One real nbgrader batch of step 2 holds the honest reference, an honest but wrong submission
(`loss_not_shifted`, whose score alone is known from the hidden tests), and every attack of
`attacks.py`. Each attack gets exactly the points its functions earn (the blank release earns
none; a correct module with a stderr print earns all), and the honest submissions get the score
they get alone. `make grade` (self-grading) is checked on the attack that needs no knowledge of
the checks. Runs in the "nbgrader" xdist group.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from course import REPO_ROOT
from course.nbgrader.fixtures import (GradedBatch, environment, expected_losses, grade_batch,
                                      reference_module, solved_notebook, write_submission)
from course.nbgrader.integrity import Pristine
from course.nbgrader.verdicts import protected_roots

from .attacks import ATTACKS, hostile_module

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]

STEP, MODULE = "step2_masking", "masking_exercise.py"
HONEST_WRONG = REPO_ROOT / "tests" / "wrong" / STEP / "more" / "loss_not_shifted.py"
LIMITS = dict(COURSE_CELL_TIMEOUT="600", COURSE_NOTEBOOK_TIMEOUT="1800")


def _blank() -> str:
    return (REPO_ROOT / STEP / MODULE).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> tuple[GradedBatch, list[str]]:
    root = tmp_path_factory.mktemp("course")
    before = Pristine.record(protected_roots(root))

    def attacks(solved, reference):
        return {f"attack-{a.name}": (solved, hostile_module(a, _blank(), reference))
                for a in ATTACKS}

    with environment(**LIMITS):
        graded = grade_batch(root, STEP, MODULE, [HONEST_WRONG], attacks)
    return graded, before._changed()


def _max(batch: GradedBatch) -> float:
    return batch.results["reference"].max_score


def test_honest_submissions_keep_the_grade_they_get_alone(batch):
    graded, _ = batch
    ref = graded.results["reference"]
    assert ref.status == "ok" and ref.score == ref.max_score > 0, (ref.notes, ref.reasons)
    wrong = graded.results[f"wrong-{HONEST_WRONG.stem}"]
    expected = set(expected_losses(HONEST_WRONG))
    assert graded.lost(f"wrong-{HONEST_WRONG.stem}") == expected, wrong.reasons
    points = sum(top for name, (_, top) in wrong.tests.items() if name in expected)
    assert wrong.score == wrong.max_score - points


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_gets_only_what_its_functions_earn(batch, attack):
    graded, _ = batch
    result = graded.results[f"attack-{attack.name}"]
    earned = _max(graded) if attack.base == "reference" else 0
    assert result.score == earned, (result.status, result.notes, result.reasons)
    if attack.base == "blank":   # every lost point says why: the TODOs are not done
        assert all("TODO not done" in r for r in result.reasons.values()), result.reasons


def test_the_course_is_unchanged_after_the_batch(batch):
    _, changed = batch
    assert changed == [], f"files grading reads were changed: {changed}"


def test_verdicts_ignore_what_the_kernel_printed(batch):
    """The AST-transformer attack makes every test cell of the kernel 'pass'; the autograded
    notebook shows the trusted verdicts instead, each failure with its reason."""
    graded, _ = batch
    path = graded.root / "autograded" / "attack-ast-transformer" / STEP / "tutorial.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
             and not c.metadata["nbgrader"].get("solution")]
    assert tests and all(c.metadata["course"]["verdict"]["passed"] is False for c in tests)
    assert all(any(o.get("output_type") == "error" for o in c.outputs) for c in tests)


def test_self_grading_holds_and_prints_the_reason_next_to_each_zero(batch, tmp_path, capsys):
    from course.nbgrader import grade as self_grade

    folder = tmp_path / "mine"
    attack = next(a for a in ATTACKS if a.name == "ast-transformer")
    solved = solved_notebook(batch[0].root, STEP)
    write_submission(folder, solved, {MODULE: hostile_module(attack, _blank(),
                                                             reference_module(STEP, MODULE))})
    with environment(**LIMITS):
        code = self_grade.main([STEP, "--from", str(folder), "--root", str(tmp_path / "root")])
    out = capsys.readouterr().out
    assert code == 0
    assert "total: 0 / " in out, out
    rows = [line for line in out.splitlines() if line.startswith(("check_", "labels_", "masked_",
                                                                  "truncate_", "collate"))]
    assert rows and all("TODO not done" in line for line in rows), out


def test_pristine_puts_back_changed_added_and_removed_files(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_INTEGRITY", "restore")
    (tmp_path / "a.py").write_text("A")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("B")
    state = Pristine.record([tmp_path])
    (tmp_path / "a.py").write_text("hacked")
    (tmp_path / "sub" / "b.py").unlink()
    (tmp_path / "new.py").write_text("x")
    changed = sorted(Path(p).name for p in state.check())
    assert changed == ["a.py", "b.py", "new.py"]
    assert (tmp_path / "a.py").read_text() == "A" and (tmp_path / "sub" / "b.py").read_text() == "B"
    assert not (tmp_path / "new.py").exists() and state.check() == []
