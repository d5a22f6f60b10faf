"""The learner's functions as pluggable pieces of course machinery.

A course driver (`course.sft_loop.train`, `course.lora_io.save_adapter`, ...) receives an
exercise module, or the dict of its globals, and looks each function up at the moment it calls
it: so whatever is bound in the module at that time (the learner's code, or a reference
function patched in by the grader) is what runs.
"""
from __future__ import annotations

from typing import Any, Mapping


class Pieces:
    """Attribute access to a module or a dict of globals, looked up on every use."""

    def __init__(self, source: Any):
        self._source = source._source if isinstance(source, Pieces) else source

    def __getattr__(self, name: str) -> Any:
        source = self.__dict__["_source"]
        if isinstance(source, Mapping):
            try:
                return source[name]
            except KeyError:
                raise AttributeError(f"the exercise module has no {name!r}") from None
        return getattr(source, name)
