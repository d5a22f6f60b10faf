"""Grading helpers shared by every step.

Visible checks (what a learner runs in the notebook) print one line per thing they checked and,
on failure, raise `CheckFailed` naming the classic mistake the output looks like. Hidden tests
compare the learner's function with the instructor's reference implementation on fixed edge
cases and seeded random cases:

    ref = load_reference("step1_data", "data_exercise")   # solutions/step1_data/data_exercise.py
    compare_with_reference("format_conversation", ex.format_conversation,
                           ref.format_conversation, cases)

`solutions/` is never imported at import time; only `load_reference` reaches it, and it says
clearly what is missing when a copy of the course has no `solutions/` folder.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import os
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, NoReturn, Sequence

from course import REPO_ROOT


def solutions_dir() -> Path:
    """`solutions/` of this checkout, or the folder named by env COURSE_SOLUTIONS."""
    return Path(os.environ.get("COURSE_SOLUTIONS") or REPO_ROOT / "solutions")


# --- the reference implementation ---------------------------------------------------------------
class ReferenceUnavailable(RuntimeError):
    """The instructor's reference (solutions/<step>/<module>.py) is not in this copy."""


_REFERENCES: dict[tuple[str, float], ModuleType] = {}


def load_reference(step: str, module: str) -> ModuleType:
    """Import `solutions/<step>/<module>.py` under a private name (never as `<module>`, so it
    cannot shadow the learner's module of the same name). Cached until the file changes."""
    path = solutions_dir() / step / f"{module}.py"
    if not path.is_file():
        raise ReferenceUnavailable(
            f"The hidden tests compare your functions with the reference in "
            f"solutions/{step}/{module}.py, which is not in this copy of the course "
            f"(looked for {path}). Instructors: grade from a checkout that has solutions/, or "
            f"set COURSE_SOLUTIONS to the folder that holds {step}/. Learners: the visible "
            f"checks above still tell you whether your functions work.")
    key = (str(path), path.stat().st_mtime)
    if key not in _REFERENCES:
        name = f"_course_reference_.{step}.{module}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses and pickling look modules up by name
        spec.loader.exec_module(mod)
        _REFERENCES[key] = mod
    return _REFERENCES[key]


# --- visible checks ------------------------------------------------------------------------------
class CheckFailed(AssertionError):
    """A visible check failed; the message says what was checked and which mistake it looks like."""


def short(value: Any, limit: int = 160) -> str:
    """`repr` cut to `limit` characters, keeping both ends."""
    text = repr(value)
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def first_difference(got: str, expected: str, context: int = 30) -> str:
    """Where two strings first differ, shown with a little context on both sides."""
    i = next((k for k, (a, b) in enumerate(zip(got, expected)) if a != b),
             min(len(got), len(expected)))
    lo = max(0, i - context)
    return (f"first difference at character {i}:\n"
            f"      expected ...{expected[lo:i + context]!r}\n"
            f"      got      ...{got[lo:i + context]!r}")


def passed(what: str) -> None:
    print(f"\N{CHECK MARK} {what}")


def fail(what: str, mistake: str | None = None, got: Any = None, expected: Any = None,
         detail: str | None = None) -> NoReturn:
    """Raise CheckFailed: `what` was checked, `mistake` is the classic error it looks like."""
    lines = [f"\N{BALLOT X} {what}"]
    if mistake:
        lines.append(f"  Looks like: {mistake}")
    if detail:
        lines.append(f"  {detail}")
    elif got is not None or expected is not None:
        if isinstance(got, str) and isinstance(expected, str):
            lines.append("  " + first_difference(got, expected))
        else:
            lines.append(f"  expected: {short(expected)}")
            lines.append(f"  got:      {short(got)}")
    raise CheckFailed("\n".join(lines))


