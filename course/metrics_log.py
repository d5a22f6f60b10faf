"""A training run's metrics: one JSON object per line in `output_dir/metrics.jsonl` (and
TensorBoard scalars in `output_dir/tensorboard`, shown in the notebook by
`course.tensorboard_view.show`).

    log = MetricsLog(output_dir)              # resume_step=N keeps the lines up to step N
    log.log({"step": 10, "split": "train", "loss": 1.23})
    records = read_metrics(output_dir)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"   # the event files' folder, next to metrics.jsonl


class MetricsLog:
    """Appends one JSON object per line to `folder/metrics.jsonl` (and to TensorBoard when
    it is installed). Only an enabled log writes (process 0 of a distributed run)."""

    def __init__(self, folder: str | Path, enabled: bool = True, resume_step: int | None = None):
        self.path = Path(folder) / METRICS
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")
        elif self.path.exists():  # drop what was logged after the checkpoint we resume from
            lines = [ln for ln in self.path.read_text(encoding="utf-8").splitlines()
                     if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        events = self.path.parent / TENSORBOARD
        if resume_step is None:  # a fresh run: an earlier run's curves would be drawn over it
            for old in events.glob("events.out.tfevents.*"):
                old.unlink()
        # resumed: TensorBoard drops what an earlier writer logged after the checkpoint's step
        self.writer = SummaryWriter(str(events), purge_step=None if resume_step is None
                                    else resume_step + 1)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(f"{record.get('split', 'train')}/{key}", value,
                                           record.get("step", 0))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(folder: str | Path) -> list[dict[str, Any]]:
    """The records of `folder/metrics.jsonl`, in order."""
    path = Path(folder) / METRICS
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
