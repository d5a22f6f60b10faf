"""Trusted verdicts: every graded test cell scored where the learner's code cannot reach it.

nbgrader runs a submission's notebook in a kernel, and the learner's module runs in that kernel
too: whatever it imports it can patch (the checks, the reference, `torch.allclose`, IPython
itself). So the kernel's outputs are shown to the learner but never scored. After the kernel ran,
`TrustedVerdicts` (an autograde preprocessor) replaces the outputs of every graded test cell with
a verdict computed here, in nbgrader's own process:

- the test cell's code is the instructor's (from `solutions/`, never the submission's), run in
  a namespace built once per step by running the instructor notebook with the reference module
  (`InProcessNotebook`), before any learner code runs;
- the learner's module lives in a jailed worker process (`course.sandbox`); in the test cell,
  `ex` is a proxy, so the learner's functions run there and only their answers (plain data)
  come back; the comparison, the reference and the points stay here;
- the learner's own notebook cells (a value they choose, such as MAX_TOKENS) run in the worker
  too, and only the values they set come back;
- a cell whose value depends on the learner's training run is re-run here, with the course's
  code driving the learner's functions (which still run in the worker).

A verdict says why points were lost in words a learner can read: an unfinished TODO (in the
module or in a notebook cell), a check that failed and what it found, a time limit, a worker
that died, a module that does not import. Nothing the learner's code prints reaches a verdict, so
a debug print (to stdout or stderr) never costs points.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from course.grading import CheckFailed, HiddenTestFailure, load_reference, patched
from course.nbgrader import NOTEBOOK, exercise_modules
from course.nbgrader.execute import KERNEL_DIED, NOT_RUN, TIMEOUT, error_output
from course.nbgrader.fixtures import InProcessNotebook
from course.nbgrader.structure import grade_id
from course.notebook import GRADING_ENV, TodoNotDone
from course.sandbox import by_hand
from course.sandbox.client import Worker, WorkerError, WorkerTimeout
from course.sandbox.jail import worker_environment

TODO_NOT_DONE = "TodoNotDone"
IMPORT_ERROR = "ImportError"
SOLUTION_BEGIN = "### BEGIN SOLUTION"
MAX_FILES = 50                       # .py files of a submission copied for the worker
MAX_FILE_BYTES = 2_000_000


@dataclass
class Verdict:
    """The trusted outcome of one graded test cell."""

    grade_id: str
    passed: bool
    output: str = ""                 # what the check printed (its ✓ lines)
    error: str | None = None         # exception name when it failed
    message: str = ""                # why, in a learner's words (first line is public)

    def outputs(self) -> list:
        """The cell outputs nbgrader scores: stdout, plus an error when it failed."""
        out = [nbformat.v4.new_output("stream", name="stdout", text=self.output)] \
            if self.output else []
        if not self.passed:
            out.append(error_output(self.error or "AssertionError", self.message))
        return out


@dataclass
class Grading:
    """What grading one submission found, beyond the verdicts."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    seconds: float = 0.0
    worker_restarts: int = 0


def learner_functions(step: str, module: str) -> dict[str, bool]:
    """Top-level names of `module` the learner writes (a solution region inside), each mapped
    to whether it is a dataclass (configuration: driven by the course's copy)."""
    from course.grading import solutions_dir
    text = (solutions_dir() / step / module).read_text(encoding="utf-8")
    lines = text.splitlines()
    names = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and any(
                SOLUTION_BEGIN in line for line in lines[node.lineno - 1:node.end_lineno]):
            names[node.name] = any("dataclass" in ast.unparse(d) for d in
                                   getattr(node, "decorator_list", []))
    return names


def _reads(code: str) -> set[str]:
    """Names a cell reads without assigning them first (roughly: loads minus stores)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    stores = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
              and isinstance(n.ctx, (ast.Store, ast.Del))}
    return loads - stores


def _assigned(code: str) -> list[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                   and isinstance(n.ctx, ast.Store)})


def _learner_dependent(code: str, bindings: set[str]) -> list[str]:
    """Names a locked cell assigns from an expression that calls the learner's module."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(n, ast.Name) and n.id in bindings for n in ast.walk(node.value)):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


