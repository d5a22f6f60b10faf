"""The course that grades must be the course that was released: a content check around every
submission.

Submissions run jailed (read-only course, no answer key), so none can write the files grading
reads. This is the second line: `Pristine` records the content of `course/`, the answer key and
the course root's release (by SHA-256, with a copy of every file) before the first submission of a
batch, and `check()` after each one. A changed, added or removed file is put back from the copy
before the next submission runs, and the submission that changed it fails on its own: no other
grade can depend on what it wrote.

Where submissions run jailed, the course is read-only to them, so a change can only come from
someone else (an author editing while a batch runs): it is logged, not undone, and no submission
is blamed. Without a jail, changes are put back and blamed. COURSE_INTEGRITY=restore, report or
off chooses explicitly.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}


def _files(root: Path) -> list[Path]:
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        out += [Path(folder) / n for n in sorted(names) if not n.endswith(".pyc")]
    return out


def default_mode() -> str:
    """restore where submissions could write the course (no jail on this machine); report where
    the jail makes it read-only to them, so a change can only come from someone else (an author
    editing while a batch runs), whose work must not be undone."""
    from course.sandbox.jail import isolation
    return "restore" if isolation() == "none" else "report"


@dataclass
class Pristine:
    """Content of the folders grading reads, kept to detect and undo writes."""

    roots: list[Path]
    content: dict[Path, bytes] = field(default_factory=dict)
    digests: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def record(cls, roots: list[Path]) -> "Pristine":
        state = cls([Path(r).resolve() for r in roots if Path(r).is_dir()])
        for root in state.roots:
            for path in _files(root):
                data = path.read_bytes()
                state.content[path] = data
                state.digests[path] = hashlib.sha256(data).hexdigest()
        return state

    @staticmethod
    def blames() -> bool:
        """Whether a change found by `check` is the submission's doing (restore mode)."""
        return (os.environ.get("COURSE_INTEGRITY") or default_mode()) == "restore"

    def check(self) -> list[str]:
        """Paths changed, added or removed since `record` (each put back as it was; with
        COURSE_INTEGRITY=report, kept and taken as the new baseline)."""
        mode = os.environ.get("COURSE_INTEGRITY") or default_mode()
        if mode == "off":
            return []
        if mode == "report":
            changed = self._changed()
            fresh = Pristine.record(self.roots)
            self.content, self.digests = fresh.content, fresh.digests
            return changed
        changed = self._changed()
        for path in changed:
            self._restore(Path(path))
        return changed

    def _changed(self) -> list[str]:
        changed = []
        seen = set()
        for root in self.roots:
            for path in _files(root):
                seen.add(path)
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError:
                    digest = None
                if self.digests.get(path) != digest:
                    changed.append(str(path))
        changed += [str(p) for p in self.content if p not in seen]
        return changed

    def _restore(self, path: Path) -> None:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            path.unlink()
        if path not in self.content:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.restore")
        tmp.write_bytes(self.content[path])
        os.replace(tmp, path)
