"""The Jupyter kernel that nbgrader runs a submission in, started inside the jail.

`configure()` (course/nbgrader/config.py) sets `Execute.kernel_manager_class` to
`JailedKernelManager`: the kernel may write only its own working folder (the submission being
graded), cannot read the answer key, the gradebook or other learners' work, sees a private /tmp
and an environment without the grader's variables, and every process it starts ends with it.
Its outputs are shown to the learner but never scored: `course.nbgrader.trusted` computes the
points outside it.
"""
from __future__ import annotations

import os
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from course.notebook import GRADING_ENV
from course.sandbox.jail import isolation, jailed_command, worker_environment


class JailedKernelManager(AsyncKernelManager):
    """AsyncKernelManager whose kernel command runs through `course.sandbox.jail`."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        cwd = (self._launch_args or {}).get("cwd") or os.getcwd()
        return jailed_command(cmd, writable=[cwd], keep=[os.path.realpath(self.connection_file)])

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if isolation() != "none":
            env = worker_environment({GRADING_ENV: os.environ.get(GRADING_ENV, "autograde")})
            for key in ("JPY_PARENT_PID", "JPY_SESSION_NAME"):
                if key in (kw.get("env") or {}):
                    env[key] = kw["env"][key]
            kw["env"] = env
        await super()._async_launch_kernel(kernel_cmd, **kw)