class TrustedGrader:
    """One step's trusted grading: built once (before any learner code runs), then `grade()`
    for each submission folder."""

    def __init__(self, step: str):
        start = time.monotonic()
        self.step = step
        self.module_files = exercise_modules(step)
        self.module = Path(self.module_files[0]).stem
        self.notebook = InProcessNotebook(step)
        self.namespace = self.notebook.namespace
        self.bindings = set(self.notebook.bindings)
        self.reference = load_reference(step, self.module)
        # configuration classes (dataclasses, also by inheritance) stay the course's copy
        self.learner_names = {
            name: is_config or dataclasses.is_dataclass(getattr(self.reference, name, None))
            for name, is_config in learner_functions(step, self.module_files[0]).items()}
        self.cells = self._cells()
        # the notebook's own solution cells (values the learner chooses), by grade_id
        self.solution_ids = [gid for gid, kind, _ in self.cells if kind == "solution"]
        self.build_s = time.monotonic() - start

    def _cells(self) -> list[tuple[str, str, str]]:
        """(grade_id, kind, code) of the instructor notebook's code cells, in order; kind is
        "test", "solution" or "locked"."""
        from course.nbgrader.fixtures import without_markers
        from course.nbgrader.source import build
        from course.grading import solutions_dir
        folder = solutions_dir() / self.step
        src = folder / "tutorial.py"
        nb = (build(src.read_text(encoding="utf-8"), str(src)) if src.exists() else
              nbformat.read(str(folder / f"{NOTEBOOK}.ipynb"), as_version=4))
        cells = []
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            meta = cell.metadata.get("nbgrader", {})
            kind = ("test" if meta.get("grade") and not meta.get("solution") else
                    "solution" if meta.get("solution") else "locked")
            # a solution cell keeps its markers: its stub (what a blank copy runs) is read off them
            cells.append((grade_id(cell), kind,
                          cell.source if kind == "solution" else without_markers(cell.source)))
        return cells

    # -- one submission ---------------------------------------------------------------------------
    def grade(self, folder: Path, notebook: nbformat.NotebookNode | None = None,
              timeout: float = 120.0, budget: float = 900.0, log: Path | None = None) -> Grading:
        """Verdicts for every test cell of the submission in `folder` (its exercise module and,
        for the learner's solution cells, `notebook`, default: the folder's notebook)."""
        start = time.monotonic()
        grading = Grading()
        work = Path(tempfile.mkdtemp(prefix="course-grade-"))
        try:
            # the submission's Python files (its exercise module and anything it imports from
            # its own folder); nothing else of the folder reaches the worker
            for path in sorted(Path(folder).glob("*.py"))[:MAX_FILES]:
                if path.is_file() and not path.is_symlink() and \
                        path.stat().st_size <= MAX_FILE_BYTES:
                    shutil.copy2(path, work / path.name)
            os.chmod(work, 0o755)
            if notebook is None and (folder / f"{NOTEBOOK}.ipynb").exists():
                notebook = nbformat.read(str(folder / f"{NOTEBOOK}.ipynb"), as_version=4)
            session = _Session(self, work, notebook, timeout, log)
            stack = contextlib.ExitStack()
            stack.enter_context(_shared_tempdirs(work / "tmp"))
            try:
                for gid, kind, code in self.cells:
                    if kind != "test":
                        continue
                    if time.monotonic() - start > budget:
                        grading.verdicts[gid] = Verdict(gid, False, error=NOT_RUN, message=(
                            f"not run: grading used up its time budget of {budget:g} s"))
                        continue
                    grading.verdicts[gid] = session.run_test(gid, code)
            finally:
                grading.worker_restarts = session.restarts
                session.close()
                stack.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        grading.seconds = time.monotonic() - start
        return grading


