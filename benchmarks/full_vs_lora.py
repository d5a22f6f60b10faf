"""Full fine-tuning vs LoRA on the embedded model (and a LoRA rank sweep): `make bench-lora`.

    python -m benchmarks.full_vs_lora                 # CPU: ~3 min on 2 idle cores; CUDA if present
    python -m benchmarks.full_vs_lora --steps 200 --ranks 4 16 --out /tmp/x
    python -m benchmarks.full_vs_lora --smoke --out /tmp/x   # seconds, for the tests

Runs course.full_vs_lora.compare with the answer keys (solutions/step4_lora/lora_exercise.py, and
step 2's labels and collator and step 3's training loop from solutions/step2_masking and
solutions/step3_sft) and writes benchmarks/results/full_vs_lora_<cpu|cuda>.json and
four PNGs (loss curves, quality and forgetting, rank sweep, costs), each method at its tuned
learning rate (course.full_vs_lora.TUNED_*). Rerun it whenever the base model changes.
"""
from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

import torch

from course.device import pick_device
from course.full_vs_lora import Comparison, Config, compare, default_config, save
from course.grading import load_reference

RESULTS = Path(__file__).resolve().parent / "results"
SMOKE = dict(steps=3, batch_size=2, eval_every=2, n_val=4, n_test=4, ranks=(1, 2), r=2)


def reference_modules():
    """(lora, masking, sft): the answer keys of steps 4, 2 and 3."""
    return tuple(load_reference(step, name) for step, name in
                 (("step4_lora", "lora_exercise"), ("step2_masking", "masking_exercise"),
                  ("step3_sft", "sft_exercise")))


def run(config: Config, out: Path, progress: bool = True, prefix: str | None = None
        ) -> tuple[Comparison, dict[str, Path]]:
    lora, masking, sft = reference_modules()
    result = compare(lora, masking, sft, config, progress=progress)
    return result, save(result, out, prefix)


def main(argv: list[str] | None = None) -> Comparison:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = {f.name for f in fields(Config)}
    for name in ("steps", "batch_size", "r", "n_test", "threads", "seed"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int)
    for name in ("full_lr", "lora_lr"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=float)
    ap.add_argument("--ranks", type=int, nargs="*", help="rank sweep (none: skip it)")
    ap.add_argument("--smoke", action="store_true", help="a few tiny steps (tests)")
    ap.add_argument("--device", help="force a device (default: cuda if present, else cpu)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--prefix", default=None,
                    help="file names' prefix (default full_vs_lora_<cpu|cuda>)")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if "ranks" in overrides:
        overrides["ranks"] = tuple(overrides["ranks"])
    config = default_config(device, **{**(SMOKE if args.smoke else {}), **overrides})
    if device.type == "cpu" and config.threads is None:
        config = replace(config, threads=min(2, torch.get_num_threads()))
    print(f"full fine-tuning vs LoRA on {device}: {config.label()}")
    result, paths = run(config, args.out, prefix=args.prefix)
    print(result.table())
    print(f"{result.seconds / 60:.1f} min in all")
    for key, path in paths.items():
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
