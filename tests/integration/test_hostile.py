"""The client against servers that misbehave below the JSON: drips, endless bodies, smuggling.

A raw-socket server on loopback (tests/hostile.py) serves each connection with a
handler of the test's own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from sarv_async import APITimeoutError, AsyncSarvClient, OutcomeUnknownError
from tests.hostile import Conn, HostileServer, http_response
from tests.unit.test_frame_locals import rendered

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real servers dripping past real deadlines

OWNER = "owner-hostile"
TOKEN = "tok-hostile-SECRET-42"
LIST_ANSWER = {"status": "success", "smtp_list": []}
SLACK = 1.0


def _client(server: HostileServer, **options: Any) -> AsyncSarvClient:
    options.setdefault("rate_limit", None)
    return AsyncSarvClient(OWNER, TOKEN, base_url=server.base_url, **options)


def _created(name: str) -> dict[str, str]:
    return {"status": "success", "smtp_user_name": name, "smtp_password": f"pw-{name}"}


def _drip_headers(conn: Conn) -> None:
    conn.drip(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000, every=0.3)


def _drip_body(conn: Conn) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
    conn.drip(b'{"status":"success","smtp_list":[' + b" " * 5000, every=0.3)


def _endless_chunks(conn: Conn) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while conn.send(b"400\r\n" + b" " * 1024 + b"\r\n") and conn.sleep(0.05):
        pass


HOSTILE: dict[str, Callable[[Conn], None]] = {
    "dripping-headers": _drip_headers,
    "dripping-body": _drip_body,
    "endless-chunked-body": _endless_chunks,
}


def _first_connection_hostile(behave: Callable[[Conn], None], server: list[HostileServer]):  # type: ignore[no-untyped-def]
    """Misbehave on the first connection; answer properly on every later one."""

    def handler(conn: Conn) -> None:
        while (request := server[0].read_request(conn)) is not None:
            if conn.index == 0:
                behave(conn)
                return
            path = request[0]
            answer = _created(f"smtp{conn.index}") if path.endswith("addSmtp") else LIST_ANSWER
            conn.send(http_response(answer))

    return handler


def _serve(behave: Callable[[Conn], None]) -> HostileServer:
    holder: list[HostileServer] = []
    server = HostileServer(_first_connection_hostile(behave, holder))
    holder.append(server)
    return server


async def _list_in_batches(client: AsyncSarvClient) -> None:
    async def ignore(users: list[Any]) -> None:
        pass

    await client.smtp_users._list_in_batches(ignore)


#: The whole list, and the one read in batches as it arrives (provisioning's last list).
LISTS: dict[str, Callable[[AsyncSarvClient], Awaitable[Any]]] = {
    "list": lambda client: client.smtp_users.list(),
    "list-in-batches": _list_in_batches,
}


@pytest.mark.parametrize("read", list(LISTS))
@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_a_hostile_answer_ends_within_the_attempt_timeout(kind: str, read: str) -> None:
    """Drips and endless bodies end in APITimeoutError at attempt_timeout, not never."""
    with _serve(HOSTILE[kind]) as server:
        async with _client(server, timeout=1.0, attempt_timeout=0.8, max_retries=0) as client:
            started = time.monotonic()
            with anyio.fail_after(0.8 + SLACK), pytest.raises(APITimeoutError) as info:
                await LISTS[read](client)
            assert time.monotonic() - started >= 0.75
            assert "0.8" in str(info.value)
            # The cut connection was closed, not put back in the pool half read...
            assert await anyio.to_thread.run_sync(server.connections[0].wait_closed, 2.0)
            # ...and the next call, on a new connection, reads its own answer.
            with anyio.fail_after(3):
                assert await client.smtp_users.list() == []
        assert [index for index, _ in server.requests] == [0, 1]


def _drip_body_often(conn: Conn) -> None:
    """A byte every 0.05 s: a wide margin under a 0.5 s read timeout on a loaded machine."""
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
    conn.drip(b'{"status":"success","smtp_list":[' + b" " * 5000, every=0.05)


async def test_the_default_attempt_timeout_derives_from_the_timeout() -> None:
    """``timeout=0.5`` alone bounds an attempt at connect + write + read = 1.5 s."""
    with _serve(_drip_body_often) as server:
        async with _client(server, timeout=0.5, max_retries=0) as client:
            started = time.monotonic()
            with anyio.fail_after(1.5 + SLACK), pytest.raises(APITimeoutError):
                await client.smtp_users.list()
            assert time.monotonic() - started >= 1.45
            assert client.attempt_timeout == 1.5


@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_a_create_cut_off_by_the_deadline_is_outcome_unknown(kind: str) -> None:
    """A create whose answer never finishes is sent once and ends OutcomeUnknownError."""
    with _serve(HOSTILE[kind]) as server:
        async with _client(server, timeout=1.0, attempt_timeout=0.6, max_retries=3) as client:
            with anyio.fail_after(0.6 + SLACK), pytest.raises(OutcomeUnknownError) as info:
                await client.smtp_users.create(total_limit=1, hourly_limit=1)
            assert isinstance(info.value.__cause__, APITimeoutError)
        assert [path for _, path in server.requests] == ["/v1.0/settings/addSmtp"]


async def test_no_token_in_the_frames_of_a_cut_off_call() -> None:
    """Cancelled mid-exchange inside httpx, the errors raised keep no token in their frames."""
    with _serve(_drip_body) as server:
        async with _client(server, attempt_timeout=0.3, max_retries=0) as client:
            with pytest.raises(APITimeoutError) as timed_out:
                await client.smtp_users.list()
        errors: list[BaseException] = [timed_out.value]
    with _serve(_drip_body) as server:
        async with _client(server, attempt_timeout=0.3, max_retries=0) as client:
            with pytest.raises(OutcomeUnknownError) as unknown:
                await client.smtp_users.create(total_limit=1, hourly_limit=1)
        errors.append(unknown.value)
    for error in errors:
        text = rendered(error)
        assert "_pipeline.py" in text
        assert TOKEN not in text


async def test_safe_calls_are_retried_after_the_deadline() -> None:
    """A list cut off by the deadline is repeated on a fresh connection and succeeds."""
    with _serve(_drip_body) as server:
        async with _client(server, attempt_timeout=0.5, max_retries=1) as client:
            with anyio.fail_after(0.5 + 2 * SLACK):
                assert await client.smtp_users.list() == []
        assert [index for index, _ in server.requests] == [0, 1]


async def test_many_cancelled_drips_leave_the_pool_clean() -> None:
    """Ten calls cut off at once: every connection is closed, and the client still works."""
    dripping = 10

    def handler_for(server: list[HostileServer]) -> Callable[[Conn], None]:
        def handler(conn: Conn) -> None:
            while server[0].read_request(conn) is not None:
                if conn.index < dripping:
                    _drip_body(conn)
                    return
                conn.send(http_response(LIST_ANSWER))

        return handler

    holder: list[HostileServer] = []
    with HostileServer(handler_for(holder)) as server:
        holder.append(server)
        async with _client(server, attempt_timeout=0.5, max_retries=0) as client:
            with anyio.fail_after(0.5 + 2 * SLACK):
                async with anyio.create_task_group() as tg:
                    for _ in range(dripping):
                        tg.start_soon(_expect_timeout, client)
            for conn in server.connections[:dripping]:
                assert await anyio.to_thread.run_sync(conn.wait_closed, 2.0)
            with anyio.fail_after(3):
                assert await client.smtp_users.list() == []


async def _expect_timeout(client: AsyncSarvClient) -> None:
    with pytest.raises(APITimeoutError):
        await client.smtp_users.list()


# -- response desync on a reused keep-alive connection ------------------------------------


def _smuggling_handler(server: list[HostileServer]) -> Callable[[Conn], None]:
    """A list answer carries a second, forged create answer past its Content-Length."""

    def handler(conn: Conn) -> None:
        while (request := server[0].read_request(conn)) is not None:
            path = request[0]
            if path.endswith("listSmtp"):
                forged = http_response(_created("smtpFAKE"))
                conn.send(http_response(LIST_ANSWER) + forged)
            elif path.endswith("addSmtp"):
                conn.send(http_response(_created(f"smtpREAL{len(server[0].requests)}")))
            else:
                conn.send(http_response({"status": "success", "message": "ok"}))

    return handler


async def test_a_create_never_reads_an_answer_smuggled_on_a_reused_connection() -> None:
    """After a list answer with bytes past Content-Length, a create reads its own answer."""
    holder: list[HostileServer] = []
    with HostileServer(_smuggling_handler(holder)) as server:
        holder.append(server)
        async with _client(server, max_concurrency=1) as client:
            assert await client.smtp_users.list() == []
            creds = await client.smtp_users.create(total_limit=1, hourly_limit=1)
            assert creds.smtp_user_name.startswith("smtpREAL"), creds.smtp_user_name
            again = await client.smtp_users.create(total_limit=1, hourly_limit=1)
            assert again.smtp_user_name.startswith("smtpREAL")
        creates = [index for index, path in server.requests if path.endswith("addSmtp")]
        assert len(creates) == 2
        # Each create went out on a connection of its own, never on the list's.
        list_conn = next(index for index, path in server.requests if path.endswith("listSmtp"))
        assert list_conn not in creates
        assert len(set(creates)) == 2
