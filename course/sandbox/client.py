"""The grader's side of the sandbox: a worker process holding a learner's module, and proxies.

    with Worker(folder) as worker:                 # python -m course.sandbox.worker, jailed
        ex = worker.module("masking_exercise")     # a proxy: ex.f(...) runs in the worker
        ex.labels_for_conversation(messages, tokenizer)   # arguments go by value, answers as data

Everything the worker answers is read by `wire.loads` (no globals) and checked by `wire.decode`;
an object that is not data stays in the worker and is used here through a `RemoteObject`
(attribute access, calls, iteration, `isinstance(x, ex.SomeClass)`). A learner exception comes
back as the same built-in exception type (or a local stand-in class for the learner's own
exception classes) with its message; `NotImplementedError` stays `NotImplementedError`, so an
unfinished TODO is recognised. Tensors sent to the worker are tracked: what the call changed in
them (values, `.grad`, `requires_grad`) is copied back here, so `train_step(model, optimizer, ...)`
updates the grader's model and optimizer as it would in one process. A tokenizer goes by value
once per worker and is then named by reference while its state is unchanged: the learner's code
gets the same tokenizer object in every call, as in a notebook (and a change it makes to it stays
in the worker).
"""
from __future__ import annotations

import builtins
import hashlib
import io
import os
import select
import signal
import struct
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Sequence

import cloudpickle
import torch

from course.sandbox import rng, wire
from course.sandbox.wire import Handle, WireError

_HEADER = struct.Struct("<Q")
SHORTCUT_USED = "course.sandbox.by_hand.ShortcutUsed"
REFERENCE_PREFIX = "_course_reference_"   # course.grading.load_reference's module names
# objects of the grader's whose state a call may change, synced back after it
SYNCED_TYPES = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
_LAZY_ROWS = ("LazyBatch", "LazyRow")   # datasets' views of a table, sent as plain dicts
_PINNED: dict[type, bool] = {}   # type -> sent once per worker (see _pinned)


def _pinned(cls: type) -> bool:
    """Whether objects of `cls` are sent once per worker: tokenizers (large, many internal
    dicts that tracking would walk on every call, and read-only to the exercises)."""
    pinned = _PINNED.get(cls)
    if pinned is None:
        base = getattr(sys.modules.get("transformers"), "PreTrainedTokenizerBase", None)
        pinned = _PINNED[cls] = base is not None and issubclass(cls, base)
    return pinned


class WorkerError(RuntimeError):
    """The worker died, timed out or broke the protocol; the message says which."""


class WorkerTimeout(WorkerError):
    """One request ran past its time limit; the worker was stopped."""


class RemoteError(Exception):
    """Base of the local stand-ins for exception classes defined in learner code."""

    remote_traceback = ""


_EXCEPTION_CLASSES: dict[tuple[str, tuple[str, ...]], type] = {}


def exception_class(type_name: str, bases: Sequence[str]) -> type:
    """The exception class to raise here for a worker exception of `type_name`: the built-in
    class itself for built-ins, else a stand-in deriving from the built-in bases it reported."""
    module, _, name = type_name.rpartition(".")
    builtin = getattr(builtins, name, None)
    if module == "builtins" and isinstance(builtin, type) and issubclass(builtin, BaseException):
        return builtin
    key = (type_name, tuple(bases))
    if key not in _EXCEPTION_CLASSES:
        chain = [getattr(builtins, b) for b in bases
                 if isinstance(getattr(builtins, b, None), type)
                 and issubclass(getattr(builtins, b), Exception) and b != "Exception"]
        chain = [c for c in chain if not any(o is not c and issubclass(o, c) for o in chain)]
        _EXCEPTION_CLASSES[key] = type(name or "RemoteError", (RemoteError, *chain),
                                       {"__module__": f"remote.{module}"})
    return _EXCEPTION_CLASSES[key]


