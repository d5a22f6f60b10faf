"""The untrusted side: a process that imports a learner's module and answers the grader's calls.

Started by `course.sandbox.client.Worker` (through `course.sandbox.jail`), it reads requests on
one pipe and writes answers on another, both on private file descriptors; the learner's prints
go to stderr, never into the protocol. Every answer is plain data built by `wire.encode`: a value,
a handle to an object that stays here, or an exception as its type name and message. After each
request it also reports the tensors the grader sent that the call changed (values, gradients,
requires_grad), so in-place updates (an optimizer step, `loss.backward()`, a merge) reach the
grader's copies.

Nothing here is trusted by the grader: learner code may patch any of it. The grader only ever
reads data from this process (see wire.py), so the worst a hostile module can do here is to answer
wrongly, which costs its own points.
"""
from __future__ import annotations

import builtins
import importlib
import io
import os
import pickle
import struct
import sys
import traceback
import types
from typing import Any

import torch

from course.sandbox import by_hand, rng, wire

_HEADER = struct.Struct("<Q")


# --- tensors, lists and dicts sent by the grader: tracked, answered by reference, synced back ---
class _Tracked:
    def __init__(self) -> None:
        self.by_token: dict[int, Any] = {}
        self.token_of_id: dict[int, int] = {}
        self.baseline: dict[int, tuple] = {}
        # what came with the current request: only these are compared after it (an object the
        # learner keeps and changes in a later call is not synced back)
        self.recent_tensors: dict[int, None] = {}
        self.recent: list[int] = []
        self.recent_objects: list[int] = []

    def add(self, token: int, obj: Any) -> None:
        self.by_token[token] = obj
        self.token_of_id[id(obj)] = token
        if isinstance(obj, torch.Tensor):
            self.recent_tensors[token] = None
            self.baseline[token] = _state(obj)
        elif type(obj) in (list, dict):   # filled after this call: baseline taken by `settle`
            self.recent.append(token)
        else:
            self.recent_objects.append(token)

    def settle(self) -> None:
        """Take the baseline of the containers that came with the request just read."""
        for token in self.recent:
            self.baseline[token] = _shallow(self.by_token[token])

    def token(self, obj: Any) -> int | None:
        token = self.token_of_id.get(id(obj))
        return token if token is not None and self.by_token.get(token) is obj else None

    def changes(self) -> list[tuple]:
        """For each tracked tensor whose data, gradient or requires_grad changed since the last
        report: (token, value-or-None, grad-or-None, grad_is_none, requires_grad); for each
        tracked list or dict whose items changed: ("C", token, its items encoded)."""
        out = []
        for token in self.recent:   # a list or dict is compared only after the call it came with
            obj = self.by_token[token]
            now = _shallow(obj)
            if now != self.baseline[token]:
                out.append(("C", token, _encode(obj, by_reference=False)))
                self.baseline[token] = now
        self.recent = []
        for token in self.recent_objects:
            try:
                out.append(_object_state(token, self.by_token[token]))
            except Exception:  # noqa: BLE001 - an object the learner broke: not synced
                pass
        self.recent_objects = []
        tokens, self.recent_tensors = list(self.recent_tensors), {}
        for token in tokens:
            t = self.by_token[token]
            now = _state(t)
            if now == self.baseline[token]:
                continue
            data_changed = now[:3] != self.baseline[token][:3]
            grad = t.grad
            out.append((token, wire.encode_tensor(t) if data_changed else None,
                        None if grad is None else wire.encode_tensor(grad), grad is None,
                        bool(t.requires_grad)))
            self.baseline[token] = now
        return out

    def rebase(self, token: int) -> None:
        self.baseline[token] = _state(self.by_token[token])


def _state(t: torch.Tensor) -> tuple:
    g = t.grad
    return (t._version, t.data_ptr(), tuple(t.shape),
            None if g is None else (id(g), g._version, g.data_ptr()), t.requires_grad)


def _object_state(token: int, obj: Any) -> tuple:
    """What the grader's copy of a module, optimizer or scheduler needs after a call: a module's
    train/eval flags by submodule name (its tensors are synced as tensors), an optimizer's or a
    scheduler's `state_dict()`."""
    if isinstance(obj, torch.nn.Module):
        return ("M", token, _encode({name: m.training for name, m in obj.named_modules()}))
    return ("O", token, _encode(obj.state_dict()))


def _rebuild_object(token: int, make: Any, args: tuple) -> Any:
    """Unpickling hook for a module, optimizer or scheduler the grader sent (see
    client._Pickler): the same object each time it comes back in one request."""
    obj = make(*args)
    TRACKED.add(token, obj)
    return obj


PINNED: dict[int, Any] = {}   # objects the grader sends once (client._pinned): token -> object


