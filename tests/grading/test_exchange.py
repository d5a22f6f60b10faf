"""A class through nbgrader's exchange, scripted with nbgrader's exchange API (no browser).

One course root and one exchange in a temporary folder; step 1 is generated and released with
the course's commands (`course.nbgrader.release.generate`, `course.nbgrader.exchange.release`).
Learners fetch and submit with nbgrader's own `ExchangeFetchAssignment` / `ExchangeSubmit`, each
with their own working folder and submission cache, as JupyterLab's Assignments tab does:

- 20 learners submit at the same moment (20 processes released by one barrier), half of them
  with TODO 1 done; one of them renamed the notebook, one submits twice (the latest counts);
- the instructor collects once (`course.nbgrader.exchange.collect`) and autogrades the batch:
  every learner collected exactly once, nothing lost, every graded one scored as expected
  (`make test` grades a sample of the special cases; COURSE_CLASS_GRADE_ALL=1 grades all 20);
- a learner submits after the collect: the next collect picks it up and replaces the older one;
- feedback is released; a learner fetches it and the hidden tests are redacted.

The measured times are written to build/exchange-timings.json.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from course import REPO_ROOT
from course.nbgrader import COURSE_ID, NOTEBOOK

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("exchange")]

STEP, MODULE, TODO = "step1_data", "data_exercise.py", "alpaca_prompt"
CLASS_SIZE = 20
RENAMED, TWICE, LATE = "learner03", "learner06", "learner07"
# Autograding takes ~10 s a submission on 2 cores: `make test` grades these (the special cases,
# one blank and one done); COURSE_CLASS_GRADE_ALL=1 grades all 20 (196 s measured).
SAMPLE = [RENAMED, TWICE, LATE, "learner01", "learner02"]
GRADE_ALL = os.environ.get("COURSE_CLASS_GRADE_ALL") == "1"
TIMINGS: dict[str, float] = {}


def learners() -> list[str]:
    return [f"learner{i:02d}" for i in range(1, CLASS_SIZE + 1)]


def fills_todo(learner: str) -> bool:
    return int(learner[-2:]) % 2 == 0


# --- a learner, through nbgrader's exchange API --------------------------------------------------
def learner_config(learner: str, home: Path, exchange: Path):
    from traitlets.config import Config

    c = Config()
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.assignment_id = STEP
    c.CourseDirectory.student_id = learner   # on a hub: the learner's Unix account
    c.CourseDirectory.root = str(home)
    c.Exchange.root = str(exchange)
    c.Exchange.assignment_dir = str(home)    # the learner's working folder
    c.Exchange.cache = str(home / ".nbgrader_cache")
    return c


def exchange_action(name: str, learner: str, home: Path, exchange: Path) -> None:
    """Run nbgrader's `fetch_assignment`, `submit` or `fetch_feedback` as `learner`."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default import (ExchangeFetchAssignment, ExchangeFetchFeedback,
                                           ExchangeSubmit)

    cls = {"fetch": ExchangeFetchAssignment, "submit": ExchangeSubmit,
           "fetch_feedback": ExchangeFetchFeedback}[name]
    c = learner_config(learner, home, exchange)
    cls(coursedir=CourseDirectory(config=c), authenticator=Authenticator(config=c),
        config=c).start()


def submit_at_barrier(barrier, learner: str, home: Path, exchange: Path) -> None:
    """A child process: wait until every learner is ready, then submit (exit code 0 = done)."""
    try:
        barrier.wait(timeout=120)
        exchange_action("submit", learner, home, exchange)
    except BaseException as exc:  # noqa: BLE001 (reported through the exit code)
        print(f"{learner}: submit failed: {exc!r}", flush=True)
        os._exit(1)
    os._exit(0)


def work(learner: str, folder: Path) -> None:
    """What the learner does before submitting: TODO 1 done (even numbers), or nothing."""
    from course.nbgrader.fixtures import reference_module
    from test_browser_lab import fill_todo

    if fills_todo(learner):
        path = folder / MODULE
        path.write_text(fill_todo(path.read_text(), reference_module(STEP, MODULE), TODO))
    if learner == RENAMED:   # "File > Save As" a copy and deleted the original
        (folder / f"{NOTEBOOK}.ipynb").rename(folder / f"{NOTEBOOK}-Copy1.ipynb")


