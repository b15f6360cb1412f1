"""Answers too big to hold, from a real socket: an endless gzip stream, decompression bombs.

Before the bound, 4 MB of gzip on the wire took the client past 1 GB and to MemoryError.
Each test here measures the memory the call took (tracemalloc's peak, which counts the
bytes httpx, zlib and the SDK allocate) and its time, against a raw-socket server on
loopback (tests/hostile.py) that compresses although it was asked not to.
"""

from __future__ import annotations

import json
import time
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

from sarv_async import AsyncSarvClient, Backoff, OutcomeUnknownError, UnexpectedResponseError
from tests.hostile import Conn, HostileServer, gzip_bomb, send_endless_gzip
from tests.unit.test_frame_locals import rendered

pytestmark = pytest.mark.anyio

OWNER = "owner-bomb"
TOKEN = "tok-bomb-SECRET-77"
PASSWORD = "pw-BOMB-LEAKED-31"
DEFAULT_CAP = 64 * 1024 * 1024
#: The growth allowed to a call cut off at the default bound (64 MiB).
MEMORY_BOUND = 100_000_000
ATTEMPT_TIMEOUT = 20.0

_USER = {
    "smtp_user_name": "smtp00001",
    "password": PASSWORD,
    "status": "Enable",
    "total_limit": 1,
    "hourly_limit": 1,
}
_HEAD = b'{"status":"success","smtp_list":[' + json.dumps(_USER).encode() + b","

#: What an endless answer inflates to: a prefix, then one byte again and again.
ENDLESS: dict[str, tuple[bytes, bytes]] = {
    # Spaces between the list's items: whitespace a streaming reader drops as it goes.
    "spaces-in-the-list": (_HEAD, b" "),
    # A user name that never ends: a streaming reader must hold it to read it.
    "an-endless-name": (_HEAD + b'{"smtp_user_name":"', b"a"),
    # Not JSON at all: read whole, as no JSON object starts.
    "zeros": (b"", b"\0"),
}


async def _batches(client: AsyncSarvClient) -> None:
    async def ignore(users: list[Any]) -> None:
        pass

    await client.smtp_users._list_in_batches(ignore)


#: The whole list, and the one read in batches as it arrives (provisioning's last list).
LISTS: dict[str, Callable[[AsyncSarvClient], Awaitable[Any]]] = {
    "list": lambda client: client.smtp_users.list(),
    "list-in-batches": _batches,
}


def _client(server: HostileServer, **options: Any) -> AsyncSarvClient:
    options.setdefault("rate_limit", None)
    options.setdefault("attempt_timeout", ATTEMPT_TIMEOUT)
    return AsyncSarvClient(OWNER, TOKEN, base_url=server.base_url, **options)


def _serving(answer: Callable[[Conn], None]) -> HostileServer:
    """A server answering every request with ``answer``."""
    holder: list[HostileServer] = []

    def handler(conn: Conn) -> None:
        while holder[0].read_request(conn) is not None:
            answer(conn)

    server = HostileServer(handler)
    holder.append(server)
    return server


def _framed(body: bytes, coding: str) -> Callable[[Conn], None]:
    """Answer with ``body`` as is, ``Content-Length`` framed, in ``coding``."""
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {coding}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    def answer(conn: Conn) -> None:
        conn.send(head + body)

    return answer