def _pinned_object(token: int, data: bytes | None) -> Any:
    """Unpickling hook for a tokenizer the grader sent (see client._pinned): its state the
    first time, then its token only; the same object every time."""
    if data is not None:
        PINNED[token] = pickle.loads(data)  # noqa: S301 - the grader's own object
    return PINNED[token]


def _shallow(obj: Any) -> tuple:
    """A list's or dict's items, atoms by value and everything else by identity."""
    def atom(v: Any) -> Any:
        return ("v", v) if v is None or type(v) in (bool, int, float, str, bytes) else ("id", id(v))
    if type(obj) is dict:
        return tuple((atom(k), atom(v)) for k, v in obj.items())
    return tuple(atom(v) for v in obj)


TRACKED = _Tracked()


def _rebuild_tracked(token: int, raw: torch.Tensor, is_param: bool, requires_grad: bool,
                     grad: torch.Tensor | None) -> torch.Tensor:
    """Unpickling hook for a tensor the grader sent (see client._Pickler)."""
    if is_param:
        t = torch.nn.Parameter(raw, requires_grad=requires_grad)
    else:
        t = raw
        if requires_grad:
            t.requires_grad_(True)
    if grad is not None:
        t.grad = grad
    TRACKED.add(token, t)
    return t


# --- objects that stay here, named by handles ------------------------------------------------------
class _Registry:
    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}
        self.next = 1

    def register(self, obj: Any) -> tuple:
        key = id(obj)
        hid = self.ids.get(key)
        if hid is None or self.objects.get(hid) is not obj:
            hid, self.next = self.next, self.next + 1
            self.objects[hid], self.ids[key] = obj, hid
        cls = type(obj)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            kind = "exception_class"
            bases = tuple(c.__name__ for c in obj.__mro__
                          if c.__module__ == "builtins" and issubclass(c, BaseException))
        else:
            kind = ("module" if isinstance(obj, types.ModuleType) else
                    "class" if isinstance(obj, type) else
                    "callable" if callable(obj) else "object")
            bases = ()
        name = obj.__qualname__ if isinstance(obj, type) else cls.__qualname__
        module = obj.__module__ if isinstance(obj, type) else cls.__module__
        return (hid, f"{module}.{name}", kind, bases)

    def get(self, hid: int) -> Any:
        return self.objects[hid]


REGISTRY = _Registry()


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "h":
            return REGISTRY.get(pid[1])
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "c":
            # a list or dict of the grader's (client._Pickler): the same object every time
            _, token, kind, items = pid
            known = TRACKED.by_token.get(token)
            if known is not None:   # sent before: the same object, with the grader's items
                if kind == "dict":
                    known.clear()
                    known.update(items)
                else:
                    known[:] = items
                TRACKED.recent.append(token)
                return known
            obj = dict(items) if kind == "dict" else list(items)
            TRACKED.add(token, obj)
            return obj
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


# --- answers with an autograd graph: kept here so the grader can back-propagate through them ---
class _Graphs:
    KEEP = 64   # the newest graphs kept; an older one can no longer be back-propagated

    def __init__(self) -> None:
        self.outputs: dict[int, torch.Tensor] = {}
        self.next = 1

    def register(self, t: torch.Tensor) -> tuple[int, list[int]]:
        gid, self.next = self.next, self.next + 1
        self.outputs[gid] = t
        while len(self.outputs) > self.KEEP:
            self.outputs.pop(next(iter(self.outputs)))
        return gid, _leaf_tokens(t)


def _leaf_tokens(t: torch.Tensor) -> list[int]:
    """Tokens of the grader's tensors that `t` depends on through autograd."""
    tokens, seen, stack = set(), set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        variable = getattr(fn, "variable", None)
        if variable is not None:
            token = TRACKED.token(variable)
            if token is not None:
                tokens.add(token)
        stack.extend(f for f, _ in fn.next_functions)
    return sorted(tokens)


GRAPHS = _Graphs()


def _encode(value: Any, by_reference: bool = True) -> tuple:
    if by_reference:
        return wire.encode(value, REGISTRY.register, TRACKED.token, graph=GRAPHS.register)
    # a tracked container's own items: the container itself by value, its items as usual
    t = type(value)
    if t is dict:
        return ("d", [(_encode(k), _encode(v)) for k, v in value.items()])
    return ("l", [_encode(v) for v in value])


def _op_backward(gid: int, grad: torch.Tensor, tokens: list[int]) -> list:
    """Back-propagate `grad` through the answer `gid`: the learner's own tensors here get their
    `.grad` as usual; the gradient reaching each of the grader's tensors `tokens` is returned
    (and not left in their `.grad`: the grader accumulates it through its own autograd)."""
    out = GRAPHS.outputs.get(gid)
    if out is None:
        raise RuntimeError("this result's graph was released (too many results since it was made)")
    targets = [TRACKED.by_token[t] for t in tokens]
    saved = [(t.grad, None if t.grad is None else t.grad.detach().clone()) for t in targets]
    out.backward(grad, retain_graph=True)
    result = []
    for t, (before_obj, before) in zip(targets, saved):
        after = t.grad
        if after is None:
            result.append(None)
        else:
            result.append(after.detach().clone() - (before if before is not None else 0))
        if before_obj is not None:
            with torch.no_grad():
                before_obj.copy_(before)
        t.grad = before_obj
    for token in tokens:
        TRACKED.rebase(token)
    return result


