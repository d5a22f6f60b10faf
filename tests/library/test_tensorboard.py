"""A run's metrics in TensorBoard: the event files course.metrics_log writes hold the expected
scalars (EventAccumulator), a rerun or a resume does not draw curves twice, and
course.tensorboard_view serves them, directly and through the Jupyter server's proxy (the
address step 3's notebook frame uses)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from course import lab
from course.metrics_log import MetricsLog, read_metrics
from course.tensorboard_view import command, frame_html, proxied, show, start

TAGS = {"train/loss", "train/lr", "train/grad_norm", "val/loss", "val/perplexity"}


def _run(folder: Path, steps: range, resume_step: int | None = None) -> None:
    """What the training loop logs: train records every step, validation every 2."""
    log = MetricsLog(folder, resume_step=resume_step)
    for step in steps:
        log.log({"step": step, "split": "train", "loss": 2.0 / step, "lr": 1e-3,
                 "grad_norm": 0.5, "tokens": 100})
        if step % 2 == 0:
            log.log({"step": step, "split": "val", "loss": 1.5 / step,
                     "perplexity": math.exp(1.5 / step)})
    log.close()


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def test_event_files_hold_the_logged_scalars(tmp_path):
    _run(tmp_path, range(1, 7))
    scalars = _scalars(tmp_path)
    assert set(scalars) >= TAGS
    records = read_metrics(tmp_path)
    for split in ("train", "val"):
        expected = [(r["step"], r["loss"]) for r in records if r["split"] == split]
        got = scalars[f"{split}/loss"]
        assert [s for s, _ in got] == [s for s, _ in expected]
        assert all(math.isclose(a, b, rel_tol=1e-6) for (_, a), (_, b) in zip(got, expected))


def test_a_rerun_and_a_resume_do_not_draw_curves_twice(tmp_path):
    _run(tmp_path, range(1, 7))
    _run(tmp_path, range(1, 5))                      # a fresh run in the same folder
    assert [s for s, _ in _scalars(tmp_path)["train/loss"]] == [1, 2, 3, 4]
    _run(tmp_path, range(3, 9), resume_step=2)       # resumed from the checkpoint at step 2
    assert [s for s, _ in _scalars(tmp_path)["train/loss"]] == list(range(1, 9))


def _get(url: str, token: str = "") -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=20) as resp:
        return resp.read()


def test_tensorboard_serves_the_run(tmp_path):
    _run(tmp_path, range(1, 5))
    url = start(tmp_path / "tensorboard")
    assert start(tmp_path / "tensorboard") == url  # once per folder
    assert set(json.loads(_get(url + "data/plugin/scalars/tags"))["."]) >= TAGS
    points = json.loads(_get(url + "data/plugin/scalars/scalars?run=.&tag=train/loss"))
    assert [p[1] for p in points] == [1, 2, 3, 4]   # [wall time, step, value]
    with pytest.raises(FileNotFoundError, match="no such folder"):
        start(tmp_path / "missing")


def test_the_frame_goes_through_the_lab_proxy():
    assert proxied()  # jupyter-server-proxy is a dependency of the course
    assert '"proxy/6123/"' in frame_html(6123) and "jupyter-config-data" in frame_html(6123)
    assert '"http://localhost:6123/"' in frame_html(6123, proxy=False)


def test_nothing_starts_while_grading(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert show(tmp_path / "never") is None
    assert command(tmp_path / "never") in capsys.readouterr().out


@pytest.mark.slow
def test_the_jupyter_server_proxy_reaches_tensorboard(tmp_path):
    """The address the notebook's frame loads, <server>/proxy/<port>/, answers with the run's
    scalars through a real Jupyter server."""
    _run(tmp_path, range(1, 5))
    tb_port = int(start(tmp_path / "tensorboard").rstrip("/").rsplit(":", 1)[1])
    port, token = lab.choose_port(0), "course-test-token"
    cmd = [sys.executable, "-m", "jupyter", "server", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.root_dir={tmp_path}", f"--IdentityProvider.token={token}",
           "--ServerApp.open_browser=False"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        lab.wait_until_ready(proc, base, token, timeout=60)
        tags = json.loads(_get(f"{base}/proxy/{tb_port}/data/plugin/scalars/tags", token))
        assert set(tags["."]) >= TAGS
    finally:
        lab.stop(proc)
