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
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import httpx
import pytest

from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN, Emulator, _prompt_server, _server

_LIST = {"owner_id": DEMO_OWNER_ID, "token": DEMO_TOKEN}


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


def test_stop_wakes_the_server_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() wakes the server's loop instead of waiting for its next tick."""
    monkeypatch.setattr(_prompt_server, "TICK", 60.0)  # a stop that waits for a tick: a minute
    with Emulator() as emu:
        assert httpx.post(emu.base_url + "settings/listSmtp", json=_LIST).status_code == 200
    assert emu._thread is not None
    assert not emu._thread.is_alive()  # stop() waits 10 s at most, then leaves it running


def test_a_stop_waits_for_nothing_when_nothing_is_open() -> None:
    """uvicorn's own shutdown waits a fixed 0.1 s, and its tick up to 0.1 s more; no more."""
    durations = []
    for _ in range(5):
        emu = Emulator().start()
        started = time.perf_counter()
        emu.stop()
        durations.append(time.perf_counter() - started)
    assert min(durations) < 0.1, durations


def test_a_connection_accepted_as_the_stop_wakes_is_closed(
    leaks: Callable[[], list[str]],
) -> None:
    """The server closes a connection it accepts in the loop turn that wakes the stop."""
    emu = Emulator().start()
    assert emu._server is not None
    release = _hold(emu._server.servers[0].get_loop())
    with socket.create_connection(("127.0.0.1", emu.port)) as client:  # the kernel accepts it
        emu._server.request_exit()  # queued ahead of the loop's accept of that connection
        release.set()
        emu.stop()
        assert leaks() == []
        _assert_closed_by_peer(client)


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


def test_after_stop_the_port_refuses_connections() -> None:
    """Once stop() returns, nothing listens on the emulator's port."""
    with Emulator() as emu:
        pass
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", emu.port), timeout=10).close()


def test_an_answer_past_the_grace_is_cut_and_its_socket_closed(
    monkeypatch: pytest.MonkeyPatch, leaks: Callable[[], list[str]]
) -> None:
    """A request still in flight when the grace ends is cancelled, answered 500, and closed."""
    monkeypatch.setattr(_server, "_GRACEFUL_SHUTDOWN", 0.01)
    answers: list[int | str] = []
    emu = Emulator(latency_ms=60_000).start()

    def ask() -> None:
        try:
            answers.append(httpx.post(emu.base_url + "settings/listSmtp", json=_LIST).status_code)
        except httpx.TransportError as exc:
            answers.append(type(exc).__name__)

    asking = threading.Thread(target=ask)
    asking.start()
    _wait_for_a_request(emu)
    emu.stop()
    asking.join(10)
    assert answers == [500]
    assert leaks() == []


def test_a_second_ctrl_c_cuts_the_grace_short(
    monkeypatch: pytest.MonkeyPatch, leaks: Callable[[], list[str]]
) -> None:
    """As with uvicorn: SIGINT twice stops at once, cancelling the answers in flight."""
    monkeypatch.setattr(_server, "_GRACEFUL_SHUTDOWN", 60)  # an uncut grace: a minute
    emu = Emulator(latency_ms=60_000).start()
    assert emu._server is not None
    asking = threading.Thread(
        target=lambda: httpx.post(emu.base_url + "settings/listSmtp", json=_LIST, timeout=30)
    )
    asking.start()
    _wait_for_a_request(emu)
    emu._server.handle_exit(signal.SIGINT, None)  # asks the server to stop: the grace begins
    emu._server.handle_exit(signal.SIGINT, None)  # ends the grace at once
    assert emu._thread is not None
    emu._thread.join(10)
    assert not emu._thread.is_alive()
    emu.stop()
    asking.join(10)
    assert leaks() == []


def _wait_for_a_request(emu: Emulator) -> None:
    deadline = time.monotonic() + 10
    while not emu.stats()["requests"]:  # the server has the request: it is in flight
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.002)


@pytest.mark.slow
def test_connections_made_while_stopping_are_all_closed(leaks: Callable[[], list[str]]) -> None:
    """Connections that keep coming, to HTTP and SMTP, as emulators stop: none is left open."""
    request = b"POST /v1.0/settings/listSmtp HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"

    def hammer(addresses: list[tuple[str, int]], stop: threading.Event, made: list[int]) -> None:
        while not stop.is_set():
            for n, address in enumerate(addresses):
                try:
                    client = socket.create_connection(address, timeout=5)
                except OSError:
                    # Refused: the server has stopped listening. Wait a little, or this
                    # loop holds the GIL the stopping server's thread needs.
                    stop.wait(0.001)
                    continue
                made.append(n)
                with client:
                    try:
                        if n == 0:
                            client.sendall(request)
                        client.recv(1024)
                    except OSError:
                        pass

    for round_ in range(40):
        emu = Emulator(smtp=round_ % 4 == 0).start()
        addresses = [("127.0.0.1", emu.port)]
        if round_ % 4 == 0:
            addresses.append(emu.smtp_address)
        stop, made = threading.Event(), list[int]()
        hammering = threading.Thread(target=hammer, args=(addresses, stop, made))
        hammering.start()
        deadline = time.monotonic() + 10
        while len(made) < 1 + round_ % 5:
            assert time.monotonic() < deadline, "no connection was made"
            time.sleep(0.0005)
        emu.stop()
        stop.set()
        hammering.join(10)
        assert leaks() == [], f"round {round_}"
