"""`make lab` (course/lab.py) without a browser: the landing page, busy ports, a second start,
stale course roots, root, and the server always stopped. The browser tests are in
test_browser_lab.py."""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course import REPO_ROOT, lab

STEPS = ["step1_data", "step2_masking", "step3_sft", "step4_lora"]


# --- the landing page ---------------------------------------------------------------------------
def test_index_lists_every_step_with_its_tutorials_time_and_the_checklist():
    nb = nbformat.read(str(REPO_ROOT / "index.ipynb"), as_version=4)
    assert all(c.cell_type == "markdown" for c in nb.cells), "the landing page runs no code"
    text = "\n".join(c.source for c in nb.cells)
    for step in STEPS:
        assert f"({step}/tutorial.ipynb)" in text, f"no link to {step}"
        source = REPO_ROOT / "solutions" / step / "tutorial.py"
        if source.exists():  # the time the tutorial itself announces
            m = re.search(r"\*\*Time:\*\* (\d+)[–-](\d+) minutes", source.read_text())
            assert m, f"{source}: no '**Time:** A–B minutes' line"
            row = next(line for line in text.splitlines() if f"({step}/tutorial.ipynb)" in line)
            assert f"{m[1]}–{m[2]} min" in row, f"index.ipynb: {step}'s time is not {source}'s"
    assert text.count("- [ ]") >= 6, "the self-check checklist"


# --- pieces of the launcher ---------------------------------------------------------------------
def test_busy_port_moves_to_the_next_free_one(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        port = lab.choose_port(busy)
    assert port != busy and port > busy
    assert f"port {busy} is busy" in capsys.readouterr().out


def test_allow_root_only_as_root(monkeypatch):
    monkeypatch.setattr(lab.os, "geteuid", lambda: 0)
    assert "--allow-root" in lab.jupyter_command(Path("/x"), 1, "t", "/lab", [])
    assert lab.jupyter_command(Path("/x"), 1, "t", "/lab", ["--allow-root"]).count(
        "--allow-root") == 1
    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    assert "--allow-root" not in lab.jupyter_command(Path("/x"), 1, "t", "/lab", [])


def test_missing_and_stale_course_roots_are_explained(tmp_path):
    assert "run `make release`" in lab.course_root_problem(tmp_path / "nothing")
    (tmp_path / "nbgrader_config.py").write_text("")
    assert "gradebook.db is missing" in lab.course_root_problem(tmp_path)
    (tmp_path / "gradebook.db").write_bytes(b"not a database")
    assert "cannot be read" in lab.course_root_problem(tmp_path)


def test_generated_config_points_nbgrader_at_the_course_root(tmp_path):
    from traitlets.config import Config

    config_dir = lab.write_lab_config(tmp_path / "lab", tmp_path / "build" / "course", tmp_path)
    c = Config()
    code = (config_dir / "nbgrader_config.py").read_text()
    exec(compile(code, "nbgrader_config.py", "exec"), {"get_config": lambda: c})
    assert c.CourseDirectory.root == str((tmp_path / "build" / "course").resolve())
    assert c.Exchange.root == str((tmp_path / "lab" / "exchange").resolve())
    assert c.Execute.timeout > 0  # the course's configuration, as for `make grade`


# --- the real thing: start, start again, stop --------------------------------------------------
@pytest.mark.slow
@pytest.mark.xdist_group("browser")
def test_second_start_reports_the_running_server_and_stopping_leaves_nothing(tmp_path):
    root = tmp_path / "course"
    (root / "step1_data").mkdir(parents=True)
    info = tmp_path / "server.json"
    cmd = [sys.executable, "-m", "course.lab", "--root", str(root), "--port", "0",
           "--no-browser", "--info-file", str(info)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not info.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.3)
        server = json.loads(info.read_text())
        assert lab.answers(f"{server['base']}/api/status", server["token"])
        second = subprocess.run(cmd[:-2], capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout and server["base"] in second.stdout
    finally:
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=30)
    assert "formgrader is off" in out and "make release" in out  # no course root in the copy
    assert "JupyterLab for the course is running" in out
    assert not lab.answers(f"{server['base']}/api/status", server["token"], timeout=1)
    assert not (root / "nbgrader_config.py").exists(), "nothing written into the served folder"
