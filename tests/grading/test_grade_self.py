"""`make grade` for self-learners, and the answer key validates (Validator API)."""
from __future__ import annotations

import re

import pytest

from course.grading import solutions_dir
from course.nbgrader import grade
from course.nbgrader.fixtures import reference_module, solved_notebook, write_submission
from course.nbgrader.release import generate
from course.nbgrader.validate import validate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]
STEP = "step1_data"


def test_self_learner_grades_a_working_copy(tmp_path, capsys):
    generate(tmp_path / "authoring", [STEP])
    mine = write_submission(tmp_path / "mine", solved_notebook(tmp_path / "authoring", STEP),
                            {"data_exercise.py": reference_module(STEP, "data_exercise.py")})
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    assert grade.main([STEP, "--from", str(mine), "--root", str(tmp_path / "selfgrade")]) == 0
    out = capsys.readouterr().out
    assert "total: 16 / 16   status: ok" in out
    assert re.search(r"format_conversation_hidden\s+2 / 2\s+hidden", out)
    assert "feedback (hidden tests redacted):" in out and f"solutions/{STEP}" in out
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before, "the folder is only read"


def test_answer_key_passes_every_test_with_the_validator_api():
    assert validate(solutions_dir() / STEP / "tutorial.ipynb") == {}
