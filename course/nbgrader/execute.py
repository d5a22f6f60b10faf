"""nbgrader's Execute preprocessor, hardened against hostile or broken submissions.

nbgrader (0.9.6) already interrupts a cell that runs past `Execute.timeout`, but then sends the
next cell to a kernel that may still be busy (a loop that ignores interrupts makes every later
cell time out in turn), and a kernel that dies (`os._exit`, a segfault, out of memory) fails the
whole submission. Here:

- after a timeout the kernel must answer a no-op within `interrupt_grace` seconds; if it does
  not, it is killed and the remaining cells are marked as not run (KernelUnresponsive);
- a dead kernel marks its cell (KernelDied) and the remaining cells as not run;
- a notebook that exceeds `notebook_timeout` in total stops running cells.

Cells that are not run get an error output, so their tests score zero and the reason shows in
the autograded notebook and the feedback. The submission itself is always graded.
"""
from __future__ import annotations

from queue import Empty
from time import monotonic

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer

NOT_RUN = "CellNotRun"
KERNEL_DIED = "KernelDied"
UNRESPONSIVE = "KernelUnresponsive"
TIMEOUT = "CellTimeoutError"


def error_output(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class RobustExecute(Execute):
    """Execute that survives dead and unresponsive kernels (see the module docstring)."""

    interrupt_grace = Integer(
        10, help="Seconds a kernel has to answer after a timed-out cell was interrupted."
    ).tag(config=True)
    notebook_timeout = Integer(
        900, help="Total seconds for one notebook; later cells are not run."
    ).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._stopped: str | None = None
        self._started = monotonic()
        return super().preprocess(nb, resources, km)

    def _label(self, cell, index: int) -> str:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        return f"cell {index}" + (f" ({grade_id})" if grade_id else "")

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        if self._stopped is None and monotonic() - self._started > self.notebook_timeout:
            self._stopped = f"the notebook used up its time budget of {self.notebook_timeout} s"
        if self._stopped is not None:
            cell.outputs = [error_output(NOT_RUN, f"not run: {self._stopped}")]
            return cell, resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self.log.error("Kernel died in %s", self._label(cell, index))
            cell.outputs.append(error_output(
                KERNEL_DIED, "the kernel died while running this cell (os._exit, a crash or "
                             "running out of memory); the cells after it were not run"))
            self._stopped = f"the kernel died in {self._label(cell, index)}"
            return cell, resources
        except CellTimeoutError:  # raised when the interrupted kernel stays silent on IOPub
            cell.outputs.append(error_output(TIMEOUT, f"the cell ran past {self.timeout} s"))
        if any(o.get("ename") == TIMEOUT for o in cell.outputs) and not self._answers():
            self.log.error("Kernel unresponsive after a timeout in %s", self._label(cell, index))
            cell.outputs.append(error_output(
                UNRESPONSIVE, f"this cell ran past {self.timeout} s and the kernel ignored the "
                              "interrupt, so it was stopped; the cells after it were not run"))
            self._stopped = f"the kernel stopped responding in {self._label(cell, index)}"
            self._kill()
        return cell, resources

    def _answers(self) -> bool:
        """Does the kernel run a no-op within `interrupt_grace` seconds?"""
        msg_id = self.kc.execute("", silent=True, store_history=False)
        deadline = monotonic() + self.interrupt_grace
        while (left := deadline - monotonic()) > 0:
            try:
                msg = run_sync(self.kc.shell_channel.get_msg)(timeout=left)
            except Empty:
                return False
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return True
        return False

    def _kill(self) -> None:
        try:
            run_sync(self.km.shutdown_kernel)(now=True)
        except Exception as err:  # noqa: BLE001 - the kernel may already be gone
            self.log.warning("Could not shut down the kernel: %s", err)
