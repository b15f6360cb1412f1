"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

from typing import Any

import pytest

from tests.processes import launch
from tests.redis_server import redis_server, volatile_redis_server

__all__ = ["anyio_backend", "launch", "redis_server", "volatile_redis_server"]


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
