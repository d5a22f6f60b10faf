"""The Python that users' servers run: the course's environment, reachable by every account.

The course's `.venv` is often built on an interpreter in root's home (pyenv: /root/.pyenv, mode
0700), which other accounts cannot run. Then a small venv is made in the hub's root from the
system's interpreter of the same version (Debian: /usr/bin/python3.11, same ABI), which adds the
course's site-packages (`import site; site.addsitedir(...)` in a .pth file): the same packages,
nothing copied. Its bin/ gets the few console scripts that the servers call by name.
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


def users_python(folder: Path) -> Path:
    """The interpreter for users' servers: the course's own when others can run it, else a
    venv in `folder` on the system's interpreter of the same version."""
    if course_python_is_reachable():
        return Path(sys.executable)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path=SYSTEM_PATH)
    if system is None or not reachable_by_others(Path(system)):
        raise SystemExit(f"error: other accounts cannot run {sys.executable} (in a private "
                         f"folder) and there is no system {version}: install it (Debian: apt-get "
                         f"install {version}) or build .venv on an interpreter outside /root")
    python = folder / "bin" / "python"
    if not python.exists():
        subprocess.run([system, "-m", "venv", "--without-pip", str(folder)], check=True,
                       capture_output=True, text=True)
    site_packages = sysconfig.get_path("purelib")
    lib = folder / "lib" / version / "site-packages"
    (lib / "course-environment.pth").write_text(
        f"import site; site.addsitedir({site_packages!r})\n")
    for name, module in SCRIPTS.items():
        script = folder / "bin" / name
        script.write_text(f"#!{python}\nimport sys\nfrom {module} import main\n"
                          f"sys.exit(main())\n")
        script.chmod(0o755)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    return python
