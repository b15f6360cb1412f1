"""The Redis rate limiter against a real redis-server: shared windows, pause, queue, outages.

Each `RedisRateLimiter` instance is one "process" here (its own id, connections and
queue); tests with real processes are in tests/integration/test_shared_budget.py.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import coredis
import pytest

from sarv_async import (
    AsyncSarvClient,
    RateLimiter,
    RateLimitError,
    RedisRateLimiter,
    SqliteLedger,
    StoreUnavailableError,
)
from sarv_async._ledger_redis import RedisLedger
from sarv_async._limiter_redis import _RedisSend
from sarv_async._rate_spec import RateWindow, parse_rate_limit
from sarv_async._redis import redis_location
from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN, Emulator
from tests.redis_server import RedisServer
from tests.test_limiter import most_in_any_window

pytestmark = pytest.mark.anyio

ACCOUNT = RedisRateLimiter.account_for("http://127.0.0.1:1/v1.0/", "acme")


@asynccontextmanager
async def limiters(
    url: str, count: int, windows: Sequence[RateWindow] = (), **kwargs: Any
) -> AsyncIterator[list[RedisRateLimiter]]:
    """``count`` open limiters on one account, as ``count`` processes would have."""
    kwargs.setdefault("account", ACCOUNT)
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(RedisRateLimiter(url, windows, **kwargs))
            for _ in range(count)
        ]


async def acquire_times(
    pacers: Sequence[RedisRateLimiter], per_pacer: int, stagger: float = 0.0
) -> list[float]:
    """Send times of ``per_pacer`` concurrent tasks on each limiter."""
    times: list[float] = []

    async def one(limiter: RedisRateLimiter, delay: float) -> None:
        await anyio.sleep(delay)
        await limiter.acquire()
        times.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for i in range(per_pacer):
            for limiter in pacers:
                tg.start_soon(one, limiter, i * stagger)
    return times


async def grant_times(
    pacers: Sequence[RedisRateLimiter], per_pacer: int, stagger: float = 0.0
) -> list[float]:
    """When Redis granted the sends of ``per_pacer`` concurrent tasks on each limiter, on
    Redis's clock: what the windows count, whenever the granted tasks get to run."""
    times: list[float] = []

    async def one(limiter: RedisRateLimiter, delay: float) -> None:
        await anyio.sleep(delay)
        send = await limiter.acquire_send()
        assert isinstance(send, _RedisSend)
        assert send.token is not None, "granted alone, not by Redis"
        times.append(send.granted / 1e6)

    async with anyio.create_task_group() as tg:
        for i in range(per_pacer):
            for limiter in pacers:
                tg.start_soon(one, limiter, i * stagger)
    return times


async def redis_dump(url: str) -> dict[str, Any]:
    """Every key in Redis with its content."""
    content: dict[str, Any] = {}
    async with coredis.Redis.from_url(url, decode_responses=True) as redis:
        for key in await redis.keys("*"):
            kind = await redis.type(key)
            if kind == "zset":
                content[key] = await redis.zrange(key, 0, -1)
            elif kind == "hash":
                content[key] = await redis.hgetall(key)
            elif kind == "set":
                content[key] = await redis.smembers(key)
            else:
                content[key] = await redis.get(key)
    return content


def shared(limiter: RedisRateLimiter) -> bool:
    """Whether ``limiter`` paces through Redis now (a function: mypy narrows attributes)."""
    return limiter.shared


async def until_in_redis(server: RedisServer, key: str) -> None:
    """Wait until ``key`` exists in Redis (a limiter writes its pause in the background)."""
    with anyio.fail_after(10):  # a failure, not a hung suite, if it never does
        while not server.query("EXISTS", key):  # noqa: ASYNC110
            await anyio.sleep(0.002)


def pause_key(account: str = ACCOUNT) -> str:
    """The key an account's 429 pause is shared under."""
    return f"sarv:{{{account}}}:pause"


