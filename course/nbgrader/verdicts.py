"""The autograde preprocessors that make nbgrader score trusted verdicts, not the kernel's word.

    sanitize:   ... TrustedSetup            (before the first kernel of the batch)
    autograde:  RobustExecute, ..., LimitOutput, TrustedVerdicts, SaveAutoGrades, ...

`TrustedSetup` builds the step's `TrustedGrader` (the instructor notebook with the reference,
in nbgrader's own process) and records the content of the course, the answer key and the course
root's release (`integrity.Pristine`), both before any learner code of the batch has run.
`TrustedVerdicts` runs after the kernel: it checks that the submission changed none of those files
(putting back any it changed), grades the submission's module in a jailed worker, and replaces the
outputs of every graded test cell with the verdict. The kernel's outputs of the other cells stay,
so the learner still sees their own notebook run. Each verdict also goes into the cell's metadata
(`course.verdict`), which the reports read.
"""
from __future__ import annotations

import os
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool

from course.nbgrader import course_root
from course.nbgrader.integrity import Pristine
from course.nbgrader.structure import grade_id

TAMPERED = "Tampering"
_PRISTINE: dict[str, Pristine] = {}


def protected_roots(root: Path) -> list[Path]:
    """Folders grading reads that no submission may change."""
    from course import REPO_ROOT
    from course.grading import solutions_dir
    return [REPO_ROOT / "course", solutions_dir(), root / "release", root / "source"]


def _pristine(root: Path) -> Pristine:
    key = str(root.resolve())
    if key not in _PRISTINE:
        _PRISTINE[key] = Pristine.record(protected_roots(root))
    return _PRISTINE[key]


def _graded_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


class TrustedSetup(NbGraderPreprocessor):
    """Sanitize step: build the step's trusted grader and record the pristine course."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):
        if self.enabled:
            from course.nbgrader.trusted import grader_for
            _pristine(Path(os.getcwd()))
            grader_for(resources["nbgrader"]["assignment"])
        return nb, resources


class TrustedVerdicts(NbGraderPreprocessor):
    """Autograde step: the graded test cells' outputs become the trusted verdicts."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):
        if not self.enabled:
            return nb, resources
        from course.nbgrader.config import cell_timeout, notebook_timeout
        from course.nbgrader.trusted import Verdict, grader_for
        info = resources["nbgrader"]
        root = Path(os.getcwd())
        folder = Path(resources.get("metadata", {}).get("path") or
                      course_root() / "autograded" / info["student"] / info["assignment"])
        pristine = _pristine(root)
        changed = pristine.check()
        if changed and not pristine.blames():   # jailed: someone else edited the course
            self.log.warning("files grading reads changed during %s/%s (not by it: it ran "
                             "jailed): %s", info["student"], info["assignment"],
                             ", ".join(changed[:5]))
            changed = []
        if changed:
            self.log.error("%s/%s changed files grading reads (put back): %s",
                           info["student"], info["assignment"], ", ".join(changed[:5]))
            shown = ", ".join(os.path.relpath(p, root.parent) for p in changed[:3])
            verdicts = {grade_id(c): Verdict(grade_id(c), False, error=TAMPERED, message=(
                f"this submission's code wrote to the course's own files ({shown}); they were "
                "put back and the submission scores 0: a submission may write only its own "
                "folder")) for c in nb.cells if _graded_test(c)}
        else:
            log = root / "logs" / f"worker-{info['assignment']}-{info['student']}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            grading = grader_for(info["assignment"]).grade(
                folder, notebook=nb, timeout=cell_timeout(), budget=notebook_timeout(), log=log)
            verdicts = grading.verdicts
            self.log.info("%s/%s: trusted grading %.1f s (%d worker restarts)", info["student"],
                          info["assignment"], grading.seconds, grading.worker_restarts)
        for cell in nb.cells:
            if not _graded_test(cell):
                continue
            gid = grade_id(cell)
            verdict = verdicts.get(gid) or Verdict(gid, False, error="NoVerdict", message=(
                "this test cell is not part of the course's tests"))
            # what the kernel reported here stays as a note (a timeout, a dead kernel), not a score
            kernel = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            record = cell.metadata.setdefault("course", {})
            if kernel:
                record["kernel_error"] = {"ename": kernel[-1].get("ename", ""), "evalue": str(
                    kernel[-1].get("evalue", "")).splitlines()[0][:200] if kernel[-1].get(
                        "evalue") else ""}
            cell.outputs = verdict.outputs()
            record["verdict"] = {
                "passed": verdict.passed, "error": verdict.error,
                "reason": verdict.message.splitlines()[0] if verdict.message else ""}
        return nb, resources

