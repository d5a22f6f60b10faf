"""By hand means by hand: the graded runs of a hand-written exercise cannot take the library
shortcut it is proven equal to.

Step 1's `format_conversation` must equal `tokenizer.apply_chat_template`, step 3's pieces what
the HF `Trainer` does, step 4's `LoRALinear` peft's layer. A submission that simply calls the
library would pass those comparisons without teaching anything, so the grading worker of a step
(`course.sandbox.worker`, told the step by COURSE_BY_HAND) installs that step's guards before
it imports the learner's module: the shortcut raises `ShortcutUsed`, whose message names the
learner's function and what to do ("format_conversation calls apply_chat_template: write the
template by hand"). Only the tests that run the shortcut lose their points, with that reason.
The learner's own kernel is not touched: the notebook's comparison cells still use the library.

Guards are installed when the library module is first imported (a post-import hook), so a worker
that never needs it does not pay for importing it.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable

ENV = "COURSE_BY_HAND"


class ShortcutUsed(Exception):
    """Learner code called the library its exercise is to be written without."""


@dataclass(frozen=True)
class Shortcut:
    name: str      # what the learner's code called, as the message says it
    hint: str      # what to do instead


SHORTCUTS: dict[str, tuple[Shortcut, ...]] = {
    "step1_data": (Shortcut("apply_chat_template", "write the template by hand"),),
    "step3_sft": (Shortcut("the HF Trainer", "write the training loop by hand"),),
    "step4_lora": (Shortcut("peft", "write LoRALinear and its helpers by hand (peft is for "
                                    "the notebook's comparison cells)"),),
}


def _learner_function() -> str:
    """The innermost function of the learner's folder (the worker's working folder) on the
    stack: the one that took the shortcut."""
    folder = os.getcwd() + os.sep
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith(folder):
            name = frame.f_code.co_name
            return "your module" if name == "<module>" else name
        frame = frame.f_back
    return "your code"


def refuse(shortcut: Shortcut) -> None:
    """Raise ShortcutUsed for `shortcut`, naming the learner's function."""
    raise ShortcutUsed(f"{_learner_function()} calls {shortcut.name}: {shortcut.hint}")


def _guard(shortcut: Shortcut) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        refuse(shortcut)
    guarded.__name__ = f"no_{shortcut.name.replace(' ', '_')}"
    return guarded


class _Forbidden:
    """Stands for anything taken from a forbidden package: using it raises ShortcutUsed."""

    def __init__(self, shortcut: Shortcut):
        object.__setattr__(self, "_shortcut", shortcut)

    def __getattr__(self, name: str) -> "_Forbidden":
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        refuse(object.__getattribute__(self, "_shortcut"))

    def __mro_entries__(self, bases: tuple) -> tuple:
        refuse(object.__getattribute__(self, "_shortcut"))


class _ForbiddenModule(types.ModuleType):
    def __init__(self, name: str, shortcut: Shortcut):
        super().__init__(name)
        self.__path__ = []   # a package: its submodules are forbidden too
        self._shortcut = shortcut

    def __getattr__(self, name: str) -> _Forbidden:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Forbidden(self._shortcut)


class _Hooks(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Forbidden packages import as stand-ins; patched modules get their guard after import."""

    def __init__(self) -> None:
        self.forbidden: dict[str, Shortcut] = {}
        self.patches: dict[str, Callable[[types.ModuleType], None]] = {}

    def find_spec(self, fullname, path, target=None):
        top = fullname.partition(".")[0]
        if top in self.forbidden:
            return importlib.machinery.ModuleSpec(fullname, self)
        if fullname in self.patches:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None and spec.loader is not None:
                    spec.loader = _Patching(spec.loader, self.patches[fullname])
                    return spec
        return None

    def create_module(self, spec):
        return _ForbiddenModule(spec.name, self.forbidden[spec.name.partition(".")[0]])

    def exec_module(self, module):
        pass


class _Patching(importlib.abc.Loader):
    def __init__(self, loader, patch: Callable[[types.ModuleType], None]):
        self.loader, self.patch = loader, patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.patch(module)


def _no_chat_template(module: types.ModuleType) -> None:
    module.PreTrainedTokenizerBase.apply_chat_template = _guard(SHORTCUTS["step1_data"][0])


def _no_trainer(module: types.ModuleType) -> None:
    module.Trainer.__init__ = _guard(SHORTCUTS["step3_sft"][0])


def install(step: str) -> None:
    """Install `step`'s guards in this process (the grading worker), before learner code runs."""
    if step not in SHORTCUTS:
        return
    hooks = _Hooks()
    if step == "step1_data":
        hooks.patches["transformers.tokenization_utils_base"] = _no_chat_template
    elif step == "step3_sft":
        hooks.patches["transformers.trainer"] = _no_trainer
    elif step == "step4_lora":
        hooks.forbidden["peft"] = SHORTCUTS[step][0]
    for name, patch in hooks.patches.items():   # already imported: patch now
        if name in sys.modules:
            patch(sys.modules[name])
    for name in [n for n in sys.modules if n.partition(".")[0] in hooks.forbidden]:
        del sys.modules[name]
    sys.meta_path.insert(0, hooks)
