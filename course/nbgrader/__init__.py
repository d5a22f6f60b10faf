"""The course's nbgrader pipeline, generic over steps: author -> release -> submit -> autograde ->
feedback. Every entry point runs real nbgrader in a course root that is a build folder:

    python -m course.nbgrader.release [STEP ...]      solutions/ -> build/course -> stepN_*/
    python -m course.nbgrader.collect STEP --from DIR  submissions -> build/course/submitted/
    python -m course.nbgrader.autograde [STEP ...]     grade all, print a table, write a CSV
    python -m course.nbgrader.feedback [STEP ...]      feedback HTML, hidden tests redacted
    python -m course.nbgrader.grade STEP               a self-learner grades their working copy

See README.md in this folder for one line per file, and docs/GRADING.md for the workflows.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from course import REPO_ROOT
from course.grading import solutions_dir

COURSE_ID = "sft-course"
BUILD_DIR = REPO_ROOT / "build"
NOTEBOOK = "tutorial"                     # every step has one notebook: <step>/tutorial.ipynb
NOTEBOOK_SOURCE = "tutorial.py"           # its percent-format source (instructor only)
HIDDEN_CHECKS = "hidden_checks.py"        # hidden tests' bodies, loaded from solutions/ at grading time
NEVER_RELEASED = [NOTEBOOK_SOURCE, HIDDEN_CHECKS, "__pycache__", ".ipynb_checkpoints", "*.pyc",
                  "feedback"]
SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")

HIDDEN_MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def course_root() -> Path:
    """The instructor's course root: build/course, or env COURSE_NBGRADER_ROOT."""
    return Path(os.environ.get("COURSE_NBGRADER_ROOT") or BUILD_DIR / "course")


def batch_arguments(description: str, argv: list[str] | None = None
                    ) -> tuple[list[str], list[str] | None]:
    """The command line of a batch over the course root (autograde, feedback): the steps (default:
    every released step) and the learners (`--student`, repeatable; default: all)."""
    import argparse
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("steps", nargs="*", help="default: every released step")
    ap.add_argument("--student", action="append", help="only these learner ids (repeatable)")
    args = ap.parse_args(argv)
    root = course_root()
    if not (root / "gradebook.db").exists():
        ap.error(f"no course root at {root}: run `make release` first")
    return args.steps or released_steps(), args.student


def released_steps() -> list[str]:
    """Steps that have an instructor source in solutions/ (a notebook or its source)."""
    root = solutions_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("step")
                  and ((p / f"{NOTEBOOK}.ipynb").exists() or (p / NOTEBOOK_SOURCE).exists()))


def exercise_modules(step: str) -> list[str]:
    """The `.py` files learners edit and submit for a step (never overwritten by autograde)."""
    folder = solutions_dir() / step
    return sorted(p.name for p in folder.glob("*_exercise.py"))


def path_with_interpreter_bin(path: str) -> str:
    """`path` (a PATH value) with this interpreter's bin/ first (unchanged if it already is):
    nbgrader's gradebook runs the `alembic` script when it creates a database, and must find the
    one of this environment."""
    bin_dir = str(Path(sys.executable).parent)
    return path if path.startswith(bin_dir + os.pathsep) else os.pathsep.join([bin_dir, path])


def nbgrader_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = path_with_interpreter_bin(env.get("PATH", ""))
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    return env


def run_nbgrader(args: list[str], root: Path, log: Path | None = None,
                 check: bool = True) -> subprocess.CompletedProcess:
    """`nbgrader <args>` run from `root` (the folder holding nbgrader_config.py). Output goes
    to `log` when given (appended), else is captured and returned."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"\n$ nbgrader {' '.join(args)}\n")
            fh.flush()
            proc = subprocess.run(cmd, cwd=root, env=nbgrader_env(), stdout=fh,
                                  stderr=subprocess.STDOUT, text=True)
    else:
        proc = subprocess.run(cmd, cwd=root, env=nbgrader_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        detail = f"see {log}" if log else (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {proc.returncode}): {detail}")
    return proc
