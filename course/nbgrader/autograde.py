"""`make autograde`: autograde every submission in one nbgrader batch, then report.

    python -m course.nbgrader.autograde                  # every released step
    python -m course.nbgrader.autograde step1_data --student alice

One `nbgrader autograde <step> --force` run grades all submissions; a broken submission (invalid
notebook, crashing or looping code, edited or deleted cells) costs only its own points. Scores
are read back through the Gradebook API; each submission gets a status saying what happened:

    ok              graded normally
    repaired        graded after restoring deleted/renamed/edited tracked cells (see notes)
    import-error    the exercise module failed to import (its tests score 0)
    timeout         a cell ran past the per-cell limit and was interrupted
    unresponsive    the kernel ignored the interrupt; it was killed, later cells not run
    kernel-died     the kernel died (os._exit, crash, out of memory); later cells not run
    tampered        its code wrote to the course's own files (put back); it scores 0
    invalid         the notebook is not readable; scored 0 and flagged for manual grading
    error           nbgrader could not grade it (see the log); flagged for manual grading

The table is printed and written to <root>/reports/<step>-grades.csv.
"""
from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course.nbgrader import NOTEBOOK, batch_arguments, course_root, exercise_modules, run_nbgrader
from course.nbgrader.execute import KERNEL_DIED, NOT_RUN, TIMEOUT, UNRESPONSIVE
from course.nbgrader.gradebook import (format_table, read_scores, register_learners, test_order,
                                      write_csv)
from course.nbgrader.structure import read_notebook, structure_events
from course.sandbox.jail import JailUnavailable, check_jail

TODO = re.compile(r"TODO not done\S*: (\w+)\(\)")
FAILED = re.compile(r"There was an error processing assignment '([^']+)' for student '([^']+)'")
SEVERITY = ["ok", "repaired", "import-error", "timeout", "unresponsive", "kernel-died",
            "tampered", "invalid", "error"]


@dataclass
class Result:
    student: str
    status: str = "ok"
    notes: list[str] = field(default_factory=list)
    score: float = 0.0
    max_score: float = 0.0
    tests: dict[str, tuple[float, float]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)   # failed test -> why, for learners

    def flag(self, status: str, note: str) -> None:
        if SEVERITY.index(status) > SEVERITY.index(self.status):
            self.status = status
        if note not in self.notes:
            self.notes.append(note)


def submissions(root: Path, step: str, students: list[str] | None = None) -> dict[str, Path]:
    found = {p.parent.name: p for p in sorted((root / "submitted").glob(f"*/{step}"))
             if p.is_dir()}
    return {s: p for s, p in found.items() if not students or s in students}


def preflight(root: Path, step: str, folder: Path, result: Result) -> None:
    """What can be told before running anything: unreadable notebook, missing module, cells
    that autograde will restore."""
    path = folder / f"{NOTEBOOK}.ipynb"
    if not path.exists():
        result.flag("invalid", f"no {NOTEBOOK}.ipynb submitted")
        return
    nb, why = read_notebook(path)
    if nb is None:
        result.flag("invalid", f"{NOTEBOOK}.ipynb is {why}; scored 0, flagged for manual grading")
        return
    released, _ = read_notebook(root / "release" / step / f"{NOTEBOOK}.ipynb")
    if released is not None:
        for event in structure_events(nb, released):
            result.flag("repaired", str(event))
    for module in exercise_modules(step):
        if not (folder / module).exists():
            result.flag("import-error", f"{module} was not submitted")


def inspect_autograded(path: Path, step: str, result: Result) -> None:
    """Read the statuses off the autograded notebook's error outputs."""
    nb = nbformat.read(str(path), as_version=4)
    imports = [re.compile(rf"^\s*(import|from)\s+{Path(m).stem}\b", re.M)
               for m in exercise_modules(step)]
    todos = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "?")
        record = cell.metadata.get("course", {})
        if record.get("verdict") is not None:   # a graded test cell, scored by the trusted grader
            _read_verdict(gid, record["verdict"], result, todos)
            outputs = [dict(output_type="error", **record["kernel_error"])] \
                if record.get("kernel_error") else []
        else:
            outputs = cell.get("outputs", [])
        for out in outputs:
            if out.get("output_type") != "error":
                continue
            ename, evalue = out.get("ename", ""), str(out.get("evalue", "")).splitlines()[:1]
            evalue = evalue[0][:160] if evalue else ""
            if ename == KERNEL_DIED:
                result.flag("kernel-died", f"the kernel died in cell {gid}; later cells not run")
            elif ename == UNRESPONSIVE:
                result.flag("unresponsive", f"cell {gid} ignored the interrupt after the time "
                                            "limit; the kernel was killed, later cells not run")
            elif ename == TIMEOUT:
                result.flag("timeout", f"cell {gid} ran past the time limit and was interrupted")
            elif ename == NOT_RUN:
                continue
            elif record.get("verdict") is not None:
                continue   # the kernel's own test failures: the verdict above says why
            elif ename == "NotImplementedError":
                found = TODO.search(" ".join(out.get("traceback", [])[:1]))
                if found and found.group(1) not in todos:
                    todos.append(found.group(1))
            elif any(p.search(cell.source) for p in imports):
                result.flag("import-error", f"importing the exercise module failed: "
                                            f"{ename}: {evalue}")
    if todos:
        result.notes.append(f"unfinished TODOs: {', '.join(todos)}")


