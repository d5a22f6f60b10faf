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


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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


# --- visible checks: each classic mistake gets its own diagnosis -----------------------------------
@pytest.fixture(scope="module")
def visible(ref):
    """grade_id -> a call of its visible check (course/checks/step3_sft.py) on a module."""
    from course.checks import step3_sft as vc
    from course.data import load_split
    from course.models import load_base_model, load_tokenizer

    tok = load_tokenizer()
    model = load_base_model(device="cpu")
    examples = ref.tokenize_split(load_split("validation").select(range(60)), tok, 256)
    return {
        "total_steps": lambda ex: vc.check_total_steps(ex),
        "param_groups": lambda ex: vc.check_param_groups(ex, model),
        "lr_lambda": lambda ex: vc.check_lr_lambda(ex),
        "train_step": lambda ex: vc.check_train_step(ex, model, examples, tok),
        "evaluate": lambda ex: vc.check_evaluate(ex, model, examples, tok),
        "early_stopping": lambda ex: vc.check_early_stopping(ex),
        "save_checkpoint": lambda ex: vc.check_save_checkpoint(ex, model),
        "load_checkpoint": lambda ex: vc.check_load_checkpoint(ex, model),
    }


def _expected_message(path):
    import ast
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "EXPECT_MESSAGE":
            return ast.literal_eval(node.value)
    return None


def test_reference_passes_every_visible_check(visible):
    module = submitted(reference_module(STEP, MODULE))
    for name, check in visible.items():
        check(module)


CLASSIC_FILES = sorted(FOLDER.glob("*.py"))


@pytest.mark.parametrize("wrong", CLASSIC_FILES, ids=[w.name for w in CLASSIC_FILES])
def test_visible_check_names_the_classic_mistake(visible, wrong):
    from course.grading import CheckFailed

    names = [e for e in expected_losses(wrong) if not e.endswith("_hidden")]
    message = _expected_message(wrong)
    assert bool(names) == bool(message), f"{wrong.name}: EXPECT_MESSAGE goes with a visible check"
    module = submitted(wrong_module(STEP, MODULE, wrong))
    for name in names:
        with pytest.raises(CheckFailed) as err:
            visible[name](module)
        assert message in str(err.value), str(err.value)
