"""`make collect`: put learners' submissions where nbgrader autogrades them.

    python -m course.nbgrader.collect step1_data --from inbox/

`inbox/` holds one entry per learner, named by the learner's id: a folder (the step's files, or
a folder holding `<step>/`), or a `.zip` of either. Each becomes
`<course root>/submitted/<id>/<step>/` with a `timestamp.txt` (when it was collected). With
JupyterHub's exchange instead, use `nbgrader collect <step>` in the course root.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from course.nbgrader import NEVER_RELEASED, course_root

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_ZIP_BYTES = 200 * 2**20


def _unzip(archive: Path, dest: Path) -> None:
    """Extract safely: no absolute paths, no '..', no more than MAX_ZIP_BYTES."""
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise ValueError(f"{archive}: more than {MAX_ZIP_BYTES >> 20} MiB unpacked")
        for m in members:
            parts = Path(m.filename).parts
            if Path(m.filename).is_absolute() or ".." in parts:
                raise ValueError(f"{archive}: unsafe path {m.filename!r}")
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)


def _step_folder(folder: Path, step: str) -> Path:
    """The folder holding the step's files: `folder/<step>/` if there, else `folder` (also
    looking one level down, for a zip that wraps everything in one folder)."""
    for candidate in (folder / step, folder):
        if candidate.is_dir() and any(candidate.glob("*.ipynb")):
            return candidate
    subdirs = [p for p in folder.iterdir() if p.is_dir()]
    if len(subdirs) == 1:
        return _step_folder(subdirs[0], step)
    return folder


def submit(source: Path, student: str, step: str, root: Path,
           timestamp: datetime | None = None) -> Path:
    """Copy one learner's folder (or zip) to `<root>/submitted/<student>/<step>/`."""
    if not STUDENT_ID.match(student):
        raise ValueError(f"invalid learner id {student!r} (letters, digits, _ . - only)")
    dest = root / "submitted" / student / step
    with tempfile.TemporaryDirectory() as tmp:
        if source.is_file() and source.suffix == ".zip":
            _unzip(source, Path(tmp))
            source = _step_folder(Path(tmp), step)
        elif source.is_dir():
            source = _step_folder(source, step)
        else:
            raise ValueError(f"{source}: expected a folder or a .zip")
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns(*NEVER_RELEASED))
    stamp = (timestamp or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
    (dest / "timestamp.txt").write_text(stamp + "\n")
    return dest


def collect(inbox: Path, step: str, root: Path) -> list[str]:
    """Submit every entry of `inbox`; returns the learner ids."""
    students = []
    for entry in sorted(inbox.iterdir()):
        student = entry.stem if entry.suffix == ".zip" else entry.name
        if entry.name.startswith("."):
            continue
        submit(entry, student, step, root)
        students.append(student)
    return students


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step")
    ap.add_argument("--from", dest="inbox", type=Path, required=True,
                    help="folder with one folder or .zip per learner")
    args = ap.parse_args(argv)
    root = course_root()
    if not (root / "nbgrader_config.py").exists():
        ap.error(f"no course root at {root}: run `make release` first")
    students = collect(args.inbox, args.step, root)
    print(f"collected {len(students)} submissions of {args.step} into {root / 'submitted'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
