"""`make hub`: the course on a real JupyterHub, for a class on one machine.

JupyterHub (from PyPI) with its configurable-http-proxy (from npm, installed by `make setup`)
runs as root and starts every user's JupyterLab as that user's own Unix account
(LocalProcessSpawner). The instructor gets nbgrader's formgrader on a course root in their home;
learners get the *Assignments* tab and *Validate*; everyone shares nbgrader's exchange.

| file | one line |
|---|---|
| `accounts.py` | Unix accounts (0700 homes), closing the instructor's files to other accounts |
| `auth.py` | the class list authenticator: one password per account, hashed, loopback by default |
| `layout.py` | the hub's folders: exchange, per-role Jupyter config, the instructor's course root |
| `python.py` | the interpreter users' servers run (a copy when .venv's is in a private folder) |
| `run.py` | `python -m course.hub.run`: prepare everything, start JupyterHub, stop it cleanly |

How learners are kept apart on one machine (tests/lab/test_hub.py checks each point with a
learner's own account, except feedback names, which are nbgrader's design):
- each account's home is mode 0700 and owned by it: no other learner can list or read it;
- the repository's `solutions/`, `build/` and `.git/` are mode 0700 (root): learners import the
  course library but cannot read the answer key, hidden tests or history;
- the instructor's course root (`~<instructor>/sft-course`: gradebook, source, submissions) and
  copy of `solutions/` are in the instructor's 0700 home;
- the exchange follows nbgrader's modes: learners can write to `inbound/` but not list or read
  it (mode 2733, sticky added here so no one can delete another's submission); `outbound/` is
  world-readable (the releases); each feedback file is named by a hash of the submission, which
  only its owner knows.
"""
