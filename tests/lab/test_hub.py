"""A class on a real JupyterHub (`make hub`), in headless Chromium, and learners kept apart.

`python -m course.hub.run` starts the hub on 127.0.0.1 (free ports) with a temporary hub root,
two learner accounts and one instructor account (real Unix accounts, removed at the end):

1. learner sft-ada logs in, fetches step1_data from the Assignments tab, fills TODO 1 in the
   editor and submits; learner sft-grace fetches, presses Validate (TODO 1's check is listed)
   and submits the blank release;
2. the instructor collects both in formgrader, autogrades each, sees two different scores,
   generates and releases feedback;
3. sft-ada fetches the feedback: the hidden tests are redacted;
4. the instructor's terminal (File > New > Terminal) runs the course's commands;
5. isolation, checked with the learners' own accounts: no learner can read another's home,
   the instructor's gradebook and solutions, the checkout's solutions/, build/ or .git/, nor
   list or remove others' submissions in the exchange.

Fails on JavaScript console errors and 4xx/5xx answers (browser and hub log), as the other
browser tests do. Needs root (accounts), Chromium, Playwright and the proxy (`make setup`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from course import REPO_ROOT
from test_browser_lab import browser  # noqa: F401 (the shared Chromium fixture)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

INSTRUCTOR, ADA, GRACE = "sft-teacher", "sft-ada", "sft-grace"
STEP, MODULE, TODO = "step1_data", "data_exercise.py", "alpaca_prompt"
TIMINGS: dict[str, float] = {}
STEP_TIMEOUT = 90_000     # ms: one click's effect
LOAD_TIMEOUT = 240_000    # ms: a user's server starting and JupyterLab loading
GRADE_TIMEOUT = 300_000   # ms: autograding one submission from formgrader


def skip_reason() -> str | None:
    from course.hub.layout import PROXY

    if os.name != "posix" or os.geteuid() != 0:
        return "the hub creates Unix accounts: run as root"
    if not shutil.which("useradd"):
        return "no useradd on this system"
    if not PROXY.exists():
        return f"no {PROXY}: run `make setup` (needs npm)"
    return None


# --- the hub ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub():
    """`python -m course.hub.run` on loopback; stopped, accounts and folders removed at the end."""
    from course.hub.accounts import remove_account
    from course.hub.run import hub_answers

    why = skip_reason()
    if why:
        pytest.skip(why)
    for user in (ADA, GRACE, INSTRUCTOR):  # left by an interrupted run: start from nothing
        remove_account(user)
    root = Path(tempfile.mkdtemp(prefix="sft-hub-", dir="/tmp"))  # reachable by the accounts
    root.chmod(0o755)
    info_file, log = root / "info.json", root / "hub.log"
    cmd = [sys.executable, "-m", "course.hub.run", "--root", str(root / "hub-root"),
           "--instructor", INSTRUCTOR, "--learners", ADA, GRACE, "--port", "0",
           "--steps", STEP, "--info-file", str(info_file), "--log", str(log)]
    start = time.monotonic()
    with (root / "run.err").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    info = None
    try:
        deadline = time.monotonic() + 300
        while not info_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the hub did not start:\n"
                                     + (root / "run.err").read_text()[-3000:])
            time.sleep(0.3)
        info = json.loads(info_file.read_text())
        TIMINGS["hub_prepare_and_start"] = time.monotonic() - start
        TIMINGS["hub_start"] = info["start_s"]
        passwords = dict(line.split() for line in Path(info["passwords"]).read_text()
                         .splitlines() if line and not line.startswith("#"))
        yield {**info, "log": log, "root_dir": root, "passwords": passwords}
    finally:
        proc.send_signal(signal.SIGTERM)   # run.py stops the hub, its proxy and every server
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if info:
            assert not hub_answers(info["base"]), "the hub still answers after it was stopped"
        for user in (ADA, GRACE, INSTRUCTOR):
            remove_account(user)
        shutil.rmtree(root, ignore_errors=True)
        out = REPO_ROOT / "build" / "hub-timings.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: round(v, 1) for k, v in TIMINGS.items()}, indent=1))


def home(user: str) -> Path:
    import pwd

    return Path(pwd.getpwnam(user).pw_dir)


def as_user(user: str, *cmd: str) -> subprocess.CompletedProcess:
    from course.hub.accounts import run_as

    return run_as(user, list(cmd), capture_output=True, text=True, timeout=60)


def prepare_lab_settings(user: str) -> None:
    """Every cell in the DOM, no news toasts: the same Lab settings as the other browser tests."""
    from test_browser_lab import lab_settings

    folder = home(user) / ".jupyter" / "lab" / "user-settings"
    lab_settings(folder)
    import pwd

    entry = pwd.getpwnam(user)
    for path in [home(user) / ".jupyter", *(home(user) / ".jupyter").rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


class HubServer:
    """What test_browser_lab.Watched needs: the base URL and the hub's log (all servers log
    there too: LocalProcessSpawner's children inherit it)."""

    def __init__(self, info: dict):
        self.base, self.log, self.token = info["base"], info["log"], ""

    def log_size(self) -> int:
        return self.log.stat().st_size

    def http_errors(self, since: int, closed_at: int | None = None) -> list[str]:
        from test_browser_lab import Server

        return Server.http_errors(self, since, closed_at)


