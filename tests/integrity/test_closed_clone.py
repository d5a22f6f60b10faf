"""A course cloned where only root can enter (a 0700 home, the usual place when a learner works
as root in a container) still grades: the jail builds its own view of the files, so `nobody`
needs no way through the clone's parents. The clone is the committed tree as `git clone` makes
it, with this checkout's uncommitted changes laid over it (so it tests the code under test)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from course import REPO_ROOT
from course.sandbox.jail import isolation

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader"),
              pytest.mark.skipif(os.geteuid() != 0 or isolation() == "none",
                                 reason="needs root and namespaces")]

STEP, MODULE = "step2_masking", "masking_exercise.py"


def _clone(target) -> None:
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO_ROOT), str(target)],
                   check=True)
    changed = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard"],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    for name in changed.stdout.split():
        if (REPO_ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, target / name)


def test_a_clone_in_a_closed_home_grades_as_root(tmp_path):
    home = tmp_path / "root-home"
    home.mkdir(mode=0o700)
    clone = home / "sft-course"
    _clone(clone)
    mine = home / "mine"
    mine.mkdir()
    shutil.copy2(clone / STEP / "tutorial.ipynb", mine)
    shutil.copy2(clone / "solutions" / STEP / MODULE, mine / MODULE)
    env = {**os.environ, "PYTHONPATH": str(clone)}
    run = subprocess.run([sys.executable, "-m", "course.nbgrader.grade", STEP, "--from",
                          str(mine), "--root", str(home / "grading")], cwd=clone, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "status: ok" in run.stdout and "total: 19 / 19" in run.stdout, run.stdout[-3000:]
    assert oct(home.stat().st_mode & 0o777) == "0o700"
