"""`make release`: solutions/ -> nbgrader course root -> learner version in stepN_*/.

For each step: build solutions/<step>/tutorial.ipynb from its source (tutorial.py, if any), copy
the step into <root>/source/, run `nbgrader generate_assignment` (its post-convert hook, in
hooks.py, strips the solution regions of the `.py` modules), verify that no solution line, marker
or hidden test is left (nbgrader only logs a failing hook), copy the release into <repo>/<step>/
(committed, never edited by hand), and release it to nbgrader's exchange (`exchange.py`). Files
in <repo>/<step>/ that would change are backed up to build/release-backup/ first, so a learner's
work is never lost.

    python -m course.nbgrader.release                  # every step in solutions/
    python -m course.nbgrader.release step1_data       # one step
    python -m course.nbgrader.release --check          # exit 1 if anything committed is stale
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from fnmatch import fnmatch
from pathlib import Path

from course import REPO_ROOT
from course.grading import solutions_dir
from course.nbgrader import (BUILD_DIR, NEVER_RELEASED, NOTEBOOK, NOTEBOOK_SOURCE, course_root,
                             released_steps, run_nbgrader)
from course.nbgrader.config import write_config
from course.nbgrader.exchange import release as release_to_exchange
from course.nbgrader.hooks import find_leaks
from course.nbgrader.source import build, build_step, dumps


def _ignored(path: Path) -> bool:
    return any(fnmatch(part, pattern) for part in path.parts for pattern in NEVER_RELEASED)


def files_under(folder: Path) -> dict[str, Path]:
    """Relative path -> file, skipping what is never released (caches, checkpoints)."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not _ignored(p.relative_to(folder))}


def prepare_source(root: Path, step: str) -> Path:
    """<root>/source/<step>: a copy of solutions/<step>, with the notebook built from its source."""
    src, dest = solutions_dir() / step, root / "source" / step
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*NEVER_RELEASED))
    if (src / NOTEBOOK_SOURCE).exists():
        text = (src / NOTEBOOK_SOURCE).read_text(encoding="utf-8")
        (dest / f"{NOTEBOOK}.ipynb").write_text(dumps(build(text, str(src / NOTEBOOK_SOURCE))),
                                                encoding="utf-8")
    return dest


def generate(root: Path, steps: list[str], log: Path | None = None) -> dict[str, Path]:
    """Run generate_assignment for `steps` in course root `root`; returns the release folders."""
    write_config(root)
    folders = {}
    for step in steps:
        source = prepare_source(root, step)
        proc = run_nbgrader(["generate_assignment", step, "--force"], root, log=log, check=False)
        if proc.returncode != 0:
            text = log.read_text(encoding="utf-8") if log else proc.stdout + proc.stderr
            if "because there are submissions associated with it" in text:
                raise RuntimeError(
                    f"{step}: the new release adds or removes cells, but the gradebook in {root} "
                    "already has submissions for it, and nbgrader will not change a graded "
                    "assignment. Keep the cell structure, or grade in a new course root "
                    "(COURSE_NBGRADER_ROOT=build/course-v2 make release).")
            where = log or (proc.stdout + proc.stderr)[-2000:]
            raise RuntimeError(f"nbgrader generate_assignment {step} failed (exit "
                               f"{proc.returncode}): see {where}")
        output = log.read_text(encoding="utf-8") if log else proc.stdout + proc.stderr
        if "Post-convert hook failed" in output:  # nbgrader logs it and carries on
            raise RuntimeError(f"{step}: the post-convert hook failed; see {log or output[-2000:]}")
        folder = root / "release" / step
        leaks = find_leaks(folder, {p.name: p for p in source.iterdir() if p.is_file()})
        if leaks:
            raise RuntimeError(f"the release of {step} leaks solutions:\n  " + "\n  ".join(leaks))
        folders[step] = folder
    return folders


def differences(release: Path, dest: Path) -> list[str]:
    """Relative paths that are missing, extra or different in `dest` compared to `release`."""
    new, old = files_under(release), files_under(dest)
    out = [f"missing {k}" for k in new if k not in old]
    out += [f"extra {k}" for k in old if k not in new]
    out += [f"differs {k}" for k in new if k in old and new[k].read_bytes() != old[k].read_bytes()]
    return sorted(out)


def publish(release: Path, dest: Path, backup: Path) -> list[str]:
    """Make `dest` equal to `release`; files that change or go are copied to `backup` first."""
    changes = differences(release, dest)
    new, old = files_under(release), files_under(dest)
    for rel, path in old.items():
        if rel not in new or new[rel].read_bytes() != path.read_bytes():
            (backup / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, backup / rel)
            if rel not in new:
                path.unlink()
    for rel, path in new.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel not in old or old[rel].read_bytes() != path.read_bytes():
            shutil.copyfile(path, dest / rel)
    return changes


def check(steps: list[str]) -> list[str]:
    """Everything committed that differs from a fresh release (in a temporary course root)."""
    problems = [f"solutions/{s}/{NOTEBOOK}.ipynb is stale: rebuild it from {NOTEBOOK_SOURCE}"
                for s in steps if build_step(s, check=True)]
    with tempfile.TemporaryDirectory(prefix="release-check-") as tmp:
        for step, folder in generate(Path(tmp), steps).items():
            problems += [f"{step}/: {d}" for d in differences(folder, REPO_ROOT / step)]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps", nargs="*", help="steps to release (default: all in solutions/)")
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 if the committed release is stale")
    args = ap.parse_args(argv)
    steps = args.steps or released_steps()
    unknown = [s for s in steps if s not in released_steps()]
    if unknown:
        ap.error(f"no instructor source for {unknown} in {solutions_dir()}")
    start = time.monotonic()
    if args.check:
        problems = check(steps)
        for p in problems:
            print(f"stale: {p}")
        print(f"release check of {', '.join(steps)}: {'FAILED' if problems else 'ok'} "
              f"({time.monotonic() - start:.1f} s)")
        if problems:
            print("run `make release` and commit the result")
        return 1 if problems else 0
    for step in steps:
        if build_step(step):
            print(f"rebuilt solutions/{step}/{NOTEBOOK}.ipynb from {NOTEBOOK_SOURCE}")
    root = course_root()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "logs" / "release.log").write_text("")
    folders = generate(root, steps, log=root / "logs" / "release.log")
    backup = BUILD_DIR / "release-backup" / time.strftime("%Y%m%d-%H%M%S")
    for step, folder in folders.items():
        changes = publish(folder, REPO_ROOT / step, backup / step)
        print(f"{step}: released to {step}/ " + (f"({', '.join(changes)})" if changes
                                                 else "(unchanged)"))
    if backup.exists():
        print(f"previous versions of changed files: {backup.relative_to(REPO_ROOT)}/")
    exchange = release_to_exchange(root, steps)
    print(f"released to the exchange: {exchange} ({', '.join(steps)})")
    print(f"course root: {root}  ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
