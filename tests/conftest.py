"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.processes import launch
from tests.redis_server import redis_server, volatile_redis_server

__all__ = ["anyio_backend", "launch", "list_decoding", "redis_server", "volatile_redis_server"]

# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set (as on some CI images): the
# suite starts hundreds of interpreters (xdist workers, command-line runs, pytest runs of
# the docs' samples), and each would compile the package and rewrite every test module's
# asserts from source again. The caches go to the usual, git-ignored __pycache__.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: three workers per core for the whole suite, two for the fast lane.

    Most of the slow tests' time is waiting (on other processes, real pacing, leases): a
    worker that waits leaves its core to another. The fast lane is mostly CPU, where more
    workers only add their start-up. Measured on two cores: the whole suite in 120 s
    with six workers, 138 s with four; the fast lane in 31 s with four, 43 s with six.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    fast_lane = "not slow" in (config.option.markexpr or "")
    return (2 if fast_lane else 3) * (cores or 1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, hand out the slow tests first: the quick ones fill in around them.

    Otherwise a test of ten seconds handed out last keeps one worker busy after the rest
    are done. (Every worker sorts alike, as xdist requires.)
    """
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture(autouse=True)
def _signals_left_as_found() -> Iterator[None]:
    """A test leaves SIGINT's and SIGTERM's handlers and the signal mask as it found them.

    Processes a test starts inherit an ignored or blocked signal: a later test on the same
    worker would find its child deaf to Ctrl-C.
    """
    import signal

    watched = (signal.SIGINT, signal.SIGTERM)
    before = [signal.getsignal(sig) for sig in watched]
    masks = hasattr(signal, "pthread_sigmask")  # POSIX
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, []) if masks else None
    yield
    after = [signal.getsignal(sig) for sig in watched]
    left_mask = signal.pthread_sigmask(signal.SIG_SETMASK, mask) if mask is not None else None
    for sig, handler in zip(watched, before, strict=True):
        signal.signal(sig, handler)
    assert (after, left_mask) == (before, mask), "the test changed signal handling"
