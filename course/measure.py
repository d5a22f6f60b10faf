"""What a training run costs, measured: bytes of tensors, peak memory, step times, and the mean
loss per trained token. Used by `course.full_vs_lora`; nothing here trains.

Memory is read two ways:
- accounted, device-independent: bytes of the tensors training needs, counted exactly
  (`tensor_bytes`, `optimizer_state_bytes`, `activation_bytes`: what autograd saves for backward,
  seen through `torch.autograd.graph.saved_tensors_hooks`);
- measured (`PeakMemory`): on CUDA, `torch.cuda.max_memory_allocated()` growth; on Linux CPUs,
  the growth of the process's peak resident memory (VmHWM, reset through /proc/self/clear_refs
  after `malloc_trim`) — allocator caching makes this coarse, so read it as an order of
  magnitude.
Step time (`StepTimer`): wall-clock time between consecutive optimizer steps (CUDA synchronised);
`median_step_seconds` leaves out the first step (allocation, warm-up).
"""
from __future__ import annotations

import contextlib
import ctypes
import statistics
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch

Batch = dict[str, torch.Tensor]


# --- bytes of tensors ---------------------------------------------------------------------------
def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of distinct tensors (a tensor listed twice, e.g. tied weights, counts once)."""
    seen = {}
    for t in tensors:
        seen.setdefault(id(t), t.numel() * t.element_size())
    return sum(seen.values())


def state_bytes(state: dict) -> int:
    """Bytes of the per-parameter tensors in an optimizer's state dict ({param: {name: tensor}});
    scalars (AdamW's `step`) left out."""
    return tensor_bytes(v for per_param in state.values() for v in per_param.values()
                        if torch.is_tensor(v) and v.dim() > 0)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors the optimizer keeps per parameter (AdamW: exp_avg, exp_avg_sq)."""
    return state_bytes(optimizer.state)


def activation_bytes(model: torch.nn.Module, batch: Batch) -> int:
    """Bytes autograd saves for backward during one forward pass with `batch` (each storage
    once; parameters, which are there anyway, not counted)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    was_training = model.training
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    del loss
    model.train(was_training)
    return sum(saved.values())


def checkpoint_bytes(folder: Path) -> int:
    """Bytes of every file under `folder` (a saved checkpoint or adapter)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


# --- peak memory --------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory growth during a block: CUDA allocator peak, or the process's peak RSS on
    Linux (see the module docstring). `.bytes` is None where neither can be read."""

    def __init__(self, device: torch.device):
        self.device, self.bytes, self.how = device, None, "unavailable"
        self.peak = None  # CUDA: torch.cuda.max_memory_allocated() itself (weights included)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start = _reset_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            self.bytes = self.peak - self.start
            self.how = "torch.cuda.max_memory_allocated growth"
        elif self.start is not None:
            peak = _status_kib("VmHWM")
            self.bytes = None if peak is None else max(0, peak * 1024 - self.start)
            self.how = "peak RSS growth (VmHWM)"


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> int | None:
    """Give freed heap back to the OS, reset the peak RSS to the current RSS; return it (bytes)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return None if rss is None else rss * 1024


# --- time ---------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer:
    """`start()` before training, `tick()` after each optimizer step; `.seconds`: the time of
    each step (CUDA synchronised)."""

    def __init__(self, device: torch.device):
        self.device, self.ticks = device, []

    def start(self) -> None:
        sync(self.device)
        self.ticks = [time.perf_counter()]

    def tick(self, *_) -> None:
        sync(self.device)
        self.ticks.append(time.perf_counter())

    @property
    def seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.ticks, self.ticks[1:])]


def median_step_seconds(seconds: Sequence[float]) -> float:
    """Median step time, the first step left out (allocation, warm-up); steps that also ran a
    validation pass are outliers the median ignores."""
    return statistics.median(list(seconds[1:]) or list(seconds) or [0.0])


# --- loss ---------------------------------------------------------------------------------------
@torch.no_grad()
def mean_token_loss(model: torch.nn.Module, batches: Sequence[Batch]) -> float:
    """Mean cross-entropy per trained token (label != -100) over `batches` (model left in its
    mode)."""
    was_training = model.training
    model.eval()
    total = tokens = 0.0
    for batch in batches:
        n = (batch["labels"][:, 1:] != -100).sum().item()
        if n:
            total += model(**batch).loss.float().item() * n
            tokens += n
    model.train(was_training)
    return total / max(tokens, 1)


@contextlib.contextmanager
def no_progress_bars():
    """transformers' own progress bars off inside the block (weights loading, saving)."""
    from transformers.utils import logging as hf_logging
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
