"""Fixtures: a running emulator shared by a module, reset before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sarv_async.testing import Emulator

from ._support import ACCOUNTS, loopback_client


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator with the test accounts for a whole module (starting one costs ~0.2 s)."""
    with Emulator(accounts=ACCOUNTS) as emulator:
        yield emulator


@pytest.fixture
def emu(shared_emulator: Emulator) -> Emulator:
    """The shared emulator, with no users, counters, rate windows or queued faults."""
    shared_emulator.reset()
    return shared_emulator


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """A raw httpx client pointed at the emulator's root URL."""
    async with loopback_client(emu.url) as client:
        yield client
