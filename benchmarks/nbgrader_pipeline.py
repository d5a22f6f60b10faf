"""Timings of the grading pipeline: release of one step, autograde of one submission.

    make bench-grading STEP=step1_data      # python -m benchmarks.nbgrader_pipeline step1_data

Budgets (on 2 CPU cores): release of one step <= 60 s; autograde of one submission
<= 60 s. Works in a temporary course root (nothing in build/ or the repository changes), grades
the reference solution and the untouched release, and writes
benchmarks/results/nbgrader_<step>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from course.nbgrader.autograde import autograde
from course.nbgrader.collect import submit
from course.nbgrader.feedback import generate_feedback
from course.nbgrader.fixtures import reference_module, solved_notebook, write_submission
from course.nbgrader.release import generate

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_S = 60


def run(step: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        root = Path(tmp) / "course"
        start = time.monotonic()
        generate(root, [step])
        release_s = time.monotonic() - start

        modules = {m.name: reference_module(step, m.name)
                   for m in (root / "source" / step).glob("*.py")}
        write_submission(Path(tmp) / "reference", solved_notebook(root, step), modules)
        shutil.copytree(root / "release" / step, Path(tmp) / "blank")
        figures = {"step": step, "release_s": round(release_s, 1)}
        for name in ("reference", "blank"):
            submit(Path(tmp) / name, name, step, root)
            start = time.monotonic()
            (result,) = autograde(root, step, [name])
            figures[f"autograde_{name}_s"] = round(time.monotonic() - start, 1)
            figures[f"score_{name}"] = f"{result.score:g}/{result.max_score:g}"
        start = time.monotonic()
        generate_feedback(root, step, ["reference"])
        figures["feedback_one_s"] = round(time.monotonic() - start, 1)
    figures.update(date=str(date.today()), cpus=os.cpu_count(), python=platform.python_version(),
                   load_1min=round(os.getloadavg()[0], 2))
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", nargs="?", default="step1_data")
    args = ap.parse_args(argv)
    figures = run(args.step)
    for key, value in figures.items():
        print(f"{key:22s} {value}")
    over = [k for k in ("release_s", "autograde_reference_s", "autograde_blank_s")
            if figures[k] > BUDGET_S]
    print(f"budget {BUDGET_S} s each: " + (f"EXCEEDED by {over}" if over else "met"))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"nbgrader_{args.step}.json").write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
