"""The class list authenticator: one password per account, for a workshop on one machine.

A shared password would let any learner log in as any other; here each account has its own.
`make hub` keeps them in `<hub root>/hub/passwords.txt` (root only, mode 0600, one `name
password` per line) for the instructor to hand out: a missing account gets a random password,
one the instructor wrote there is kept. JupyterHub only ever reads salted scrypt hashes
(`roster.json`, also root only), and only the listed accounts can log in.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from jupyterhub.auth import Authenticator
from traitlets import Unicode

PASSWORD_BYTES = 9  # 12 URL-safe characters


def _hash(password: str, salt: bytes) -> str:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1).hex()


def private_file(path: Path, text: str) -> None:
    """Write `text` to `path`, readable and writable by its owner only, from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    path.chmod(0o600)


def read_passwords(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split(None, 1) for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {p[0]: p[1].strip() for p in pairs if len(p) == 2}


def write_roster(users: list[str], passwords_file: Path, roster_file: Path) -> dict[str, str]:
    """Give every user a password (kept if listed, else random), write both files; returns
    name -> password."""
    known = read_passwords(passwords_file)
    passwords = {u: known.get(u) or secrets.token_urlsafe(PASSWORD_BYTES) for u in users}
    private_file(passwords_file, "# name password (hand each learner their own line)\n"
                 + "".join(f"{u} {p}\n" for u, p in passwords.items()))
    roster = {}
    for user, password in passwords.items():
        salt = secrets.token_bytes(16)
        roster[user] = {"salt": salt.hex(), "scrypt": _hash(password, salt)}
    private_file(roster_file, json.dumps(roster, indent=1))
    return passwords


class ClassListAuthenticator(Authenticator):
    """Accepts a listed user with their own password (checked against a salted scrypt hash)."""

    roster_file = Unicode(help="JSON: name -> {salt, scrypt}, written by write_roster").tag(
        config=True)

    async def authenticate(self, handler, data):
        name = self.normalize_username(data.get("username", ""))
        roster = json.loads(Path(self.roster_file).read_text(encoding="utf-8"))
        entry = roster.get(name)
        if entry is None:
            self.log.warning("login refused: %r is not on the class list", name)
            return None
        given = _hash(data.get("password", ""), bytes.fromhex(entry["salt"]))
        if not hmac.compare_digest(given, entry["scrypt"]):
            self.log.warning("login refused: wrong password for %r", name)
            return None
        return name