# --- the class -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    """Course root + exchange with step 1 released; every learner fetched it."""
    from course.nbgrader.exchange import EXCHANGE_ENV, release
    from course.nbgrader.release import generate

    base = tmp_path_factory.mktemp("class")
    root, exchange, homes = base / "course", base / "exchange", base / "homes"
    old = os.environ.get(EXCHANGE_ENV)
    os.environ[EXCHANGE_ENV] = str(exchange)   # read by nbgrader_config.py in the course root
    try:
        generate(root, [STEP], log=root / "logs" / "release.log")
        start = time.monotonic()
        release(root, [STEP])
        TIMINGS["release_assignment"] = time.monotonic() - start
        start = time.monotonic()
        for learner in learners():
            exchange_action("fetch", learner, homes / learner, exchange)
        TIMINGS[f"fetch_x{CLASS_SIZE}"] = time.monotonic() - start
        yield {"root": root, "exchange": exchange, "homes": homes}
    finally:
        if old is None:
            os.environ.pop(EXCHANGE_ENV, None)
        else:
            os.environ[EXCHANGE_ENV] = old
        out = REPO_ROOT / "build" / "exchange-timings.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: round(v, 2) for k, v in TIMINGS.items()}, indent=1))
        print(f"\nexchange timings (s): {TIMINGS}")


def test_every_learner_fetched_the_release(klass):
    release = klass["root"] / "release" / STEP
    for learner in learners():
        fetched = klass["homes"] / learner / STEP
        assert sorted(p.name for p in fetched.iterdir()) == sorted(
            p.name for p in release.iterdir()), learner
        assert (fetched / MODULE).read_bytes() == (release / MODULE).read_bytes()


@pytest.fixture(scope="module")
def submitted(klass):
    """Everyone works, then submits at once; one learner had submitted a blank copy before."""
    from course.nbgrader.exchange import inbound

    homes, exchange = klass["homes"], klass["exchange"]
    exchange_action("submit", TWICE, homes / TWICE, exchange)   # first try: the blank release
    first = inbound(STEP, exchange)
    assert [s.student for s in first] == [TWICE]
    time.sleep(0.01)  # nbgrader's timestamps have microseconds; the second one must be later
    for learner in learners():
        work(learner, homes / learner / STEP)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(CLASS_SIZE)
    procs = [ctx.Process(target=submit_at_barrier, args=(barrier, l, homes / l, exchange))
             for l in learners()]
    start = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    TIMINGS[f"submit_x{CLASS_SIZE}_at_once"] = time.monotonic() - start
    assert all(p.exitcode == 0 for p in procs), [(l, p.exitcode) for l, p in
                                                 zip(learners(), procs)]
    return {"first": first[0]}


def test_concurrent_submissions_all_arrive(klass, submitted):
    from course.nbgrader.exchange import inbound

    waiting = inbound(STEP, klass["exchange"])
    assert len(waiting) == CLASS_SIZE + 1  # the blank first try of TWICE is kept too
    assert sorted({s.student for s in waiting}) == learners()
    assert len({s.path.name for s in waiting}) == len(waiting)
    for s in waiting:
        names = {p.name for p in s.path.iterdir()}
        expected = f"{NOTEBOOK}-Copy1.ipynb" if s.student == RENAMED else f"{NOTEBOOK}.ipynb"
        assert {expected, MODULE} <= names, (s.student, names)


@pytest.fixture(scope="module")
def graded(klass, submitted):
    from course.nbgrader.autograde import autograde
    from course.nbgrader.exchange import collect

    root = klass["root"]
    start = time.monotonic()
    collected = collect(root, STEP)
    TIMINGS[f"collect_x{CLASS_SIZE}"] = time.monotonic() - start
    students = learners() if GRADE_ALL else SAMPLE
    start = time.monotonic()
    results = {r.student: r for r in autograde(root, STEP, students)}
    TIMINGS[f"autograde_x{len(students)}"] = time.monotonic() - start
    return {"collected": collected, "results": results}