def _read_verdict(gid: str, verdict: dict, result: Result, todos: list[str]) -> None:
    """Status, notes and the learner-readable reason from one trusted verdict."""
    if verdict.get("passed"):
        return
    error, reason = verdict.get("error") or "", str(verdict.get("reason") or "")
    result.reasons[gid] = reason or error
    found = TODO.search(reason)
    if error == "NotImplementedError" and found and found.group(1) not in todos:
        todos.append(found.group(1))
    elif error == "TodoNotDone":
        result.flag(result.status, f"notebook TODO not done ({gid}): {reason[:120]}")
    elif error == "Tampering":
        result.flag("tampered", reason[:200])
    elif error == "ImportError":
        result.flag("import-error", f"importing the exercise module failed: {reason[:160]}")
    elif error == TIMEOUT:
        result.flag("timeout", f"test {gid} ran past the time limit")
    elif error == KERNEL_DIED:
        result.flag("kernel-died", f"test {gid}: the grading process was stopped by the module")


def autograde(root: Path, step: str, students: list[str] | None = None) -> list[Result]:
    """Grade `step` (all submissions, or `students`) in one nbgrader run; results by learner."""
    check_jail()   # learner code runs jailed, or not at all unless COURSE_JAIL=0
    subs = submissions(root, step, students)
    results = {s: Result(s) for s in subs}
    for student, folder in subs.items():
        preflight(root, step, folder, results[student])
    log = root / "logs" / f"autograde-{step}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    args = ["autograde", step, "--force"]
    if students and len(students) == 1:
        args += ["--student", students[0]]
    elif students:
        args += [f"--CourseDirectory.student_id_exclude="
                 f"{','.join(s for s in submissions(root, step) if s not in students)}"]
    if subs:
        register_learners(root, list(subs))
        run_nbgrader(args, root, log=log, check=False)  # exits 1 if any submission failed
    failed = {m.group(2) for m in FAILED.finditer(log.read_text(encoding="utf-8"))
              if m.group(1) == step}
    scores = read_scores(root, step)
    for student, result in results.items():
        graded = root / "autograded" / student / step / f"{NOTEBOOK}.ipynb"
        if student in failed and result.status != "invalid":
            result.flag("error", f"nbgrader could not grade it; see {log}")
        elif graded.exists():
            inspect_autograded(graded, step, result)
        if student in scores:
            s = scores[student]
            result.score, result.max_score, result.tests = s.score, s.max_score, s.tests
        elif result.status != "invalid":
            result.flag("error", "no gradebook entry; see the log")
    return list(results.values())


def report(root: Path, step: str, results: list[Result], seconds: float) -> Path:
    names = test_order(root, step) if results else []
    rows = [[r.student, f"{r.score:g} / {r.max_score:g}", r.status, "; ".join(r.notes)[:110]]
            for r in results]
    print(f"\n{step}: {len(results)} submissions graded in {seconds:.1f} s")
    print(format_table(rows, ["learner", "points", "status", "notes"]))
    path = root / "reports" / f"{step}-grades.csv"
    write_csv(path, [{"learner": r.student, "step": step, "status": r.status, "score": r.score,
                      "max_score": r.max_score, **{n: r.tests.get(n, (0, 0))[0] for n in names},
                      "notes": " | ".join(r.notes)} for r in results])
    print(f"scores: {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    steps, students = batch_arguments(__doc__.splitlines()[0], argv)
    root = course_root()
    for step in steps:
        start = time.monotonic()
        try:
            results = autograde(root, step, students)
        except JailUnavailable as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        report(root, step, results, time.monotonic() - start)
    return 0

if __name__ == "__main__":
    sys.exit(main())
