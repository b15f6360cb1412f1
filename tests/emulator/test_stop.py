"""Stopping the emulator: at once, gracefully for answers in flight, and leaving no socket open.

asyncio accepts a connection in one loop turn and makes its transport in the next; a
stop that closed the server in between left the accepted socket to the garbage collector
(see sarv_async/testing/_accepting.py). The tests that reproduce that order hold the
server's loop in a callback while a client connects and the stop is requested, so the
stop's wake-up is queued ahead of the accept, as it was when the race was met.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterator

import pytest

from sarv_async.testing import Emulator


@pytest.fixture
def leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[str]]]:
    """Collect what finalizers raise (an unclosed socket's ResourceWarning among them).

    Call the result to run the garbage collector and read the list.
    """
    found: list[str] = []

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        found.append(f"{unraisable.exc_type.__name__}: {unraisable.exc_value}")

    def collect() -> list[str]:
        gc.collect()
        return found

    monkeypatch.setattr(sys, "unraisablehook", hook)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        yield collect


def _hold(loop: asyncio.AbstractEventLoop) -> threading.Event:
    """Block ``loop`` in a callback until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(10)

    loop.call_soon_threadsafe(hold)
    assert held.wait(10), "the loop never ran the callback"
    return release


def _assert_closed_by_peer(client: socket.socket) -> None:
    client.settimeout(10)
    with contextlib.suppress(ConnectionResetError):  # closed with data unread: a reset
        assert client.recv(1) == b""


def test_an_smtp_connection_accepted_as_the_stop_wakes_is_closed(
    leaks: Callable[[], list[str]],
) -> None:
    """The same for the SMTP server: its session is cut and its socket closed."""
    emu = Emulator(smtp=True).start()
    smtp = emu._smtp
    assert smtp is not None
    assert smtp._loop is not None
    release = _hold(smtp._loop)
    with socket.create_connection(emu.smtp_address) as client:
        smtp.request_stop()
        release.set()
        emu.stop()
        assert leaks() == []
        _assert_closed_by_peer(client)
