"""Every hyperparameter of a supervised fine-tuning run, in one typed dataclass (saved with
each checkpoint). Step 3's `FinetuneConfig` is this class plus the learner's `total_steps`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


def course_build() -> Path:
    """The course's build/ folder (never inside a step folder, whatever the working directory)."""
    from course import REPO_ROOT
    return REPO_ROOT / "build"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass
class SFTSettings:
    """The settings of a run; see step 3's FinetuneConfig for why these values."""

    model_name: str = "embedded"        # course.models.load_base_model name (or a hub id)
    learning_rate: float = 1e-3         # peak learning rate, reached after warmup
    num_epochs: float = 1.0             # passes over the training set ...
    max_steps: int | None = None        # ... unless set: this many optimizer steps
    batch_size: int = 16                # sequences per micro-batch, per process
    grad_accum_steps: int = 1           # micro-batches per optimizer step
    warmup_ratio: float = 0.05          # share of the steps spent warming up ...
    warmup_steps: int | None = None     # ... unless set: this many steps
    weight_decay: float = 0.01          # AdamW decay of matrices (never norms or biases)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0   # clip the global gradient norm (None: no clipping)
    max_length: int = 256               # tokens per sequence; longer ones are cut
    eval_every: int = 50                # steps between validation runs (0: only at the end)
    eval_batches: int | None = None     # validation micro-batches per run (None: all)
    early_stopping_patience: int | None = None  # evaluations without improvement, then stop
    early_stopping_min_delta: float = 0.0
    restore_best: bool = True           # with early stopping: end on the best evaluation's weights
    sample_every: int = 0               # steps between sample generations (0: never)
    save_every: int = 0                 # steps between checkpoints (0: only at the end)
    log_every: int = 10                 # steps between train-loss lines in metrics.jsonl
    shuffle: bool = True                # a new order every epoch (seeded)
    group_by_length: bool = False       # micro-batches of similar lengths (little padding)
    seed: int = 0
    output_dir: str = "build/step3_sft/run"

    @classmethod
    def for_large_model(cls, model_name: str, **overrides: Any):
        """Usual full fine-tuning settings for a 0.5B-7B chat model: lr 1e-5, 2 epochs, an
        effective batch of 32 (4 x 8 accumulation), 3 % warmup, no weight decay."""
        values = dict(model_name=model_name, learning_rate=1e-5, num_epochs=2.0, batch_size=4,
                      grad_accum_steps=8, warmup_ratio=0.03, weight_decay=0.0, max_length=1024,
                      eval_every=200, save_every=500)
        return cls(**{**values, **overrides})

    @classmethod
    def course_run(cls, **overrides: Any):
        """The notebook's fine-tuning of the embedded model, 4-5 minutes on 2 cores: 2000
        steps of 16 sequences in batches of similar lengths, lr 1e-3 with 5 % warmup and cosine
        decay, no weight decay. The HF Trainer reference (benchmarks/reference_sft.py) has the
        same lr, schedule and length grouping with 32 sequences per step for 1200 steps:
        `course_run(max_steps=1200, grad_accum_steps=2)` (`make bench-sft-loop`). What both reach,
        over seeds, is in docs/BASE_MODEL.md."""
        values = dict(learning_rate=1e-3, max_steps=2000, batch_size=16, grad_accum_steps=1,
                      group_by_length=True, warmup_ratio=0.05, weight_decay=0.0,
                      max_grad_norm=1.0, max_length=384, eval_every=200, eval_batches=8,
                      sample_every=400, save_every=400, log_every=10,
                      output_dir=str(course_build() / "step3_sft" / "run"))
        return cls(**{**values, **overrides})

    def global_batch_size(self, world_size: int = 1) -> int:
        """Sequences per optimizer step, over all processes."""
        return self.batch_size * self.grad_accum_steps * world_size

    def warmup(self, total_steps: int) -> int:
        """Warmup steps: `warmup_steps` when set, else round(warmup_ratio * total_steps)."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(self.warmup_ratio * total_steps)

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed (not the intervals or the folder)."""
        keys = ("model_name", "learning_rate", "num_epochs", "max_steps", "batch_size",
                "grad_accum_steps", "warmup_ratio", "warmup_steps", "weight_decay",
                "adam_betas", "adam_eps", "max_grad_norm", "max_length", "shuffle",
                "group_by_length", "seed")
        return {k: _plain(getattr(self, k)) for k in keys}
