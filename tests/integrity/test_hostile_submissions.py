"""A grade cannot be bought, and one submission cannot touch another's grade.

For step 2 and step 4, one real nbgrader batch holds the honest reference, an honest but wrong
submission (whose score alone is known from the hidden tests), and every attack of `attacks.py`.
Each attack gets exactly the points its functions earn (the blank module earns what its notebook
earns without the attack; a correct module with a stderr print earns all), and the honest submissions get the score they get alone.
`make grade` (self-grading) is checked on the attack that needs no knowledge of the checks. Runs
in the "nbgrader" xdist group.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from course import REPO_ROOT
from course.nbgrader.fixtures import (GradedBatch, environment, expected_losses, grade_batch,
                                      reference_module, solved_notebook, write_submission)
from course.nbgrader.integrity import Pristine
from course.nbgrader.verdicts import protected_roots

from .attacks import ATTACKS, hostile_module

sys.path.insert(0, str(REPO_ROOT / "tests" / "grading"))
from steps import BY_NAME  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]

LIMITS = dict(COURSE_CELL_TIMEOUT="600", COURSE_NOTEBOOK_TIMEOUT="1800")


@dataclass(frozen=True)
class Target:
    step: str
    module: str
    honest_wrong: Path       # an honest but wrong submission graded in the same batch
    wrapped: str             # the function the stderr-print attack wraps

    def blank(self) -> str:
        return (REPO_ROOT / self.step / self.module).read_text(encoding="utf-8")

    def hostile(self, attack, reference: str) -> str:
        return hostile_module(attack, self.blank(), reference, self.wrapped)


TARGETS = [
    Target("step2_masking", "masking_exercise.py",
           REPO_ROOT / "tests" / "wrong" / "step2_masking" / "more" / "loss_not_shifted.py",
           "collate"),
    Target("step4_lora", "lora_exercise.py",
           REPO_ROOT / "tests" / "wrong" / "step4_lora" / "no_scaling.py", "count_parameters"),
]


@pytest.fixture(scope="module", params=TARGETS, ids=[t.step for t in TARGETS])
def batch(request, tmp_path_factory) -> tuple[GradedBatch, list[str], Target]:
    target = request.param
    root = tmp_path_factory.mktemp("course")
    before = Pristine.record(protected_roots(root))

    def attacks(solved, reference):
        # "unattacked": the attacks' own notebook with the blank module, as a control
        return {"unattacked": (solved, target.blank()),
                **{f"attack-{a.name}": (solved, target.hostile(a, reference)) for a in ATTACKS}}

    with environment(**LIMITS):
        graded = grade_batch(root, target.step, target.module, [target.honest_wrong], attacks)
    return graded, before._changed(), target


def _max(batch: GradedBatch) -> float:
    return batch.results["reference"].max_score


def test_honest_submissions_keep_the_grade_they_get_alone(batch):
    graded, _, target = batch
    ref = graded.results["reference"]
    assert ref.status == "ok" and ref.score == ref.max_score > 0, (ref.notes, ref.reasons)
    honest = target.honest_wrong
    wrong = graded.results[f"wrong-{honest.stem}"]
    expected = set(expected_losses(honest))
    assert graded.lost(f"wrong-{honest.stem}") == expected, wrong.reasons
    points = sum(top for name, (_, top) in wrong.tests.items() if name in expected)
    assert wrong.score == wrong.max_score - points


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_gets_only_what_its_functions_earn(batch, attack):
    graded, _, _ = batch
    result = graded.results[f"attack-{attack.name}"]
    # a blank module earns what the same notebook earns without the attack (a notebook TODO
    # answered, as in step 4's learning rate); the reference earns full marks
    earned = _max(graded) if attack.base == "reference" else graded.results["unattacked"].score
    assert result.score == earned, (result.status, result.notes, result.reasons)
    if attack.base == "blank":   # every lost point says why: the TODOs are not done
        assert all("TODO not done" in r for r in result.reasons.values()), result.reasons


def test_the_course_is_unchanged_after_the_batch(batch):
    _, changed, _ = batch
    assert changed == [], f"files grading reads were changed: {changed}"


def test_verdicts_ignore_what_the_kernel_printed(batch):
    """The AST-transformer attack makes every test cell of the kernel 'pass'; the autograded
    notebook shows the trusted verdicts instead, each failure with its reason: the same cells
    pass as without the attack (a notebook TODO the notebook answers), every other one fails."""
    graded, _, target = batch

    def verdicts(student: str) -> dict[str, list]:
        path = graded.root / "autograded" / student / target.step / "tutorial.ipynb"
        nb = nbformat.read(str(path), as_version=4)
        return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade")
                and not c.metadata["nbgrader"].get("solution")}

    attacked, control = verdicts("attack-ast-transformer"), verdicts("unattacked")
    assert attacked and set(attacked) == set(control)
    for gid, cell in attacked.items():
        passed = cell.metadata["course"]["verdict"]["passed"]
        assert passed == control[gid].metadata["course"]["verdict"]["passed"], gid
        assert passed or any(o.get("output_type") == "error" for o in cell.outputs), gid
    assert sum(not c.metadata["course"]["verdict"]["passed"] for c in attacked.values()) >= \
        len(attacked) - 1


def test_self_grading_holds_and_prints_the_reason_next_to_each_zero(batch, tmp_path, capsys):
    from course.nbgrader import grade as self_grade

    graded, _, target = batch
    folder = tmp_path / "mine"
    attack = next(a for a in ATTACKS if a.name == "ast-transformer")
    solved = solved_notebook(graded.root, target.step)
    write_submission(folder, solved, {target.module: target.hostile(
        attack, reference_module(target.step, target.module))})
    with environment(**LIMITS):
        code = self_grade.main([target.step, "--from", str(folder), "--root",
                                str(tmp_path / "root")])
    out = capsys.readouterr().out
    assert code == 0
    # what the same notebook earns without the attack (step 4: its learning-rate cell)
    assert f"total: {graded.results['unattacked'].score:g} / " in out, out
    graded_cells = tuple(BY_NAME[target.step].points())
    rows = [line for line in out.splitlines() if line.split(" ", 1)[0] in graded_cells]
    assert len(rows) == len(graded_cells), out
    zeros = [line for line in rows if line.split()[1] == "0"]
    assert zeros and all("TODO not done" in line for line in zeros), out


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
