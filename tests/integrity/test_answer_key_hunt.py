"""Hunt for the answer key from inside the jail, independent of how it could leak.

A jailed process walks every readable path of its file system and looks for copies of the answer
key (`answer_key.needles()`: a file holding several of its distinctive lines, or a compiled
solution module), and asks `git` about every repository it can read. It must find nothing.
On a checkout that is a git clone (CI's), the repository's own history is among what it would
find if the jail let it be read.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from course import PACKAGE_DIR, REPO_ROOT
from course.sandbox.jail import isolation, jailed_command, worker_environment

from .answer_key import needles

pytestmark = pytest.mark.skipif(isolation() == "none", reason="no namespaces on this machine")

COPY = 3           # distinct answer-key lines that make a file a copy
MAX_BYTES = "16M"  # files grep reads (the system's large libraries are skipped)

HUNT = r'''
import json, os, subprocess, sys
needles_file, report = sys.argv[1], sys.argv[2]
skip = {"proc", "sys", "dev"}
tops = ONLY or ["/" + name for name in sorted(os.listdir("/")) if name not in skip]
found = {"copies": {}, "compiled": [], "repositories": {}, "tops": tops,
         "repo_root": sorted(os.listdir(REPO)) if os.path.isdir(REPO) else None,
         "homes": {h: sorted(os.listdir(h)) for h in ("/root", "/home") if os.path.isdir(h)}}
files = subprocess.run(["find", *tops, "-type", "f", "-size", "-" + MAX, "-print0"],
                       capture_output=True).stdout
found["files"] = files.count(b"\0")
found["course_files"] = sum(1 for f in files.split(b"\0") if f.startswith(COURSE.encode()))
listed = subprocess.run(["xargs", "-0", "-P2", "-n", "2000", "grep", "-lF", "-f", needles_file],
                        input=files, capture_output=True).stdout.decode().split("\n")
for path in filter(None, listed):
    if path == needles_file:
        continue
    hits = subprocess.run(["grep", "-ohF", "-f", needles_file, path],
                          capture_output=True, text=True).stdout.splitlines()
    if len(set(hits)) >= COPY:
        found["copies"][path] = sorted(set(hits))[:3]
for top in tops:
    for folder, dirs, names in os.walk(top):
        if "HEAD" in names and "objects" in dirs:   # a git directory (.git or bare)
            log = subprocess.run(["git", "-c", "safe.directory=*", "--git-dir", folder, "log",
                                  "--all", "--oneline", "--", "solutions"],
                                 capture_output=True, text=True)
            blobs = subprocess.run(["git", "-c", "safe.directory=*", "--git-dir", folder,
                                    "cat-file", "--batch-all-objects", "--batch"],
                                   capture_output=True)
            hits = subprocess.run(["grep", "-ohaF", "-f", needles_file], input=blobs.stdout,
                                  capture_output=True).stdout.splitlines()
            found["repositories"][folder] = {"commits touching solutions/":
                                             len(log.stdout.splitlines()),
                                             "answer-key lines in its objects": len(set(hits))}
        for name in names:
            if name.endswith(".pyc") and "/solutions/" in folder + "/":
                found["compiled"].append(os.path.join(folder, name))
json.dump(found, open(report, "w"), indent=1)
'''


def _script(only: list[str] | None = None) -> str:
    return (f"REPO, COURSE, MAX, COPY, ONLY = {str(REPO_ROOT)!r}, {str(PACKAGE_DIR)!r}, "
            f"{MAX_BYTES!r}, {COPY}, {only!r}\n" + textwrap.dedent(HUNT))


def test_no_answer_key_is_readable_from_inside_the_jail(tmp_path):
    secret = needles()
    assert len(secret) > 500, "the answer key's lines were not found: is solutions/ there?"
    needles_file = tmp_path / "needles.txt"
    needles_file.write_text("\n".join(secret) + "\n", encoding="utf-8")
    report = tmp_path / "found.json"
    script = _script()
    cmd = jailed_command([sys.executable, "-c", script, str(needles_file), str(report)],
                         writable=[tmp_path])
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env=worker_environment())
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(report.read_text())
    print(json.dumps(found, indent=1))
    assert found["files"] > 20_000 and found["course_files"] > 50, "the hunt saw too little"
    assert not found["copies"], f"copies of the answer key are readable: {found['copies']}"
    assert not found["compiled"], f"compiled solution modules are readable: {found['compiled']}"
    leaking = {repo: what for repo, what in found["repositories"].items()
               if what["commits touching solutions/"] or
               what["answer-key lines in its objects"] >= COPY}
    assert not leaking, f"git repositories with the answer key are readable: {leaking}"
    # of home directories, only the way to the Python installation exists
    python = [Path(p) for p in (sys.prefix, sys.base_prefix)]
    for home, names in found["homes"].items():
        for name in names:
            assert any((Path(home) / name) in [p, *p.parents] for p in python), (
                f"{Path(home) / name} is visible in the jail")
    # of the repository, only the course package and the committed results exist
    assert set(found["repo_root"] or []) <= {"course", "benchmarks", ".venv"}, found["repo_root"]


def test_the_hunt_finds_a_planted_copy(tmp_path):
    """The hunt can fail: a few answer-key lines in the jail's writable folder are found."""
    secret = needles()
    (tmp_path / "needles.txt").write_text("\n".join(secret) + "\n", encoding="utf-8")
    (tmp_path / "backup.py~").write_text("\n".join("    " + s for s in secret[:5]) + "\n")
    script = _script(only=[str(tmp_path)])
    cmd = jailed_command([sys.executable, "-c", script, str(tmp_path / "needles.txt"),
                          str(tmp_path / "found.json")], writable=[tmp_path])
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env=worker_environment())
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads((tmp_path / "found.json").read_text())
    assert str(tmp_path / "backup.py~") in found["copies"]
