"""Issue 7, step 4: the visible checks (course/checks/step4_lora.py) pass on the answer key and
name each classic mistake of tests/wrong/step4_lora/ (its EXPECT_MESSAGE), in-process."""
from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

from course import REPO_ROOT
from course.checks import step4_lora as checks
from course.grading import CheckFailed
from course.nbgrader.fixtures import expected_losses, reference_module, wrong_module

STEP, MODULE = "step4_lora", "lora_exercise.py"
WRONG = sorted((REPO_ROOT / "tests" / "wrong" / STEP).glob("*.py"))
VISIBLE = ["lora_linear_init", "lora_linear_forward", "get_delta_weight", "merge", "unmerge",
           "matches_target", "find_target_modules", "inject_lora", "count_parameters",
           "adapter_state_dict", "merge_and_unload", "lora_parameter_count",
           "estimate_training_memory"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _module(text: str) -> types.ModuleType:
    mod = types.ModuleType("lora_exercise_under_test")
    exec(compile(text, "lora_exercise_under_test.py", "exec"), mod.__dict__)  # noqa: S102
    return mod


def _expected_message(path: Path) -> str:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "EXPECT_MESSAGE":
            return node.value.value
    raise AssertionError(f"{path.name}: no EXPECT_MESSAGE")


@pytest.fixture(scope="module")
def reference():
    return _module(reference_module(STEP, MODULE))


@pytest.mark.parametrize("grade_id", VISIBLE)
def test_visible_check_passes_on_the_reference(reference, grade_id, capsys):
    getattr(checks, f"check_{grade_id}")(reference)
    assert "\N{CHECK MARK}" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", WRONG, ids=[w.stem for w in WRONG])
def test_visible_check_names_the_mistake(wrong):
    """The visible check of the function a classic mistake breaks (its hidden test's name
    without `_hidden`) fails, and its message contains the wrong file's EXPECT_MESSAGE."""
    visible = [g.removesuffix("_hidden") for g in expected_losses(wrong)
               if g.removesuffix("_hidden") in VISIBLE]
    assert visible, f"{wrong.name}: EXPECT_LOSE names no function with a visible check"
    with pytest.raises(CheckFailed) as err:
        getattr(checks, f"check_{visible[0]}")(_module(wrong_module(STEP, MODULE, wrong)))
    assert _expected_message(wrong).lower() in str(err.value).lower(), str(err.value)
    assert "Looks like:" in str(err.value)
