"""Where results measured on a GPU live, and how to read them back.

    benchmarks/results/gpu/<device>/       one folder per card (`device_slug` of its name)
        sweep.json, sweep.jsonl, sweep.png          Qwen2.5 sizes, full vs LoRA (`make gpu`)
        full_vs_lora.json, full_vs_lora_*.png       the embedded model's comparison on the card
    benchmarks/results/gpu/predicted/      the CPU-side predictions (no GPU involved)

`find()` lists the device folders that hold results; step 4's notebook prints them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from course import REPO_ROOT

GPU_RESULTS = REPO_ROOT / "benchmarks" / "results" / "gpu"
PREDICTED = "predicted"
SWEEP = "sweep"
COMPARISON = "full_vs_lora"


def device_slug(name: str) -> str:
    """A folder name for a device name: "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "unknown"


def device_dir(name: str, root: Path | None = None) -> Path:
    """The folder of a device's results (not created)."""
    return (root or GPU_RESULTS) / device_slug(name)


@dataclass
class DeviceResults:
    """What one card's folder holds."""

    folder: Path
    sweep: dict | None          # sweep.json, when present
    comparison: Path | None     # full_vs_lora.json, when present

    @property
    def device(self) -> str:
        if self.sweep:
            return self.sweep.get("device", {}).get("name", self.folder.name)
        return self.folder.name

    def summary(self) -> str:
        """A few lines: the card, each size's peak memory and MFU, the largest model per
        method."""
        where = (self.folder.relative_to(REPO_ROOT) if self.folder.is_relative_to(REPO_ROOT)
                 else self.folder)
        lines = [f"{self.device} ({where})"]
        if self.sweep:
            for r in self.sweep.get("results", []):
                if r.get("fits"):
                    mfu, peak = r.get("mfu"), r.get("peak_memory_gib")
                    measured = "-" if peak is None else f"{peak:.1f} GiB"
                    lines.append(
                        f"  {r['size']:>5} {r['method']:<4} peak {measured} "
                        f"(predicted {r['predicted_gib']:.1f}), {r['tokens_per_s']:,.0f} tok/s"
                        + (f", MFU {mfu:.0%}" if mfu is not None else ""))
                else:
                    lines.append(f"  {r['size']:>5} {r['method']:<4} "
                                 f"{r.get('error') or r.get('skipped') or 'did not run'}")
            lines.append(f"  largest that trains: {self.sweep.get('largest_fitting')}")
        if self.comparison:
            lines.append(f"  embedded model, full vs LoRA: {self.comparison.name}")
        return "\n".join(lines)


def find(root: Path | None = None) -> list[DeviceResults]:
    """Every device folder under `root` (default benchmarks/results/gpu) with a sweep or a
    comparison in it, sorted by name; the CPU predictions' folder is not one."""
    root = root or GPU_RESULTS
    found = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir() and p.name != PREDICTED):
        sweep_path = folder / f"{SWEEP}.json"
        comparison = folder / f"{COMPARISON}.json"
        sweep = json.loads(sweep_path.read_text()) if sweep_path.exists() else None
        if sweep or comparison.exists():
            found.append(DeviceResults(folder, sweep,
                                       comparison if comparison.exists() else None))
    return found
