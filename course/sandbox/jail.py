"""Run a learner's code where it sees only what it needs.

    jailed_command(["python", "-m", "ipykernel_launcher", "-f", conn], writable=[folder],
                   keep=[conn])

returns a command that, on Linux, starts the given one in new mount and PID namespaces
(`unshare`, as root, or inside a user namespace otherwise) on a file system of its own, built
from an allow-list, not by hiding what it must not see:

- an empty root (a tmpfs) that receives, read-only and at their own paths: the system (/usr,
  /etc and the /bin, /lib* links), the Python installation and environment, the `course`
  package (code and assets) and the committed results the notebooks quote
  (`visible_paths()`); a minimal /dev, /sys, and a /proc of its own PID namespace;
- the `writable` folders (the submission being graded), read-write at their own paths;
- a private, empty /tmp and /dev/shm; the files named in `keep` (a kernel's connection file)
  are copied into it at the same path;
- nothing else. The rest of the repository (.git, solutions/, tests/, docs/, build/), home
  directories, the gradebook and other learners' work do not exist there, and the old root is
  detached (pivot_root), so no path leads back to it. Parent folders of what is bound are
  made anew (mode 755): a course cloned in a home only root can enter works too;
- it is the first process of its own PID namespace: when it exits, every process it started
  (a background fork included) is killed;
- it runs without privileges: as root it becomes `nobody`; in a user namespace every
  capability is dropped; setuid programs gain nothing (no_new_privs). Limits: no core files,
  at most 2 GiB per written file, 256 processes.

Where namespaces are not available (not Linux, user namespaces disabled, no `unshare`),
`jailed_command` refuses (JailUnavailable, with the reason and what to change) unless the
instructor turns the jail off with COURSE_JAIL=0, which then also covers debugging.
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from course import PACKAGE_DIR, REPO_ROOT

NOBODY = 65534
SYSTEM = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
OFF_HINT = "set COURSE_JAIL=0 to grade without it (only submissions you trust)"


class JailUnavailable(RuntimeError):
    """Learner code would run unisolated: grading refuses unless COURSE_JAIL=0."""


def jail_disabled() -> bool:
    """The instructor turned the jail off (COURSE_JAIL=0)."""
    return os.environ.get("COURSE_JAIL", "1") == "0"


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[str, str]:
    """(mode, why): mode "root", "userns" or "none"; why says what is missing for "none"."""
    if jail_disabled():
        return "none", "the jail is turned off (COURSE_JAIL=0)"
    if sys.platform != "linux":
        return "none", f"the jail needs Linux namespaces; this is {sys.platform}"
    if not shutil.which("unshare"):
        return "none", "the jail needs `unshare` (util-linux) on the PATH"
    base = ["unshare", "--mount", "--pid", "--fork"]
    if os.geteuid() != 0:
        base[1:1] = ["--user", "--map-root-user"]
    try:
        run = subprocess.run([*base, "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return "none", f"`unshare` failed: {err}"
    if run.returncode != 0:
        detail = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "no message"
        hint = ("run as root, or allow user namespaces (sysctl "
                "kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)"
                if os.geteuid() != 0 else "the container may forbid mount namespaces "
                "(docker: --cap-add SYS_ADMIN or --privileged)")
        return "none", f"namespaces are not available ({detail}): {hint}"
    return ("root" if os.geteuid() == 0 else "userns"), ""


def isolation() -> str:
    """"root" (namespaces and a user switch), "userns" (namespaces in a user namespace) or
    "none" (no jail available, or COURSE_JAIL=0)."""
    return _probe()[0]


def require_isolation() -> None:
    """Raise JailUnavailable, saying why and what to change, if learner code would run
    unjailed without the instructor having asked for it (COURSE_JAIL=0)."""
    mode, why = _probe()
    if mode == "none" and not jail_disabled():
        raise JailUnavailable(f"Grading runs learner code, and this machine cannot jail it: {why}; "
                              f"or {OFF_HINT}.")


def check_jail() -> None:
    """Before a batch: raise JailUnavailable with one line saying why, if learner code would
    run unjailed (unasked), or if the jail cannot be built here (its own error and the fix)."""
    require_isolation()
    if isolation() == "none":
        return
    run = subprocess.run(jailed_command([sys.executable, "-c", "import course"]),
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines() or [f"exit code {run.returncode}"]
        raise JailUnavailable(f"the jail for learner code does not start here: {lines[-1]}")


def visible_paths() -> list[Path]:
    """What of the repository jailed code may read: the `course` package (code and assets)
    and the committed results the notebooks quote. Plus COURSE_JAIL_READ (os.pathsep list)."""
    paths = [PACKAGE_DIR, REPO_ROOT / "benchmarks" / "results"]
    paths += [Path(p) for p in os.environ.get("COURSE_JAIL_READ", "").split(os.pathsep) if p]
    return [p for p in paths if p.exists()]


def _python_paths() -> list[Path]:
    """The interpreter, its environment, the package folders it adds (a .pth pointing at
    another environment, as a hub's users' venv does) and the libraries it loads
    (LD_LIBRARY_PATH). Never a folder of the repository other than its `.venv`."""
    found = []
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        found += [Path(prefix), Path(prefix).resolve()]
    found += [Path(p) for p in sys.path
              if {"site-packages", "dist-packages"} & set(Path(p).parts)]
    found += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    return [p for p in dict.fromkeys(found) if p.is_dir()]


def jailed_command(command: Sequence[str], writable: Sequence[str | os.PathLike] = (),
                   keep: Sequence[str | os.PathLike] = (), network: bool = True,
                   read: Sequence[str | os.PathLike] = ()) -> list[str]:
    """`command` wrapped in the jail (see the module docstring). `network=False` also gives it
    an empty network namespace; `read` adds read-only paths to what it sees. Without
    namespaces: the command unchanged if COURSE_JAIL=0, else JailUnavailable."""
    require_isolation()
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
    for path in [*_python_paths(), *visible_paths(), *map(Path, read)]:
        inner += ["--read", str(path)]
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
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
# statvfs flags a read-only remount must keep (a user namespace may not clear them)
KEPT_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
              os.ST_NOATIME: 1024, os.ST_NODIRATIME: 2048, os.ST_RELATIME: 1 << 21}
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}
SYS_MOUNT_SETATTR = 442
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 38, 24, 28
SECURE_NOROOT = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20  # noroot, no setuid fixup, keep-caps: locked
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str | Path, fstype: str | None = None, flags: int = 0,
           data: str | None = None) -> None:
    enc = lambda s: None if s is None else str(s).encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {source} on {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _read_only(target: Path) -> None:
    """Make the mount at `target` read-only, with everything mounted below it."""
    attr = _MountAttr(attr_set=1)   # MOUNT_ATTR_RDONLY, recursively (AT_RECURSIVE)
    if _libc.syscall(SYS_MOUNT_SETATTR, -100, str(target).encode(), 0x8000, ctypes.byref(attr),
                     ctypes.sizeof(attr)) == 0:
        return
    kept = os.statvfs(target).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    flags |= sum(ms for st, ms in KEPT_FLAGS.items() if kept & st)
    _mount(None, target, flags=flags)


def _bind(fd: int, target: Path, read_only: bool) -> None:
    _mount(f"/proc/self/fd/{fd}", target, flags=MS_BIND | MS_REC)
    if read_only:
        _read_only(target)


def _place(target: Path, like_dir: bool) -> None:
    """An empty mount point at `target` (parents made as needed, mode 755)."""
    if target.exists() or target.is_symlink():
        return
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if like_dir:
        target.mkdir(mode=0o755)
    else:
        target.touch(mode=0o644)


def _build_root(root: Path, mode: str, read: list[str], writable: list[str]) -> None:
    """Populate the empty tmpfs at `root` (see the module docstring)."""
    # open every source first: the tmpfs at `root` may cover some of them (/tmp)
    sources: list[tuple[Path, int, bool, bool]] = []   # path, descriptor, writable, folder
    for path, is_writable in [*((p, False) for p in read), *((p, True) for p in writable)]:
        p = Path(path)
        if p.exists():
            sources.append((p, os.open(p, os.O_PATH), is_writable, p.is_dir()))
    devices = {name: os.open(f"/dev/{name}", os.O_PATH) for name in DEVICES
               if os.path.exists(f"/dev/{name}")}
    system = {}
    for name in SYSTEM:
        p = Path("/") / name
        if p.is_symlink():
            system[name] = os.readlink(p)
        elif p.is_dir():
            system[name] = os.open(p, os.O_PATH)
    sysfs = os.open("/sys", os.O_PATH) if os.path.isdir("/sys") else None

    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    for name, what in system.items():
        if isinstance(what, str):
            os.symlink(what, root / name)
        else:
            _place(root / name, True)
            _bind(what, root / name, read_only=True)
    for folder, options in (("tmp", "mode=1777"), ("dev", "size=1m,mode=755")):
        (root / folder).mkdir(mode=0o755)
        _mount("tmpfs", root / folder, "tmpfs", MS_NOSUID | (0 if folder == "dev" else MS_NODEV),
               options)
    for name, fd in devices.items():
        _place(root / "dev" / name, False)
        _bind(fd, root / "dev" / name, read_only=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, root / "dev" / name)
    (root / "dev" / "shm").mkdir(mode=0o755)
    _mount("tmpfs", root / "dev" / "shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    (root / "proc").mkdir(mode=0o555)
    _mount("proc", root / "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if sysfs is not None:
        (root / "sys").mkdir(mode=0o555)
        _bind(sysfs, root / "sys", read_only=True)
    # shallow first, so that a deeper path lands inside (not under) a shallower bind
    for path, fd, is_writable, is_dir in sorted(sources, key=lambda s: len(s[0].parts)):
        target = root / path.relative_to("/")
        _place(target, is_dir)
        _bind(fd, target, read_only=not is_writable)
        os.close(fd)
    if mode == "root":
        for folder in writable:
            _give_to_nobody(root / Path(folder).relative_to("/"))


def _give_to_nobody(folder: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [dirpath, *(os.path.join(dirpath, f) for f in dirnames + filenames)]:
            try:
                os.chown(name, NOBODY, NOBODY, follow_symlinks=False)
            except OSError:
                pass


def _pivot(root: Path) -> None:
    """Make `root` the root of this mount namespace and detach the old one; chroot where
    pivot_root is unknown (the process drops every privilege before it runs learner code)."""
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is not None and _libc.syscall(number, b".", b".") == 0:
        _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    else:
        os.chroot(".")
    os.chdir("/")


def _enter(mode: str, read: list[str], writable: list[str], keep: list[str]) -> None:
    kept = {path: Path(path).read_bytes() for path in keep if Path(path).is_file()}
    _mount(None, "/", flags=MS_REC | MS_PRIVATE)
    root = Path("/tmp")  # in this mount namespace only; its sources are held open
    _build_root(root, mode, read, writable)
    _pivot(root)
    for path, data in kept.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
        if mode == "root":
            os.chown(path, NOBODY, NOBODY)
    home = Path("/tmp/home")
    home.mkdir(mode=0o700, exist_ok=True)
    if mode == "root":
        os.chown(home, NOBODY, NOBODY)
    _mount(None, "/", flags=MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _drop_privileges(mode: str) -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if mode == "root":
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        return
    # a user namespace's root: no capability survives exec
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break   # past the last capability this kernel knows
    _check(_libc.prctl(PR_SET_SECUREBITS, SECURE_NOROOT, 0, 0, 0), "securebits")


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
    parser.add_argument("--read", action="append", default=[])
    parser.add_argument("--writable", action="append", default=[])
    parser.add_argument("--keep", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.outer:
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.execvp(command[0], command)
    cwd = os.getcwd()
    try:
        _enter(args.mode, args.read, args.writable, args.keep)
        _drop_privileges(args.mode)
    except (OSError, subprocess.CalledProcessError) as err:
        sys.stderr.write(f"course.sandbox.jail: could not set up the jail: {err}; "
                         f"{OFF_HINT}\n")
        sys.exit(70)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/tmp")
    _limits()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
