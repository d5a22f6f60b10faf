"""nbgrader's exchange for the course: release, collect and return feedback with nbgrader's own
commands, the way a class on JupyterHub runs.

    python -m course.nbgrader.exchange release [STEP ...]   release_assignment (make release)
    python -m course.nbgrader.exchange collect [STEP ...]   collect --update, list what came in
    python -m course.nbgrader.exchange feedback [STEP ...]  generate_feedback + release_feedback
    python -m course.nbgrader.exchange status [STEP ...]    what the exchange holds

The exchange root is COURSE_EXCHANGE, default build/exchange; the course id is the course's
(`course.nbgrader.COURSE_ID`), both set in the course configuration (`config.py`). Learners use
nbgrader's commands or JupyterLab's *Assignments* tab with the same root and course id:
`nbgrader fetch_assignment step1_data`, `nbgrader submit step1_data`, `nbgrader fetch_feedback
step1_data`. Zipped downloads from an LMS keep going through `course.nbgrader.collect`.
"""
from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from course.nbgrader import BUILD_DIR, COURSE_ID, course_root, released_steps, run_nbgrader

EXCHANGE_ENV = "COURSE_EXCHANGE"
SEPARATOR = "+"  # nbgrader names inbound entries <student>+<assignment>+<timestamp>[+<random>]


def exchange_root() -> Path:
    """The nbgrader exchange: env COURSE_EXCHANGE, default build/exchange."""
    return Path(os.environ.get(EXCHANGE_ENV) or BUILD_DIR / "exchange")


def course_exchange(exchange: Path | None = None) -> Path:
    """<exchange>/<course id>: outbound/, inbound/ and feedback/ of this course."""
    return (exchange or exchange_root()) / COURSE_ID


@dataclass
class Inbound:
    """One submission waiting in the exchange's inbound folder."""
    student: str
    step: str
    timestamp: str
    path: Path


def inbound(step: str, exchange: Path | None = None) -> list[Inbound]:
    """Submissions of `step` in the exchange (needs read access to inbound/: the instructor)."""
    folder = course_exchange(exchange) / "inbound"
    out = []
    for path in sorted(folder.glob(f"*{SEPARATOR}{step}{SEPARATOR}*")) if folder.is_dir() else []:
        student, assignment, timestamp, *_ = path.name.split(SEPARATOR)
        if assignment == step:
            out.append(Inbound(student, step, timestamp, path))
    return out


def released(exchange: Path | None = None) -> list[str]:
    """Steps that learners can fetch (outbound/<step>/)."""
    folder = course_exchange(exchange) / "outbound"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _log(root: Path, name: str) -> Path:
    log = root / "logs" / f"exchange-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return log


def release(root: Path, steps: list[str]) -> Path:
    """`nbgrader release_assignment` for each step (the course root's release/<step>/ must
    exist: `make release` generates it first). Creates the exchange root if needed."""
    exchange_root().parent.mkdir(parents=True, exist_ok=True)
    log = _log(root, "release")
    for step in steps:
        run_nbgrader(["release_assignment", step, "--force"], root, log=log)
    harden(course_exchange())
    return course_exchange()


def harden(folder: Path) -> None:
    """Add the sticky bit to inbound/ (nbgrader makes it 2733: anyone may add a submission
    without seeing the others); with it, nobody but the instructor can remove one."""
    inbound_dir = folder / "inbound"
    if inbound_dir.is_dir() and inbound_dir.stat().st_uid == os.geteuid():
        inbound_dir.chmod(stat.S_IMODE(inbound_dir.stat().st_mode) | stat.S_ISVTX)


def collect(root: Path, step: str) -> list[str]:
    """`nbgrader collect <step> --update`: the latest submission of every learner goes to
    <root>/submitted/<learner>/<step>/ (a newer one replaces an older one; nothing is collected
    twice). Returns the learners whose submission is now in submitted/."""
    from course.nbgrader.gradebook import register_learners

    log = _log(root, f"collect-{step}")
    run_nbgrader(["collect", step, "--update"], root, log=log)
    learners = sorted({s.student for s in inbound(step)
                       if (root / "submitted" / s.student / step).is_dir()})
    register_learners(root, learners)  # formgrader lists them by id, not "None, None"
    return learners


def return_feedback(root: Path, step: str) -> list[Path]:
    """Feedback pages (hidden tests redacted and checked, `feedback.py`), then
    `nbgrader release_feedback`: each learner fetches their own with `fetch_feedback`."""
    from course.nbgrader.feedback import generate_feedback

    pages = generate_feedback(root, step)
    run_nbgrader(["release_feedback", step], root, log=_log(root, f"feedback-{step}"))
    return pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["release", "collect", "feedback", "status"])
    ap.add_argument("steps", nargs="*", help="default: every released step")
    args = ap.parse_args(argv)
    root = course_root()
    if not (root / "gradebook.db").exists():
        ap.error(f"no course root at {root}: run `make release` first")
    steps = args.steps or released_steps()
    print(f"exchange: {course_exchange()}")
    for step in steps:
        start = time.monotonic()
        if args.action == "release":
            release(root, [step])
            print(f"{step}: released to the exchange")
        elif args.action == "collect":
            learners = collect(root, step)
            print(f"{step}: {len(learners)} submissions in {root / 'submitted'} "
                  f"({time.monotonic() - start:.1f} s): {', '.join(learners) or '-'}")
        elif args.action == "feedback":
            pages = return_feedback(root, step)
            print(f"{step}: feedback released for {len(pages)} submissions "
                  f"({time.monotonic() - start:.1f} s)")
        else:
            waiting = inbound(step)
            print(f"{step}: {'released' if step in released() else 'not released'}, "
                  f"{len(waiting)} submissions in the exchange "
                  f"({len({s.student for s in waiting})} learners)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