@pytest.fixture
def page_of(browser, hub, request):
    """page_of(user): a logged-in JupyterLab page of `user`; all watched for errors."""
    from test_browser_lab import Watched

    opened = []

    def login(user: str):
        prepare_lab_settings(user)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        w = Watched(context, HubServer(hub))
        w.page.set_default_timeout(STEP_TIMEOUT)
        opened.append((w, context))
        start = time.monotonic()
        w.page.goto(f"{hub['base']}/hub/login")
        w.page.fill("#username_input", user)
        w.page.fill("#password_input", hub["passwords"][user])
        w.page.click("#login_submit")
        w.page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=LOAD_TIMEOUT)
        w.page.locator(".lm-MenuBar-itemLabel").first.wait_for(timeout=LOAD_TIMEOUT)
        TIMINGS.setdefault("login_to_lab", time.monotonic() - start)
        return w

    yield login
    for w, context in opened:
        w.shot(f"last/{request.node.name}")
        w.closed_at = w.server.log_size()
        context.close()
    problems = [p for w, _ in opened for p in w.problems()]
    assert not problems, "\n".join(problems)


def assignments(w) -> None:
    """Nbgrader > Assignment List, with the step listed somewhere."""
    from test_browser_lab import menu

    menu(w.page, "Nbgrader", "Assignment List")
    w.page.locator("#assignments_toolbar").wait_for(timeout=LOAD_TIMEOUT)


def fetch(w) -> None:
    start = time.monotonic()
    released = w.page.locator("#released_assignments_list .list_item", has_text=STEP)
    released.locator("button", has_text="Fetch").click()
    w.page.locator("#fetched_assignments_list .list_item", has_text=STEP).first.wait_for()
    TIMINGS.setdefault("fetch_click", time.monotonic() - start)


def submit(w) -> None:
    start = time.monotonic()
    fetched = w.page.locator("#fetched_assignments_list .list_item", has_text=STEP).first
    fetched.locator("button", has_text="Submit").click()
    w.page.locator("#submitted_assignments_list .list_item", has_text=STEP).first.wait_for()
    TIMINGS.setdefault("submit_click", time.monotonic() - start)


def edit_module(w, user: str) -> None:
    """Fill TODO 1 in the editor (as test_browser_lab does) and save."""
    from course.nbgrader.fixtures import reference_module
    from test_browser_lab import fill_todo

    path = home(user) / STEP / MODULE
    page = w.page
    page.goto(f"{w.server.base}/user/{user}/lab/tree/{STEP}/{MODULE}?reset")
    editor = page.locator(".jp-FileEditor .cm-content")
    editor.wait_for(timeout=LOAD_TIMEOUT)
    solved = fill_todo(path.read_text(), reference_module(STEP, MODULE), TODO)
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(solved)
    page.keyboard.press("Control+S")
    deadline = time.monotonic() + 60
    while path.read_text() != solved and time.monotonic() < deadline:
        time.sleep(0.2)
    assert path.read_text() == solved, "the editor did not save the module"


