"""The stores every `Ledger` contract test runs against: one fixture param per implementation.

To add an implementation, add a param to `ledger_store` that builds a `LedgerStore`: how
to open a new handle on one fresh, empty store, in this process or in another one; and,
if processes can share it, the same param to `shared_ledger_store`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest

from sarv_async import Ledger
from sarv_async._ledger_memory import MemoryLedger
from tests.redis_server import RedisServer

__all__ = ["LedgerStore", "memory_store", "open_store"]

_MEMORY: dict[str, MemoryLedger] = {}


@attrs.frozen
class LedgerStore:
    """A fresh store under test, and how to open handles on it."""

    #: The implementation's name, for test ids.
    name: str
    #: ``"module:callable"``: called with `address`, it returns a new `Ledger` handle.
    opener: str
    #: What `opener` takes: a file path, a Redis URL, ...
    address: str

    def make(self) -> Ledger:
        """A new handle on the store, in this process."""
        return open_store(self.opener, self.address)


def open_store(opener: str, address: str) -> Ledger:
    """Call ``opener`` (``"module:callable"``) with ``address``."""
    module, _, name = opener.partition(":")
    ledger: Ledger = getattr(importlib.import_module(module), name)(address)
    return ledger


def memory_store(address: str) -> Ledger:
    """The `MemoryLedger` named ``address`` in this process (every handle is the same one)."""
    return _MEMORY.setdefault(address, MemoryLedger())


def _store(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> LedgerStore:
    if name == "sqlite":
        return LedgerStore(name, "sarv_async._ledger:open_ledger", str(tmp_path / "l.sqlite3"))
    if name == "memory":
        return LedgerStore(name, "tests.ledger.conftest:memory_store", str(tmp_path))
    if name == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")  # a fresh redis-server
        return LedgerStore(name, "sarv_async._ledger:open_ledger", server.url)
    raise AssertionError(name)  # pragma: no cover - one branch per param


@pytest.fixture(params=["sqlite", "memory", "redis"])
def ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """Each implementation of the ledger, on a fresh empty store."""
    yield _store(request, request.param, tmp_path)
    _MEMORY.pop(str(tmp_path), None)


@pytest.fixture(params=["sqlite", "redis"])
def shared_ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerStore:
    """Each implementation that processes can share, on a fresh empty store."""
    return _store(request, request.param, tmp_path)


@pytest.fixture
async def ledger(ledger_store: LedgerStore) -> AsyncIterator[Ledger]:
    """A handle on the fresh store, closed after the test."""
    handle = ledger_store.make()
    try:
        yield handle
    finally:
        await handle.aclose()
