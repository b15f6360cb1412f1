"""The stores every `Ledger` contract test runs against: one fixture param per implementation.

To add an implementation, add a param to `ledger_store` that builds a `LedgerStore`: how
to open a new handle on one fresh, empty store, in this process or in another one.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest

from sarv_async import Ledger
from tests.redis_server import RedisServer

__all__ = ["LedgerStore"]


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


@pytest.fixture(params=["sqlite", "redis"])
def ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """Each implementation of the ledger, on a fresh empty store."""
    if request.param == "sqlite":
        yield LedgerStore("sqlite", "sarv_async._ledger:open_ledger", str(tmp_path / "l.sqlite3"))
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")  # a fresh redis-server
        yield LedgerStore("redis", "sarv_async._ledger:open_ledger", server.url)
    else:  # pragma: no cover - one branch per param
        raise AssertionError(request.param)


@pytest.fixture
async def ledger(ledger_store: LedgerStore) -> AsyncIterator[Ledger]:
    """A handle on the fresh store, closed after the test."""
    handle = ledger_store.make()
    try:
        yield handle
    finally:
        await handle.aclose()
