"""The hub's pieces that need neither root nor a browser: login checks, names, refusals."""
from __future__ import annotations

import asyncio
import os
import stat

import pytest

from course.hub.accounts import check_name, close_to_others
from course.hub.auth import ClassListAuthenticator, read_passwords, write_roster
from course.hub.python import reachable_by_others
from course.hub.run import is_loopback, main


def test_every_account_gets_its_own_password_hashed_and_private(tmp_path):
    pw_file, roster = tmp_path / "passwords.txt", tmp_path / "roster.json"
    pw_file.write_text("ada chosen-by-the-instructor\n")
    passwords = write_roster(["ada", "grace"], pw_file, roster)
    assert passwords["ada"] == "chosen-by-the-instructor" and len(passwords["grace"]) == 12
    assert read_passwords(pw_file) == passwords
    for path in (pw_file, roster):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert passwords["grace"] not in roster.read_text()  # only salted hashes
    auth = ClassListAuthenticator(roster_file=str(roster))

    def login(user, password):
        return asyncio.run(auth.authenticate(None, {"username": user, "password": password}))

    assert login("ada", "chosen-by-the-instructor") == "ada"
    assert login("ada", passwords["grace"]) is None
    assert login("root", passwords["ada"]) is None
    assert login("grace", "") is None
    assert write_roster(["ada", "grace"], pw_file, roster) == passwords  # kept on restart


def test_account_names_are_checked():
    assert check_name("sft-ada") == "sft-ada"
    for bad in ("root", "Ada", "1ada", "ada;rm", "a" * 40, ""):
        with pytest.raises(ValueError):
            check_name(bad)


def test_no_hub_off_loopback_without_tls(capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    with pytest.raises(SystemExit) as exc:
        main(["--ip", "0.0.0.0", "--learners", "ada"])
    assert exc.value.code == 2 and "without TLS" in capsys.readouterr().err


def test_closing_and_reachability(tmp_path):
    folder = tmp_path / "solutions"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    assert close_to_others([folder, tmp_path / "missing"]) == [folder]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert close_to_others([folder]) == []
    assert not reachable_by_others(folder)
    assert reachable_by_others(os.path.realpath("/usr/bin/env"))