def validate_blank(w, user: str) -> None:
    """Validate (nbgrader's toolbar button) on the blank release lists TODO 1's check."""
    page = w.page
    page.goto(f"{w.server.base}/user/{user}/lab/tree/{STEP}/tutorial.ipynb?reset")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=LOAD_TIMEOUT)
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle")).first.wait_for(
        timeout=LOAD_TIMEOUT)
    start = time.monotonic()
    page.locator(".validate-button").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=GRADE_TIMEOUT)
    TIMINGS["validate_click"] = time.monotonic() - start
    text = dialog.text_content()
    assert "Validation Results" in dialog.locator(".jp-Dialog-header").text_content(), text[:2000]
    assert "check_alpaca_prompt" in text, text[:2000]
    dialog.locator("button", has_text="OK").first.click()


# --- the tests ----------------------------------------------------------------------------------
def test_two_learners_fetch_and_submit(page_of, hub):
    ada = page_of(ADA)
    assignments(ada)
    fetch(ada)
    assert (home(ADA) / STEP / MODULE).exists()
    ada.shot("hub-learner-assignments-fetched")
    edit_module(ada, ADA)
    assignments(ada)
    submit(ada)
    ada.shot("hub-learner-assignments-submitted")

    grace = page_of(GRACE)
    assignments(grace)
    fetch(grace)
    validate_blank(grace, GRACE)
    assignments(grace)
    submit(grace)
    inbound = Path(hub["exchange"]) / "sft-course" / "inbound"
    assert sorted(p.name.split("+")[0] for p in inbound.iterdir()) == [ADA, GRACE]


def test_instructor_collects_autogrades_and_releases_feedback(page_of, hub):
    page = page_of(INSTRUCTOR).page
    base = f"{hub['base']}/user/{INSTRUCTOR}/formgrader"
    page.goto(base)
    row = page.locator("tr", has_text=STEP).first
    row.wait_for(timeout=LOAD_TIMEOUT)
    start = time.monotonic()
    row.locator(".collect a").click()
    page.locator(".modal", has_text="Successfully collected").wait_for()
    TIMINGS["collect_2_formgrader"] = time.monotonic() - start
    page.locator(".modal-footer button", has_text="OK").first.click()
    page.goto(f"{base}/manage_submissions/{STEP}")
    start = time.monotonic()
    for learner in (ADA, GRACE):
        srow = page.locator("tr", has_text=learner).first
        srow.locator(".autograde a").click()
        page.locator(".modal", has_text="Successfully autograded").wait_for(timeout=GRADE_TIMEOUT)
        page.locator(".modal-footer button", has_text="OK").first.click()
        page.locator(".modal").first.wait_for(state="hidden")
    TIMINGS["autograde_2_formgrader"] = time.monotonic() - start
    page.reload()
    scores = {}
    for learner in (ADA, GRACE):
        srow = page.locator("tr", has_text=learner).filter(has_text=re.compile(r"\d+ / \d+"))
        srow.first.wait_for()
        cells = [re.sub(r"\s+", " ", c).strip() for c in srow.first.locator("td")
                 .all_text_contents()]
        scores[learner] = next(c for c in cells if re.fullmatch(r"\d+(\.\d+)? / \d+", c))
    assert scores == {ADA: "2 / 16", GRACE: "0 / 16"}, scores
    page.locator("tr", has_text=ADA).first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots() / "hub-instructor-formgrader-graded.png"))

    page.goto(base)
    row = page.locator("tr", has_text=STEP).first
    row.wait_for()
    for action, done in (("generate-feedback", "Successfully generated feedback"),
                         ("release-feedback", "Successfully released feedback")):
        row.locator(f".{action} a").click()
        page.locator(".modal", has_text=done).wait_for(timeout=GRADE_TIMEOUT)
        page.locator(".modal-footer button", has_text="OK").first.click()
        page.locator(".modal").first.wait_for(state="hidden")


