"""By hand means by hand: the graded runs of a hand-written exercise cannot take the library
shortcut it is proven equal to.

Step 1's `format_conversation` must equal `tokenizer.apply_chat_template`, step 3's pieces what
the HF `Trainer` does, step 4's `LoRALinear` peft's layer. A submission that simply calls the
library would pass those comparisons without teaching anything, so the grading worker of a step
(`course.sandbox.worker`, told the step by COURSE_BY_HAND) guards that step's library before it
imports the learner's module: called while a function of the learner's folder (the worker's
working folder) is on the stack, the shortcut raises `ShortcutUsed`, whose message names that
function and what to do ("format_conversation calls apply_chat_template: write the template by
hand"). Only the tests that run the shortcut lose their points, with that reason. The course's
own code in the worker (a probe building a peft model to hand to the learner's function) is not
affected, and neither is the learner's notebook, whose comparison cells use the library; its
visible check of `format_conversation` runs inside `forbidding("step1_data")`, so the learner
meets the message before grading does.

Guards are installed when the library module is first imported (a post-import hook), so a worker
that never needs it does not pay for importing it. They stop the plain shortcut, not a learner
set on hiding it (a call from a thread of its own, say); the comparison with the library still
holds either way.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.abc
import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator

ENV = "COURSE_BY_HAND"


class ShortcutUsed(Exception):
    """Learner code called the library its exercise is to be written without."""


@dataclass(frozen=True)
class Shortcut:
    module: str                # the library module whose import installs the guards
    targets: tuple[str, ...]   # "Class.method" or "function" names in it (and its submodules)
    name: str                  # what the learner's code called, as the message says it
    hint: str                  # what to do instead


SHORTCUTS: dict[str, Shortcut] = {
    "step1_data": Shortcut("transformers.tokenization_utils_base",
                           ("PreTrainedTokenizerBase.apply_chat_template",),
                           "apply_chat_template", "write the template by hand"),
    "step3_sft": Shortcut("transformers.trainer", ("Trainer.__init__",),
                          "the HF Trainer", "write the training loop by hand"),
    "step4_lora": Shortcut("peft", ("tuners.lora.layer.LoraLayer.__init__",
                                    "tuners.tuners_utils.BaseTuner.__init__",
                                    "peft_model.PeftModel.__init__", "get_peft_model",
                                    "mapping.inject_adapter_in_model"),
                           "peft", "write LoRALinear and its helpers by hand (peft is for the "
                                   "notebook's comparison cells)"),
}


def learner_function() -> str | None:
    """The innermost function of the learner's folder (the working folder) on the stack, or
    None when no learner code is running."""
    folder = os.getcwd() + os.sep
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith(folder):
            name = frame.f_code.co_name
            return "your module" if name == "<module>" else name
        frame = frame.f_back
    return None


def _guard(original: Callable[..., Any], shortcut: Shortcut) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        who = learner_function()
        if who is not None:
            raise ShortcutUsed(f"{who} calls {shortcut.name}: {shortcut.hint}")
        return original(*args, **kwargs)
    guarded.__course_guard__ = original
    return guarded


def _resolve(module: types.ModuleType, target: str) -> tuple[Any, str]:
    """(owner, attribute) of a dotted `target` inside `module`."""
    *path, attr = target.split(".")
    owner: Any = module
    for part in path:
        owner = getattr(owner, part, None) or sys.modules.get(f"{owner.__name__}.{part}")
    return owner, attr


def guard(module: types.ModuleType, shortcut: Shortcut) -> list[tuple[Any, str, Any]]:
    """Replace `shortcut`'s targets in `module` by guards; returns what to put back."""
    undo = []
    for target in shortcut.targets:
        owner, attr = _resolve(module, target)
        original = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr)
        if original is None or hasattr(original, "__course_guard__"):
            continue
        setattr(owner, attr, _guard(original, shortcut))
        undo.append((owner, attr, original))
        if not isinstance(owner, type):   # re-exported functions: the package's name too
            for other in list(sys.modules.values()):
                if other is not owner and getattr(other, attr, None) is original and \
                        getattr(other, "__name__", "").startswith(shortcut.module):
                    setattr(other, attr, owner.__dict__[attr])
                    undo.append((other, attr, original))
    return undo


class _AfterImport(importlib.abc.MetaPathFinder):
    """Guards a module the moment its import finishes."""

    def __init__(self, shortcut: Shortcut):
        self.shortcut = shortcut

    def find_spec(self, fullname, path, target=None):
        if fullname != self.shortcut.module:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                loader, shortcut = spec.loader, self.shortcut

                class Guarding(importlib.abc.Loader):
                    def create_module(self, spec):
                        return loader.create_module(spec)

                    def exec_module(self, module):
                        loader.exec_module(module)
                        guard(module, shortcut)
                spec.loader = Guarding()
                return spec
        return None


def install(step: str) -> None:
    """Guard `step`'s shortcut in this process (the grading worker), before learner code runs."""
    shortcut = SHORTCUTS.get(step)
    if shortcut is None:
        return
    if shortcut.module in sys.modules:
        guard(sys.modules[shortcut.module], shortcut)
    else:
        sys.meta_path.insert(0, _AfterImport(shortcut))


@contextlib.contextmanager
def forbidding(step: str) -> Iterator[None]:
    """`step`'s guards for the length of a with-block, in this process (a visible check
    calling the learner's function in the notebook), if its library is already imported."""
    shortcut = SHORTCUTS.get(step)
    module = sys.modules.get(shortcut.module) if shortcut else None
    undo = guard(module, shortcut) if module is not None else []
    try:
        yield
    finally:
        for owner, attr, original in reversed(undo):
            setattr(owner, attr, original)