# --- requests --------------------------------------------------------------------------------
def _op_import(name: str) -> Any:
    return importlib.import_module(name)


def _op_exec(code: str, filename: str, namespace: dict, names: list[str]) -> dict:
    """Run a notebook cell's code (a learner's solution cell) and return the names it set."""
    exec(compile(code, filename, "exec"), namespace)  # noqa: S102 - learner code, sandboxed
    return {n: namespace[n] for n in names if n in namespace}


def _op_isinstance(obj: Any, cls: Any) -> bool:
    return isinstance(obj, cls)


def _value_and_grads(fn: Any, args: tuple, kwargs: dict, wrt: list) -> tuple:
    """fn(*args, **kwargs), then backward of the sum of its output; the output and the
    gradients of `wrt` (tensors or modules' parameters; None where there is none)."""
    out = fn(*args, **kwargs)
    out.sum().backward()
    grads = []
    for item in wrt:
        if isinstance(item, torch.nn.Module):
            grads.append({n: (None if p.grad is None else p.grad.detach().clone())
                          for n, p in item.named_parameters()})
        else:
            grads.append(None if item.grad is None else item.grad.detach().clone())
    return out.detach(), grads


OPS = {
    "import": _op_import,
    "getattr": getattr,
    "setattr": setattr,
    "delattr": delattr,
    "call": lambda fn, args, kwargs: fn(*args, **kwargs),
    "method": lambda obj, name, args, kwargs: getattr(obj, name)(*args, **kwargs),
    "next": next,
    "isinstance": _op_isinstance,
    "exec": _op_exec,
    "value_and_grads": _value_and_grads,
    "backward": _op_backward,
    "release": lambda hids: [REGISTRY.objects.pop(h, None) for h in hids] and None,
}


def _answer(request: bytes) -> bytes:
    try:
        rid, op, args, rng_state = _Unpickler(io.BytesIO(request)).load()
        rng.set_state(rng_state)
    except Exception as err:  # noqa: BLE001 - a request this worker cannot read
        return wire.dumps((-1, ("E", "RequestError", ("Exception",), f"{err}", ""), [], None))
    TRACKED.settle()
    try:
        value = OPS[op](*args)
        answer = ("ok", _encode(value))
    except StopIteration:
        answer = ("E", "StopIteration", ("StopIteration",), "", "")
    except BaseException as err:  # noqa: BLE001 - learner errors are answers, not crashes
        if isinstance(err, (SystemExit, KeyboardInterrupt)) and op == "exit":
            raise
        answer = _exception(err)
    try:
        changes = TRACKED.changes()
    except Exception:  # noqa: BLE001 - a tracked tensor broken by learner code
        changes = []
    try:
        state = _encode(rng.get_state())
    except Exception:  # noqa: BLE001 - generators the learner's code broke
        state = None
    return wire.dumps((rid, answer, changes, state))


def _exception(err: BaseException) -> tuple:
    cls = type(err)
    bases = tuple(c.__name__ for c in cls.__mro__
                  if c.__module__ == "builtins" and issubclass(c, BaseException))
    try:
        message = str(err)
    except Exception:  # noqa: BLE001
        message = f"<{cls.__name__} whose message cannot be shown>"
    tb = "".join(traceback.format_exception(cls, err, err.__traceback__, limit=-8))
    return ("E", f"{cls.__module__}.{cls.__qualname__}", bases, message[:20_000], tb[-8_000:])


def _read(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def serve(fd_in: int, fd_out: int) -> None:
    while True:
        try:
            (size,) = _HEADER.unpack(_read(fd_in, _HEADER.size))
            request = _read(fd_in, size)
        except EOFError:
            return
        _write(fd_out, _answer(request))


def main() -> None:
    # The protocol moves to private descriptors; stdin is closed and stdout joins stderr, so
    # nothing the learner's code prints can be taken for an answer by accident.
    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    sys.path.insert(0, os.getcwd())
    by_hand.install(os.environ.get(by_hand.ENV, ""))
    torch.set_num_threads(1)
    builtins.input = lambda *a, **k: ""  # a stray input() must not wait for a terminal
    serve(fd_in, fd_out)


if __name__ == "__main__":
    # run as the imported module, so the state that unpickling hooks reach (TRACKED, REGISTRY)
    # is the state this loop reads, not a second copy living in __main__
    from course.sandbox import worker as _module
    _module.main()
