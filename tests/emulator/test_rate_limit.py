"""Per-account rate limits: strict sliding windows, HTTP 429 and Retry-After."""

from __future__ import annotations

import random
from collections.abc import Iterator

import anyio
import pytest

from sarv_async import parse_rate_limit
from sarv_async.testing import Emulator
from sarv_async.testing._rate_windows import RateWindows

from ._support import ACCOUNTS, assert_envelope, loopback_client, post

pytestmark = pytest.mark.anyio


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# The windows themselves, on a fake clock.


def test_window_accepts_up_to_the_limit_then_says_how_long_to_wait() -> None:
    """Three in a second pass; the fourth waits exactly until the first leaves the window."""
    clock = FakeClock()
    windows = RateWindows(parse_rate_limit("3/second"), clock=clock)
    for now in (0.0, 0.25, 0.5):
        clock.now = now
        assert windows.admit("acme") is None
    clock.now = 0.75
    assert windows.admit("acme") == 0.25
    clock.now = 1.0
    assert windows.admit("acme") is None


def test_rejected_requests_do_not_count() -> None:
    """However many requests are refused, room comes back when the accepted ones age out."""
    clock = FakeClock()
    windows = RateWindows(parse_rate_limit("2/second"), clock=clock)
    assert windows.admit("acme") is None
    assert windows.admit("acme") is None
    for step in range(1, 8):
        clock.now = step / 8
        assert windows.admit("acme") is not None
    clock.now = 1.0
    assert windows.admit("acme") is None
    assert windows.admit("acme") is None


def test_the_longest_window_waits_longest() -> None:
    """With several windows, the wait is the longest any of them imposes."""
    clock = FakeClock()
    windows = RateWindows(parse_rate_limit("10/second;3/minute"), clock=clock)
    for _ in range(3):
        assert windows.admit("acme") is None
    clock.now = 2.0
    assert windows.admit("acme") == 58.0


def test_accounts_have_separate_windows() -> None:
    """One account's traffic does not use another's room."""
    windows = RateWindows(parse_rate_limit("1/minute"), clock=FakeClock())
    assert windows.admit("acme") is None
    assert windows.admit("acme") is not None
    assert windows.admit("globex") is None


@pytest.mark.parametrize("spec", ["3/second", "5/2s;8/5s", "2/0.5s;4/3s;6/10s"])
def test_no_window_anywhere_holds_more_than_its_limit(spec: str) -> None:
    """Under random bursts, every interval of each window's length holds at most its limit."""
    rng = random.Random(spec)
    clock = FakeClock()
    windows = parse_rate_limit(spec)
    limiter = RateWindows(windows, clock=clock)
    accepted: list[float] = []
    for _ in range(3000):
        clock.now += rng.choice([0.0, 0.001, 0.01, 0.05, 0.2, 0.7])
        wait = limiter.admit("acme")
        if wait is None:
            accepted.append(clock.now)
        else:
            assert wait > 0
    assert len(accepted) > 100
    for window in windows:
        # The fullest interval [s, s + period) starts at an accepted request.
        for i, start in enumerate(accepted):
            inside = sum(1 for t in accepted[i : i + window.limit + 1] if t < start + window.period)
            assert inside <= window.limit


def test_the_wait_is_exact() -> None:
    """A request is refused just before the wait is over and accepted once it is."""
    clock = FakeClock()
    limiter = RateWindows(parse_rate_limit("2/second;3/4s"), clock=clock)
    for now in (0.0, 0.5, 1.5):
        clock.now = now
        assert limiter.admit("acme") is None
    clock.now = 2.0
    wait = limiter.admit("acme")
    assert wait == 2.0
    clock.now = 3.875
    assert limiter.admit("acme") is not None
    clock.now = 4.0
    assert limiter.admit("acme") is None


# Over HTTP.


@pytest.fixture(scope="module")
def limited_emulator() -> Iterator[Emulator]:
    """An emulator holding each account to three calls a second."""
    with Emulator(accounts=ACCOUNTS, rate_limit="3/second") as emulator:
        yield emulator


@pytest.fixture
def limited(limited_emulator: Emulator) -> Emulator:
    """The rate-limited emulator, reset."""
    limited_emulator.reset()
    return limited_emulator


async def test_over_the_limit_the_api_answers_429_with_retry_after(limited: Emulator) -> None:
    """The fourth call within a second gets HTTP 429, Retry-After: 1 and a RateLimitError."""
    async with loopback_client(limited.url) as http:
        for _ in range(3):
            assert (await post(http, "listSmtp")).status_code == 200
        response = await post(http, "addSmtp", total_limit=1, hourly_limit=1)
    assert_envelope(response, "RateLimitError", status=429)
    assert response.headers["retry-after"] == "1"
    assert limited.users("acme") == []
    assert limited.stats()["responses"] == {"200": 3, "429": 1}


async def test_each_account_has_its_own_limit(limited: Emulator) -> None:
    """When acme is over its limit, globex is not."""
    async with loopback_client(limited.url) as http:
        for _ in range(3):
            await post(http, "listSmtp", "acme")
        assert (await post(http, "listSmtp", "acme")).status_code == 429
        assert (await post(http, "listSmtp", "globex")).status_code == 200


async def test_unauthenticated_calls_are_not_limited_nor_counted(limited: Emulator) -> None:
    """Calls with a wrong token get AuthenticationError, never 429, and use none of the room."""
    async with loopback_client(limited.url) as http:
        for _ in range(5):
            response = await http.post(
                "/v1.0/settings/listSmtp", json={"owner_id": "acme", "token": "wrong"}
            )
            assert_envelope(response, "AuthenticationError")
        for _ in range(3):
            assert (await post(http, "listSmtp")).status_code == 200


async def test_concurrent_calls_never_exceed_the_limit(limited: Emulator) -> None:
    """Of twenty simultaneous calls, exactly three are accepted."""
    statuses: list[int] = []
    async with loopback_client(limited.url) as http:

        async def one() -> None:
            statuses.append(
                (await post(http, "addSmtp", total_limit=1, hourly_limit=1)).status_code
            )

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert sorted(statuses) == [200] * 3 + [429] * 17
    assert len(limited.users("acme")) == 3


async def test_room_comes_back_once_the_window_has_passed() -> None:
    """After a short window has passed, the account is served again."""
    clock = FakeClock()
    async with (
        Emulator(rate_limit="2/0.2s", clock=clock) as emu,
        loopback_client(emu.url) as http,
    ):
        for _ in range(2):
            assert (await post(http, "listSmtp", "demo")).status_code == 200
        clock.now = 0.19
        refused = await post(http, "listSmtp", "demo")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"  # rounded up, at least one second
        clock.now = 0.21
        assert (await post(http, "listSmtp", "demo")).status_code == 200


@pytest.mark.parametrize("spec", [None, "none", "NONE", "off"])
def test_no_rate_limit(spec: str | None) -> None:
    """None, "none" and "off" switch the limit off."""
    assert Emulator(rate_limit=spec).rate_limit is None


@pytest.mark.parametrize("spec", ["fast", "3/fortnight", "0/second", "3"])
def test_a_bad_rate_limit_is_refused_at_construction(spec: str) -> None:
    """An unreadable rate limit raises ValueError before anything starts."""
    with pytest.raises(ValueError, match="rate_limit"):
        Emulator(rate_limit=spec)
