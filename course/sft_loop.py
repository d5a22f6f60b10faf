"""The training driver of step 3: runs a fine-tuning built from the learner's pieces.

    result = train(pieces, model, tokenizer, train_examples, val_examples, cfg)

`pieces` is step 3's exercise module (or a dict of its globals): the driver looks up, at the
moment it needs them, `make_optimizer`, `make_scheduler`, `train_step`, `evaluate`,
`EarlyStopping`, `save_checkpoint` and `load_checkpoint` there, and `cfg.total_steps` on the
config. So a function patched into that module (as the grader does) is the one that runs.
Everything else is here: seeding, batches (`course.batching`), evaluation and sampling
intervals, early stopping (with the best evaluation's weights put back at the end), checkpoints
at intervals and at the end, resuming, the metrics log (`course.metrics_log`), a progress bar,
and stopping on a NaN loss.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from course.batching import eval_batches, micro_batches_for_step
from course.checkpoints import BEST_WEIGHTS, CHECKPOINT, fsync_path
from course.distributed import all_reduce_sum, barrier, world
from course.metrics_log import MetricsLog
from course.pieces import Pieces


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """What `train` did: per-step train records, evaluations, samples, and how it ended."""

    steps: int
    train: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    stopped_early: bool
    seconds: float
    output_dir: str
    padding_waste: float = 0.0  # padded positions / all positions of the training batches
    best_step: int | None = None  # the step of the best evaluation (the lowest loss)
    restored_best: bool = False  # True when the model ends on best_step's weights, not the last


def sample_generations(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 40
                       ) -> list[str]:
    """Greedy answers to chat-formatted `prompts` (course.evaluate.generate)."""
    from course.evaluate import generate
    return generate(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """The model's weights to `path`, atomically and durably (temporary file, fsync, rename,
    fsync of the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    fsync_path(tmp)
    tmp.replace(path)
    fsync_path(path.parent)


def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


