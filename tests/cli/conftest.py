"""Fixtures: an emulator shared by a module, the account in the environment, a CLI runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sarv_async import Backoff
from sarv_async._cli import _options, main
from sarv_async.testing import Emulator

from ._support import ACCOUNTS, OWNER_ID, TOKEN, CliRun

Cli = Callable[..., CliRun]


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator with the test account for a whole module."""
    with Emulator(accounts=ACCOUNTS) as emulator:
        yield emulator


@pytest.fixture
def emu(shared_emulator: Emulator) -> Emulator:
    """The shared emulator, with no users, counters or queued faults."""
    shared_emulator.reset()
    return shared_emulator


@pytest.fixture(autouse=True)
def _no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test is at a terminal, so none waits for a token typed in."""
    monkeypatch.setattr(_options, "stdin_is_terminal", lambda: False)


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries in this process wait a fiftieth of their backoff (the same retries, sooner).

    These tests are about what the command prints and returns after retries, not about
    how long it waits for them (tests/unit/test_retries.py is).
    """
    delay = Backoff.delay
    monkeypatch.setattr(Backoff, "delay", lambda self, retry: delay(self, retry) / 50)


@pytest.fixture
def account_env(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator's account in SARV_OWNER_ID, SARV_TOKEN and SARV_BASE_URL."""
    monkeypatch.setenv("SARV_OWNER_ID", OWNER_ID)
    monkeypatch.setenv("SARV_TOKEN", TOKEN)
    monkeypatch.setenv("SARV_BASE_URL", emu.base_url)
    return emu


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``main(argv)`` in this process and return its exit status and output."""

    def run(*argv: str) -> CliRun:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)

    return run