class _Pickler(cloudpickle.Pickler):
    """Pickles a request: handles by id, tensors tracked (see worker._rebuild_tracked), the
    reference's functions by value (one function at a time: never a whole reference module)."""

    def __init__(self, file, worker: "Worker", own: Sequence[Any] = ()):
        super().__init__(file, protocol=5)
        self.worker = worker
        self.raw: list[torch.Tensor] = []
        self.raw_ids: set[int] = set()
        self.own = {id(o) for o in own}     # containers of the request itself: not tracked

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if t is RemoteObject:
            return ("h", object.__getattribute__(obj, "_handle").id)
        if (t is dict or t is list) and id(obj) not in self.own:
            # the grader's lists and dicts keep their identity in the worker and come back as
            # the same objects (with what the worker changed in them): see worker._Tracked
            items = tuple(obj.items()) if t is dict else tuple(obj)
            self.raw.append(items)     # keep alive while pickling
            return ("c", self.worker._token(obj), t.__name__, items)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if type(obj).__name__ in _LAZY_ROWS and type(obj).__module__.startswith("datasets."):
            # a batch or row of `datasets.map`: its columns, not the whole Arrow table it views
            return dict, (dict(obj.items()),)
        if _pinned(type(obj)):
            from course.sandbox import worker as worker_module
            return worker_module._pinned_object, self.worker._pin(obj)
        if isinstance(obj, torch.Tensor) and type(obj) in (torch.Tensor, torch.nn.Parameter) \
                and id(obj) not in self.raw_ids:
            raw = obj.detach()
            grad = obj.grad.detach() if obj.is_leaf and obj.grad is not None else None
            for t in (raw, grad):
                if t is not None:
                    self.raw.append(t)
                    self.raw_ids.add(id(t))
            token = self.worker._token(obj)
            from course.sandbox import worker as worker_module
            return (worker_module._rebuild_tracked,
                    (token, raw, type(obj) is torch.nn.Parameter, bool(obj.requires_grad), grad))
        cls = obj if isinstance(obj, type) else type(obj)
        if not isinstance(obj, type) and isinstance(obj, SYNCED_TYPES) and not \
                getattr(cls, "__module__", "").startswith(REFERENCE_PREFIX):
            # synced back after each call (see worker._object_state)
            from course.sandbox import worker as worker_module
            rv = obj.__reduce_ex__(5)
            return (worker_module._rebuild_object, (self.worker._token(obj), rv[0], rv[1]),
                    *rv[2:])
        if getattr(cls, "__module__", "").startswith(REFERENCE_PREFIX):
            raise WorkerError(f"refusing to send the reference's {cls.__qualname__} to learner "
                              "code (only single reference functions may be sent)")
        return super().reducer_override(obj)


class _GraphInfo:
    def __init__(self, worker: "Worker", gid: int, tokens: list[int], value: torch.Tensor):
        self.worker, self.gid, self.tokens, self.value = worker, gid, tokens, value


class _RemoteGraph(torch.autograd.Function):
    """Autograd node standing for a graph that lives in the worker: backward asks the worker to
    back-propagate and returns the gradients reaching the grader's tensors."""

    @staticmethod
    def forward(ctx, info: _GraphInfo, *inputs: torch.Tensor) -> torch.Tensor:
        ctx.info = info
        ctx.shapes = [(x.shape, x.dtype) for x in inputs]
        return info.value

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        info = ctx.info
        grads = info.worker.request("backward", info.gid, grad.detach(), info.tokens)
        if type(grads) is not list or len(grads) != len(ctx.shapes):
            raise WorkerError("malformed gradients from the worker")
        out = []
        for g, (shape, dtype) in zip(grads, ctx.shapes):
            if g is not None and (not isinstance(g, torch.Tensor) or g.shape != shape):
                raise WorkerError("gradient of the wrong shape from the worker")
            out.append(None if g is None else g.to(dtype))
        return (None, *out)


def _register_reference_modules() -> None:
    """Reference modules are not importable in the worker: their functions go by value."""
    for name, module in list(sys.modules.items()):
        if name.startswith(REFERENCE_PREFIX) and name not in cloudpickle.list_registry_pickle_by_value():
            cloudpickle.register_pickle_by_value(module)


