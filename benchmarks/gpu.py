"""`make gpu`: the course's GPU finale in one run.

    python -m benchmarks.gpu                   # CUDA: the sweep, then the embedded comparison
    python -m benchmarks.gpu --skip-comparison # the Qwen2.5 sweep only

On a CUDA machine: (a) the Qwen2.5 0.5B / 1.5B / 3B / 7B sweep, full fine-tuning vs LoRA
(benchmarks/gpu_lora_efficiency.py: peak memory measured next to its prediction, step time,
tokens/s, MFU, the largest size each method trains), then (b) step 4's full vs LoRA
comparison of the embedded model with its plots (benchmarks/full_vs_lora.py, the GPU budget).
Both write to benchmarks/results/gpu/<device>/ (course.gpu_results); one failing does not stop
the other. Without CUDA it says so and prints the CPU-side predictions instead (peak memory
per size and recipe, counted under fake tensors: benchmarks/results/gpu/predicted/).
"""
from __future__ import annotations

import argparse
import sys
import traceback

import torch

from course import gpu_results


def predictions() -> str:
    """The committed CPU-side prediction table (markdown), or how to make it."""
    from benchmarks import predict_memory

    path = predict_memory.OUT / f"{predict_memory.STEM}.md"
    if path.exists():
        return path.read_text()
    return f"(no predictions committed: run `python -m benchmarks.predict_memory` -> {path})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-comparison", action="store_true")
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--sweep-args", default="",
                   help="extra arguments for the sweep, e.g. '--sizes 0.5B,1.5B --grad-ckpt'")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA GPU here: nothing is measured. The peak memory of each step, predicted "
              "on this CPU under fake tensors (no GPU involved):\n")
        print(predictions())
        return 0
    name = torch.cuda.get_device_name(0)
    out = gpu_results.device_dir(name)
    print(f"{name}: results go to {out}")
    failures = []
    if not args.skip_sweep:
        try:
            from benchmarks import gpu_lora_efficiency
            gpu_lora_efficiency.main([*args.sweep_args.split(), "--out", str(out)])
        except Exception:  # noqa: BLE001 - the comparison still runs
            traceback.print_exc()
            failures.append("sweep")
    if not args.skip_comparison:
        try:
            from benchmarks import full_vs_lora
            full_vs_lora.main(["--out", str(out), "--prefix", gpu_results.COMPARISON])
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            failures.append("comparison")
    print(f"done; results in {out}" + (f"; failed: {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