def train(pieces: Any, model: torch.nn.Module, tokenizer, train_examples: Sequence[dict],
          val_examples: Sequence[dict], cfg, resume: bool = False,
          sample_prompts: Sequence[str] = (), progress: bool = True,
          on_step: Callable[[int, dict], None] | None = None,
          collate: Callable | None = None) -> TrainResult:
    """Fine-tune `model` on tokenized `train_examples` (see `course.batching.tokenize_split`)
    with `cfg`, using the learner's `pieces` (see the module docstring).

    Every step: `train_step` on this process's micro-batches. Every `eval_every` steps (and at
    the end): `evaluate` on the validation examples, and early stopping. Every
    `sample_every` steps: greedy answers to `sample_prompts`. Every `save_every` steps (and at
    the end): an atomic checkpoint in `output_dir`. Metrics go to `output_dir/metrics.jsonl`;
    tqdm shows loss, learning rate and tokens/s. `resume=True` continues from
    `output_dir/checkpoint.pt` when it exists (same model and config, or a clear error). A NaN
    or infinite loss raises NonFiniteLossError; the last checkpoint on disk stays the last good
    one. `on_step(step, stats)` is called after every step (tests use it to simulate a crash).
    `collate(features, pad_token_id)` builds the batches (default: `course.batching.collate`,
    padding; `course.packing.PackedCollator` packs); each step reports its padding waste.

    With early stopping on (`cfg.early_stopping_patience` set) and `cfg.restore_best`, the
    weights of every new best evaluation are written to `output_dir/best.pt`, and the run ends
    on them (the HF Trainer's `load_best_model_at_end`): stopped early, the last weights are
    `patience` evaluations past the best. The final checkpoint keeps the last step's state, so
    a resumed run continues from where it stopped.
    """
    from course.packing import token_counts  # real tokens of any batch layout (2D, 4D, packed)
    ex = Pieces(pieces)
    rank, world_size = world()
    out = Path(cfg.output_dir)
    ckpt = out / CHECKPOINT
    total = cfg.total_steps(len(train_examples), world_size)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    optimizer = ex.make_optimizer(model, cfg)
    scheduler = ex.make_scheduler(optimizer, cfg.warmup(total), total)
    stopper = ex.EarlyStopping(cfg.early_stopping_patience, cfg.early_stopping_min_delta)
    keep_best = cfg.early_stopping_patience is not None and getattr(cfg, "restore_best", True)
    best_file = out / BEST_WEIGHTS
    config = cfg.fingerprint()
    step = 0
    if resume and ckpt.exists():
        restored = ex.load_checkpoint(ckpt, model, optimizer, scheduler, expect=config)
        step = restored["step"]
        stopper.load_state_dict(restored["extra"].get("early_stopping", {}))
        best_step = restored["extra"].get("best_step")
    else:
        best_step = None
        if keep_best and rank == 0 and best_file.exists():
            best_file.unlink()  # a fresh run: an earlier run's best weights are not ours
    log = MetricsLog(out, enabled=rank == 0, resume_step=step if resume else None)
    if rank == 0 and not resume:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    val = eval_batches(val_examples, cfg, tokenizer.pad_token_id, rank, world_size, collate)
    pad = tokenizer.pad_token_id
    result = TrainResult(step, [], [], [], False, 0.0, str(out))
    real_total = positions_total = 0

    def run_eval(at: int) -> bool:
        nonlocal best_step
        ev = ex.evaluate(model, val)
        record = {"step": at, "split": "val", **ev}
        result.evals.append(record)
        log.log(record)
        stop = stopper.step(ev["loss"])
        if stopper.bad_evals == 0:  # a new best
            best_step = at
            if keep_best:  # keep its weights
                if rank == 0:
                    save_weights(model, best_file)
                barrier()
        return stop

    def save(at: int) -> None:
        if rank == 0:
            ex.save_checkpoint(ckpt, model, optimizer, scheduler, at,
                               {"config": config, "early_stopping": stopper.state_dict(),
                                "best_step": best_step})
        barrier()

    if step == 0 and cfg.eval_every > 0 and val:
        run_eval(0)  # the model before fine-tuning: where the curves start
    start = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc="sft", disable=not progress or rank != 0)
    while step < total:
        batches = micro_batches_for_step(train_examples, step, cfg, pad, rank, world_size,
                                         collate)
        t0 = time.perf_counter()
        stats = ex.train_step(model, optimizer, scheduler, batches, cfg.max_grad_norm)
        counts = [token_counts(b) for b in batches]
        seen = int(all_reduce_sum(sum(c[0] for c in counts)))
        positions = int(all_reduce_sum(sum(c[1] for c in counts)))
        stats["tokens_per_s"] = seen / max(time.perf_counter() - t0, 1e-9)
        stats["padding_waste"] = 1.0 - seen / max(positions, 1)
        real_total += seen
        positions_total += positions
        if not math.isfinite(stats["loss"]):
            bar.close()
            log.log({"step": step + 1, "split": "error", "loss": str(stats["loss"])})
            raise NonFiniteLossError(
                f"step {step + 1}: the training loss is {stats['loss']} (learning rate "
                f"{stats['lr']:.2e}, gradient norm {stats['grad_norm']:.3g}). Training stopped; "
                f"the last good checkpoint is {ckpt if ckpt.exists() else 'not written yet'}. "
                f"Lower the learning rate or check the data for empty or broken batches.")
        step += 1
        record = {"step": step, "split": "train", **stats}
        result.train.append(record)
        if step == 1 or _due(step, cfg.log_every, total):
            log.log(record)
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{stats['lr']:.1e}",
                        tok_s=f"{stats['tokens_per_s']:,.0f}",
                        pad=f"{stats['padding_waste']:.0%}")
        stop = False
        if val and _due(step, cfg.eval_every, total):
            stop = run_eval(step)
        if sample_prompts and cfg.sample_every > 0 and (step % cfg.sample_every == 0
                                                         or step == total):
            texts = sample_generations(model, tokenizer, sample_prompts)
            sample = {"step": step, "split": "sample", "texts": texts}
            result.samples.append(sample)
            log.log(sample)
        if stop or _due(step, cfg.save_every, total):
            save(step)
        if on_step is not None:
            on_step(step, stats)
        if stop:
            result.stopped_early = True
            break
    bar.close()
    result.best_step = best_step
    last_eval = result.evals[-1]["step"] if result.evals else None
    if keep_best and best_step is not None and best_step != last_eval and best_file.exists():
        model.load_state_dict(torch.load(best_file, map_location="cpu", weights_only=True))
        result.restored_best = True
        log.log({"step": step, "split": "restore_best", "best_step": best_step,
                 "best_loss": stopper.best})
    log.close()
    result.steps, result.seconds = step, time.perf_counter() - start
    result.padding_waste = 1.0 - real_total / max(positions_total, 1)
    return result
