"""Tests for the client-wide request pacer (`sarv_async._limiter`)."""

from __future__ import annotations

import bisect
import math
import time

import anyio
import anyio.abc
import pytest

from sarv_async._limiter import RateLimiter, SlidingWindowLimiter
from sarv_async._rate_spec import RateWindow, parse_rate_limit

pytestmark = pytest.mark.anyio


def most_in_any_window(times: list[float], period: float) -> int:
    """The most sends that any closed window of ``period`` seconds holds, wherever it starts."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_right(ordered, start + period) - i for i, start in enumerate(ordered)),
        default=0,
    )


async def send_times(
    limiter: SlidingWindowLimiter, tasks: int, stagger: float = 0.0
) -> list[float]:
    """Send times of ``tasks`` concurrent acquirers, the i-th starting after ``i * stagger`` s."""
    times: list[float] = []

    async def one(delay: float) -> None:
        await anyio.sleep(delay)
        await limiter.acquire()
        times.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for i in range(tasks):
            tg.start_soon(one, i * stagger)
    return times


async def waiting_acquirer(
    limiter: SlidingWindowLimiter,
    times: list[float],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Acquire and record the send time; for ``tg.start``, which returns once acquire() waits."""
    task_status.started()  # the caller resumes only after this task blocks inside acquire()
    await limiter.acquire()
    times.append(anyio.current_time())


@pytest.mark.slow
async def test_no_window_of_the_period_holds_more_than_the_limit() -> None:
    """Staggered concurrent tasks never put more than ``limit`` sends in any ``period``."""
    limiter = SlidingWindowLimiter([RateWindow(4, 0.1)], margin=0.03)
    start = anyio.current_time()
    times = await send_times(limiter, 16, stagger=0.005)
    assert len(times) == 16
    assert most_in_any_window(times, 0.1) == 4
    # Four bursts of four, 0.13 s apart (0.39 s), not one at a time (15 * 0.13 s).
    assert max(times) - start < 0.8


@pytest.mark.slow
async def test_every_window_holds_at_once() -> None:
    """With two windows configured, both hold for the same sequence of sends."""
    limiter = SlidingWindowLimiter(parse_rate_limit("2/0.05s;3/0.2s"), margin=0.03)
    times = await send_times(limiter, 6)
    assert most_in_any_window(times, 0.05) <= 2
    assert most_in_any_window(times, 0.2) <= 3


async def test_waiters_are_served_in_arrival_order() -> None:
    """Tasks that queue up are let through in the order they called acquire()."""
    limiter = SlidingWindowLimiter([RateWindow(1, 0.02)], margin=0.002)
    called: list[int] = []
    served: list[int] = []

    async def one(i: int) -> None:
        called.append(i)
        await limiter.acquire()
        served.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
    assert served == called


async def test_default_margin_widens_each_window() -> None:
    """By default each window is widened by 5% of its period (at most 0.25 s)."""
    limiter = SlidingWindowLimiter([RateWindow(1, 0.1)])
    times = await send_times(limiter, 2)
    assert times[1] - times[0] >= 0.1 + 0.005


async def test_pause_holds_back_waiting_and_new_tasks() -> None:
    """A pause delays a task already waiting for its slot as well as tasks that come later."""
    limiter = SlidingWindowLimiter([RateWindow(1, 0.05)], margin=0.005)
    await limiter.acquire()
    times: list[float] = []
    async with anyio.create_task_group() as tg:
        await tg.start(waiting_acquirer, limiter, times)  # waits for its slot, 0.055 s away
        until = anyio.current_time() + 0.1
        limiter.pause(0.1)
        await tg.start(waiting_acquirer, limiter, times)
    assert len(times) == 2
    assert min(times) >= until
    assert most_in_any_window(times, 0.05) == 1


async def test_pause_without_windows_is_rechecked_after_each_sleep() -> None:
    """With pacing off, a task waiting out one pause also waits out a longer one set meanwhile."""
    limiter = SlidingWindowLimiter()
    limiter.pause(0.03)
    times: list[float] = []
    async with anyio.create_task_group() as tg:
        await tg.start(waiting_acquirer, limiter, times)
        until = anyio.current_time() + 0.08
        limiter.pause(0.08)
    assert times[0] >= until


async def test_pause_keeps_the_later_end() -> None:
    """A shorter pause does not cut short a longer one already in force."""
    limiter = SlidingWindowLimiter()
    until = anyio.current_time() + 0.08
    limiter.pause(0.08)
    limiter.pause(0.01)
    await limiter.acquire()
    assert anyio.current_time() >= until


@pytest.mark.slow
async def test_pause_longer_than_max_pause_is_clamped() -> None:
    """A pause beyond max_pause holds acquire() back for max_pause, not for the whole pause."""
    limiter = SlidingWindowLimiter([RateWindow(5, 1.0)], max_pause=0.3)
    started = anyio.current_time()
    limiter.pause(5.0)
    with anyio.fail_after(2):
        await limiter.acquire()
    assert 0.29 <= anyio.current_time() - started < 1.0


