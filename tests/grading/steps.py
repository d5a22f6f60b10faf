"""The one table of steps that the grading suite (test_grading.py) runs on.

For every step: its exercise module, the classic mistakes that must each have a wrong
implementation, which wrong implementations go through the slower harnesses, and the settings
of its nbgrader batch. Points and maxima are not here: they are read from the notebook's
metadata (`max_score`, `points`). Wrong implementations are the files of tests/wrong/<step>/
(classic mistakes) and tests/wrong/<step>/more/ (subtler variants); each says in EXPECT_LOSE
which tests it must lose, and loses exactly those in every harness that runs it.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course import REPO_ROOT
from course.grading import solutions_dir
from course.nbgrader.fixtures import expected_losses
from course.nbgrader.structure import grade_id

WRONG_DIR = REPO_ROOT / "tests" / "wrong"
ALL = None            # every wrong implementation of the step (classic mistakes and variants)
CLASSIC = ("classic",)  # the classic mistakes: the files directly in tests/wrong/<step>/


@dataclass(frozen=True)
class Step:
    name: str
    module: str                       # the exercise module learners submit
    classic: frozenset[str]           # mistakes that must each have a wrong implementation
    notebook: tuple[str, ...] | None  # wrong implementations run through the notebook's test
    #                                   cells in-process (ALL: every one); paths under wrong/<step>
    nbgrader: tuple[str, ...]         # wrong implementations graded by real nbgrader (CLASSIC:
    #                                   every classic mistake)
    trusted: tuple[str, ...] = ()     # wrong implementations graded by the trusted grader
    #                                   directly (its verdicts, without nbgrader's batch)
    environment: dict[str, str] = field(default_factory=dict)  # for the nbgrader batch
    threads: int | None = 1           # torch threads for the in-process harnesses
    budget_s: float = 60              # autograde CPU seconds per submission

    @property
    def folder(self) -> Path:
        return WRONG_DIR / self.name

    def wrong(self, names: tuple[str, ...] | None = ALL) -> list[Path]:
        """The wrong implementations `names` (stems, `more/<stem>` for variants), or all."""
        if names == CLASSIC:
            return sorted(self.folder.glob("*.py"))
        if names is not None:
            return [self.folder / f"{n}.py" for n in names]
        return sorted(self.folder.glob("*.py")) + sorted((self.folder / "more").glob("*.py"))

    def id(self, wrong: Path) -> str:
        return f"{self.name}/{wrong.relative_to(self.folder).with_suffix('').as_posix()}"

    def points(self) -> dict[str, float]:
        """grade_id -> points of every graded cell, from the instructor notebook's metadata."""
        nb = nbformat.read(str(solutions_dir() / self.name / "tutorial.ipynb"), as_version=4)
        return {grade_id(c): float(c.metadata["nbgrader"]["points"]) for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade")}

    def max_score(self) -> float:
        return sum(self.points().values())


STEPS = [
    Step("step1_data", "data_exercise.py",
         classic=frozenset({"alpaca_template_ignores_input", "missing_end_token",
                            "duplicates_not_removed", "duplicates_ignore_whitespace",
                            "overlong_not_dropped", "wrong_role_order_accepted"}),
         # a few that between them fail every hidden test (all of them: hidden + notebook)
         notebook=ALL,
         nbgrader=("alpaca_template_ignores_input", "missing_end_token",
                   "duplicates_ignore_whitespace", "wrong_role_order_accepted",
                   "sharegpt_roles_unmapped"),
         # its hostile submissions loop forever in a cell: each waits out the limit twice (the
         # kernel, then the trusted grader's worker); step 1's slowest cell takes ~3 s idle
         environment={"COURSE_CELL_TIMEOUT": "20", "COURSE_INTERRUPT_GRACE": "3"}, threads=None),
    Step("step2_masking", "masking_exercise.py",
         classic=frozenset({"mask_starts_one_early", "mask_starts_one_late",
                            "end_token_not_trained", "padding_labels_not_ignored",
                            "pad_equals_eos_masks_eos", "user_turns_trained",
                            "only_first_assistant_turn", "labels_shifted_by_hand",
                            "mean_of_sequence_means", "nan_on_fully_masked_batch"}),
         notebook=ALL,
         nbgrader=("end_token_not_trained", "nan_on_fully_masked_batch",
                   "pad_equals_eos_masks_eos"),
         # generous: this batch tests grades, not timeouts (step 1's hostile batch does)
         environment={"COURSE_CELL_TIMEOUT": "600", "COURSE_NOTEBOOK_TIMEOUT": "1800"}),
    Step("step3_sft", "sft_exercise.py",
         classic=frozenset({"mean_per_micro_batch", "zero_grad_inside_accumulation",
                            "scheduler_per_micro_batch", "clip_before_accumulation_ends",
                            "no_warmup", "wrong_cosine_floor", "decay_on_norms",
                            "eval_with_gradients", "eval_in_train_mode",
                            "resume_forgets_optimizer", "resume_forgets_rng",
                            "non_atomic_checkpoint"}),
         # the notebook's test cells train a little: the classic mistakes only, in-process
         notebook=CLASSIC,
         nbgrader=("mean_per_micro_batch", "scheduler_per_micro_batch", "eval_in_train_mode",
                   "resume_forgets_rng"),
         environment={"COURSE_CELL_TIMEOUT": "120"}, budget_s=90),
    Step("step4_lora", "lora_exercise.py",
         classic=frozenset({"no_scaling", "scaling_alpha", "b_random_init", "a_and_b_zero",
                            "dropout_on_output", "base_weight_trainable", "base_bias_trainable",
                            "merge_without_scaling", "unmerge_not_restoring",
                            "wrong_modules_substring", "rslora_ignored", "merge_twice_doubles"}),
         # its tests change the learner's layers and models where they live (the grading
         # worker): every classic mistake through the trusted grader too
         notebook=ALL, nbgrader=("no_scaling", "b_random_init", "unload_without_merge"),
         trusted=CLASSIC),
]
BY_NAME = {s.name: s for s in STEPS}
# xdist groups of the real-nbgrader batches (default "nbgrader"): one worker each
NBGRADER_GROUPS = {"step1_data": "nbgrader_step1"}


def expected_message(path: Path) -> str | None:
    """A wrong implementation's EXPECT_MESSAGE: what its visible check's failure must say."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "EXPECT_MESSAGE":
            return ast.literal_eval(node.value)
    return None


def expected(path: Path) -> set[str]:
    return set(expected_losses(path))
