"""The Python that users' servers run: the course's environment, reachable by every account.

The course's `.venv` is often built on an interpreter in root's home (pyenv: /root/.pyenv, mode
0700), which other accounts cannot run. Then that interpreter (the same build, so every compiled
package works: a system Python of the same minor version did not, soupsieve's patterns failed
on Debian's 3.11.2) is copied into the hub's root without its tests and site-packages (~80 MB),
and a venv made on it adds the course's site-packages (`import site; site.addsitedir(...)` in a
.pth file): the same packages, none copied. Its bin/ gets the few console scripts that the
servers call by name.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

SCRIPTS = {"alembic": "alembic.config", "jupyter": "jupyter_core.command",
           "nbgrader": "nbgrader.apps.nbgraderapp"}
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def reachable_by_others(path: Path) -> bool:
    """Every folder from / to `path` is searchable by others, and `path` readable by them."""
    path = Path(os.path.realpath(path))
    for folder in reversed(path.parents):
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def course_python_is_reachable() -> bool:
    return (reachable_by_others(Path(sys.executable))
            and reachable_by_others(Path(sysconfig.get_path("stdlib")))
            and reachable_by_others(Path(sysconfig.get_path("purelib"))))


def copy_base_interpreter(dest: Path) -> Path:
    """sys.base_prefix without tests, site-packages and build files; returns its lib/ (the
    interpreter's RUNPATH points at the original, so LD_LIBRARY_PATH must name this one)."""
    base = Path(sys.base_prefix)
    if not (dest / "bin").exists():
        skip = shutil.ignore_patterns("test", "tests", "site-packages", "idlelib", "tkinter",
                                      "config-*", "*.a", "include", "share", "ensurepip")
        shutil.copytree(base, dest, ignore=skip, symlinks=True)
    return dest / "lib"


def users_python(folder: Path) -> tuple[Path, str]:
    """The interpreter for users' servers and the LD_LIBRARY_PATH it needs: the course's own
    when others can run it, else a venv in `folder` on a copy of it."""
    if course_python_is_reachable():
        return Path(sys.executable), ""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    lib = copy_base_interpreter(folder / "base")
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib))
    python = folder / "venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([str(folder / "base" / "bin" / version), "-m", "venv", "--without-pip",
                        str(folder / "venv")], check=True, capture_output=True, text=True,
                       env=env)
    site_dir = folder / "venv" / "lib" / version / "site-packages"
    (site_dir / "course-environment.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    for name, module in SCRIPTS.items():
        script = python.parent / name
        script.write_text(f"#!{python}\nimport sys\nfrom {module} import main\n"
                          f"sys.exit(main())\n")
        script.chmod(0o755)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    return python, str(lib)