def test_every_learner_is_collected_once_and_graded(klass, graded):
    root, results = klass["root"], graded["results"]
    from course.nbgrader.exchange import inbound

    assert graded["collected"] == learners()
    assert sorted(p.name for p in (root / "submitted").iterdir()) == learners()
    latest = {}
    for s in inbound(STEP, klass["exchange"]):
        latest[s.student] = max(latest.get(s.student, ""), s.timestamp)
    for learner in learners():  # each one's latest submission, exactly once
        stamp = (root / "submitted" / learner / STEP / "timestamp.txt").read_text().strip()
        assert stamp == latest[learner], learner
    assert sorted(results) == sorted(learners() if GRADE_ALL else SAMPLE)
    for learner, r in results.items():
        if learner == RENAMED:
            continue
        assert r.status == "ok", r
        assert r.max_score == 16 and r.score == (2 if fills_todo(learner) else 0), r


def test_resubmission_the_latest_counts(klass, submitted, graded):
    from course.nbgrader.exchange import inbound

    root = klass["root"]
    latest = max((s for s in inbound(STEP, klass["exchange"]) if s.student == TWICE),
                 key=lambda s: s.timestamp)
    assert latest.timestamp > submitted["first"].timestamp
    stamp = (root / "submitted" / TWICE / STEP / "timestamp.txt").read_text().strip()
    assert stamp == latest.timestamp
    assert graded["results"][TWICE].score == 2  # the second submission (TODO 1 done)


def test_renamed_notebook_is_kept_and_flagged_not_lost(klass, graded):
    folder = klass["root"] / "submitted" / RENAMED / STEP
    assert (folder / f"{NOTEBOOK}-Copy1.ipynb").exists() and (folder / MODULE).exists()
    r = graded["results"][RENAMED]
    assert r.status == "invalid" and r.score == 0, r
    assert any(f"no {NOTEBOOK}.ipynb" in n for n in r.notes), r


def test_submission_after_collect_is_picked_up_by_the_next_collect(klass, graded):
    from course.nbgrader.autograde import autograde
    from course.nbgrader.exchange import collect, inbound

    root, homes, exchange = klass["root"], klass["homes"], klass["exchange"]
    before = (root / "submitted" / LATE / STEP / "timestamp.txt").read_text().strip()
    assert graded["results"][LATE].score == 0  # blank at the first collect
    path = homes / LATE / STEP / MODULE
    from course.nbgrader.fixtures import reference_module
    from test_browser_lab import fill_todo
    path.write_text(fill_todo(path.read_text(), reference_module(STEP, MODULE), TODO))
    exchange_action("submit", LATE, homes / LATE, exchange)
    start = time.monotonic()
    assert collect(root, STEP) == learners()   # nobody collected twice, nobody dropped
    TIMINGS["collect_again"] = time.monotonic() - start
    after = (root / "submitted" / LATE / STEP / "timestamp.txt").read_text().strip()
    assert after > before and after == max(s.timestamp for s in inbound(STEP, exchange)
                                           if s.student == LATE)
    # the other learners' collected copies were not touched
    stamps = {l: (root / "submitted" / l / STEP / "timestamp.txt").read_text() for l in learners()}
    assert len(stamps) == CLASS_SIZE
    (result,) = autograde(root, STEP, [LATE])
    assert result.status == "ok" and result.score == 2, result


def test_feedback_is_released_and_fetched_with_hidden_tests_redacted(klass, graded):
    from course.nbgrader.exchange import return_feedback
    from course.nbgrader.feedback import hidden_lines, leaks

    root, homes, exchange = klass["root"], klass["homes"], klass["exchange"]
    learner = "learner02"
    start = time.monotonic()
    pages = return_feedback(root, STEP)
    TIMINGS[f"feedback_x{len(pages)}"] = time.monotonic() - start
    graded_ok = [l for l, r in graded["results"].items() if r.status != "invalid"]
    assert sorted(p.parent.parent.name for p in pages) == sorted(graded_ok)
    exchange_action("fetch_feedback", learner, homes / learner, exchange)
    fetched = sorted((homes / learner / STEP / "feedback").glob(f"*/{NOTEBOOK}.html"))
    assert len(fetched) == 1, fetched
    text = fetched[0].read_text()
    assert "alpaca_prompt" in text and "hidden tests ran here" in text
    assert not leaks(fetched[0], hidden_lines(root, STEP))
    # a learner only gets the feedback of their own submission
    other = homes / "learner04" / STEP / "feedback"
    assert not other.exists()
    shutil.rmtree(homes / learner / STEP / "feedback")
