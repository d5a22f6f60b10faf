"""What crosses from an untrusted worker to the grader: plain data, never code.

The worker (learner code runs there) answers with a tree of tagged tuples built only from
`None`, `bool`, `int`, `float`, `str`, `bytes`, `list`, `tuple`, `dict`, `set` and `frozenset`.
The grader reads it with `loads`, a pickle reader that refuses every global (so no class can be
built and no function called while reading, whatever bytes arrive) and then `decode`s the tree,
checking every node. A tensor arrives as its dtype, shape and raw bytes and is rebuilt here; an
object that is not data (a learner's class instance, a function, a model) arrives as a handle that
the grader can only use through the worker.

The other direction (grader -> worker) is ordinary pickling: the worker is untrusted anyway.
"""
from __future__ import annotations

import io
import math
import pathlib
import pickle
from dataclasses import dataclass
from typing import Any, Callable

import torch

MAX_DEPTH = 64          # nesting of one answer
MAX_ITEMS = 5_000_000   # elements of one container

# dtypes that may cross (by name); anything else is refused
DTYPES = {str(d): d for d in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128)}


class WireError(ValueError):
    """An answer from the worker that is not well-formed data."""


@dataclass(frozen=True)
class Handle:
    """A reference to an object that lives in the worker (`id` in its registry)."""

    id: int
    type_name: str       # "module.QualName" of the object's class, as the worker reports it
    kind: str            # "object", "callable", "class", "exception_class", "module"
    bases: tuple[str, ...] = ()   # built-in exception bases, for exception classes


@dataclass(frozen=True)
class TensorRef:
    """A tensor the grader sent to the worker, answered by reference (its token), not by value."""

    token: int


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D102 - refuse everything
        raise WireError(f"refused to load {module}.{name}: answers carry data only")


def loads(data: bytes) -> Any:
    """Read a pickle that may hold only built-in containers and scalars."""
    return _NoGlobals(io.BytesIO(data)).load()


def dumps(tree: Any) -> bytes:
    return pickle.dumps(tree, protocol=5)


# --- worker side: value -> tree ------------------------------------------------------------------
def encode_tensor(t: torch.Tensor) -> tuple:
    t = t.detach().to("cpu").contiguous()
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return ("T", str(t.dtype), tuple(t.shape), raw)


def encode(value: Any, register: Callable[[Any], tuple], token_of: Callable[[Any], int | None],
           depth: int = 0, graph: Callable[[torch.Tensor], tuple | None] | None = None) -> tuple:
    """`value` as a tagged tree; objects that are not data become handles via `register`;
    tensors, lists and dicts the grader sent (`token_of` knows them) become references; a tensor
    with an autograd graph becomes ("G", graph id, tokens it depends on, tensor) when `graph`
    registers it, so the grader can back-propagate through it (see client._RemoteGraph)."""
    if depth > MAX_DEPTH:
        raise WireError("answer nested too deeply")
    t = type(value)
    if value is None or t in (bool, int, float, str, bytes):
        return ("v", value)
    if t is complex:
        return ("c", value.real, value.imag)
    token = token_of(value)     # something the grader sent: answered by reference
    if token is not None:
        return ("R", token)

    def inner(v: Any) -> tuple:
        return encode(v, register, token_of, depth + 1, graph)

    if isinstance(value, torch.Tensor) and t in (torch.Tensor, torch.nn.Parameter):
        linked = graph(value) if graph is not None and value.grad_fn is not None else None
        if linked is not None:
            return ("G", linked[0], list(linked[1]), encode_tensor(value))
        return encode_tensor(value) + (t is torch.nn.Parameter, bool(value.requires_grad))
    if t in (list, tuple, set, frozenset):
        tag = {list: "l", tuple: "t", set: "s", frozenset: "f"}[t]
        return (tag, [inner(v) for v in value])
    if t is dict or _plain_mapping(value):
        return ("d", [(inner(k), inner(v)) for k, v in value.items()])
    if isinstance(value, torch.dtype):
        return ("D", str(value))
    if isinstance(value, pathlib.PurePath):
        return ("P", str(value))
    if isinstance(value, torch.device):
        return ("V", str(value))
    if isinstance(value, torch.Size):
        return ("Z", list(value))
    return ("H",) + register(value)


