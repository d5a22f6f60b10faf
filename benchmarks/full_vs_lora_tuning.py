"""Full fine-tuning vs LoRA, made fair: each method at its tuned learning rate, scored on enough
test conversations and seeds for the differences it shows (`make bench-lora-tuning`).

    python -m benchmarks.full_vs_lora_tuning                 # both phases (~1 h on 2 busy cores)
    python -m benchmarks.full_vs_lora_tuning --phase final   # phase 2 only, rates from the JSON
    python -m benchmarks.full_vs_lora_tuning --smoke --out /tmp/t   # seconds, for the tests

Phase 1, tune: every method (full fine-tuning; LoRA r = 1, 4, 8, 32) trains the notebook's budget
(course.full_vs_lora.Config: 120 steps x 16 conversations) at each learning rate of its grid and
is scored on *validation* conversations (exact match, then the loss per answer token to break a
tie): the test split is never used to choose.
Phase 2, measure: each method at its tuned rate, `--seeds` seeds (a run's seed draws the training
conversations, their order and LoRA's initialisation), on `--n-test` test conversations: exact
match, the loss per answer token on those same conversations, per task, and the loss on plain
held-out stories before and after (forgetting).

Writes benchmarks/results/full_vs_lora_tuning.json after every run (an interrupted sweep keeps
what it measured) and full_vs_lora_tuning.png.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmarks.full_vs_lora import reference_modules
from course.data import load_split
from course.device import pick_device
from course.full_vs_lora import Config, default_config, prepare, run_one, sft_loop
from course.measure import mean_token_loss, no_progress_bars
from course.models import load_base_model

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = {"full": None, "r1": 1, "r4": 4, "r8": 8, "r32": 32}
GRID = {"full": (5e-4, 1e-3, 2e-3, 4e-3), "lora": (2e-3, 5e-3, 1e-2, 2e-2)}
SMOKE = dict(steps=2, batch_size=2, eval_every=2, n_val=4, n_test=4, n_stories=4)


def method_config(base: Config, method: str, lr: float, seed: int = 0) -> Config:
    r = METHODS[method]
    if r is None:
        return replace(base, full_lr=lr, seed=seed)
    return replace(base, r=r, lora_lr=lr, lora_lr_by_rank={}, seed=seed)


def tune(base: Config, modules, device, n_val: int, out: dict, save, progress: bool) -> None:
    """Phase 1: every method at every rate of its grid, scored on validation conversations."""
    lora, masking, sft = modules
    train = sft_loop(sft)
    data = prepare(replace(base, n_stories=0), masking, device)
    val = load_split("validation").select(range(n_val))
    data.test = val
    data.test_examples = [masking.labels_for_conversation(m, data.tokenizer)
                          for m in val["messages"]]
    todo = [(m, lr) for m in METHODS for lr in GRID["full" if m == "full" else "lora"]
            if not any(t["method"] == m and t["lr"] == lr for t in out["tuning"])]
    for method, lr in tqdm(todo, desc="phase 1: tune", disable=not progress):
        config = method_config(base, method, lr)
        run = run_one("full" if method == "full" else "lora", config, lora, data, train,
                      r=METHODS[method], progress=False)
        out["tuning"].append({"method": method, "lr": lr, "val_exact_match": run.exact_match,
                              "val_loss": run.test_loss, "train_seconds": run.train_seconds})
        save()
    out["tuned_lr"] = {m: best(out["tuning"], m)["lr"] for m in METHODS}
    save()


def best(tuning: list[dict], method: str) -> dict:
    rows = [t for t in tuning if t["method"] == method]
    return max(rows, key=lambda t: (round(t["val_exact_match"], 3), -t["val_loss"]))


def measure(base: Config, modules, device, seeds: list[int], out: dict, save,
            progress: bool) -> None:
    """Phase 2: each method at its tuned rate, every seed, on base.n_test test conversations."""
    lora, masking, sft = modules
    train = sft_loop(sft)
    for seed in tqdm(seeds, desc="phase 2: seeds", disable=not progress):
        data = prepare(replace(base, seed=seed), masking, device)
        if "base" not in out:
            from course.evaluate import exact_match
            with no_progress_bars():
                model = load_base_model(device=device, dtype=data.dtype)
            out["base"] = {
                "exact_match": exact_match(model, data.tokenizer, data.test,
                                           progress=False).score,
                "test_loss": mean_token_loss(model, data.batches(data.test_examples)),
                "story_loss": mean_token_loss(model, data.stories)}
            del model
            save()
        for method in METHODS:
            if any(f["method"] == method and f["seed"] == seed for f in out["final"]):
                continue
            config = method_config(base, method, out["tuned_lr"][method], seed)
            run = run_one("full" if method == "full" else "lora", config, lora, data, train,
                          r=METHODS[method], progress=False)
            out["final"].append({"method": method, "seed": seed, "lr": run.lr,
                                 "trainable": run.trainable,
                                 "exact_match": run.exact_match, "test_loss": run.test_loss,
                                 "val_loss": run.final_val_loss, "story_loss": run.story_loss,
                                 "per_task": run.per_task, "step_seconds": run.step_seconds,
                                 "train_seconds": run.train_seconds})
            save()
    out["summary"] = summary(out)
    save()


def summary(out: dict) -> dict:
    """Per method: mean and spread over seeds, and a 95 % interval of exact match from the
    number of test conversations scored (binomial, pooled over seeds)."""
    result = {}
    for method in METHODS:
        rows = [f for f in out["final"] if f["method"] == method]
        if not rows:
            continue
        em = [f["exact_match"] for f in rows]
        n = out["config"]["n_test"] * len(rows)
        p = statistics.mean(em)
        result[method] = {
            "lr": rows[0]["lr"], "seeds": len(rows), "trainable": rows[0]["trainable"],
            "exact_match": p, "exact_match_min": min(em), "exact_match_max": max(em),
            "exact_match_ci95": 1.96 * math.sqrt(p * (1 - p) / n),
            "test_loss": statistics.mean(f["test_loss"] for f in rows),
            "story_loss": statistics.mean(f["story_loss"] for f in rows),
            "step_seconds": statistics.median(f["step_seconds"] for f in rows),
            "per_task": {t: statistics.mean(f["per_task"].get(t, 0.0) for f in rows)
                         for t in rows[0]["per_task"]}}
    return result


def figure(out: dict):
    """Left: validation exact match against the learning rate, per method (phase 1). Middle:
    test exact match at the tuned rates, mean over seeds with the seeds' range. Right: the loss
    on plain held-out stories after fine-tuning (forgetting), the base model dotted."""
    import matplotlib.pyplot as plt

    from course.plots import _percent_axis
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    names = {"full": "full fine-tuning", "r1": "LoRA r=1", "r4": "LoRA r=4", "r8": "LoRA r=8",
             "r32": "LoRA r=32"}
    for i, method in enumerate(METHODS):
        rows = sorted((t for t in out["tuning"] if t["method"] == method), key=lambda t: t["lr"])
        if rows:
            axes[0].plot([t["lr"] for t in rows], [t["val_exact_match"] for t in rows],
                         marker="o", color=f"C{i}", label=names[method])
    axes[0].set_xscale("log")
    axes[0].set_xlabel("learning rate (log scale)")
    axes[0].set_title("phase 1: validation exact match", fontsize=9)
    axes[0].legend(fontsize=7)
    _percent_axis(axes[0], [t["val_exact_match"] for t in out["tuning"]] or [0.1])
    summ = out.get("summary") or summary(out)
    methods = [m for m in METHODS if m in summ]
    x = range(len(methods))
    em = [summ[m]["exact_match"] for m in methods]
    lo = [summ[m]["exact_match"] - summ[m]["exact_match_min"] for m in methods]
    hi = [summ[m]["exact_match_max"] - summ[m]["exact_match"] for m in methods]
    axes[1].bar(x, em, yerr=[lo, hi], capsize=4, color=[f"C{METHODS_INDEX[m]}" for m in methods])
    for k, v in zip(x, em):
        axes[1].text(k, v, f"{v:.1%}  ", ha="right", va="bottom", fontsize=7)
    axes[1].set_xticks(list(x), [f"{names[m]}\nlr {summ[m]['lr']:g}, {summ[m]['seeds']} "
                                 f"seed{'s' if summ[m]['seeds'] > 1 else ''}"
                                 for m in methods], fontsize=7)
    axes[1].set_title(f"phase 2: test exact match ({out['config']['n_test']} conversations; "
                      "mean over seeds, bars: their range)", fontsize=9)
    _percent_axis(axes[1], [summ[m]["exact_match_max"] for m in methods])
    story = [summ[m]["story_loss"] for m in methods]
    axes[2].bar(x, story, color=[f"C{METHODS_INDEX[m]}" for m in methods])
    for k, v in zip(x, story):
        axes[2].text(k, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
    if "base" in out:
        axes[2].axhline(out["base"]["story_loss"], color="gray", linestyle=":",
                        label=f"base model {out['base']['story_loss']:.3f}")
        axes[2].legend(fontsize=7, loc="lower right")
    axes[2].set_xticks(list(x), [names[m] for m in methods], fontsize=7)
    axes[2].set_ylim(0, max(story + [out.get("base", {}).get("story_loss", 0)]) * 1.25)
    axes[2].set_title("forgetting: loss on plain held-out stories", fontsize=9)
    fig.tight_layout()
    return fig


METHODS_INDEX = {m: i for i, m in enumerate(METHODS)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=("all", "tune", "final"), default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--n-val", type=int, default=300, help="validation conversations (tuning)")
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="a few tiny steps (tests)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    for m in set(METHODS) - set(args.methods):
        METHODS.pop(m)
    torch.set_num_threads(args.threads)
    device = pick_device("cpu")
    base = default_config(device, **{"n_test": args.n_test, "ranks": (),
                                     **(SMOKE if args.smoke else {})})
    if args.smoke:
        args.n_val, args.seeds = 4, args.seeds[:1]
        GRID["full"], GRID["lora"] = GRID["full"][:2], GRID["lora"][:2]
    path = args.out / "full_vs_lora_tuning.json"
    out = (json.loads(path.read_text()) if path.exists() and not args.smoke else {})
    out.setdefault("tuning", [])
    out.setdefault("final", [])
    out["config"] = {**asdict(base), "grid": GRID, "n_val": args.n_val, "seeds": args.seeds}
    start = time.monotonic()

    def save() -> None:
        import os
        import platform
        from datetime import date
        out["meta"] = {"date": date.today().isoformat(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "machine": platform.machine(),
                       "load_1min": round(os.getloadavg()[0], 2)}
        out.setdefault("seconds", {})[args.phase] = round(time.monotonic() - start, 1)
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")

    modules = reference_modules()
    if args.phase in ("all", "tune"):
        tune(base, modules, device, args.n_val, out, save, progress=True)
    if args.phase in ("all", "final"):
        measure(base, modules, device, args.seeds, out, save, progress=True)
        fig = figure(out)
        fig.savefig(path.with_suffix(".png"), dpi=110)
        for m, s in out["summary"].items():
            print(f"{m:5s} lr {s['lr']:g}: exact match {s['exact_match']:.1%} "
                  f"(seeds {s['exact_match_min']:.1%}-{s['exact_match_max']:.1%}, "
                  f"±{s['exact_match_ci95']:.1%}), test loss {s['test_loss']:.3f}, "
                  f"stories {s['story_loss']:.3f}")
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
