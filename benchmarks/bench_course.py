"""Is the whole course fast? Execute every solution notebook from a clean kernel and time it.

    .venv/bin/python -m benchmarks.bench_course                 # all steps' solutions/*/tutorial.ipynb
    .venv/bin/python -m benchmarks.bench_course step3_sft       # some steps
    .venv/bin/python -m benchmarks.bench_course --top 5         # the 5 slowest cells of each

Each notebook runs with nbclient in a fresh kernel, in a copy of its folder under
build/bench_course/ (same depth as solutions/<step>, so it runs as a learner runs it, and what it
writes stays out of solutions/); the executed copy, with its outputs, stays there to be read
(solution notebooks are committed without outputs). Prints each notebook's
wall time, its slowest cells (where the time goes) and the total against the budget
(10 minutes on 2 cores). Writes benchmarks/results/course_time.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

from course import REPO_ROOT

RESULTS = Path(__file__).resolve().parent / "results" / "course_time.json"
BUDGET_S = 600.0
STEPS = ("step1_data", "step2_masking", "step3_sft", "step4_lora")


def _seconds(cell) -> float:
    """A cell's execution time from the timestamps nbclient records."""
    times = cell.get("metadata", {}).get("execution", {})
    start, end = times.get("iopub.execute_input"), times.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def run_notebook(path: Path, timeout: int = 1200) -> dict:
    """Execute `path` in a fresh kernel in its folder; wall time and per-cell times."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except Exception as err:  # noqa: BLE001 - report and go on with the next notebook
        error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}"
    wall = time.perf_counter() - start
    nbformat.write(nb, path)   # the copy under build/, with its outputs (the figures it printed)
    running = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                    and "iopub.execute_input" in c.get("metadata", {}).get("execution", {})
                    and "shell.execute_reply" not in c["metadata"]["execution"]), None)
    if error is not None and running is not None:  # the cell that was running when it stopped
        error += f" [in cell {running}: {nb.cells[running].source.strip().splitlines()[0][:80]}]"
    cells = [{"index": i, "seconds": _seconds(c),
              "source": c.source.strip().splitlines()[0][:90] if c.source.strip() else ""}
             for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    name = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    return {"notebook": str(name), "wall_s": wall, "error": error,
            "cells": cells}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("steps", nargs="*", default=list(STEPS))
    parser.add_argument("--top", type=int, default=3, help="slowest cells shown per notebook")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    paths = []
    for step in args.steps:
        src = REPO_ROOT / "solutions" / step
        if (src / "tutorial.ipynb").exists():
            dst = REPO_ROOT / "build" / "bench_course" / step
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                "build", "__pycache__", ".ipynb_checkpoints"))
            paths.append(dst / "tutorial.ipynb")
    load_start = os.getloadavg()
    results = []
    for path in paths:
        print(f"{path.parent.name}/tutorial.ipynb ...", flush=True)
        r = run_notebook(path)
        results.append(r)
        status = "ok" if r["error"] is None else f"FAILED ({r['error']})"
        print(f"  {r['wall_s']:7.1f} s  {status}")
        for c in sorted(r["cells"], key=lambda c: -c["seconds"])[:args.top]:
            print(f"      cell {c['index']:3d}: {c['seconds']:6.1f} s  {c['source']}")
    total = sum(r["wall_s"] for r in results)
    print(f"total {total:.1f} s ({total / 60:.1f} min) for {len(results)} notebooks; budget "
          f"{BUDGET_S / 60:.0f} min: {'ok' if total <= BUDGET_S else 'OVER'}; load average "
          f"{load_start} -> {os.getloadavg()}")
    report = {"date": datetime.now().isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
              "load_average_start": load_start, "load_average_end": os.getloadavg(),
              "total_s": total, "budget_s": BUDGET_S, "notebooks": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
