"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import os
import signal
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


# A shell without job control starts a background command (`pytest &`, a CI step's
# helper) with SIGINT ignored, and every process it starts inherits that: the tests that
# interrupt a command line would find it deaf to Ctrl-C. A handled signal is reset to
# its default across exec, so with a handler here the processes the tests start hear
# SIGINT again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: three workers per core for the whole suite, one and a half for the
    fast lane.

    Most of the slow tests' time is waiting (on other processes, real pacing, leases): a
    worker that waits leaves its core to another. The fast lane is mostly CPU, where more
    workers only add their start-up and contend. Measured on two cores (worksteal): the
    fast lane in 25.6-26.6 s with three workers, 29.2-29.5 s with four, 27.0-29.0 s with
    six; the whole suite in about 101 s with six.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if "not slow" in (config.option.markexpr or ""):
        return max(1, cores * 3 // 2)
    return 3 * cores


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, give each worker its share of the slow tests, first.

    ``--dist worksteal`` hands the workers contiguous, equal runs of the collection (and
    idle workers then take half of the longest queue left). The slow tests are dealt
    round-robin to the front of each worker's run, so no worker starts with all of them
    and none is handed a test of ten seconds last. (Every worker sorts alike, as xdist
    requires.)
    """
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    workers = max(1, int(workerinput.get("workercount", 1)))
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    quick = [item for item in items if item.get_closest_marker("slow") is None]
    runs: list[list[pytest.Item]] = [slow[n::workers] for n in range(workers)]
    size = -(-len(items) // workers)  # each run's length, as xdist cuts them
    for run in runs:
        while len(run) < size and quick:
            run.append(quick.pop())
    items[:] = [item for run in runs for item in run] + quick


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
