"""The random number generators' state, as plain data, so that one call in the worker draws the
same numbers it would draw in the grader's process (dropout masks, shuffles, a resumed run's RNG).

The grader sends its state with every request; the worker adopts it, runs the call and answers
with its state afterwards, which the grader adopts in turn: torch's CPU generator, Python's
`random` and NumPy's legacy global generator.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def get_state() -> tuple:
    """(torch CPU state as a uint8 tensor, Python's state, NumPy's state as plain data)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return (torch.get_rng_state(), random.getstate(),
            (str(kind), key.astype(np.uint32).tobytes(), int(pos), int(has_gauss), float(gauss)))


def set_state(state: Any) -> None:
    """Adopt a state made by `get_state` (raises ValueError/TypeError on anything else)."""
    torch_state, py_state, np_state = state
    if not isinstance(torch_state, torch.Tensor) or torch_state.dtype != torch.uint8:
        raise TypeError("torch RNG state must be a uint8 tensor")
    kind, key, pos, has_gauss, gauss = np_state
    if kind != "MT19937" or type(key) is not bytes or len(key) != 624 * 4:
        raise ValueError("malformed NumPy RNG state")
    torch.set_rng_state(torch_state)
    random.setstate(_tuples(py_state))
    np.random.set_state((kind, np.frombuffer(key, dtype=np.uint32).copy(), pos, has_gauss,
                         gauss))


def _tuples(value: Any) -> Any:
    """random.setstate wants tuples where the wire may give lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
