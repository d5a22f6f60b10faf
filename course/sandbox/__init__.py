"""Learner code runs here, apart from the grader: a jailed worker process and its proxies.

| module | one line |
|---|---|
| `wire.py` | what may cross from learner code to the grader: plain data, checked, no code |
| `worker.py` | the untrusted process: imports a learner's module, answers calls |
| `client.py` | the grader's side: `Worker`, `RemoteObject` proxies, tensor sync-back |
| `jail.py` | namespaces, read-only course, hidden answer key, private /tmp, user `nobody` |
"""
