"""The pipeline against a real server on loopback: faults, 429s, pacing, timeouts, cancellation."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest

from sarv_async import (
    APITimeoutError,
    AsyncSarvClient,
    Backoff,
    OutcomeUnknownError,
    SlidingWindowLimiter,
    parse_rate_limit,
)
from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN, Emulator
from tests.processes import Launch, base_url_of, read_until

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)


def _requests(emu: Emulator, call: str) -> int:
    count: int = emu.stats()["requests"].get(f"/v1.0/settings/{call}", 0)
    return count


async def test_gateway_page_then_success_is_retried() -> None:
    """A 502 HTML page on a safe call is retried and the call succeeds."""
    async with Emulator() as emu, emu.client(backoff=FAST) as client:
        emu.inject_fault("gateway_page", path="listSmtp")
        assert await client.smtp_users.list() == []
        assert _requests(emu, "listSmtp") == 2


@pytest.mark.parametrize("fault", ["drop_after_apply", "truncated_json", "gateway_page"])
async def test_create_meeting_a_fault_is_sent_exactly_once(fault: Any) -> None:
    """A create whose connection drops (or whose answer is unreadable) is never sent twice."""
    async with Emulator() as emu, emu.client(backoff=FAST, max_retries=5) as client:
        emu.inject_fault(fault, path="addSmtp")
        with pytest.raises(OutcomeUnknownError) as info:
            await client.smtp_users.create(total_limit=50, hourly_limit=5)
        assert _requests(emu, "addSmtp") == 1
        applied = fault != "gateway_page"
        assert len(emu.users()) == (1 if applied else 0)
        # What the error carries is enough to reconcile: the request's limits.
        users = await client.smtp_users.list()
        matching = [
            u
            for u in users
            if (u.total_limit, u.hourly_limit)
            == (info.value.request.total_limit, info.value.request.hourly_limit)  # type: ignore[attr-defined]
        ]
        assert len(matching) == (1 if applied else 0)


async def test_create_dropped_before_sending_an_answer_is_not_repeated() -> None:
    """Even a drop that happened before the change is not repeated: the client cannot tell."""
    async with Emulator() as emu, emu.client(backoff=FAST) as client:
        emu.inject_fault("drop_before", path="addSmtp")
        with pytest.raises(OutcomeUnknownError):
            await client.smtp_users.create(total_limit=1, hourly_limit=1)
        assert _requests(emu, "addSmtp") == 1
        assert emu.users() == []


class _RecordingLimiter(SlidingWindowLimiter):
    """The client's own limiter, noting when the client learned of each 429."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[tuple[float, float]] = []

    def pause(self, seconds: float) -> None:
        self.pauses.append((time.monotonic(), seconds))
        super().pause(seconds)


@pytest.mark.slow
async def test_a_429_pauses_every_task_until_retry_after() -> None:
    """Once the client has read a 429, no task sends anything until its Retry-After has passed."""
    sent: list[float] = []

    async def on_request(request: httpx.Request) -> None:
        sent.append(time.monotonic())

    limiter = _RecordingLimiter()
    async with (
        Emulator(rate_limit="4/second") as emu,
        httpx.AsyncClient(event_hooks={"request": [on_request]}) as http,
        emu.client(max_concurrency=4, max_retries=6, http_client=http, limiter=limiter) as client,
    ):
        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(client.smtp_users.list)
        throttled = emu.stats()["responses"].get("429", 0)

    assert throttled >= 1, "the server never said 429: the test proved nothing"
    assert limiter.pauses, "the client never paused"
    for learned, seconds in limiter.pauses:
        assert seconds == 1.0  # the emulator's Retry-After
        assert [t for t in sent if learned < t < learned + seconds] == []
    # Only requests already in flight when a 429 came can have been refused too.
    assert throttled <= 4 * len(limiter.pauses)


@pytest.mark.slow
async def test_timeouts_raise_api_timeout_error_after_retries() -> None:
    """A server slower than the timeout gives APITimeoutError after the allowed retries."""
    async with (
        Emulator(latency_ms=500) as emu,
        emu.client(timeout=0.1, max_retries=1, backoff=FAST) as client,
    ):
        with pytest.raises(APITimeoutError):
            await client.smtp_users.list()
        assert _requests(emu, "listSmtp") == 2


@pytest.mark.slow
async def test_a_timed_out_create_is_outcome_unknown_and_did_happen() -> None:
    """A create that times out is not repeated; the server did create the user."""
    async with (
        Emulator(latency_ms=400) as emu,
        emu.client(timeout=0.1, max_retries=3, backoff=FAST) as client,
    ):
        with pytest.raises(OutcomeUnknownError) as info:
            await client.smtp_users.create(total_limit=9, hourly_limit=9)
        assert isinstance(info.value.__cause__, APITimeoutError)
        assert _requests(emu, "addSmtp") == 1
        with anyio.fail_after(5):  # the server goes on after the client gave up
            while not emu.users():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert len(emu.users()) == 1
        assert _requests(emu, "addSmtp") == 1


@pytest.mark.slow
async def test_cancelled_calls_leave_the_client_usable() -> None:
    """Cancelling in-flight calls frees their slots and connections; later calls go through."""
    async with Emulator(latency_ms=300) as emu, emu.client(max_concurrency=2) as client:
        with anyio.move_on_after(0.05):
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(client.smtp_users.list)
        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(client.smtp_users.list)
            assert await client.smtp_users.list() == []


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_task_cancel_mid_request_leaves_client_usable() -> None:
    """``asyncio.Task.cancel()`` on a call in flight leaves the client usable."""
    import asyncio

    async with Emulator(latency_ms=300) as emu, emu.client(max_concurrency=1) as client:
        task = asyncio.ensure_future(client.smtp_users.list())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with anyio.fail_after(3):
            assert await client.smtp_users.list() == []


@pytest.mark.slow
async def test_pacing_meets_a_strict_server_in_another_process(launch: Launch) -> None:
    """Against a server process enforcing exactly R/second, N calls see no 429 within N/R + 1.

    The margin is a quarter second, not the default 50 ms for a one-second window: it
    stands for the time between a request leaving and the server counting it, and a
    server process starved by a loaded machine counts some requests later than that.
    """
    calls, rate = 30, 10
    server = launch(["emulator", "--port", "0", "--rate-limit", f"{rate}/second"])
    base_url = base_url_of(await anyio.to_thread.run_sync(read_until, server, "base URL"))
    async with AsyncSarvClient(
        DEMO_OWNER_ID,
        DEMO_TOKEN,
        base_url=base_url,
        limiter=SlidingWindowLimiter(parse_rate_limit(f"{rate}/second"), margin=0.25),
        max_concurrency=5,
        max_retries=0,
    ) as client:
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(client.smtp_users.list)
        elapsed = time.monotonic() - started
    async with httpx.AsyncClient() as http:
        stats = (await http.get(str(httpx.URL(base_url).join("/_emulator/stats")))).json()
    assert stats["responses"].get("429", 0) == 0
    assert stats["responses"]["200"] == calls
    assert (calls - rate) / rate - 0.1 <= elapsed <= calls / rate + 1.0
