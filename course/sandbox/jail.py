"""Run a learner's code where it can read the course but change nothing outside its own folder.

    jailed_command(["python", "-m", "ipykernel_launcher", "-f", conn], writable=[folder],
                   keep=[conn])

returns a command that, on Linux, starts the given one in new mount and process namespaces
(`unshare`, as root, or inside a user namespace otherwise):

- the repository (the course, its environment in .venv) is mounted read-only;
- `solutions/` (and COURSE_SOLUTIONS), and in an nbgrader course root the gradebook, the
  instructor's `source/` and every learner's `submitted/`, `autograded/` and `feedback/`
  folders are hidden behind empty mounts, except the writable folders of this run;
- /tmp is a private, empty tmpfs (an interpreter installed under /tmp stays, read-only); the
  files named in `keep` (a kernel's connection file) are copied into it at the same path;
- it is the first process of its own PID namespace: when it exits, every process it started
  (a background fork included) is killed;
- run as root, it drops to the unprivileged user `nobody`, so the rest of the file system is
  read-only to it as well; limits: no core files, at most 2 GiB per written file, 256 processes.

Where namespaces are not available (not Linux, user namespaces disabled) the command is run as
it is and `isolation()` says so; grading then relies on the content hashes of
`course.sandbox.integrity` to notice and undo writes outside a submission's folder.
Set COURSE_JAIL=0 to turn the jail off (for debugging).
"""
from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from course import REPO_ROOT

NOBODY = 65534


@functools.lru_cache(maxsize=1)
def isolation() -> str:
    """"root" (namespaces and a user switch), "userns" (namespaces in a user namespace) or
    "none" (no jail available or COURSE_JAIL=0)."""
    if os.environ.get("COURSE_JAIL", "1") == "0" or sys.platform != "linux" or \
            not shutil.which("unshare"):
        return "none"
    base = ["unshare", "--mount", "--pid", "--fork"]
    if os.geteuid() != 0:
        base.insert(1, "--user")
        base.insert(2, "--map-root-user")
    try:
        ok = subprocess.run([*base, "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        return "none"
    return "root" if os.geteuid() == 0 else "userns"


def hidden_paths() -> list[Path]:
    """What jailed code must not read: the answer key and the grading course roots (the
    gradebook, the instructor's notebooks with hidden tests, every learner's submission)."""
    paths = [REPO_ROOT / "solutions", REPO_ROOT / "build"]
    for variable in ("COURSE_SOLUTIONS", "COURSE_NBGRADER_ROOT"):
        if os.environ.get(variable):
            paths.append(Path(os.environ[variable]))
    if (Path.cwd() / "nbgrader_config.py").exists():  # nbgrader runs from its course root
        paths.append(Path.cwd())
    return paths


def jailed_command(command: Sequence[str], writable: Sequence[str | os.PathLike] = (),
                   keep: Sequence[str | os.PathLike] = (), network: bool = True,
                   hide: Sequence[str | os.PathLike] = ()) -> list[str]:
    """`command` wrapped in the jail (see the module docstring); unchanged without isolation.
    `network=False` also gives it an empty network namespace; `hide` adds paths to hide."""
    mode = isolation()
    if mode == "none":
        return list(command)
    outer = [sys.executable, "-m", "course.sandbox.jail", "--outer", "--",
             "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private"]
    if mode == "userns":
        outer[6:6] = ["--user", "--map-root-user"]
    if not network:
        outer.append("--net")
    inner = [sys.executable, "-m", "course.sandbox.jail", "--mode", mode]
    for path in writable:
        inner += ["--writable", str(Path(path).resolve())]
    for path in keep:
        inner += ["--keep", str(Path(path).resolve())]
    for path in [*hidden_paths(), *map(Path, hide)]:
        inner += ["--hide", str(path)]
    return [*outer, *inner, "--", *command]


def worker_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of jailed code: only what Python, torch and transformers need, so
    learner code cannot read the grader's settings (tokens, paths of other submissions)."""
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONHASHSEED", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VIRTUAL_ENV", "LD_LIBRARY_PATH")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1",
               TRANSFORMERS_NO_ADVISORY_WARNINGS="1", PYTHONPATH=str(REPO_ROOT),
               HOME="/tmp/home", MPLCONFIGDIR="/tmp/home/.matplotlib",
               HF_HOME="/tmp/home/.cache/huggingface", IPYTHONDIR="/tmp/home/.ipython",
               JUPYTER_RUNTIME_DIR="/tmp/home/.jupyter-runtime")
    env.update(extra or {})
    return env


