"""Step 3, section 10: overfitting on a small data set, and what early stopping keeps.

    .venv/bin/python -m benchmarks.step3_overfitting     # ~5 min on 2 cores

The notebook's experiment, with its settings: the first 128 training conversations, 1, 3 and 30
epochs of 16 conversations per step, 10 % warmup, cosine decay, lr 1e-3 (the config's default),
validation loss on 64 validation conversations every 8 steps (once an epoch). For each run: the
curves, the last and the best validation loss, and held-out exact match of the final model.
Then the 30-epoch run again with early stopping (patience 2 evaluations) ending on its last weights and on the
best evaluation's weights (`restore_best`, the default). Writes
benchmarks/results/step3_overfitting.json; the step 3 text quotes it (tests/text).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from course.data import load_split
from course.evaluate import exact_match
from course.grading import load_reference
from course.models import load_base_model, load_tokenizer

RESULTS = Path(__file__).resolve().parent / "results" / "step3_overfitting.json"
SUBSET = 128
EPOCHS = (1, 3, 30)  # the notebook's section 10


def run(ex, base, tok, subset, val, test, out: Path, epochs: int, **kw) -> dict:
    """One run of the notebook's section 10 settings; its curves, losses and exact match."""
    cfg = ex.FinetuneConfig(num_epochs=epochs, batch_size=16, grad_accum_steps=1,
                            warmup_ratio=0.1, eval_every=8, eval_batches=4,
                            output_dir=str(out), **kw)
    model = copy.deepcopy(base)
    t0 = time.perf_counter()
    result = ex.train(model, tok, subset, val, cfg, progress=False)
    seconds = time.perf_counter() - t0
    best = min(result.evals, key=lambda e: e["loss"])
    em = exact_match(model, tok, test, progress=False)
    return {"epochs": epochs, "steps": result.steps, "seconds": seconds,
            "early_stopping_patience": cfg.early_stopping_patience,
            "restore_best": cfg.restore_best, "stopped_early": result.stopped_early,
            "restored_best": result.restored_best, "best_step": best["step"],
            "train_curve": [(r["step"], r["loss"]) for r in result.train],
            "val_curve": [(e["step"], e["loss"]) for e in result.evals],
            "final_train_loss": result.train[-1]["loss"],
            "final_val_loss": result.evals[-1]["loss"], "best_val_loss": best["loss"],
            "exact_match": em.score, "per_task": em.per_task}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--test-limit", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ex = load_reference("step3_sft", "sft_exercise")
    tok = load_tokenizer()
    base = load_base_model(device="cpu")
    train = ex.tokenize_split(load_split("train"), tok, max_length=256)
    val = ex.tokenize_split(load_split("validation"), tok, max_length=256)
    subset = train[:SUBSET]
    test = load_split("test").select(range(args.test_limit))
    runs, stopping = [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for epochs in EPOCHS:
            runs.append(run(ex, base, tok, subset, val, test, Path(tmp) / f"e{epochs}", epochs))
            r = runs[-1]
            print(f"{epochs:2d} epochs: train {r['final_train_loss']:.3f}, val "
                  f"{r['final_val_loss']:.3f} (best {r['best_val_loss']:.3f} at step "
                  f"{r['best_step']}), exact match {r['exact_match']:.1%}", flush=True)
        for restore in (False, True):
            stopping.append(run(ex, base, tok, subset, val, test, Path(tmp) / f"es{restore}",
                                EPOCHS[-1], early_stopping_patience=2,
                                restore_best=restore))
            r = stopping[-1]
            print(f"early stopping, restore_best={restore}: stopped at step {r['steps']} "
                  f"(best {r['best_step']}), exact match {r['exact_match']:.1%}", flush=True)
    summary = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
               "torch_threads": torch.get_num_threads(), "train_conversations": SUBSET,
               "validation_conversations": 64, "test_conversations": len(test),
               "seconds": time.perf_counter() - t0, "runs": runs, "early_stopping": stopping}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out}")
    return summary


if __name__ == "__main__":
    main()
