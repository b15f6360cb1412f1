"""A ``Retry-After`` header can hold back one call, never the client for good."""

from __future__ import annotations

import math
import time

import anyio
import httpx
import pytest
import respx

from sarv_async import RateLimitError, SlidingWindowLimiter
from sarv_async._retry import parse_retry_after
from tests.helpers import BASE_URL, make_client, success

pytestmark = pytest.mark.anyio

LIST_URL = f"{BASE_URL}settings/listSmtp"


@pytest.mark.parametrize(
    "header",
    [
        "-5",
        "-0.5",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "1e308",
        "1e3",
        "99999999999999999999",
        "1_000",
        "0x10",
        "soon",
        "",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Mon, 01 Jan 2001 00:00:00 GMT",
    ],
)
def test_absurd_retry_after_values_count_as_absent(header: str) -> None:
    """Negative, NaN, infinite, non-decimal, over a day, and past dates: as if absent."""
    assert parse_retry_after(header) is None


@pytest.mark.parametrize(("header", "expected"), [("0", 0.0), ("7", 7.0), ("0.25", 0.25)])
def test_sane_retry_after_values_are_read(header: str, expected: float) -> None:
    """Whole or decimal seconds up to a day are read as they are."""
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize(
    "header", ["1e308", "99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
async def test_an_absurd_retry_after_does_not_disable_the_client(
    header: str, respx_mock: respx.MockRouter
) -> None:
    """A 429 with an absurd Retry-After is retried after backoff, and later calls go through."""
    route = respx_mock.post(LIST_URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": header}),
            success(smtp_list=[]),
            success(smtp_list=[]),
        ]
    )
    async with make_client(max_retry_after=1.0) as client:
        with anyio.fail_after(5):
            assert await client.smtp_users.list() == []
            assert await client.smtp_users.list() == []
    assert route.call_count == 3


@pytest.mark.slow
async def test_a_long_retry_after_raises_for_that_call_only(respx_mock: respx.MockRouter) -> None:
    """Retry-After beyond max_retry_after raises at once; later calls wait that long at most."""
    route = respx_mock.post(LIST_URL).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "3600"}), success(smtp_list=[])]
    )
    async with make_client(max_retry_after=0.5, max_retries=3) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitError) as info:
            await client.smtp_users.list()
        assert time.monotonic() - started < 0.4
        assert info.value.retry_after == 3600
        with anyio.fail_after(3):
            assert await client.smtp_users.list() == []
        waited = time.monotonic() - started
    # Held back by the pause (clamped to max_retry_after), not longer.
    assert 0.45 <= waited < 2.0
    assert route.call_count == 2


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [1e308, math.inf, 10_000.0])
async def test_the_limiter_clamps_a_pause_to_max_pause(seconds: float) -> None:
    """`SlidingWindowLimiter.pause` never holds back an acquire longer than ``max_pause``."""
    limiter = SlidingWindowLimiter(max_pause=0.3)
    limiter.pause(seconds)
    started = anyio.current_time()
    with anyio.fail_after(3):
        await limiter.acquire()
    assert 0.25 <= anyio.current_time() - started < 1.5