@pytest.mark.slow
async def test_processes_share_every_window(redis_server: RedisServer) -> None:
    """Three limiters on one account never put more than a window's limit in its period."""
    windows = parse_rate_limit("4/0.2s;6/0.5s")
    async with limiters(redis_server.url, 3, windows, margin=0.03) as pacers:
        start = anyio.current_time()
        # Redis's grants: a task a loaded event loop resumes late would record its send
        # late, and bunch it up with the next ones on paper.
        times = await grant_times(pacers, 4, stagger=0.01)
    assert len(times) == 12
    assert most_in_any_window(times, 0.2) <= 4
    assert most_in_any_window(times, 0.5) <= 6
    # Twelve sends at 6 per 0.53 s: the second pair of six starts after one span.
    assert anyio.current_time() - start < 1.6


@pytest.mark.slow
async def test_a_pause_in_one_process_holds_back_the_others(redis_server: RedisServer) -> None:
    """A 429 seen by one limiter stops every other limiter of the account until it ends."""
    async with limiters(redis_server.url, 2, parse_rate_limit("100/second")) as (one, other):
        await other.acquire()
        paused_at = anyio.current_time()
        one.pause(0.5)
        await until_in_redis(redis_server, pause_key())
        await other.acquire()
        # Held back until the pause ends (Redis's clock and ours may differ by a little).
        assert anyio.current_time() - paused_at >= 0.48


async def test_a_pause_holds_back_its_own_process_at_once(redis_server: RedisServer) -> None:
    """The process that saw the 429 waits without waiting for Redis to hear of it."""
    async with limiters(redis_server.url, 1) as (limiter,):
        until = anyio.current_time() + 0.15
        limiter.pause(0.15)
        await limiter.acquire()
        assert anyio.current_time() >= until


async def test_a_pause_longer_than_max_pause_raises_everywhere(redis_server: RedisServer) -> None:
    """Another process raises RateLimitError instead of sitting out a too-long pause."""
    async with limiters(redis_server.url, 2, max_pause=1.0) as (one, other):
        one.pause(30.0)
        await until_in_redis(redis_server, pause_key())
        with pytest.raises(RateLimitError, match="longer than max_pause") as info:
            await other.acquire()
    assert info.value.retry_after is not None
    assert 29 < info.value.retry_after <= 30
    assert info.value.status_code is None


