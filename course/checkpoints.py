"""Checkpoint plumbing of a training run: random-number states, reading a checkpoint file back,
and checking that it belongs to this model and configuration. (What a checkpoint holds and how
it is written and restored is step 3's exercise: `save_checkpoint` / `load_checkpoint`.)
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"  # the file name in a run's output_dir
BEST_WEIGHTS = "best.pt"  # the best evaluation's weights, with early stopping (course/sft_loop.py)


class CheckpointMismatchError(ValueError):
    """A checkpoint written by a different model or configuration."""


def fsync_path(path: str | Path) -> None:
    """Ask the operating system to put `path` (a file, or a folder's list of names) on disk now.

    A rename (`os.replace`) is atomic: after a *process* crash the file is the old one or the new
    one, whole. After a *power loss* that is only true for data the OS has written: fsync the
    temporary file before the rename and its folder after it. Folders cannot be opened on
    Windows; there this does nothing for them."""
    path = Path(path)
    if path.is_dir() and os.name == "nt":
        return
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a run uses (Python, NumPy, torch, CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """The model's architecture as a checkpoint records it: parameter names and shapes."""
    return {name: list(p.shape) for name, p in model.state_dict().items()}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict `save_checkpoint` wrote; a clear error when the file is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - a truncated file raises several kinds of error
        raise CheckpointMismatchError(f"{path}: not a readable checkpoint ({err})") from err


def check_compatible(state: dict[str, Any], model: torch.nn.Module,
                     expect: dict[str, Any] | None, path: str | Path = "checkpoint") -> None:
    """Raise CheckpointMismatchError, naming what differs, unless the checkpoint `state` was
    written for this model (same parameter names and shapes) and for the config fingerprint
    `expect` (None: not checked)."""
    ours = model_fingerprint(model)
    theirs = {name: list(t.shape) for name, t in state.get("model", {}).items()}
    if ours != theirs:
        diff = sorted(set(ours) ^ set(theirs)) or [k for k in ours if ours[k] != theirs[k]]
        raise CheckpointMismatchError(
            f"{path} was written for a different model (parameters differ: "
            f"{', '.join(diff[:4])}{' ...' if len(diff) > 4 else ''})")
    saved = state.get("extra", {}).get("config")
    if expect is not None and saved is not None and saved != expect:
        diff = [f"{k}: checkpoint {saved.get(k)!r}, now {expect.get(k)!r}"
                for k in sorted(set(saved) | set(expect)) if saved.get(k) != expect.get(k)]
        raise CheckpointMismatchError(f"{path} was written with a different config "
                                      f"({'; '.join(diff)}); use a new output_dir or the same "
                                      f"settings to resume")
