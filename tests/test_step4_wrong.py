"""Issue 7, step 4: the hidden tests (solutions/step4_lora/hidden_checks.py) check behaviour.

The reference passes every hidden check; each wrong implementation in tests/wrong/step4_lora/
(classic mistakes) and tests/wrong/step4_lora/more/ (subtler variants) fails every check its
EXPECT_LOSE names; the blank release (solutions stripped) fails every check with its TODO hint.
In-process, no notebook: the hidden-test cells will only call these functions.
"""
from __future__ import annotations

import types

import pytest

import torch

from course import REPO_ROOT
from course.grading import HiddenTestFailure, load_reference
from course.nbgrader.fixtures import expected_losses, reference_module, wrong_module
from course.nbgrader.hooks import strip_solutions

STEP, MODULE = "step4_lora", "lora_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
WRONG = sorted(FOLDER.glob("*.py")) + sorted((FOLDER / "more").glob("*.py"))
CLASSIC = {  # the mistakes issue 7 lists; each has its own wrong implementation
    "no_scaling", "scaling_alpha", "b_random_init", "a_and_b_zero", "dropout_on_output",
    "base_weight_trainable", "base_bias_trainable", "merge_without_scaling",
    "unmerge_not_restoring", "wrong_modules_substring", "rslora_ignored", "merge_twice_doubles"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def checks():
    return load_reference(STEP, "hidden_checks").HIDDEN_CHECKS


@pytest.fixture(scope="module")
def ref():
    return load_reference(STEP, "lora_exercise")


def as_module(text: str) -> types.ModuleType:
    module = types.ModuleType("lora_exercise")
    exec(compile(text, "<lora_exercise>", "exec"), module.__dict__)  # noqa: S102
    return module


def failures(checks, ref, module, grades) -> dict[str, str]:
    failed = {}
    for grade in grades:
        try:
            checks[grade](module, ref)
        except HiddenTestFailure as err:
            failed[grade] = err.public
    return failed


def test_every_classic_mistake_has_a_wrong_implementation():
    assert CLASSIC <= {w.stem for w in FOLDER.glob("*.py")}


def test_grade_ids(checks):
    assert list(checks) == [
        "lora_linear_init_hidden", "lora_linear_forward_hidden", "get_delta_weight_hidden",
        "merge_hidden", "unmerge_hidden", "matches_target_hidden", "find_target_modules_hidden",
        "inject_lora_hidden", "count_parameters_hidden", "adapter_state_dict_hidden",
        "merge_and_unload_hidden", "lora_parameter_count_hidden",
        "estimate_training_memory_hidden"]


def test_reference_passes_every_check(checks, ref, capsys):
    submitted = as_module(reference_module(STEP, MODULE))
    assert failures(checks, ref, submitted, checks) == {}
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(checks)
    assert all("all" in line and ("pass" in line or "agree" in line) for line in printed)


def test_blank_release_fails_every_check_with_its_hint(checks, ref):
    blank = as_module(strip_solutions((REPO_ROOT / "solutions" / STEP / MODULE).read_text()))
    for grade in checks:
        with pytest.raises(NotImplementedError) as err:
            checks[grade](blank, ref)
        assert str(err.value) and "replace this line" not in str(err.value), grade


@pytest.mark.parametrize("wrong", WRONG, ids=[w.relative_to(FOLDER).as_posix() for w in WRONG])
def test_wrong_implementation_fails_the_checks_it_names(checks, ref, wrong):
    expected = expected_losses(wrong)
    assert expected and set(expected) <= set(checks), expected
    submitted = as_module(wrong_module(STEP, MODULE, wrong))
    failed = failures(checks, ref, submitted, expected)
    assert set(failed) == set(expected), (
        f"{wrong.name}: expected to fail {expected}, failed only {sorted(failed)}")
    for grade, public in failed.items():  # the public line names the kinds of case that failed
        assert public.startswith(grade.removesuffix("_hidden") + ":") and "failing kinds" in public


def test_hidden_checks_leave_the_global_rng_alone(checks, ref):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks["lora_linear_init_hidden"](ref, ref)
    assert torch.equal(torch.rand(3), expected)