class _Session:
    """The worker holding one submission's module, restarted after a timeout or a crash."""

    def __init__(self, grader: TrustedGrader, work: Path, notebook, timeout: float,
                 log: Path | None):
        self.grader, self.work, self.timeout, self.log = grader, work, timeout, log
        self.restarts = -1
        self.worker: Worker | None = None
        self.ex: Any = None
        self.import_error: str | None = None
        self.learner_cells = self._learner_cells(notebook)
        self.values: dict[str, Any] | None = None
        self.unset: dict[str, str] = {}
        self.rerun: dict[str, Any] = {}

    def _learner_cells(self, notebook) -> dict[str, str]:
        """The learner's version of each notebook solution cell (the instructor's stub if the
        cell is missing)."""
        found = {}
        if notebook is not None:
            for cell in notebook.cells:
                gid = grade_id(cell)
                if cell.cell_type == "code" and gid in self.grader.solution_ids:
                    found[gid] = cell.source
        for gid, kind, code in self.grader.cells:
            if kind == "solution" and gid not in found:
                found[gid] = _stub(code)
        return found

    def start(self) -> None:
        self.close()
        self.restarts += 1
        self.worker = Worker(self.work, timeout=self.timeout, log=self.log,
                             env=worker_environment({by_hand.ENV: self.grader.step}))
        self.ex, self.import_error = None, None
        try:
            self.ex = self.worker.module(self.grader.module)
        except WorkerTimeout:
            self.import_error = f"importing {self.grader.module}.py ran past {self.timeout:g} s"
        except (WorkerError, Exception) as err:  # noqa: BLE001 - any failure to import, a
            # NotImplementedError raised at import too: a module that never imports has no TODO
            # that could be done, so it is an import error, named
            self.import_error = f"{type(err).__name__}: {err}" if str(err) else \
                type(err).__name__

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    # -- the learner's own notebook cells --------------------------------------------------------
    def learner_values(self) -> dict[str, Any]:
        """Run the learner's solution cells in the worker (once) and return what they set."""
        if self.values is not None:
            return self.values
        self.values = {}
        for gid, code in self.learner_cells.items():
            names = _assigned(code) or _assigned(_stub(self._instructor(gid)))
            inputs = {n: self.grader.namespace[n] for n in _reads(code)
                      if n in self.grader.namespace and _plain(self.grader.namespace[n])}
            try:
                got = self.worker.exec_cell(code, f"<cell {gid}>", inputs, names)
            except (WorkerTimeout, WorkerError) as err:
                self.start()
                got = {}
                why = (f"ran past the time limit of {self.timeout:g} s"
                       if isinstance(err, WorkerTimeout) else f"stopped the process ({err})")
                for n in names:
                    self.unset[n] = f"the cell '{gid}' {why}, so {n} is not set"
            except Exception as err:  # noqa: BLE001 - the learner's cell raised
                got = {}
                for n in names:
                    self.unset[n] = f"the cell '{gid}' raised {type(err).__name__}: {err}"
            for n in names:
                value = got.get(n)
                self.values[n] = value
                if value is None and n not in self.unset:
                    self.unset[n] = f"{n} is not set yet: complete the cell '{gid}' first"
        return self.values

    def _instructor(self, gid: str) -> str:
        return next(code for g, _, code in self.grader.cells if g == gid)

    # -- one test cell --------------------------------------------------------------------------
    def run_test(self, gid: str, code: str) -> Verdict:
        if self.worker is None or not self.worker.alive:
            self.start()
        if self.ex is None:
            return Verdict(gid, False, error=IMPORT_ERROR, message=(
                f"{self.grader.module}.py could not be imported, so its tests cannot run: "
                f"{self.import_error}"))
        reads = _reads(code)
        namespace = dict(self.grader.namespace)
        namespace.update({name: self.ex for name in self.grader.bindings})
        solution_names = {n for gid_, kind, c in self.grader.cells if kind == "solution"
                          for n in _assigned(_stub(c))}
        if reads & solution_names:
            namespace.update(self.learner_values())
            missing = [n for n in sorted(reads & solution_names) if n in self.unset]
            if missing:
                return Verdict(gid, False, error=TODO_NOT_DONE, message=(
                    f"this check uses {', '.join(missing)}, a notebook TODO not done yet: "
                    f"{self.unset[missing[0]]}"))
        rerun = self._rerun_values(gid, reads)
        if isinstance(rerun, Verdict):
            return rerun
        namespace.update(rerun)
        out = io.StringIO()
        self.worker.shortcuts.clear()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), \
                    _grading_env():
                exec(compile(code, f"<{gid}>", "exec"), namespace)  # noqa: S102 - instructor code
        except BaseException as err:  # noqa: BLE001 - every failure becomes a verdict
            return self._shortcut(self._failure(gid, err, out.getvalue()))
        return Verdict(gid, True, output=out.getvalue())

    def _shortcut(self, verdict: Verdict) -> Verdict:
        """A failed test whose run took a library shortcut (course.sandbox.by_hand) says so
        first: that, not the differing values, is what to fix."""
        taken = self.worker.shortcuts if self.worker is not None else []
        if verdict.passed or not taken:
            return verdict
        return dataclasses.replace(verdict, error="ShortcutUsed", message=(
            f"{taken[0]}\n{verdict.message}"))

    def _rerun_values(self, gid: str, reads: set[str]) -> dict[str, Any] | Verdict:
        """Values a visible test reads that a locked cell computes by calling the learner's
        module (the notebook's training run): that cell is re-run here, with the reference
        module's driver calling the learner's functions (which run in the worker)."""
        if gid.endswith("_hidden"):
            return {}
        values = {}
        for cell_gid, kind, code in self.grader.cells:
            if cell_gid == gid:
                break
            if kind != "locked" or not (set(_learner_dependent(code, self.grader.bindings))
                                        & reads):
                continue
            if cell_gid not in self.rerun:
                self.rerun[cell_gid] = self._rerun(cell_gid, code)
            if isinstance(self.rerun[cell_gid], Verdict):
                v = self.rerun[cell_gid]
                return Verdict(gid, False, error=v.error, message=v.message)
            values.update(self.rerun[cell_gid])
        return values

    def _rerun(self, cell_gid: str, code: str) -> dict[str, Any] | Verdict:
        ref = self.grader.reference
        pieces = {name: getattr(self.ex, name) for name, is_config in
                  self.grader.learner_names.items() if not is_config}
        namespace = dict(self.grader.namespace)
        namespace.update({name: ref for name in self.grader.bindings})
        try:
            with patched(ref, **pieces), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()), _grading_env():
                exec(compile(code, f"<{cell_gid}>", "exec"), namespace)  # noqa: S102
        except BaseException as err:  # noqa: BLE001
            return self._failure(cell_gid, err, "")
        return {n: namespace[n] for n in _assigned(code) if n in namespace}

    def _failure(self, gid: str, err: BaseException, printed: str) -> Verdict:
        if isinstance(err, WorkerTimeout):
            self.start()
            return Verdict(gid, False, printed, TIMEOUT, (
                f"your code ran past the time limit of {self.timeout:g} s in this test"))
        if isinstance(err, WorkerError):
            self.start()
            return Verdict(gid, False, printed, KERNEL_DIED, (
                f"your module's code stopped the grading process ({err}); "
                "the next tests ran in a fresh one"))
        if isinstance(err, TodoNotDone):
            return Verdict(gid, False, printed, TODO_NOT_DONE, str(err))
        if type(err) is NotImplementedError:   # reported as the learner's own error
            return Verdict(gid, False, printed, "NotImplementedError", _todo_message(
                err, self.grader.module))
        if isinstance(err, (HiddenTestFailure, CheckFailed)):
            return Verdict(gid, False, printed, type(err).__name__, str(err))
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            return Verdict(gid, False, printed, type(err).__name__, "the test was interrupted")
        return Verdict(gid, False, printed, type(err).__name__, f"{type(err).__name__}: {err}")


