"""`make grade STEP=step1_data`: a self-learner grades their own working copy, as nbgrader would.

    python -m course.nbgrader.grade step1_data                 # grades ./step1_data/
    python -m course.nbgrader.grade step1_data --from ~/mine   # or another folder

Builds a private course root (build/selfgrade/, rebuilt every time from solutions/), submits
the folder as learner "self", autogrades it with the same configuration instructors use, prints
the points of every test and writes a feedback page with the hidden tests redacted. Your folder
is only read, never changed.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from course import REPO_ROOT
from course.grading import solutions_dir
from course.nbgrader import BUILD_DIR, released_steps
from course.nbgrader.autograde import Result, autograde
from course.nbgrader.collect import submit
from course.nbgrader.feedback import generate_feedback
from course.nbgrader.gradebook import format_table, test_order
from course.nbgrader.release import generate
from course.sandbox.jail import JailUnavailable

STUDENT = "self"


def grade(step: str, folder: Path, root: Path) -> tuple[Result, list[str], Path | None]:
    """Grade `folder` as a submission of `step` in a fresh course root `root`."""
    shutil.rmtree(root, ignore_errors=True)
    generate(root, [step], log=root / "logs" / "release.log")
    submit(folder, STUDENT, step, root)
    (result,) = autograde(root, step, [STUDENT])
    pages = generate_feedback(root, step, [STUDENT]) if result.status != "invalid" else []
    return result, test_order(root, step), (pages[0] if pages else None)


def _reason(result: Result, test: str) -> str:
    """Why `test` lost points, in one line (empty when it has full points)."""
    score, top = result.tests[test]
    if score >= top:
        return ""
    reason = result.reasons.get(test) or "failed (see the feedback page)"
    return reason if len(reason) <= 90 else reason[:87] + "..."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", help="e.g. step1_data")
    ap.add_argument("--from", dest="folder", type=Path, help="default: ./<step>/")
    ap.add_argument("--root", type=Path, default=BUILD_DIR / "selfgrade",
                    help="private course root (deleted and rebuilt)")
    args = ap.parse_args(argv)
    if args.step not in released_steps():
        ap.error(f"{args.step!r}: no such step in {solutions_dir()} "
                 f"(grading needs the instructor source; steps: {released_steps()})")
    folder = args.folder or REPO_ROOT / args.step
    start = time.monotonic()
    try:   # autograde checks the jail before any learner code runs
        result, names, page = grade(args.step, folder, args.root)
    except JailUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = [[n, f"{result.tests[n][0]:g} / {result.tests[n][1]:g}",
             "hidden" if n.endswith("_hidden") else "visible",
             _reason(result, n)] for n in names if n in result.tests]
    print(f"\n{args.step}: graded {folder} in {time.monotonic() - start:.0f} s\n")
    print(format_table(rows, ["test", "points", "kind", "why points were lost"]))
    print(f"\ntotal: {result.score:g} / {result.max_score:g}   status: {result.status}")
    for note in result.notes:
        print(f"  - {note}")
    if page:
        print(f"\nfeedback (hidden tests redacted): {page}")
    print(f"answer key: {solutions_dir() / args.step}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
