"""Shared pytest configuration."""
from __future__ import annotations

import os

# The suite never needs the Hub (everything is embedded). Set before anything imports
# huggingface_hub, which reads the flag once: without it, the unknown-model test waits for
# network retries (93 s measured here) instead of failing at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make `@pytest.mark.xdist_group` work again under `pytest -n 2 --dist loadgroup`.

    pytest-xdist (3.8) groups tests by appending "@<group>" to each worker's node ids through
    `item._nodeid`, which pytest 9.2 no longer reads (node ids now come from `item._id`), so groups
    were silently ignored and heavy tests of one group ran on both workers at once. Re-apply the
    suffix the supported way. Does nothing without --dist loadgroup or when xdist already did it.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # pytest < 9.2: xdist's own hook works
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (`pytestmark = pytest.mark.usefixtures(
    "one_thread")`): the two xdist workers share 2 cores, and tiny models gain nothing from more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