@pytest.mark.slow
async def test_processes_are_served_in_arrival_order(redis_server: RedisServer) -> None:
    """Waiters of different processes go in the order they began waiting."""
    # A window longer than a process's first Redis call (connect, load the script): each
    # head below must find the window shut, and queue.
    async with limiters(redis_server.url, 3, [RateWindow(1, 0.3)], margin=0.01) as pacers:
        await pacers[0].acquire()
        served: list[int] = []

        async def one(i: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
            task_status.started()
            await pacers[i % 3].acquire()
            served.append(i)

        queue = f"sarv:{{{ACCOUNT}}}:queue"
        async with anyio.create_task_group() as tg:
            for i in range(6):
                await tg.start(one, i)
                if i < 3:  # the head of its process: wait until it is in Redis's queue
                    with anyio.fail_after(10):  # a failure, not a hung suite, if it never is
                        while redis_server.query("ZCARD", queue) < i + 1:  # noqa: ASYNC110
                            await anyio.sleep(0.002)
                else:
                    # Began waiting this long before the next: the order across processes
                    # is kept to within a Redis call's delay (a head tells Redis how long
                    # it has waited), which a loaded machine can stretch past 10 ms.
                    await anyio.sleep(0.1)
    assert served == list(range(6))


@pytest.mark.slow
async def test_a_cancelled_waiter_leaves_nothing_behind(redis_server: RedisServer) -> None:
    """Cancelled while queued: out of Redis's queue, and the next one goes on its time."""
    async with limiters(redis_server.url, 2, [RateWindow(1, 0.3)], margin=0.01) as (a, b):
        await a.acquire()
        start = anyio.current_time()
        with anyio.move_on_after(0.1):
            await a.acquire()
        assert anyio.current_time() - start < 0.2
        queued = {k: v for k, v in (await redis_dump(redis_server.url)).items() if "queue" in k}
        assert all(not v for v in queued.values()), queued
        await b.acquire()  # not held up behind the one that left
        assert 0.29 <= anyio.current_time() - start < 0.45


@pytest.mark.slow
async def test_the_days_count_survives_a_restart(redis_server: RedisServer) -> None:
    """A new process sees the sends of one that ended; the key expires after one day."""
    windows = parse_rate_limit("3/day")
    async with limiters(redis_server.url, 1, windows) as (first,):
        for _ in range(3):
            await first.acquire()
    async with limiters(redis_server.url, 1, windows) as (second,):
        with anyio.move_on_after(0.3) as scope:
            await second.acquire()
        assert scope.cancelled_caught, "the fourth send of the day was allowed"
    (key,) = [k for k in await redis_dump(redis_server.url) if ":window:" in k]
    ttl = int(redis_server.command("PTTL", key).strip(b":\r\n"))
    assert 86_000_000 < ttl <= (86_400 + 0.25) * 1000


def _sharing(limiter: RedisRateLimiter) -> bool:
    """``limiter.shared`` read anew (not narrowed by an earlier check)."""
    return limiter.shared


async def test_lost_scripts_or_connection_do_not_end_sharing_for_long(
    redis_server: RedisServer,
) -> None:
    """SCRIPT FLUSH: the limiter loads its scripts again and stays shared. Its connection
    killed: the send that meets it falls back, and sharing resumes on a new connection."""
    windows = parse_rate_limit("100000/minute")  # never waits: the loops below count sends
    async with limiters(redis_server.url, 1, windows, retry_interval=0.01) as (limiter,):
        await limiter.acquire()
        assert redis_server.query("SCRIPT", "FLUSH") == "OK"
        await limiter.acquire()
        assert _sharing(limiter)
        assert redis_server.query("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
        with anyio.fail_after(5):
            while _sharing(limiter):  # a send met the dead connection: it falls back, once
                await limiter.acquire()
            while not _sharing(limiter):  # and shares again when Redis answers
                await limiter.acquire()
    (key,) = [k for k in await redis_dump(redis_server.url) if ":window:" in k]
    assert redis_server.query("ZCARD", key) >= 3


async def test_keys_carry_a_hash_tag_and_no_secret(redis_server: RedisServer) -> None:
    """An account's keys share one hash tag; no token, password or owner id in keys or values."""
    async with (
        Emulator(rate_limit="50/second") as emu,
        emu.client(redis_url=redis_server.url, rate_limit="50/second;1000/hour") as client,
    ):
        created = await client.smtp_users.create(total_limit=5, hourly_limit=1)
        await client.smtp_users.list()
        client._shared.pipeline.limiter.pause(5.0)
        account = RedisRateLimiter.account_for(emu.base_url, DEMO_OWNER_ID)
        await until_in_redis(redis_server, pause_key(account))
    dump = await redis_dump(redis_server.url)
    tag = "{" + RedisRateLimiter.account_for(emu.base_url, DEMO_OWNER_ID) + "}"
    assert len(dump) >= 4, dump  # two windows, the pause and the process list at least
    assert all(tag in key for key in dump)
    text = repr(dump)
    assert DEMO_TOKEN not in text
    assert created.smtp_password not in text  # the ledger, on Redis too, holds no password
    assert any(":ledger:" in key for key in dump)
    assert DEMO_OWNER_ID not in text.replace(tag, "")


@pytest.mark.slow
async def test_unreachable_redis_falls_back_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nothing listening, calls are paced in-process; one warning for the outage."""
    async with limiters(
        "redis://127.0.0.1:9/0", 1, [RateWindow(2, 0.2)], margin=0.01, retry_interval=0.05
    ) as (limiter,):
        with caplog.at_level(logging.INFO, logger="sarv_async"), anyio.fail_after(3):
            times = await acquire_times([limiter], 6)
        assert not limiter.shared
    assert most_in_any_window(times, 0.2) <= 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "pacing this process alone" in warnings[0].getMessage()


async def test_an_answer_sent_before_an_outage_does_not_end_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call answered before Redis went, but read after another call failed, is no sign
    that Redis is back: one outage, one warning, and still pacing alone."""
    asked, answered, failed = anyio.Event(), anyio.Event(), anyio.Event()

    class Scripts:
        async def call(self, name: str, keys: Any, args: Any) -> list[int]:
            if name == "acquire":  # in flight when Redis went; its answer is read late
                asked.set()
                await failed.wait()
                return [1, 0, 1]
            raise coredis.exceptions.ConnectionError("Connection lost while receiving response")

    async with limiters("redis://127.0.0.1:9/0", 1) as (limiter,):
        limiter._scripts = Scripts()  # type: ignore[assignment]

        async def in_flight() -> None:
            await limiter._call("acquire", [], [])
            answered.set()

        with caplog.at_level(logging.INFO, logger="sarv_async"), anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                tg.start_soon(in_flight)
                await asked.wait()
                with pytest.raises(StoreUnavailableError):
                    await limiter._call("leave", [], [])  # the outage, met by another call
                failed.set()
                await answered.wait()
            assert not limiter.shared
            with pytest.raises(StoreUnavailableError):
                await limiter._call("leave", [], [])  # the same outage, met again
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert not any("answers again" in r.getMessage() for r in caplog.records)


async def test_unreachable_redis_can_be_an_error() -> None:
    """With on_unavailable='raise', acquire raises StoreUnavailableError, quickly."""
    async with limiters("redis://:hunter2@127.0.0.1:9/0", 1, on_unavailable="raise") as (limiter,):
        with anyio.fail_after(2), pytest.raises(StoreUnavailableError) as info:
            await limiter.acquire()
    assert "127.0.0.1:9" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(limiter)


async def test_a_stalled_redis_never_hangs_a_call(redis_server: RedisServer) -> None:
    """A Redis that accepts but never answers costs at most about twice the timeout."""
    async with limiters(redis_server.url, 1, [RateWindow(5, 1.0)], timeout=0.2) as (limiter,):
        await limiter.acquire()
        assert redis_server.proc is not None
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            start = anyio.current_time()
            await limiter.acquire()
            assert anyio.current_time() - start < 1.0
            assert not limiter.shared
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)


@pytest.mark.slow
async def test_sharing_resumes_when_redis_is_back(volatile_redis_server: RedisServer) -> None:
    """Killed Redis: alone; restarted empty: the next check after retry_interval shares again."""
    url = volatile_redis_server.url
    async with limiters(url, 2, [RateWindow(50, 1.0)], retry_interval=0.1) as (a, b):
        await a.acquire()
        volatile_redis_server.kill()
        await a.acquire()
        assert not a.shared
        volatile_redis_server.start()
        await anyio.sleep(0.15)
        await a.acquire()
        assert shared(a)
        windows = [k for k in await redis_dump(volatile_redis_server.url) if ":window:" in k]
        assert len(windows) == 1
        # The send a made alone is recorded with its first send back, and b sees both:
        # the budget is shared again.
        assert volatile_redis_server.query("ZCARD", windows[0]) == 2
        await b.acquire()
        assert volatile_redis_server.query("ZCARD", windows[0]) == 3


@pytest.mark.slow
async def test_pacing_alone_counts_the_sends_made_while_shared(
    redis_server: RedisServer,
) -> None:
    """No burst when Redis goes: the process's own recent sends count against its share."""
    async with limiters(redis_server.url, 1, [RateWindow(4, 0.5)], margin=0.01) as (limiter,):
        before = await acquire_times([limiter], 3)
        redis_server.kill()
        after = await acquire_times([limiter], 3)
    assert not shared(limiter)
    assert most_in_any_window(before + after, 0.5) <= 4


@pytest.mark.slow
async def test_fallback_paces_at_this_process_share(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """When Redis goes, each of the processes it last saw paces at limit / processes."""
    async with limiters(redis_server.url, 4, [RateWindow(8, 0.5)], margin=0.01) as pacers:
        for limiter in [*pacers, pacers[0]]:  # the first learns of the others at its second
            await limiter.acquire()
        redis_server.kill()
        with caplog.at_level(logging.WARNING, logger="sarv_async"):
            times = await acquire_times(pacers[:1], 4)
    assert most_in_any_window(times, 0.5) <= 2
    assert "at 2/0.5s (its share of 4 processes)" in caplog.text


async def test_is_a_rate_limiter() -> None:
    """RedisRateLimiter satisfies the RateLimiter protocol; its repr hides the password."""
    limiter = RedisRateLimiter(
        "redis://user:s3cret@cache.internal:6379/2", parse_rate_limit("60/minute"), account="a"
    )
    assert isinstance(limiter, RateLimiter)
    assert repr(limiter) == ("<RedisRateLimiter 60/60s at redis://cache.internal:6379/2 (shared)>")
    assert redis_location("rediss://:p@h:1/0?x=1") == "rediss://h:1/0"


async def test_must_be_opened() -> None:
    """An unopened limiter says so instead of failing somewhere inside the Redis client."""
    limiter = RedisRateLimiter("redis://127.0.0.1:9/0", account="a")
    with pytest.raises(RuntimeError, match="async with"):
        await limiter.acquire()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"retry_interval": -1.0}, "retry_interval"),
        ({"on_unavailable": "ignore"}, "on_unavailable"),
        ({"margin": -1.0}, "margin"),
    ],
)
def test_rejects_bad_options(kwargs: dict[str, Any], field: str) -> None:
    """Nonsense options fail at construction, naming the option."""
    with pytest.raises(ValueError, match=field):
        RedisRateLimiter("redis://127.0.0.1:9/0", account="a", **kwargs)