def _todo_message(err: BaseException, module: str) -> str:
    """'TODO not done: f() in module.py, line N' with the hint, from the worker's traceback."""
    tb = getattr(err, "remote_traceback", "")
    frames = re.findall(rf'File "[^"]*{re.escape(module)}\.py", line (\d+), in (\w+)', tb)
    where = f"{frames[-1][1]}() in {module}.py, line {frames[-1][0]}" if frames else \
        f"a function of {module}.py"
    hint = str(err) or "replace `raise NotImplementedError` with your code"
    return f"TODO not done: {where}\n  hint: {hint}"


def _stub(code: str) -> str:
    """A solution cell's given part (its solution region removed): what a blank copy runs."""
    out, inside = [], False
    for line in code.splitlines():
        if "BEGIN SOLUTION" in line:
            inside = True
        elif "END SOLUTION" in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def _plain(value: Any) -> bool:
    """Data that can be sent to the worker as a cell's input."""
    import torch
    if value is None or isinstance(value, (bool, int, float, str, bytes, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return len(value) <= 100_000 and all(_plain(v) for v in value[:1000])
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in list(value.items())[:1000])
    return False


@contextlib.contextmanager
def _shared_tempdirs(folder: Path):
    """Temporary folders the test code makes (a checkpoint's folder, say) are made inside the
    worker's writable folder and open to it (as are the files the test writes), so the learner's
    code can write where the test tells it to, and the test can read it back."""
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o777)
    make = tempfile.mkdtemp

    def mkdtemp(suffix=None, prefix=None, dir=None):  # noqa: A002 - tempfile's signature
        path = make(suffix, prefix, dir if dir is not None else str(folder))
        os.chmod(path, 0o777)
        return path

    tempfile.mkdtemp = mkdtemp
    umask = os.umask(0)   # what the test writes there, the learner's code may overwrite
    try:
        yield
    finally:
        tempfile.mkdtemp = make
        os.umask(umask)


@contextlib.contextmanager
def _grading_env():
    old = os.environ.get(GRADING_ENV)
    os.environ[GRADING_ENV] = "autograde"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(GRADING_ENV, None)
        else:
            os.environ[GRADING_ENV] = old


_GRADERS: dict[str, TrustedGrader] = {}


def grader_for(step: str) -> TrustedGrader:
    """The step's TrustedGrader, built on first use and kept for the process (a batch)."""
    if step not in _GRADERS:
        _GRADERS[step] = TrustedGrader(step)
    return _GRADERS[step]