@pytest.mark.slow
async def test_waiting_tasks_wait_at_most_max_pause_when_a_long_pause_begins() -> None:
    """Tasks already waiting are held until the clamped pause ends, then all go."""
    limiter = SlidingWindowLimiter(max_pause=0.4)
    limiter.pause(0.1)
    done: list[float] = []

    async def waiter(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        await limiter.acquire()
        done.append(anyio.current_time())

    start = anyio.current_time()
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            await tg.start(waiter)
            await tg.start(waiter)
            limiter.pause(10.0)
    assert len(done) == 2
    for moment in done:
        assert 0.39 <= moment - start < 1.0  # after the clamped pause, not the first 0.1 s


async def test_cancelled_waiter_leaves_no_trace() -> None:
    """A waiter cancelled at the head of the queue hands its turn to the next one."""
    limiter = SlidingWindowLimiter([RateWindow(1, 0.1)], margin=0.01)
    start = anyio.current_time()
    await limiter.acquire()
    times: list[float] = []
    async with anyio.create_task_group() as outer, anyio.create_task_group() as doomed:
        await doomed.start(waiting_acquirer, limiter, times)  # the head of the queue
        await outer.start(waiting_acquirer, limiter, times)  # queued behind it
        doomed.cancel_scope.cancel()
    assert len(times) == 1
    assert 0.11 <= times[0] - start < 0.2  # the cancelled task's turn, not the one after it


def block_event_loop(seconds: float) -> None:
    """Hold the event loop, as a CPU-bound callback or an overloaded machine would."""
    time.sleep(seconds)


async def test_late_wake_up_does_not_squeeze_the_next_send() -> None:
    """A waiter woken late is counted when it really goes, so the next one keeps its distance."""
    limiter = SlidingWindowLimiter([RateWindow(1, 0.1)], margin=0.001)
    await limiter.acquire()
    times = [anyio.current_time()]
    async with anyio.create_task_group() as tg:
        await tg.start(waiting_acquirer, limiter, times)  # due at 0.101 s
        await tg.start(waiting_acquirer, limiter, times)  # due 0.101 s after that one
        await anyio.sleep(0.08)
        block_event_loop(0.05)  # the first waiter wakes about 0.03 s late
    assert len(times) == 3
    assert most_in_any_window(times, 0.1) == 1


@pytest.mark.parametrize("rate_limit", [None, "60/minute;3600/hour"])
async def test_acquire_within_limits_does_not_checkpoint(rate_limit: str | None) -> None:
    """When a request may go at once, acquire() neither sleeps nor yields to the event loop."""
    limiter = SlidingWindowLimiter(parse_rate_limit(rate_limit) if rate_limit else ())
    limiter.pause(0.0)  # an expired pause costs nothing either
    reached = 0
    with anyio.CancelScope() as scope:
        scope.cancel()  # any checkpoint inside acquire() would now raise
        for _ in range(5):
            await limiter.acquire()
            reached += 1
    assert reached == 5


def test_is_a_rate_limiter() -> None:
    """SlidingWindowLimiter satisfies the RateLimiter protocol that other limiters plug into."""
    limiter: RateLimiter = SlidingWindowLimiter()
    assert isinstance(limiter, RateLimiter)


def test_repr_shows_the_windows() -> None:
    """The repr names the windows and options, compactly."""
    paced = SlidingWindowLimiter(parse_rate_limit("60/minute;3600/hour"), margin=0.5)
    assert repr(paced) == "<SlidingWindowLimiter 60/60s;3600/3600s margin=0.5s max_pause=120s>"
    assert repr(SlidingWindowLimiter()) == "<SlidingWindowLimiter unpaced max_pause=120s>"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"margin": -0.1},
        {"margin": math.inf},
        {"max_pause": -1.0},
        {"max_pause": math.nan},
        {"windows": [RateWindow(0, 1.0)]},
        {"windows": [RateWindow(1, 0.0)]},
    ],
)
def test_rejects_bad_options(kwargs: dict[str, object]) -> None:
    """Nonsense options fail at construction, not at the first request."""
    with pytest.raises(ValueError, match="must"):
        SlidingWindowLimiter(**kwargs)  # type: ignore[arg-type]


async def test_rejects_bad_pause() -> None:
    """A negative or NaN pause is a caller bug and is refused."""
    limiter = SlidingWindowLimiter()
    for seconds in (-1.0, math.nan):
        with pytest.raises(ValueError, match="must"):
            limiter.pause(seconds)


async def test_a_send_that_left_late_is_counted_when_it_left() -> None:
    """A request that left after connecting pushes the next send back by as much."""
    limiter = SlidingWindowLimiter([RateWindow(1, 0.2)], margin=0.0)
    sent = await limiter.acquire_send()
    assert sent is not None
    sent.left_late(0.3)  # it needed a new connection: left 0.3 s after it was allowed
    await limiter.acquire()
    assert anyio.current_time() >= sent.allowed + 0.3 + 0.2


async def test_a_send_moved_later_keeps_the_window_in_order() -> None:
    """Moving an older send past a newer one keeps the oldest first, as pacing reads it."""
    limiter = SlidingWindowLimiter([RateWindow(2, 10.0)], margin=0.0)
    first = await limiter.acquire_send()
    second = await limiter.acquire_send()
    assert first is not None
    assert second is not None
    first.left_late(1.0)
    first.left_late(1.0)  # told twice: still one send
    sends = list(limiter._windows[0].sends)
    assert sends == [second.allowed, first.allowed + 1.0]
    now = anyio.current_time()
    assert limiter._earliest(now) == second.allowed + 10.0


async def test_a_send_already_out_of_the_window_comes_back_when_it_left_late() -> None:
    """A late send older than the window's last ``limit`` returns at the time it left."""
    limiter = SlidingWindowLimiter([RateWindow(1, 0.01)], margin=0.0)
    first = await limiter.acquire_send()
    second = await limiter.acquire_send()  # waits 0.01 s: the window now holds only this one
    assert first is not None
    assert second is not None
    first.left_late(5.0)
    assert list(limiter._windows[0].sends) == [first.allowed + 5.0]


async def test_acquire_send_counts_nothing_without_windows() -> None:
    """Unpaced, there is no send to move: None, and nothing to tell."""
    assert await SlidingWindowLimiter().acquire_send() is None
