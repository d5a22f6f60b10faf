"""The grading attacks of the jail work, each through `make grade` (real nbgrader), on a given
checkout of the course: before/after figures for docs/GRADING.md.

    python -m benchmarks.grading_attacks --tree /path/to/checkout --label after

Rows: the answer key from git history (git binary, and .git/objects read with zlib), an exercise
module raising NotImplementedError at import, hidden-test lines in a learner's own text, and
format_conversation through apply_chat_template. Results are merged into
benchmarks/results/grading_attacks.json under the label.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from course import REPO_ROOT

sys.path[:0] = [str(REPO_ROOT / "tests" / "integrity"), str(REPO_ROOT / "tests" / "grading")]
import attacks  # noqa: E402
import hostile  # noqa: E402

OUT = REPO_ROOT / "benchmarks" / "results" / "grading_attacks.json"


def rows(tree: Path) -> dict[str, tuple[str, str, str]]:
    """name -> (step, module file, module text)."""
    blank2 = (tree / "step2_masking" / "masking_exercise.py").read_text(encoding="utf-8")
    ref1 = (tree / "solutions" / "step1_data" / "data_exercise.py").read_text(encoding="utf-8")
    lines = hostile.hidden_test_lines()
    return {
        "git-show": ("step2_masking", "masking_exercise.py", blank2 + "\n" + attacks.GIT_SHOW),
        "git-objects": ("step2_masking", "masking_exercise.py",
                        blank2 + "\n" + attacks.GIT_OBJECTS),
        "not-implemented-at-import": ("step1_data", "data_exercise.py", ref1 +
                                      "\nraise NotImplementedError('not finished yet')\n"),
        "hidden-lines-in-text": ("step1_data", "data_exercise.py", ref1 + "".join(
            f"\n# {line}" for line in lines) + "\nprint(" + repr("\n".join(lines)) + ")\n"),
        "chat-template-shortcut": ("step1_data", "data_exercise.py",
                                   ref1 + hostile.CHAT_TEMPLATE_SHORTCUT),
    }


def grade(tree: Path, step: str, module: str, text: str, work: Path) -> dict:
    folder = work / "submission"
    folder.mkdir(parents=True)
    (folder / module).write_text(text, encoding="utf-8")
    notebook = tree / ("solutions" if step == "step1_data" else "") / step / "tutorial.ipynb"
    shutil.copy2(notebook, folder / "tutorial.ipynb")   # step 1: its notebook TODO answered
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "course.nbgrader.grade", step, "--from",
                          str(folder), "--root", str(work / "root")], cwd=tree,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tree)})
    total = [line for line in run.stdout.splitlines() if line.startswith("total:")]
    return {"step": step, "result": total[0] if total else "no total: make grade failed",
            "error": run.stderr.strip().splitlines()[-1] if run.returncode else "",
            "seconds": round(time.monotonic() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=REPO_ROOT, help="checkout to grade with")
    ap.add_argument("--label", default="after")
    args = ap.parse_args(argv)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results[args.label] = {}
    for name, (step, module, text) in rows(args.tree.resolve()).items():
        with tempfile.TemporaryDirectory() as work:
            results[args.label][name] = grade(args.tree.resolve(), step, module, text,
                                              Path(work))
        print(name, results[args.label][name], flush=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
