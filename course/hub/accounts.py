"""Unix accounts for the hub's users, and the instructor's files closed to them.

JupyterHub's LocalProcessSpawner starts each user's server as the Unix account of the same name,
so every user gets one: created here with `useradd` (as root), home mode 0700, and a GECOS
comment that marks it as the course's, so that only accounts this module created are ever
reused or removed.
"""
from __future__ import annotations

import os
import pwd
import re
import signal
import stat
import subprocess
from pathlib import Path

COMMENT = "sft-course hub account"
NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # portable Unix names, also JupyterHub's normal form


def check_name(name: str) -> str:
    if not NAME.match(name) or name == "root":
        raise ValueError(f"invalid account name {name!r}: lowercase letters, digits and '-', "
                         "starting with a letter, at most 31 characters (and not root)")
    return name


def lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def ensure_account(name: str) -> pwd.struct_passwd:
    """The account `name` with a private (0700) home; created if missing. An existing account
    that this module did not create is never taken over."""
    check_name(name)
    entry = lookup(name)
    if entry is None:
        subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/bash",
                        "--comment", COMMENT, name], check=True, capture_output=True, text=True)
        entry = pwd.getpwnam(name)
    elif entry.pw_gecos != COMMENT:
        raise RuntimeError(f"the account {name!r} exists and is not a course hub account "
                           f"(its comment is {entry.pw_gecos!r}); choose another name")
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    home.chmod(0o700)
    return entry


def processes_of(uid: int) -> list[int]:
    """Process ids owned by `uid` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                continue  # the process ended meanwhile
    return pids


def remove_account(name: str) -> None:
    """Stop what the course account `name` still runs, then delete it and its home."""
    entry = lookup(name)
    if entry is None or entry.pw_gecos != COMMENT:
        return
    for pid in processes_of(entry.pw_uid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)


def close_to_others(paths: list[Path]) -> list[Path]:
    """Remove group and other permissions from each existing path (the owner, root, keeps its
    own); returns the paths that changed."""
    changed = []
    for path in paths:
        if path.exists():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                path.chmod(mode & 0o700)
                changed.append(path)
    return changed


def run_as(name: str, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """`cmd` run as the account `name` (from root), with its HOME and USER."""
    entry = pwd.getpwnam(name)
    env = dict(kwargs.pop("env", None) or os.environ)
    env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    return subprocess.run(cmd, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
                          env=env, cwd=kwargs.pop("cwd", entry.pw_dir), **kwargs)
