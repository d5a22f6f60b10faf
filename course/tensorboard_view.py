"""A training run in TensorBoard, inside the notebook: `show(logdir)`.

    from course.tensorboard_view import show
    show("build/step3_sft/run/tensorboard")   # the event files course.metrics_log writes

TensorBoard runs in the notebook's kernel (`tensorboard.program.TensorBoard`, a daemon thread,
pure Python: `--load_fast=false`), so it stops with the kernel and leaves no process behind.
The notebook shows it in a frame whose address goes through the Jupyter server itself:
jupyter-server-proxy (a dependency of the course) forwards `<lab>/proxy/<port>/` to TensorBoard
on this machine, so the frame works wherever the lab does (a laptop, an SSH tunnel, JupyterHub),
the way `%tensorboard` does when `TENSORBOARD_PROXY_URL` is set. Without the proxy the frame
points at `http://localhost:<port>/`, which only a browser on the kernel's machine can reach.

While nbgrader grades (`course.notebook.is_grading()`) nothing is started; the command to run
in a terminal is printed instead.
"""
from __future__ import annotations

import html
import importlib.util
import json
from pathlib import Path
from urllib.parse import urlparse

_SERVERS: dict[str, str] = {}   # resolved logdir -> url of the TensorBoard serving it


def command(logdir: str | Path) -> str:
    """The terminal command that shows the same run (TensorBoard's own server, port 6006)."""
    return f".venv/bin/tensorboard --logdir {logdir}"


def start(logdir: str | Path, reload_interval: int = 5) -> str:
    """Start TensorBoard on `logdir` in this process (once per logdir) and return its URL,
    `http://localhost:<port>/`, on a free port. Raises FileNotFoundError when `logdir` does not
    exist (the run wrote no events: tensorboard missing when it ran, or another folder)."""
    path = Path(logdir).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{logdir}: no such folder; a run writes its TensorBoard events "
                                "to <output_dir>/tensorboard")
    if str(path) not in _SERVERS:
        from tensorboard import program

        board = program.TensorBoard()
        board.configure(argv=[None, "--logdir", str(path), "--port", "0", "--host", "localhost",
                              "--load_fast", "false", "--reload_interval", str(reload_interval)])
        _SERVERS[str(path)] = board.launch()
    return _SERVERS[str(path)]


def proxied() -> bool:
    """Whether jupyter-server-proxy is installed (then `<lab>/proxy/<port>/` reaches a port)."""
    return importlib.util.find_spec("jupyter_server_proxy") is not None


def frame_html(port: int, height: int = 640, proxy: bool | None = None) -> str:
    """An iframe showing TensorBoard on `port`: through the lab's proxy (its base URL read from
    the page, so a hub's /user/<name>/ prefix is kept) or, without it, at localhost."""
    proxy = proxied() if proxy is None else proxy
    frame = f"course-tensorboard-{port}"
    target = ("base + " + json.dumps(f"proxy/{port}/") if proxy
              else json.dumps(f"http://localhost:{port}/"))
    script = (
        "(function() {"
        f" const frame = document.getElementById({json.dumps(frame)});"
        " let base = '/';"
        " const config = document.getElementById('jupyter-config-data');"
        " if (config) { try { base = JSON.parse(config.textContent).baseUrl || '/'; }"
        " catch (e) {} }"
        f" frame.src = {target};"
        "})();")
    return (f'<iframe id="{html.escape(frame)}" width="100%" height="{int(height)}" '
            f'frameborder="0"></iframe><script>{script}</script>')


def show(logdir: str | Path, height: int = 640) -> str | None:
    """Show the run in `logdir` in TensorBoard below the cell; return its URL (None while
    grading, when only the terminal command is printed)."""
    from course.notebook import is_grading

    if is_grading():
        print(f"TensorBoard is not started while grading; in a terminal: {command(logdir)}")
        return None
    url = start(logdir)
    port = urlparse(url).port
    from IPython.display import HTML, display

    display(HTML(frame_html(port, height)))
    where = f"the lab's proxy/{port}/" if proxied() else url
    print(f"TensorBoard on {logdir} ({where}): one chart per logged value (train/..., "
          f"val/...), read again every few seconds while a run writes. Outside the notebook: "
          f"{command(logdir)}")
    return url
