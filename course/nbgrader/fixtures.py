"""Submissions made from the instructor source, for tests and benchmarks.

    reference_module("step1_data", "data_exercise.py")      # solutions kept, markers removed
    wrong_module(step, module, Path("tests/wrong/step1_data/missing_end_token.py"))
    solved_notebook(root, step)                             # release + the source's answers
    InProcessNotebook("step1_data").failures(module_text)   # test cells that fail, no kernel
    grade_batch(root, step, module, wrong_files)            # release, collect, autograde: scores

A wrong implementation (docs/AUTHORING.md) is the reference module with the wrong file's source
appended, so its later `def`s replace the reference's.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import io
import os
import shutil
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import nbformat

from course.grading import solutions_dir
from course.nbgrader import NOTEBOOK, NOTEBOOK_SOURCE, SOLUTION_MARKERS, exercise_modules
from course.nbgrader.source import build
from course.nbgrader.structure import grade_id
from course.notebook import GRADING_ENV


def without_markers(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(m in line for m in SOLUTION_MARKERS))


def reference_module(step: str, module: str) -> str:
    return without_markers((solutions_dir() / step / module).read_text(encoding="utf-8"))


def expected_losses(wrong_file: Path) -> list[str]:
    """The `EXPECT_LOSE` list of a wrong implementation (read without importing it)."""
    for node in ast.parse(wrong_file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPECT_LOSE"
                                                for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise ValueError(f"{wrong_file}: no EXPECT_LOSE list")


def wrong_module(step: str, module: str, wrong_file: Path) -> str:
    return (reference_module(step, module) + f"\n\n# --- wrong implementation: {wrong_file.name}\n"
            + wrong_file.read_text(encoding="utf-8"))


def solved_notebook(root: Path, step: str) -> nbformat.NotebookNode:
    """The released notebook with every solution cell answered as in the instructor source."""
    release = nbformat.read(str(root / "release" / step / f"{NOTEBOOK}.ipynb"), as_version=4)
    source = nbformat.read(str(root / "source" / step / f"{NOTEBOOK}.ipynb"), as_version=4)
    answers = {grade_id(c): without_markers(c.source) for c in source.cells
               if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def write_submission(folder: Path, notebook: nbformat.NotebookNode | str | bytes,
                     modules: dict[str, str]) -> Path:
    """A submission folder: the notebook (a node, or raw text/bytes for broken ones) and modules."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{NOTEBOOK}.ipynb"
    if isinstance(notebook, bytes):
        path.write_bytes(notebook)
    elif isinstance(notebook, str):
        path.write_text(notebook, encoding="utf-8")
    else:
        nbformat.write(notebook, str(path))
    for name, text in modules.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


class InProcessNotebook:
    """A step's instructor notebook run once in this process with the reference module, after
    which `failures(text)` re-runs only its test cells (visible and hidden) with `text` as the
    learner's module. No kernel and no nbgrader: a fast check that the tests catch a wrong
    implementation (the nbgrader batch of tests/test_autograde_<step>.py is the real thing).
    Cells run as under nbgrader (NBGRADER_EXECUTION set), so they may sample."""

    def __init__(self, step: str):
        self.step = step
        folder = solutions_dir() / step
        src = folder / NOTEBOOK_SOURCE
        nb = (build(src.read_text(encoding="utf-8"), str(src)) if src.exists() else
              nbformat.read(str(folder / f"{NOTEBOOK}.ipynb"), as_version=4))
        self.tests: dict[str, str] = {}
        self.names = [Path(m).stem for m in exercise_modules(step)]
        namespace: dict = {"__name__": "__main__"}
        old_cwd, old_path = os.getcwd(), list(sys.path)
        old_env = os.environ.get(GRADING_ENV)
        os.environ[GRADING_ENV] = "autograde"
        os.chdir(folder)
        sys.path.insert(0, str(folder))
        try:
            for cell in nb.cells:
                if cell.cell_type != "code":
                    continue
                code = without_markers(cell.source)
                if cell.metadata.get("nbgrader", {}).get("grade"):
                    self.tests[grade_id(cell)] = code
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(code, f"<{grade_id(cell)}>", "exec"), namespace)  # noqa: S102
            modules = {n: sys.modules[n] for n in self.names}
            self.bindings = {k: n for k, v in namespace.items() for n, m in modules.items()
                             if v is m}
        finally:
            _restore_env(old_env)
            os.chdir(old_cwd)
            sys.path[:] = old_path
            for n in self.names:
                sys.modules.pop(n, None)
            import matplotlib.pyplot as plt
            plt.close("all")
        self.namespace = namespace

    def catches(self, module: str, wrong_file: Path, also: Sequence[str] | set[str] = ()
                ) -> tuple[set[str], set[str]]:
        """Run the test cells with `wrong_file` appended to the reference `module`; assert it
        fails every test its EXPECT_LOSE names (and `also`). Returns (expected, failed)."""
        failed = self.failures(wrong_module(self.step, module, wrong_file))
        expected = set(expected_losses(wrong_file)) | set(also)
        assert expected <= failed, \
            f"{wrong_file.name}: expected to fail {sorted(expected)}, failed {sorted(failed)}"
        return expected, failed

    def failures(self, module_text: str) -> set[str]:
        """grade_ids of the test cells that fail with `module_text` as the exercise module."""
        module = types.ModuleType(self.names[0])
        # dont_inherit: not this file's `from __future__ import annotations` (a dataclass in the
        # module would then look itself up in sys.modules, where this module is not)
        exec(compile(module_text, f"<{self.names[0]}>", "exec", dont_inherit=True),  # noqa: S102
             module.__dict__)
        failed = set()
        old_env = os.environ.get(GRADING_ENV)
        os.environ[GRADING_ENV] = "autograde"
        try:
            for gid, code in self.tests.items():
                namespace = dict(self.namespace)
                namespace.update({k: module for k in self.bindings})
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        exec(compile(code, f"<{gid}>", "exec"), namespace)  # noqa: S102
                except Exception:  # noqa: BLE001 - any error fails the test, as in a notebook
                    failed.add(gid)
        finally:
            _restore_env(old_env)
        return failed