def call(fn: Callable, *args: Any, what: str, **kwargs: Any) -> Any:
    """Call the learner's function; an exception other than an unfinished TODO becomes a
    CheckFailed that names the call (the TODO's NotImplementedError passes through as is)."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 - any learner error is reported, not hidden
        fail(f"{what}: raised {type(err).__name__}: {err}",
             detail=f"called with {short(args)}")


# --- hidden tests --------------------------------------------------------------------------------
class HiddenTestFailure(AssertionError):
    """A hidden test failed. The first line of the message is public (it survives the feedback
    redaction); the rest names the failing cases and is shown only to instructors."""

    def __init__(self, public: str, details: str = ""):
        super().__init__(f"{public}\n{details}" if details else public)
        self.public = public


class HiddenReport:
    """Soft assertions for one hidden test (the hidden checks of steps 3 and 4): `expect(ok, kind, detail)`; `case(label)` turns an
    exception into a failure; `finish()` raises HiddenTestFailure if anything failed."""

    def __init__(self, grade: str):
        self.grade, self.label, self.checked = grade, "", 0
        self.failures: list[tuple[str, str]] = []

    def expect(self, ok: bool, kind: str, detail: str = "") -> bool:
        self.checked += 1
        if not ok:
            self.failures.append((kind, f"[{self.label}] {kind}: {detail}"))
        return bool(ok)

    @contextlib.contextmanager
    def case(self, label: str) -> Iterator[None]:
        self.label = label
        try:
            yield
        except NotImplementedError:
            raise  # an unfinished TODO: the notebook shows its hint
        except Exception as err:  # noqa: BLE001 - any learner error is a failed case
            self.checked += 1
            kind = f"raised {type(err).__name__} ({label})"
            self.failures.append((kind, f"[{label}] raised {type(err).__name__}: {err}"))

    def finish(self) -> None:
        if self.failures:
            kinds = list(dict.fromkeys(k for k, _ in self.failures))
            public = (f"{self.grade}: {len(self.failures)} of {self.checked} hidden checks "
                      f"failed; failing kinds: {', '.join(kinds[:6])}"
                      f"{' ...' if len(kinds) > 6 else ''}")
            raise HiddenTestFailure(public, "\n".join(f"  {d}" for _, d in self.failures[:8]))
        print(f"{self.grade}: all {self.checked} hidden checks pass")


def compare_with_reference(name: str, learner: Callable, reference: Callable,
                           cases: Sequence[tuple[str, tuple, dict]],
                           equal: Callable[[Any, Any], bool] | None = None,
                           show: int = 3) -> None:
    """Run `learner` and `reference` on every case `(kind, args, kwargs)` (each on its own deep
    copy of the arguments) and raise HiddenTestFailure if any result differs or the learner
    raises. `kind` is a short public description such as "alpaca record without input"."""
    equal = equal or (lambda a, b: a == b)
    failures = []
    for kind, args, kwargs in cases:
        expected = reference(*_fresh(args), **_fresh(kwargs))
        try:
            got = learner(*_fresh(args), **_fresh(kwargs))
        except NotImplementedError:
            raise  # an unfinished TODO: the notebook shows its hint
        except Exception as err:  # noqa: BLE001
            got, ok = f"raised {type(err).__name__}: {err}", False
        else:
            ok = equal(got, expected)
        if not ok:
            failures.append((kind, args, kwargs, expected, got))
    if failures:
        kinds = sorted({f[0] for f in failures})
        public = (f"{name}: {len(failures)} of {len(cases)} hidden cases differ from the "
                  f"reference; failing kinds: {', '.join(kinds)}")
        details = "\n".join(
            f"  [{kind}] args={short(args, 300)} kwargs={short(kwargs)}\n"
            f"      expected {short(expected, 300)}\n      got      {short(got, 300)}"
            for kind, args, kwargs, expected, got in failures[:show])
        raise HiddenTestFailure(public, details)
    print(f"{name}: all {len(cases)} hidden cases agree with the reference")


def _fresh(value: Any) -> Any:
    """A deep copy of plain data (so neither side sees the other's mutations); other objects,
    such as a tokenizer, are passed as they are."""
    if isinstance(value, dict):
        return type(value)((k, _fresh(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_fresh(v) for v in value)
    return copy.deepcopy(value) if isinstance(value, (set, bytearray)) else value


@contextlib.contextmanager
def patched(module: ModuleType, **attrs: Any) -> Iterator[None]:
    """Temporarily replace module attributes, e.g. to test one function with the reference
    versions of the functions it calls (so one bug costs points in one test only)."""
    missing = object()
    old = {k: getattr(module, k, missing) for k in attrs}
    for k, v in attrs.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is missing:
                delattr(module, k)
            else:
                setattr(module, k, v)


@contextlib.contextmanager
def injected(ex: Any, module: str, **attrs: Any) -> Iterator[None]:
    """Temporarily replace attributes of `module` (e.g. "torch") where the learner's code in
    `ex` runs: in this process, or, when `ex` lives in a grading worker (course.sandbox), in
    that worker only, e.g. to simulate a crash inside the learner's function."""
    from course.sandbox.client import remote_handle
    if remote_handle(ex) is None:
        with patched(importlib.import_module(module), **attrs):
            yield
        return
    target = ex._worker_of().module(module)
    old = {k: getattr(target, k) for k in attrs}
    for k, v in attrs.items():
        setattr(target, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(target, k, v)


def beside(ex: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` run where the learner's code in `ex` runs: here, or, when `ex`
    lives in a grading worker (course.sandbox), in that worker. There an object `fn` returns
    that is not plain data (a model, a layer) stays in the worker and is used here through a
    proxy, so the learner's functions can change it in place; `fn` and the objects it changes
    are the course's, never the reference's. What `fn` returns is the worker's answer: checks
    compare it with what they compute here."""
    from course.sandbox.client import remote_handle
    if remote_handle(ex) is None:
        return fn(*args, **kwargs)
    return ex._worker_of().request("call", fn, args, kwargs)


# --- seeded random data for hidden tests ---------------------------------------------------------
WORDS = ("Tom", "Mira", "park", "ball", "found", "a", "red", "kite", "went", "to", "the",
         "happy", "Who", "is", "Ünï", "🙂", "3", "feathers", "###", "Input:", "yes", "no")
SPACES = ("", " ", "  ", "\n", "\n\n", "\t")


def random_text(rng: random.Random, min_words: int = 1, max_words: int = 12,
                edge_spaces: bool = True) -> str:
    """A short non-blank text; sometimes with newlines inside or spaces around it."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))]
    text = "".join(w + rng.choice((" ", " ", " ", "\n", ", ")) for w in words).strip()
    if edge_spaces and rng.random() < 0.2:
        text = rng.choice(SPACES[1:]) + text + rng.choice(SPACES)
    return text


def random_conversation(rng: random.Random, max_exchanges: int = 3, system: float = 0.4
                        ) -> list[dict]:
    """A valid conversation: an optional system turn, then 1..max_exchanges user/assistant pairs."""
    turns = [{"role": "system", "content": random_text(rng)}] if rng.random() < system else []
    for _ in range(rng.randint(1, max_exchanges)):
        turns.append({"role": "user", "content": random_text(rng)})
        turns.append({"role": "assistant", "content": random_text(rng, max_words=6)})
    return turns