def _plain_mapping(value: Any) -> bool:
    """OrderedDict, and transformers' BatchEncoding / ModelOutput: read as a dict of their items."""
    import collections
    if isinstance(value, collections.OrderedDict) and type(value).__module__ in (
            "collections", "transformers.utils.generic", "transformers.modeling_outputs"):
        return True
    return type(value).__name__ == "BatchEncoding" and type(value).__module__.startswith(
        "transformers.")


# --- grader side: tree -> value ------------------------------------------------------------------
def decode(tree: Any, resolve_ref: Callable[[int], Any], make_handle: Callable[[Handle], Any],
           depth: int = 0, make_graph: Callable[[int, list, torch.Tensor], Any] | None = None
           ) -> Any:
    """Check and rebuild a tree made by `encode`. Raises WireError on anything malformed."""
    if depth > MAX_DEPTH:
        raise WireError("answer nested too deeply")
    if type(tree) is not tuple or not tree or type(tree[0]) is not str:
        raise WireError(f"malformed node {type(tree).__name__}")
    tag = tree[0]
    if tag == "v" and len(tree) == 2 and (tree[1] is None or type(tree[1]) in (
            bool, int, float, str, bytes)):
        return tree[1]
    if tag == "c" and len(tree) == 3 and all(type(x) is float for x in tree[1:]):
        return complex(tree[1], tree[2])
    if tag in ("l", "t", "s", "f") and len(tree) == 2 and type(tree[1]) is list:
        if len(tree[1]) > MAX_ITEMS:
            raise WireError("container too large")
        items = [decode(v, resolve_ref, make_handle, depth + 1, make_graph) for v in tree[1]]
        return {"l": list, "t": tuple, "s": set, "f": frozenset}[tag](items)
    if tag == "d" and len(tree) == 2 and type(tree[1]) is list:
        out = {}
        for pair in tree[1]:
            if type(pair) is not tuple or len(pair) != 2:
                raise WireError("malformed dict item")
            out[decode(pair[0], resolve_ref, make_handle, depth + 1, make_graph)] = decode(
                pair[1], resolve_ref, make_handle, depth + 1, make_graph)
        return out
    if tag == "T" and len(tree) in (4, 6):
        return _tensor(tree)
    if tag == "G" and len(tree) == 4 and type(tree[1]) is int and type(tree[2]) is list and \
            all(type(x) is int for x in tree[2]) and type(tree[3]) is tuple and \
            len(tree[3]) == 4:
        value = _tensor(tree[3])
        return make_graph(tree[1], tree[2], value) if make_graph is not None else value
    if tag == "R" and len(tree) == 2 and type(tree[1]) is int:
        return resolve_ref(tree[1])
    if tag == "P" and len(tree) == 2 and type(tree[1]) is str:
        return pathlib.Path(tree[1])
    if tag == "D" and len(tree) == 2 and tree[1] in DTYPES:
        return DTYPES[tree[1]]
    if tag == "V" and len(tree) == 2 and type(tree[1]) is str and tree[1].split(":")[0] in (
            "cpu", "cuda", "meta"):
        return torch.device(tree[1])
    if tag == "Z" and len(tree) == 2 and type(tree[1]) is list and all(
            type(x) is int and x >= 0 for x in tree[1]):
        return torch.Size(tree[1])
    if tag == "H" and len(tree) == 5 and type(tree[1]) is int and type(tree[2]) is str and \
            tree[3] in ("object", "callable", "class", "exception_class", "module") and \
            type(tree[4]) is tuple and all(type(b) is str for b in tree[4]):
        return make_handle(Handle(tree[1], tree[2], tree[3], tree[4]))
    raise WireError(f"malformed node with tag {tag!r}")


def _tensor(tree: tuple) -> torch.Tensor:
    _, dtype_name, shape, raw = tree[:4]
    if dtype_name not in DTYPES or type(shape) is not tuple or type(raw) is not bytes or not all(
            type(x) is int and x >= 0 for x in shape):
        raise WireError("malformed tensor")
    dtype = DTYPES[dtype_name]
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) != numel * itemsize:
        raise WireError(f"tensor of shape {shape} and dtype {dtype_name} with {len(raw)} bytes")
    if numel == 0:
        t = torch.empty(shape, dtype=dtype)
    else:
        t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
    if len(tree) == 6:
        is_param, requires_grad = tree[4], tree[5]
        if type(is_param) is not bool or type(requires_grad) is not bool:
            raise WireError("malformed tensor flags")
        if is_param:
            return torch.nn.Parameter(t, requires_grad=requires_grad)
        if requires_grad and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
    return t
