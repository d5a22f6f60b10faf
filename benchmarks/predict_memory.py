"""Predicted peak GPU memory of one training step, Qwen2.5 0.5B-7B, full fine-tuning vs LoRA,
worked out on a CPU: the analytic estimate (`course.memory.estimate_peak`) next to the same step
counted under fake tensors (`course.memory.fake_peak`), and whether it fits an 80 GiB or a
141 GiB card.

    python -m benchmarks.predict_memory            # ~2 min on 2 cores -> results/gpu/predicted/
    python -m benchmarks.predict_memory --print    # the committed table, nothing recomputed

Writes memory_predicted.json, memory_predicted.md and memory_predicted.png (its title says
"predicted on CPU"). Batch 2 x 2048 tokens, every position after the first supervised (the
a common LoRA recipe; random tokens), LoRA r 64, alpha 128 on every linear layer but the head.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

import torch
from tqdm.auto import tqdm

from course import memory
from course.recipe import QWEN25, Recipe, bf16_update_stall, qwen_config

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = REPO_ROOT / "benchmarks" / "results" / "gpu" / "predicted"
STEM = "memory_predicted"
CARDS_GIB = (80.0, 141.0)
BATCH, SEQ_LEN = 2, 2048
RECIPES: dict[str, Recipe] = {
    "full": Recipe("full"),
    "full, grad ckpt": Recipe("full", grad_ckpt=True),
    "full, pure bf16": Recipe("full", precision="bf16"),
    "lora": Recipe("lora"),
    "lora, grad ckpt": Recipe("lora", grad_ckpt=True),
    "lora, dropout 0.05": Recipe("lora", lora_dropout=0.05),
}


def course_inject_lora():
    """Step 4's reference inject_lora (solutions/step4_lora/lora_exercise.py)."""
    from course.grading import load_reference

    return load_reference("step4_lora", "lora_exercise").inject_lora


def predict(sizes: list[str], recipes: dict[str, Recipe], fake: bool = True) -> list[dict]:
    """One row per (size, recipe): estimate and (when `fake`) fake-tensor peak, in GiB."""
    inject = course_inject_lora()
    rows = []
    jobs = [(size, name) for size in sizes for name in recipes]
    for size, name in tqdm(jobs, desc="predicting (fake tensors)"):
        config, recipe = qwen_config(size), recipes[name]
        est = memory.estimate_peak(config, recipe, BATCH, SEQ_LEN)
        row = {"size": size, "recipe": name, "settings": recipe.to_dict(),
               "estimate_gib": est["total"] / memory.GIB, "busiest": est["busiest"],
               "estimate": est}
        if fake:
            peak = memory.fake_peak(config, recipe, BATCH, SEQ_LEN, inject_lora=inject)["peak"]
            row["fake_peak_gib"] = peak / memory.GIB
            row["estimate_over_fake"] = est["total"] / peak
        for card in CARDS_GIB:
            row[f"fits_{card:g}"] = row["estimate_gib"] <= card
        rows.append(row)
    return rows


def lora_over_full(rows: list[dict]) -> dict[str, dict[str, float]]:
    """LoRA peak / full peak per size, without and with gradient checkpointing."""
    by = {(r["size"], r["recipe"]): r["estimate_gib"] for r in rows}
    out = {}
    for size in dict.fromkeys(r["size"] for r in rows):
        out[size] = {"no checkpointing": by[size, "lora"] / by[size, "full"],
                     "grad ckpt": by[size, "lora, grad ckpt"] / by[size, "full, grad ckpt"]}
    return out


def markdown(report: dict) -> str:
    lines = [f"# Peak GPU memory of one training step, predicted on CPU ({report['date']})", "",
             f"Batch {BATCH} x {SEQ_LEN} tokens, AdamW, bf16 autocast with fp32 master weights "
             "unless \"pure bf16\"; LoRA r 64 on every linear layer but the head, adapters fp32; "
             "sparse chunked output-layer loss. *estimate*: `course.memory.estimate_peak`; "
             "*fake tensors*: the same step run under `FakeTensorMode`, live bytes followed "
             "storage by storage (`python -m benchmarks.predict_memory`). No GPU measured these.",
             "", "| size | recipe | estimate (GiB) | fake tensors (GiB) | fits 80 GiB | "
             "fits 141 GiB |", "|---|---|---:|---:|:-:|:-:|"]
    for r in report["rows"]:
        fake = f"{r['fake_peak_gib']:.1f}" if "fake_peak_gib" in r else "-"
        lines.append(f"| {r['size']} | {r['recipe']} | {r['estimate_gib']:.1f} | {fake} | "
                     f"{'yes' if r['fits_80'] else 'no'} | {'yes' if r['fits_141'] else 'no'} |")
    lines += ["", "LoRA peak / full peak:", "", "| size | no checkpointing | grad ckpt |",
              "|---|---:|---:|"]
    for size, ratio in report["lora_over_full"].items():
        lines.append(f"| {size} | {ratio['no checkpointing']:.2f} | {ratio['grad ckpt']:.2f} |")
    stall = report["bf16_update_stall"]
    lines += ["", f"Why \"pure bf16\" is only an option: {stall['steps']} AdamW steps at lr "
              f"{stall['lr']:g} change {stall['changed_bf16']:.1%} of bf16 weights (init N(0, "
              f"0.02)), {stall['changed_fp32_master']:.1%} of fp32 master weights "
              "(`course.recipe.bf16_update_stall`)."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(r["size"] for r in report["rows"]))
    names = list(dict.fromkeys(r["recipe"] for r in report["rows"]))
    by = {(r["size"], r["recipe"]): r["estimate_gib"] for r in report["rows"]}
    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(sizes))]
        ax.bar(xs, [by[s, name] for s in sizes], width, label=name)
    for card, style in zip(CARDS_GIB, ("--", ":")):
        ax.axhline(card, color="gray", linestyle=style, label=f"{card:g} GiB card")
    ax.set_xticks(range(len(sizes)), [f"Qwen2.5-{s}" for s in sizes])
    ax.set_ylabel("peak memory of a training step (GiB)")
    ax.set_title(f"Full fine-tuning vs LoRA: peak memory predicted on CPU (no GPU measured), "
                 f"batch {BATCH} x {SEQ_LEN}", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(QWEN25))
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--no-fake", action="store_true", help="the estimate only (instant)")
    p.add_argument("--print", action="store_true", help="print the committed table and exit")
    args = p.parse_args(argv)
    if args.print:
        md = args.out / f"{STEM}.md"
        print(md.read_text() if md.exists() else f"not computed yet: {md}")
        return {}
    rows = predict(args.sizes.split(","), RECIPES, fake=not args.no_fake)
    report = {"date": date.today().isoformat(), "what": "predicted on CPU",
              "batch_size": BATCH, "seq_len": SEQ_LEN, "cards_gib": list(CARDS_GIB),
              "versions": {"torch": torch.__version__, "python": platform.python_version()},
              "rows": rows, "lora_over_full": lora_over_full(rows),
              "bf16_update_stall": bf16_update_stall()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{STEM}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / f"{STEM}.md").write_text(markdown(report))
    plot(report, args.out / f"{STEM}.png")
    print(markdown(report))
    print(f"wrote {args.out}/{STEM}.{{json,md,png}}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