def test_a_client_refuses_a_bad_redis_url() -> None:
    """redis_url is checked when the client is built, before anything is sent."""
    with pytest.raises(ValueError, match="redis_url"):
        AsyncSarvClient("o", "t", base_url="http://127.0.0.1:1/", redis_url="localhost:6379")


async def test_a_client_can_make_a_redis_failure_an_error() -> None:
    """on_redis_error='raise': the call raises StoreUnavailableError and sends nothing."""
    async with (
        Emulator() as emu,
        emu.client(redis_url="redis://127.0.0.1:9/0", on_redis_error="raise") as client,
    ):
        with pytest.raises(StoreUnavailableError):
            await client.smtp_users.list()
        assert emu.stats()["requests"] == {}


async def test_a_redis_url_keeps_the_ledger_there_too(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SARV_REDIS_URL alone: the ledger is on Redis, so a key creates one user across clients."""
    monkeypatch.setenv("SARV_REDIS_URL", redis_server.url)
    async with Emulator() as emu:
        for _ in range(2):  # two clients, as two hosts would have
            async with emu.client(settle_delay=0.05) as client:
                assert isinstance(client.ledger, RedisLedger)
                created = await client.smtp_users.create(
                    total_limit=7, hourly_limit=1, idempotency_key="tenant-7"
                )
        assert emu.stats()["requests"]["/v1.0/settings/addSmtp"] == 1
        [user] = emu.users()
    assert created.smtp_user_name == user["smtp_user_name"]
    ledger_keys = [k for k in await redis_dump(redis_server.url) if ":ledger:" in k]
    assert ledger_keys


async def test_the_ledger_argument_wins_over_the_redis_url(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """ledger= (here a SQLite file) is used as given; Redis still shares the rate budget."""
    async with (
        Emulator() as emu,
        emu.client(redis_url=redis_server.url, ledger=tmp_path / "l.sqlite3") as client,
    ):
        assert isinstance(client.ledger, SqliteLedger)
        assert isinstance(client._shared.pipeline.limiter, RedisRateLimiter)


_KILLED_WAITER = """
import sys, anyio
from sarv_async import RedisRateLimiter, parse_rate_limit

async def main() -> None:
    windows = parse_rate_limit("1/second")
    async with RedisRateLimiter(sys.argv[1], windows, account=sys.argv[2]) as limiter:
        await limiter.acquire()
        print("sent", flush=True)
        await limiter.acquire()  # waits for the window: killed here

anyio.run(main)
"""


@pytest.mark.slow
async def test_a_killed_waiter_holds_up_the_others_no_longer_than_its_grace(
    redis_server: RedisServer,
) -> None:
    """A process killed while first in line is dropped once it is 2 s overdue."""
    import subprocess
    import sys

    from tests.processes import PROJECT_ROOT

    proc = subprocess.Popen(  # noqa: S603, ASYNC220 - this interpreter; starting is quick
        [sys.executable, "-c", _KILLED_WAITER, redis_server.url, ACCOUNT],
        stdout=subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    try:
        assert proc.stdout is not None
        assert await anyio.to_thread.run_sync(proc.stdout.readline) == b"sent\n"
        sent = anyio.current_time()
        queue = f"sarv:{{{ACCOUNT}}}:queue"
        with anyio.fail_after(5):
            while redis_server.query("ZCARD", queue) < 1:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        proc.kill()
        proc.wait()
        async with limiters(redis_server.url, 1, parse_rate_limit("1/second")) as (limiter,):
            with anyio.fail_after(6):
                await limiter.acquire()
        waited = anyio.current_time() - sent
        # Not before the window allows; not after the dead one's deadline (its wait + 2 s).
        assert 1.05 <= waited < 1.05 + 2.0 + 0.5
        assert redis_server.query("ZCARD", queue) == 0  # and it is gone from the queue
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def window_key(period: float, account: str = ACCOUNT) -> str:
    """The sorted set of an account's sends in its window of ``period`` seconds."""
    return f"sarv:{{{account}}}:window:{round(period * 1_000_000)}"


async def until_scored(server: RedisServer, key: str, member: str, score: int) -> None:
    """Wait until ``member`` holds ``score`` in ``key`` (a move is written in the background)."""
    with anyio.fail_after(10):
        while server.query("ZSCORE", key, member) != str(score):  # noqa: ASYNC110
            await anyio.sleep(0.002)


async def test_a_send_that_left_late_holds_back_every_process(redis_server: RedisServer) -> None:
    """A send that left 0.3 s after its grant counts then, for the other processes too."""
    async with limiters(redis_server.url, 2, [RateWindow(1, 0.2)], margin=0.0) as (one, other):
        sent = await one.acquire_send()
        assert sent is not None
        sent.left_late(0.3)
        await until_scored(redis_server, window_key(0.2), sent.token or "", sent.granted + 300_000)
        await other.acquire()
        # Not 0.2 s after the grant; Redis granted it a return trip before `allowed`.
        assert anyio.current_time() >= sent.allowed + 0.5 - 0.01


async def test_a_send_moved_later_keeps_the_window_in_order_in_redis(
    redis_server: RedisServer,
) -> None:
    """A send moved past a newer one: the newer is now the oldest, as the script reads it."""
    async with limiters(redis_server.url, 1, [RateWindow(2, 10.0)], margin=0.0) as (limiter,):
        first = await limiter.acquire_send()
        second = await limiter.acquire_send()
        assert first is not None
        assert second is not None
        first.left_late(1.0)
        first.left_late(0.5)  # earlier than already counted: changes nothing
        await until_scored(
            redis_server, window_key(10.0), first.token or "", first.granted + 1_000_000
        )
        assert redis_server.query("ZRANGE", window_key(10.0), "0", "-1") == [
            second.token,
            first.token,
        ]


async def test_a_send_made_alone_that_left_late_counts_when_it_left(
    redis_server: RedisServer,
) -> None:
    """Pacing alone (Redis gone), a late send pushes this process's next send too."""
    async with limiters(redis_server.url, 1, [RateWindow(1, 0.2)], margin=0.0) as (limiter,):
        redis_server.kill()
        sent = await limiter.acquire_send()
        assert not shared(limiter)
        assert sent is not None
        sent.left_late(0.3)
        await limiter.acquire()
        assert anyio.current_time() >= sent.allowed + 0.5
