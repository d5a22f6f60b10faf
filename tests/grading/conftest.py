"""Fixtures of the grading suite: each step's notebook run once in-process, and each step's
nbgrader batch graded once per session (the nbgrader tests share one xdist group, so one worker
grades every batch and the step-specific tests reuse it)."""
from __future__ import annotations

import pytest
import torch

from steps import BY_NAME

_NOTEBOOKS: dict = {}
_BATCHES: dict = {}


@pytest.fixture(scope="session")
def in_process():
    """step name -> its InProcessNotebook (the instructor notebook run once in this process)."""
    from course.nbgrader.fixtures import InProcessNotebook

    def get(name: str):
        if name not in _NOTEBOOKS:
            step = BY_NAME[name]
            threads = torch.get_num_threads()
            if step.threads:
                torch.set_num_threads(step.threads)
            try:
                _NOTEBOOKS[name] = InProcessNotebook(name)
            finally:
                torch.set_num_threads(threads)
        return _NOTEBOOKS[name]
    return get


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """step name -> its GradedBatch: reference, blank release, the step's nbgrader wrong
    implementations, and the extra submissions a step adds (step 1: hostile ones)."""
    from course.nbgrader.fixtures import environment, grade_batch

    def get(name: str, extra=None):
        if name not in _BATCHES:
            step = BY_NAME[name]
            if extra is None and name == "step1_data":
                from hostile import hostile_submissions
                extra = hostile_submissions
            with environment(**step.environment):
                _BATCHES[name] = grade_batch(tmp_path_factory.mktemp(name), name, step.module,
                                             step.wrong(step.nbgrader), extra)
        return _BATCHES[name]
    return get