@contextmanager
def _peak_memory() -> Iterator[list[int]]:
    """The most memory allocated at once while in the block, above where it started."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        yield peak
        peak.append(tracemalloc.get_traced_memory()[1] - start)
    finally:
        tracemalloc.stop()


def _assert_cut_off_at_the_bound(error: BaseException, cap: int = DEFAULT_CAP) -> None:
    assert isinstance(error, UnexpectedResponseError)
    assert f"more than max_answer_bytes ({cap:,} bytes, decoded)" in str(error)
    text = rendered(error)
    assert TOKEN not in text
    assert PASSWORD not in text


#: Read whole, zeros and spaces take the same path: zeros are tried in batches alone.
ENDLESS_CASES = [(read, payload) for read in LISTS for payload in ENDLESS]
ENDLESS_CASES.remove(("list", "zeros"))


@pytest.mark.slow
@pytest.mark.parametrize(("read", "payload"), ENDLESS_CASES)
async def test_an_endless_gzip_answer_ends_at_the_bound_in_bounded_memory(
    read: str, payload: str
) -> None:
    """~1 KiB of gzip per MiB without end: cut off at 64 MiB decoded, < 100 MB, in time."""
    # No local holds the answer's password: the test's own frame is rendered too.
    with _serving(lambda conn: send_endless_gzip(conn, *ENDLESS[payload])) as server:
        async with _client(server, max_retries=0) as client:
            started = time.monotonic()
            with _peak_memory() as peak, pytest.raises(UnexpectedResponseError) as info:
                with anyio.fail_after(ATTEMPT_TIMEOUT):
                    await LISTS[read](client)
            elapsed = time.monotonic() - started
            # The connection was closed where the read stopped, never put back in the pool.
            assert await anyio.to_thread.run_sync(server.connections[0].wait_closed, 5.0)
    if read == "list-in-batches" and payload == "an-endless-name":
        # Read in batches, one user is held at a time: the reader refuses it first.
        assert "invalid JSON (a value not whole after 1,048,576 characters)" in str(info.value)
    else:
        _assert_cut_off_at_the_bound(info.value)
    assert PASSWORD not in rendered(info.value)
    assert peak[0] < MEMORY_BOUND, f"{peak[0]:,} bytes"
    assert elapsed < ATTEMPT_TIMEOUT


#: A bomb of 256 MiB, as a server may send it: gzip, twice gzip, deflate with or without
#: its zlib wrapper. On the wire: 261 KB, 590 bytes, 261 KB, 261 KB.
BOMBS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "gzip": ("gzip", lambda: gzip_bomb(256)),
    "gzip-twice": ("gzip, gzip", lambda: _gzip(gzip_bomb(256))),
    "deflate": ("deflate", lambda: _rewrapped(gzip_bomb(256), zlib.MAX_WBITS)),
    "raw-deflate": ("deflate", lambda: _rewrapped(gzip_bomb(256), -zlib.MAX_WBITS)),
}


def _gzip(data: bytes) -> bytes:
    gzip = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return gzip.compress(data) + gzip.flush()


def _rewrapped(bomb: bytes, wbits: int) -> bytes:
    """The same deflate data as ``bomb`` (a gzip member), in a zlib or no wrapper."""
    deflate = bomb[10:-8]  # a gzip header of 10 bytes (no name), a trailer of 8
    if wbits < 0:
        return deflate
    return b"\x78\xda" + deflate + b"\0\0\0\0"  # the checksum is past the bound: never read


@pytest.mark.slow
@pytest.mark.parametrize("bomb", list(BOMBS))
async def test_a_create_answered_with_a_bomb_is_outcome_unknown(bomb: str) -> None:
    """A create whose answer inflates past the bound is sent once: OutcomeUnknownError."""
    coding, make = BOMBS[bomb]
    with _serving(_framed(make(), coding)) as server:
        async with _client(server, max_retries=3) as client:
            started = time.monotonic()
            with _peak_memory() as peak, pytest.raises(OutcomeUnknownError) as info:
                with anyio.fail_after(ATTEMPT_TIMEOUT):
                    await client.smtp_users.create(total_limit=1, hourly_limit=1)
            elapsed = time.monotonic() - started
    assert [path for _, path in server.requests] == ["/v1.0/settings/addSmtp"]
    assert info.value.__cause__ is not None
    _assert_cut_off_at_the_bound(info.value.__cause__)
    assert TOKEN not in rendered(info.value)
    assert peak[0] < MEMORY_BOUND, f"{peak[0]:,} bytes"
    assert elapsed < ATTEMPT_TIMEOUT


def _list_bomb(mib: int) -> bytes:
    """A gzip list answer: a user, then ``mib`` MiB of spaces between its items."""
    prefix, fill = ENDLESS["spaces-in-the-list"]
    return gzip_bomb(mib, fill, prefix=prefix)


@pytest.mark.parametrize("read", list(LISTS))
async def test_a_list_answered_with_bombs_is_retried_then_raised(read: str) -> None:
    """A list is safe to repeat: every attempt meets the bomb, then UnexpectedResponseError."""
    cap = 1024 * 1024
    with _serving(_framed(_list_bomb(32), "gzip")) as server:
        quick = Backoff(initial=0.001, maximum=0.01, jitter=0.0)
        async with _client(server, max_retries=2, max_answer_bytes=cap, backoff=quick) as client:
            with anyio.fail_after(ATTEMPT_TIMEOUT), pytest.raises(UnexpectedResponseError) as info:
                await LISTS[read](client)
    assert len(server.requests) == 3
    _assert_cut_off_at_the_bound(info.value, cap)


async def test_a_list_past_the_bound_is_read_with_a_higher_one() -> None:
    """The bound is the user's: a 2 MiB answer (gzip) fails at 1 MiB and passes at 4 MiB."""
    prefix, fill = ENDLESS["spaces-in-the-list"]
    whole = _gzip(prefix[:-1] + fill * (2 * 1024 * 1024) + b"]}")
    with _serving(_framed(whole, "gzip")) as server:
        async with _client(server, max_retries=0, max_answer_bytes=1024 * 1024) as client:
            with pytest.raises(UnexpectedResponseError):
                await client.smtp_users.list()
            wider = client.with_options(max_answer_bytes=4 * 1024 * 1024)
            users = await wider.smtp_users.list()
    assert [user.smtp_user_name for user in users] == ["smtp00001"]
