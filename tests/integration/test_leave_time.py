"""Sends are counted when they leave: a new connection's connect is not the margin's to cover.

A network backend makes the first connections slow to connect, as over the internet a
fresh client's first burst pays TCP and TLS setup, while later requests reuse them and
leave at once. The emulator holds the account to a strict 5/second window, on loopback.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpcore
import httpx
import pytest

from sarv_async import RateLimitError, RedisRateLimiter, SlidingWindowLimiter
from sarv_async._rate_spec import parse_rate_limit
from sarv_async.testing import DEMO_OWNER_ID, Emulator
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

RATE = 5
#: Far shorter than the window.
CONNECT_DELAY = 0.3
#: The client's margin: shorter than the connect, so counting a send when it was allowed
#: still meets a 429; wider than the default 50 ms, for the emulator (a thread of this
#: process) may answer late on a loaded machine, and the margin is what covers that.
MARGIN = 0.15


class SlowToConnect(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, with the first ``slow`` connections ``delay`` seconds late."""

    def __init__(self, delay: float, slow: int) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._delay = delay
        self._slow = slow

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._slow > 0:
            self._slow -= 1
            await anyio.sleep(self._delay)  # the handshake's round trips
        return await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def slow_http() -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport()
    # httpx takes no network backend: its pool is rebuilt around one (as httpx builds it).
    transport._pool = httpcore.AsyncConnectionPool(
        max_connections=RATE,
        max_keepalive_connections=RATE,
        network_backend=SlowToConnect(CONNECT_DELAY, slow=RATE),
    )
    return httpx.AsyncClient(transport=transport)


async def burst_past_one_window(emu: Emulator, **kwargs: Any) -> list[BaseException]:
    """Two windows' worth of lists: the first on new (slow) connections, the rest reused."""
    errors: list[BaseException] = []

    async def one(client: Any) -> None:
        try:
            await client.smtp_users.list()
        except RateLimitError as exc:
            errors.append(exc)

    async with (
        slow_http() as http,
        emu.client(http_client=http, max_concurrency=RATE, max_retries=0, **kwargs) as client,
        anyio.create_task_group() as tg,
    ):
        for _ in range(2 * RATE):
            tg.start_soon(one, client)
    return errors


async def test_a_burst_on_new_connections_does_not_squeeze_the_next_window() -> None:
    """Sends that left after a slow connect push the next window's sends: no 429."""
    limiter = SlidingWindowLimiter(parse_rate_limit(f"{RATE}/second"), margin=MARGIN)
    with Emulator(rate_limit=f"{RATE}/second") as emu:
        errors = await burst_past_one_window(emu, limiter=limiter)
        stats = emu.stats()
    assert errors == []
    assert stats["responses"] == {"200": 2 * RATE}


async def test_redis_counts_sends_when_they_left(redis_server: RedisServer) -> None:
    """The same through a shared Redis budget: the send's score moves to when it left."""
    windows = parse_rate_limit(f"{RATE}/second")
    with Emulator(rate_limit=f"{RATE}/second") as emu:
        account = RedisRateLimiter.account_for(emu.base_url, DEMO_OWNER_ID)
        async with RedisRateLimiter(
            redis_server.url, windows, margin=MARGIN, account=account
        ) as limiter:
            errors = await burst_past_one_window(emu, limiter=limiter)
        stats = emu.stats()
    assert errors == []
    assert stats["responses"] == {"200": 2 * RATE}


async def test_a_subclass_that_overrides_acquire_alone_is_still_called_through_it() -> None:
    """Its inherited acquire_send would pass its own acquire by: the client calls acquire."""

    class Counting(SlidingWindowLimiter):
        calls = 0

        async def acquire(self) -> None:
            self.calls += 1
            await super().acquire()

    limiter = Counting(parse_rate_limit("100/second"))
    with Emulator() as emu:
        async with emu.client(limiter=limiter) as client:
            for _ in range(3):
                await client.smtp_users.list()
    assert limiter.calls == 3


async def test_a_broken_counted_send_fails_no_request(caplog: pytest.LogCaptureFixture) -> None:
    """A custom limiter's send without ``allowed``: the call succeeds, one warning says so."""

    class NoAllowed:
        def left_late(self, delay: float) -> None:
            raise AssertionError("never reached")

    class Custom(SlidingWindowLimiter):
        async def acquire_send(self) -> Any:
            await super().acquire_send()
            return NoAllowed()

        async def acquire(self) -> None:
            await self.acquire_send()

    with Emulator() as emu:
        async with emu.client(limiter=Custom(())) as client:
            assert await client.smtp_users.list() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["the rate limiter could not count a send that left late (AttributeError)"]
