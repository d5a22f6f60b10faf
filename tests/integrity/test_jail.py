"""The jail learner code runs in (course/sandbox/jail.py), checked directly: what it hides,
what it keeps writable, and that nothing outlives it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from course import REPO_ROOT
from course.sandbox.jail import isolation, jailed_command

pytestmark = pytest.mark.skipif(isolation() == "none", reason="no namespaces on this machine")


def run_jailed(code: str, cwd=None, **kw) -> subprocess.CompletedProcess:
    cmd = jailed_command([sys.executable, "-c", textwrap.dedent(code)], **kw)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_only_the_course_is_there_read_only(tmp_path):
    """Of the repository only the course package (and the committed results) exist; the answer
    key, the history and the tests are absent, not just empty."""
    result = run_jailed(f"""
        import os, pathlib
        print(sorted(os.listdir({str(REPO_ROOT)!r})))
        for target in [{str(REPO_ROOT / 'course' / 'x.txt')!r}, {str(tmp_path / 'ok.txt')!r}]:
            try:
                pathlib.Path(target).write_text("x")
                print("wrote", target)
            except OSError as err:
                print("refused", type(err).__name__)
        """, writable=[tmp_path])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert set(eval(lines[0])) <= {"course", "benchmarks", ".venv"}, lines[0]
    assert lines[1].startswith("refused")        # the course cannot be changed
    assert lines[2] == f"wrote {tmp_path / 'ok.txt'}"
    assert not (REPO_ROOT / "course" / "x.txt").exists()


def test_a_background_process_ends_with_the_jail(tmp_path):
    marker = tmp_path / "still-alive"
    result = run_jailed(f"""
        import os, time
        if os.fork() == 0:
            time.sleep(3)
            open({str(marker)!r}, "w").write("x")
            os._exit(0)
        print("parent done")
        """, writable=[tmp_path])
    assert result.stdout.strip() == "parent done", result.stderr
    import time
    time.sleep(4)
    assert not marker.exists()


def test_a_course_in_a_closed_home_runs_as_nobody(tmp_path):
    """A clone in a folder only root can enter (a 0700 home) still runs: the jail makes the way
    to what it binds anew, and the jailed code is not root."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    closed = tmp_path / "home"
    (closed / "work").mkdir(parents=True)
    closed.chmod(0o700)
    result = run_jailed(f"""
        import os
        print(os.getuid(), os.getcwd(), open("x", "w").write("ok"))
        """, writable=[closed / "work"], cwd=closed / "work")
    assert result.stdout.split() == ["65534", str(closed / "work"), "2"], result.stderr


def test_tmp_is_private(tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    result = run_jailed(f"""
        import os
        print(os.path.exists({str(outside)!r}))
        """, writable=[tmp_path])
    assert result.stdout.strip() == "False", result.stderr


def test_an_interpreter_under_tmp_still_runs_in_the_jail(tmp_path):
    """A JupyterHub's users may run a Python copied under /tmp: the jail's private /tmp keeps it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    script = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
              "import subprocess; from course.sandbox.jail import jailed_command; "
              "r = subprocess.run(jailed_command([sys.executable, '-c', 'print(42)']), "
              "capture_output=True, text=True); print(r.stdout.strip(), r.returncode)")
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.split() == ["42", "0"], result.stderr


def test_without_namespaces_grading_refuses_unless_the_jail_is_turned_off(monkeypatch):
    """Where the jail cannot be had, learner code does not run unjailed by accident: the
    refusal says why and what to change; COURSE_JAIL=0 is the instructor's explicit opt-in."""
    from course.sandbox import jail
    monkeypatch.setattr(jail.shutil, "which", lambda name: None)
    jail._probe.cache_clear()
    try:
        with pytest.raises(jail.JailUnavailable, match="unshare.*COURSE_JAIL=0"):
            jail.jailed_command(["python", "-c", "1"])
        with pytest.raises(jail.JailUnavailable):
            jail.check_jail()
        monkeypatch.setenv("COURSE_JAIL", "0")
        jail._probe.cache_clear()
        assert jail.jailed_command(["python", "-c", "1"]) == ["python", "-c", "1"]
        jail.check_jail()
    finally:
        monkeypatch.undo()
        jail._probe.cache_clear()


def test_a_jail_that_cannot_start_is_one_line_not_a_dead_kernel(monkeypatch):
    from course.sandbox import jail
    real = jail.jailed_command
    monkeypatch.setattr(jail, "jailed_command", lambda cmd, **kw: real(
        [sys.executable, "-c", "import sys; sys.exit('course.sandbox.jail: could not set up "
         "the jail: mount: Operation not permitted')"], **kw))
    with pytest.raises(jail.JailUnavailable, match="does not start here: .*Operation not"):
        jail.check_jail()


def test_make_grade_refuses_in_one_line_without_a_jail(monkeypatch, capsys, tmp_path):
    from course.nbgrader import grade
    from course.sandbox import jail
    monkeypatch.setattr(jail.shutil, "which", lambda name: None)
    jail._probe.cache_clear()
    try:
        assert grade.main(["step2_masking", "--root", str(tmp_path / "root")]) == 2
    finally:
        monkeypatch.undo()
        jail._probe.cache_clear()
    assert "cannot jail it" in capsys.readouterr().err