def test_instructor_terminal_runs_the_course_commands(page_of, hub):
    """A terminal in the instructor's JupyterLab finds the course's python and exchange."""
    w = page_of(INSTRUCTOR)
    page = w.page  # File > New > Terminal
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^File$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^New$")).first.hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Terminal$")).first.click()
    terminal = w.page.locator(".jp-Terminal .xterm-screen").first
    terminal.wait_for(timeout=LOAD_TIMEOUT)
    terminal.click()
    out = home(INSTRUCTOR) / "terminal-check.txt"
    w.page.keyboard.type(f"python -m course.nbgrader.exchange status {STEP} > {out.name}\n")
    deadline = time.monotonic() + 60
    while "learners" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, "the terminal did not run the course's python"
        time.sleep(0.5)
    assert "released, 2 submissions in the exchange (2 learners)" in out.read_text()
    out.unlink()


def test_learner_fetches_feedback_with_hidden_tests_redacted(page_of, hub):
    from course.nbgrader.feedback import leaks

    ada = page_of(ADA)
    assignments(ada)
    submitted = ada.page.locator("#submitted_assignments_list .list_item", has_text=STEP).first
    submitted.locator("button", has_text="Fetch Feedback").click()
    pages = []
    deadline = time.monotonic() + 60
    while not pages and time.monotonic() < deadline:
        pages = sorted((home(ADA) / STEP / "feedback").glob("*/tutorial.html"))
        time.sleep(0.5)
    assert len(pages) == 1, pages
    hidden = [line for line in hidden_source_lines() if len(line) >= 12]
    assert "hidden tests ran here" in pages[0].read_text() and not leaks(pages[0], hidden)
    assert not (home(GRACE) / STEP / "feedback").exists()  # only who asked gets it
    ada.page.locator("#submitted_assignments_list a", has_text="view feedback").first.wait_for()


def test_learners_cannot_read_each_other_or_the_instructor(hub):
    """Each check runs as a learner's own account (what their kernel or terminal could do)."""
    exchange = Path(hub["exchange"]) / "sft-course"
    course_root = home(INSTRUCTOR) / "sft-course"
    closed = [home(ADA), home(ADA) / STEP / MODULE, course_root / "gradebook.db",
              home(INSTRUCTOR) / "solutions", REPO_ROOT / "solutions" / STEP / MODULE,
              exchange / "inbound"]
    closed += [p for p in (REPO_ROOT / ".git" / "HEAD", REPO_ROOT / "build") if p.exists()]
    for path in closed:
        assert path.exists(), path
        probe = as_user(GRACE, "cat", str(path)) if path.is_file() else \
            as_user(GRACE, "ls", str(path))
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, (path, probe)
    # what a learner needs stays readable: the release and the course library
    assert as_user(GRACE, "ls", str(exchange / "outbound" / STEP)).returncode == 0
    assert as_user(GRACE, "cat", str(REPO_ROOT / "course" / "__init__.py")).returncode == 0
    # another's submission cannot be removed, even knowing its name (sticky inbound)
    victim = next(p for p in (exchange / "inbound").iterdir() if p.name.startswith(ADA + "+"))
    probe = as_user(GRACE, "rm", "-rf", str(victim))
    assert probe.returncode != 0 and victim.exists(), probe
    # logins: a wrong password, another's password and an account off the list are refused
    from course.hub.auth import ClassListAuthenticator

    auth = ClassListAuthenticator(roster_file=str(Path(hub["root"]) / "hub" / "roster.json"))
    tries = [(ADA, "wrong"), (ADA, hub["passwords"][GRACE]), ("root", hub["passwords"][ADA])]
    for user, password in tries:
        assert log_in(auth, user, password) is None, user
    assert log_in(auth, ADA, hub["passwords"][ADA]) == ADA


def log_in(auth, user: str, password: str) -> str | None:
    """The authenticator's answer (in a thread: Playwright's loop runs in this one)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, auth.authenticate(
            None, {"username": user, "password": password})).result(timeout=60)


def hidden_source_lines() -> list[str]:
    from course.nbgrader import HIDDEN_MARKERS
    from course.nbgrader.hooks import region_lines, text_of

    source = home(INSTRUCTOR) / "sft-course" / "source" / STEP / "tutorial.ipynb"
    return region_lines(text_of(source), HIDDEN_MARKERS)


def shots() -> Path:
    from test_browser_lab import SHOTS

    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
