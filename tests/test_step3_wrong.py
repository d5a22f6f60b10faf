"""Issue 6, step 3: the hidden checks catch every wrong implementation, and pass the reference.

Each file of tests/wrong/step3_sft/ (classic mistakes) and its more/ folder (subtler variants)
is appended to the reference module, as the autograde harness does
(`course.nbgrader.fixtures.wrong_module`); the hidden checks of
solutions/step3_sft/hidden_checks.py named in its EXPECT_LOSE must then fail. Only those are
run for a wrong implementation (all of them run on the reference and on the blank release).
"""
from __future__ import annotations

import types

import pytest
import torch

from course import REPO_ROOT
from course.grading import load_reference
from course.nbgrader.fixtures import expected_losses, reference_module, wrong_module
from course.nbgrader.hooks import strip_solutions

STEP, MODULE = "step3_sft", "sft_exercise.py"
FOLDER = REPO_ROOT / "tests" / "wrong" / STEP
WRONG = sorted(FOLDER.glob("*.py")) + sorted((FOLDER / "more").glob("*.py"))
CLASSIC = {  # the mistakes issue 6 lists; each must have its own wrong implementation
    "mean_per_micro_batch", "zero_grad_inside_accumulation", "scheduler_per_micro_batch",
    "clip_before_accumulation_ends", "no_warmup", "wrong_cosine_floor", "decay_on_norms",
    "eval_with_gradients", "eval_in_train_mode", "resume_forgets_optimizer",
    "resume_forgets_rng", "non_atomic_checkpoint"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checks():
    return load_reference(STEP, "hidden_checks").HIDDEN_CHECKS


@pytest.fixture(scope="module")
def ref():
    return load_reference(STEP, "sft_exercise")


def submitted(text: str) -> types.ModuleType:
    """The module as a learner would submit it (a fresh import of `text`)."""
    module = types.ModuleType("sft_exercise")
    # dont_inherit: not this file's `from __future__ import annotations` (string annotations
    # make @dataclass look the module up in sys.modules, where a submission is not)
    exec(compile(text, "<sft_exercise>", "exec", dont_inherit=True),  # noqa: S102
         module.__dict__)
    return module


def failures(module, ref, checks, names) -> dict[str, str]:
    failed = {}
    for name in names:
        try:
            checks[name](module, ref)
        except (AssertionError, NotImplementedError) as err:
            failed[name] = str(err).splitlines()[0] if str(err) else type(err).__name__
    return failed


def test_every_classic_mistake_has_a_wrong_implementation():
    assert CLASSIC <= {w.stem for w in FOLDER.glob("*.py")}


def test_reference_passes_every_hidden_check(ref, checks):
    module = submitted(reference_module(STEP, MODULE))
    assert failures(module, ref, checks, checks) == {}


def test_blank_release_fails_every_hidden_check_with_its_todo_hint(ref, checks):
    text = strip_solutions((REPO_ROOT / "solutions" / STEP / MODULE).read_text())
    module = submitted(text)
    for name, check in checks.items():
        with pytest.raises(NotImplementedError):
            check(module, ref)


@pytest.mark.parametrize("wrong", WRONG, ids=[w.relative_to(FOLDER).as_posix() for w in WRONG])
def test_wrong_implementation_fails_the_checks_it_names(ref, checks, wrong):
    expected = [e for e in expected_losses(wrong) if e.endswith("_hidden")]
    assert expected and set(expected) <= set(checks), \
        f"{wrong.name}: EXPECT_LOSE must name hidden checks from {sorted(checks)}"
    failed = failures(submitted(wrong_module(STEP, MODULE, wrong)), ref, checks, expected)
    assert set(failed) == set(expected), \
        f"{wrong.name}: expected to fail {expected}, failed only {sorted(failed)}"