class RemoteObject:
    """An object that lives in the worker. Attribute access, calls, item access, iteration,
    len, bool, str/repr and comparisons are forwarded; `isinstance(x, remote_class)` works."""

    __slots__ = ("_worker", "_handle", "__weakref__")

    def __init__(self, worker: "Worker", handle: Handle):
        object.__setattr__(self, "_worker", worker)
        object.__setattr__(self, "_handle", handle)

    def _ask(self, op: str, *args: Any) -> Any:
        return object.__getattribute__(self, "_worker").request(op, self, *args)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._ask("getattr", name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._ask("setattr", name, value)

    def __delattr__(self, name: str) -> None:
        self._ask("delattr", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask("call", args, kwargs)

    def _method(self, name: str, *args: Any) -> Any:
        return self._ask("method", name, args, {})

    def __iter__(self):
        iterator = self._method("__iter__")
        worker = object.__getattribute__(self, "_worker")
        while True:
            try:
                yield worker.request("next", iterator)
            except StopIteration:
                return

    def __len__(self) -> int:
        return self._method("__len__")

    def __getitem__(self, key: Any) -> Any:
        return self._method("__getitem__", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._method("__setitem__", key, value)

    def __contains__(self, item: Any) -> bool:
        return bool(self._method("__contains__", item))

    def __bool__(self) -> bool:
        return bool(object.__getattribute__(self, "_worker").request(
            "call", builtins.bool, (self,), {}))

    def __repr__(self) -> str:
        return str(object.__getattribute__(self, "_worker").request(
            "call", builtins.repr, (self,), {}))

    def __str__(self) -> str:
        return str(object.__getattribute__(self, "_worker").request(
            "call", builtins.str, (self,), {}))

    def __eq__(self, other: Any) -> Any:
        if type(other) is RemoteObject and object.__getattribute__(other, "_handle").id == \
                object.__getattribute__(self, "_handle").id:
            return True
        return self._method("__eq__", other)

    def __ne__(self, other: Any) -> Any:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("remote", object.__getattribute__(self, "_handle").id))

    @property
    def __class__(self) -> type:  # noqa: D401 - read by isinstance() as a fallback
        """For an object of one of torch.nn's own classes (as the worker reports it), that class
        here, so `isinstance(layer.lora_dropout, nn.Dropout)` reads as it would in one process.
        Like every answer from the worker this is the learner's claim, checked by behaviour
        elsewhere; any other object is a RemoteObject."""
        return _torch_class(object.__getattribute__(self, "_handle")) or RemoteObject

    def __instancecheck__(self, obj: Any) -> bool:
        return bool(self._worker_of().request("isinstance", obj, self))

    def __subclasscheck__(self, cls: Any) -> bool:
        return bool(self._worker_of().request("call", builtins.issubclass, (cls, self), {}))

    def _worker_of(self) -> "Worker":
        return object.__getattribute__(self, "_worker")


def _torch_class(handle: Handle) -> type | None:
    """torch.nn's class named by `handle` (an instance's type name), or None."""
    module, _, name = handle.type_name.rpartition(".")
    if handle.kind not in ("object", "callable") or not module.startswith("torch.nn.modules."):
        return None
    cls = getattr(sys.modules.get(module), name, None)
    return cls if isinstance(cls, type) and issubclass(cls, torch.nn.Module) else None


def remote_handle(obj: Any) -> Handle | None:
    """The handle of a RemoteObject, or None for local objects."""
    return object.__getattribute__(obj, "_handle") if type(obj) is RemoteObject else None


class Worker:
    """One worker process for one submission folder (see the module docstring).

    `timeout` bounds each request (seconds); a request that runs past it stops the worker and
    raises WorkerTimeout. `jail` runs the worker through `course.sandbox.jail` (no access to the
    course's solutions, a read-only course, a private /tmp, its own process namespace)."""

    def __init__(self, folder: str | os.PathLike, timeout: float = 120.0, jail: bool = True,
                 log: str | os.PathLike | None = None, env: dict[str, str] | None = None):
        from course.sandbox.jail import jailed_command, worker_environment

        _register_reference_modules()
        self.folder = Path(folder)
        self.timeout = timeout
        self._next_rid = 0
        self._tokens: dict[int, int] = {}
        self._sent: dict[int, torch.Tensor] = {}
        self._pins: dict[bytes, int] = {}   # digest of a pinned object's state -> its token
        self.shortcuts: list[str] = []       # messages of the library shortcuts learner code took
        self._proxies: "weakref.WeakValueDictionary[int, RemoteObject]" = \
            weakref.WeakValueDictionary()
        self._log = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        command = [sys.executable, "-m", "course.sandbox.worker"]
        if jail:
            command = jailed_command(command, writable=[self.folder])
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            cwd=self.folder, env=env if env is not None else worker_environment(),
            start_new_session=True)
        self.started = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker and everything it started (its whole process group)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                stream.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    # -- requests -------------------------------------------------------------------------------
    def module(self, name: str) -> RemoteObject:
        """Import the learner's module `name` in the worker (its code runs there, not here)."""
        return self.request("import", name)

    def request(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        """Send one request; return its decoded answer or raise the learner's exception."""
        if not self.alive:
            raise WorkerError(f"the worker is not running (exit code {self.process.returncode})")
        self._next_rid += 1
        rid = self._next_rid
        buffer = io.BytesIO()
        own = [a for a in args if type(a) is dict] if op in ("call", "method", "value_and_grads") \
            else []
        _Pickler(buffer, self, own).dump((rid, op, args, rng.get_state()))
        data = buffer.getvalue()
        try:
            self.process.stdin.write(_HEADER.pack(len(data)) + data)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as err:
            raise WorkerError(f"the worker stopped reading requests ({err})") from None
        answer = self._receive(timeout if timeout is not None else self.timeout)
        try:
            got_rid, result, changes, rng_state = wire.loads(answer)
        except Exception as err:  # noqa: BLE001 - anything unreadable is a protocol error
            raise WorkerError(f"unreadable answer from the worker: {err}") from None
        if got_rid != rid:
            raise WorkerError(f"answer to request {got_rid} where {rid} was expected")
        self._apply(changes)
        try:
            rng.set_state(self._decode(rng_state))
        except (TypeError, ValueError, RuntimeError) as err:
            raise WorkerError(f"malformed RNG state from the worker: {err}") from None
        return self._result(result)

    def _receive(self, timeout: float) -> bytes:
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        header = self._read_exact(fd, _HEADER.size, deadline)
        (size,) = _HEADER.unpack(header)
        if size > 1 << 31:
            raise WorkerError(f"answer of {size} bytes refused")
        return self._read_exact(fd, size, deadline)

    def _read_exact(self, fd: int, n: int, deadline: float) -> bytes:
        chunks, left = [], n
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                self.close()
                raise WorkerTimeout(f"no answer within {self.timeout:g} s; the worker was stopped")
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                code = self.process.wait()
                raise WorkerError(f"the worker exited (code {code}) before answering")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _result(self, result: Any) -> Any:
        if type(result) is not tuple or not result:
            raise WorkerError("malformed answer")
        if result[0] == "ok" and len(result) == 2:
            return self._decode(result[1])
        if result[0] == "E" and len(result) == 5 and all(type(x) is str for x in result[1:2]) \
                and type(result[2]) is tuple and all(type(x) is str for x in result[3:]):
            _, type_name, bases, message, tb = result
            if type_name == SHORTCUT_USED:   # kept so the verdict can say why (by_hand.py)
                self.shortcuts.append(message)
            cls = exception_class(type_name, bases)
            try:
                err = cls(message)
            except Exception:  # noqa: BLE001 - built-ins with other signatures
                err = RemoteError(f"{type_name}: {message}")
            err.remote_traceback = tb
            raise err
        raise WorkerError("malformed answer")

    def _decode(self, tree: Any) -> Any:
        try:
            return wire.decode(tree, self._resolve_token, self._proxy, make_graph=self._graph)
        except WireError as err:
            raise WorkerError(f"malformed answer from the worker: {err}") from None

    def _proxy(self, handle: Handle) -> Any:
        if handle.kind == "exception_class":
            return exception_class(handle.type_name, handle.bases)
        proxy = self._proxies.get(handle.id)
        if proxy is None:
            proxy = RemoteObject(self, handle)
            self._proxies[handle.id] = proxy
        return proxy

    # -- tensors sent by value, synced back ------------------------------------------------------
    def _token(self, tensor: torch.Tensor) -> int:
        token = self._tokens.get(id(tensor))
        if token is None or self._sent.get(token) is not tensor:
            token = len(self._sent) + 1
            self._tokens[id(tensor)] = token
            self._sent[token] = tensor
        return token

    def _pin(self, obj: Any) -> tuple[int, bytes | None]:
        """(token, state) of a pinned object: its pickled state the first time the worker sees
        this state, None after that (the worker reuses its copy)."""
        data = cloudpickle.dumps(obj, protocol=5)
        digest = hashlib.blake2b(data, digest_size=16).digest()
        token = self._pins.get(digest)
        if token is not None:
            return token, None
        token = self._pins[digest] = len(self._pins) + 1
        return token, data

    def _graph(self, gid: int, tokens: list[int], value: torch.Tensor) -> torch.Tensor:
        """An answer with an autograd graph in the worker: connected here to the grader's tensors
        it depends on, so `.backward()` reaches them (and the learner's tensors in the worker)."""
        inputs = [(t, self._sent[t]) for t in tokens
                  if isinstance(self._sent.get(t), torch.Tensor) and self._sent[t].requires_grad]
        if not inputs:
            return value
        info = _GraphInfo(self, gid, [t for t, _ in inputs], value)
        return _RemoteGraph.apply(info, *[x for _, x in inputs])

    def _resolve_token(self, token: int) -> torch.Tensor:
        if token not in self._sent:
            raise WireError(f"unknown tensor reference {token}")
        return self._sent[token]

    def _apply(self, changes: Any) -> None:
        if type(changes) is not list:
            raise WorkerError("malformed tensor updates")
        for change in changes:
            if type(change) is tuple and len(change) == 3 and change[0] == "C":
                self._apply_container(change[1], change[2])
                continue
            if type(change) is tuple and len(change) == 3 and change[0] in ("M", "O"):
                self._apply_object(change[0], change[1], change[2])
                continue
            if type(change) is not tuple or len(change) != 5 or change[0] not in self._sent:
                raise WorkerError("malformed tensor update")
            token, value, grad, grad_is_none, requires_grad = change
            t = self._sent[token]
            with torch.no_grad():
                if value is not None:
                    new = wire._tensor(value)
                    if new.shape == t.shape and new.dtype == t.dtype:
                        t.copy_(new)
                    else:
                        t.data = new
                if grad_is_none is True:
                    t.grad = None
                elif grad is not None:
                    g = wire._tensor(grad)
                    t.grad = g if g.shape == t.shape and g.dtype == t.dtype else None
            if type(requires_grad) is bool and t.is_leaf and t.requires_grad != requires_grad \
                    and (t.is_floating_point() or t.is_complex()):
                t.requires_grad_(requires_grad)

    def _apply_container(self, token: Any, tree: Any) -> None:
        obj = self._sent.get(token) if type(token) is int else None
        if type(obj) not in (dict, list):
            raise WorkerError("malformed container update")
        items = self._decode(tree)
        if type(obj) is dict and type(items) is dict:
            obj.clear()
            obj.update(items)
        elif type(obj) is list and type(items) is list:
            obj[:] = items
        else:
            raise WorkerError("malformed container update")

    def _apply_object(self, kind: str, token: Any, tree: Any) -> None:
        obj = self._sent.get(token) if type(token) is int else None
        state = self._decode(tree)
        if kind == "M" and isinstance(obj, torch.nn.Module) and type(state) is dict:
            for name, module in obj.named_modules():
                if type(state.get(name)) is bool:
                    module.training = state[name]
        elif kind == "O" and isinstance(obj, (torch.optim.Optimizer,
                                              torch.optim.lr_scheduler.LRScheduler)) \
                and type(state) is dict:
            try:
                obj.load_state_dict(state)
            except Exception as err:  # noqa: BLE001 - a state the learner's code broke
                raise WorkerError(f"unusable {type(obj).__name__} state from the worker: "
                                  f"{err}") from None
        else:
            raise WorkerError("malformed object update")

    # -- helpers for checks ----------------------------------------------------------------------
    def value_and_grads(self, fn: Any, args: tuple, kwargs: dict, wrt: list) -> tuple:
        """Run `fn(*args, **kwargs)` in the worker, back-propagate the sum of its output, and
        return (output, gradients of each item of `wrt`): tensors, or modules (a dict of their
        parameters' gradients by name)."""
        return self.request("value_and_grads", fn, args, kwargs, wrt)

    def exec_cell(self, code: str, filename: str, namespace: dict, names: Sequence[str]) -> dict:
        """Run a learner's notebook cell in the worker with `namespace` (sent by value) and
        return the values of `names` it set."""
        return self.request("exec", code, filename, namespace, list(names))