def _restore_env(value: str | None) -> None:
    if value is None:
        os.environ.pop(GRADING_ENV, None)
    else:
        os.environ[GRADING_ENV] = value


# --- one autograde batch, end to end ---------------------------------------------------------
@contextlib.contextmanager
def environment(**values: str):
    """Set environment variables (e.g. COURSE_CELL_TIMEOUT) for the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class GradedBatch:
    """What `grade_batch` graded: results by learner id, and what it cost."""

    root: Path
    step: str
    results: dict
    release_s: float
    autograde_s: float
    autograde_cpu_s: float  # CPU time of nbgrader and its kernels: independent of the load

    def lost(self, student: str) -> set[str]:
        """grade_ids of the tests `student` did not get full points for."""
        return lost_tests(self.results[student])

    def error_names(self, student: str) -> set[str]:
        """Exception names in the outputs of `student`'s autograded notebook."""
        graded = self.root / "autograded" / student / self.step / f"{NOTEBOOK}.ipynb"
        return {o.ename for c in nbformat.read(str(graded), as_version=4).cells
                for o in c.get("outputs", []) if o.get("output_type") == "error"}


def lost_tests(result) -> set[str]:
    """grade_ids of the tests an autograde `Result` did not get full points for."""
    return {name for name, (score, top) in result.tests.items() if score < top}


def _children_cpu() -> float:
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def grade_batch(root: Path, step: str, module: str, wrong_files: Sequence[Path] = (),
                extra: Callable[[nbformat.NotebookNode, str], dict] | None = None
                ) -> GradedBatch:
    """Release `step` into course root `root`, then collect and autograde in one nbgrader run:
    "reference" (the answer key), "blank" (the untouched release), "wrong-<stem>" for each file
    of `wrong_files`, and the submissions `extra(solved notebook, reference module text)`
    returns ({learner: (notebook node or raw text/bytes, module text)})."""
    from course.nbgrader.autograde import autograde
    from course.nbgrader.collect import collect
    from course.nbgrader.release import generate

    start = time.monotonic()
    generate(root, [step])
    release_s = time.monotonic() - start
    inbox = root / "inbox"
    solved, reference = solved_notebook(root, step), reference_module(step, module)
    write_submission(inbox / "reference", solved, {module: reference})
    shutil.copytree(root / "release" / step, inbox / "blank")
    for wrong in wrong_files:
        write_submission(inbox / f"wrong-{wrong.stem}", solved,
                         {module: wrong_module(step, module, wrong)})
    for learner, (notebook, text) in (extra(solved, reference) if extra else {}).items():
        write_submission(inbox / learner, notebook, {module: text})
    collect(inbox, step, root)
    start, cpu = time.monotonic(), _children_cpu()
    results = {r.student: r for r in autograde(root, step)}
    batch = GradedBatch(root, step, results, release_s, time.monotonic() - start,
                        _children_cpu() - cpu)
    print(f"\nrelease {release_s:.1f} s; autograde {len(results)} submissions "
          f"{batch.autograde_s:.1f} s ({batch.autograde_cpu_s:.1f} s CPU)")
    for r in sorted(results.values(), key=lambda r: r.student):
        print(f"  {r.student:40s} {r.score:4g}/{r.max_score:g}  {r.status:12s} {r.notes}")
    return batch
