"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

from typing import Any

import pytest

from tests.processes import launch
from tests.redis_server import redis_server

__all__ = ["anyio_backend", "launch", "list_decoding", "redis_server"]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per core, as most of the suite's wall time is waiting.

    On servers, subprocesses, real pacing and leases: a worker that waits leaves its
    core to another.
    """
    import os

    return (
        2 * len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else 2 * (os.cpu_count() or 1)
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what start-up and collection made, so tests' ``gc.collect()`` skip it.

    A full collection otherwise walks every module, test item and strategy the process
    holds (seconds, late in a run); what tests make is collected as before.
    """
    import gc

    gc.collect()
    gc.freeze()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test once per anyio backend."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _no_sarv_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> None:
    """Keep the developer's own SARV_* / SENDCLEAN_* variables and state out of every test.

    The command line's default ledger lives under ``XDG_STATE_HOME``: each test gets its
    own, so no test reads or writes the developer's ledger.
    """
    import os

    for name in list(os.environ):
        if name.startswith(("SARV_", "SENDCLEAN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(params=["msgspec", "stdlib"])
def list_decoding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with ``sarv-async[fast]`` (msgspec) and as if it were not installed.

    "stdlib": ``import msgspec`` fails for the test's duration, so list answers take the
    path of an install without the extra (json.loads and the tolerant cattrs path).
    """
    import sys

    from sarv_async import _fast_decode

    monkeypatch.setattr(_fast_decode, "_decoders", {})
    if request.param == "stdlib":
        monkeypatch.setitem(sys.modules, "msgspec", None)
        assert _fast_decode.list_decoder() is None
    else:  # msgspec is in the tests group: its absence is a failure, not a skip
        assert _fast_decode.list_decoder() is not None
    return request.param  # type: ignore[no-any-return]