# --- inside the namespaces (run as `python -m course.sandbox.jail ... -- command`) --------------
def _mount(*args: str, fds: Sequence[int] = ()) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, pass_fds=tuple(fds))


def _enter(mode: str, writable: list[str], keep: list[str], hide: list[str]) -> None:
    kept = {path: Path(path).read_bytes() for path in keep if Path(path).is_file()}
    # Writable folders may lie inside hidden ones (a submission inside autograded/, a copy in
    # /tmp): hold each open, hide, then bind it back into place from its descriptor.
    held = [os.open(folder, os.O_RDONLY | os.O_DIRECTORY) for folder in writable]
    _mount("--bind", str(REPO_ROOT), str(REPO_ROOT))
    _mount("-o", "remount,bind,ro", str(REPO_ROOT))
    for path in hide:
        p = Path(path)
        if p.is_dir():
            _mount("-t", "tmpfs", "-o", "size=1m,mode=755", "tmpfs", str(p))
        elif p.exists():
            _mount("--bind", "/dev/null", str(p))
    if mode == "root":
        for needed in {Path(sys.base_prefix), Path(sys.prefix), REPO_ROOT}:
            _open_up(needed)
    private = [Path(p) for p in ("/tmp", "/dev/shm") if Path(p).is_dir()]
    # Python itself may live in /tmp (a JupyterHub test's copy): keep it, read-only.
    interpreter = {str(p): os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in
                   {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
                   if any(p.is_relative_to(d) for d in private)}
    for folder in private:
        _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", str(folder))
    for folder, fd in interpreter.items():
        Path(folder).mkdir(parents=True, exist_ok=True)
        _mount("--no-canonicalize", "--bind", f"/proc/self/fd/{fd}", folder, fds=[fd])
        _mount("-o", "remount,bind,ro", folder)
        os.close(fd)
    for folder, fd in zip(writable, held):
        target = Path(folder)
        if not target.is_dir():  # its parent is hidden now: recreate the path on the empty mount
            target.mkdir(parents=True, exist_ok=True)
        _mount("--no-canonicalize", "--bind", f"/proc/self/fd/{fd}", str(target), fds=[fd])
        os.close(fd)
    for path, data in kept.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
        if mode == "root":
            os.chown(path, NOBODY, NOBODY)
    home = Path("/tmp/home")
    home.mkdir(mode=0o700, exist_ok=True)
    if mode == "root":
        os.chown(home, NOBODY, NOBODY)
        for folder in writable:
            for dirpath, dirnames, filenames in os.walk(folder):
                for name in [dirpath, *(os.path.join(dirpath, f) for f in dirnames + filenames)]:
                    try:
                        os.chown(name, NOBODY, NOBODY, follow_symlinks=False)
                    except OSError:
                        pass


def _open_up(path: Path) -> None:
    """Let `nobody` reach `path` (Python itself may live in root's 0700 home): over the first
    ancestor others cannot enter, mount an empty tmpfs and bind back only the way to `path`."""
    path = path.resolve()
    for ancestor in [*reversed(path.parents), path][1:]:
        if os.stat(ancestor).st_mode & 0o001:
            continue
        child = path.relative_to(ancestor).parts[:1]
        if not child:
            return  # `path` itself is closed: leave it as it is
        keep_path = ancestor / child[0]
        fd = os.open(keep_path, os.O_RDONLY | os.O_DIRECTORY)
        _mount("-t", "tmpfs", "-o", "size=1m,mode=755", "tmpfs", str(ancestor))
        keep_path.mkdir()
        _mount("--no-canonicalize", "--bind", f"/proc/self/fd/{fd}", str(keep_path), fds=[fd])
        os.close(fd)
        return


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 30, 2 << 30))
    resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outer", action="store_true",
                        help="ignore SIGINT, then run the command (unshare): an interrupt sent "
                             "to the process group must reach the jailed kernel, not end the jail")
    parser.add_argument("--mode", choices=["root", "userns"])
    parser.add_argument("--writable", action="append", default=[])
    parser.add_argument("--keep", action="append", default=[])
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.outer:
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.execvp(command[0], command)
    cwd = os.getcwd()
    try:
        _enter(args.mode, args.writable, args.keep, args.hide)
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", b"") or b""
        sys.stderr.write(f"course.sandbox.jail: could not set up the jail: {err} "
                         f"{detail.decode(errors='replace')}\n")
        sys.exit(70)
    os.chdir(cwd)
    if args.mode == "root":
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    _limits()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
