"""The Redis ledger refuses a Redis that would lose it on restart, unless told otherwise."""

from __future__ import annotations

import pytest

from sarv_async import LedgerError, RateLimiter, RedisLedger
from sarv_async._ledger import account_id
from sarv_async._limiter_redis import RedisRateLimiter
from sarv_async._rate_spec import parse_rate_limit
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

ACCOUNT = account_id("https://api.example.com/v1.0/", "acme")


async def test_a_redis_without_persistence_is_refused(volatile_redis_server: RedisServer) -> None:
    """Neither AOF nor RDB: a LedgerError that says why, names the URL, and writes nothing."""
    url = volatile_redis_server.url.replace("redis://", "redis://:hunter2@")
    ledger = RedisLedger(url)
    with pytest.raises(LedgerError) as info:
        await ledger.record_baseline(ACCOUNT, ["a"])
    message = str(info.value)
    assert "neither AOF nor RDB snapshots" in message
    assert f"127.0.0.1:{volatile_redis_server.port}/0" in message
    assert "allow_volatile" in message
    assert "hunter2" not in message
    assert volatile_redis_server.query("DBSIZE") == 0


@pytest.mark.parametrize("how", ["argument", "url"])
async def test_a_volatile_redis_is_accepted_when_asked_for(
    volatile_redis_server: RedisServer, how: str
) -> None:
    """``allow_volatile=True`` or ``?allow_volatile=1`` accepts the risk explicitly."""
    if how == "argument":
        ledger = RedisLedger(volatile_redis_server.url, allow_volatile=True)
    else:
        ledger = RedisLedger(f"{volatile_redis_server.url}?allow_volatile=1")
    assert await ledger.record_baseline(ACCOUNT, ["a"])
    assert await ledger.owned(ACCOUNT, ["a", "b"]) == {"a"}


async def test_rdb_snapshots_are_persistence(volatile_redis_server: RedisServer) -> None:
    """A server saving RDB snapshots (no AOF) keeps the ledger: accepted."""
    volatile_redis_server.command("CONFIG", "SET", "save", "3600 1")
    ledger = RedisLedger(volatile_redis_server.url)
    assert await ledger.record_baseline(ACCOUNT, ["a"])


async def test_an_append_only_redis_is_accepted(redis_server: RedisServer) -> None:
    """A server with AOF on keeps the ledger: accepted."""
    assert await RedisLedger(redis_server.url).record_baseline(ACCOUNT, ["a"])


async def test_the_rate_limiter_needs_no_persistence(volatile_redis_server: RedisServer) -> None:
    """The shared rate budget works on a volatile Redis, even with the ledger's URL flag."""
    limiter: RateLimiter
    async with RedisRateLimiter(
        f"{volatile_redis_server.url}?allow_volatile=1",
        parse_rate_limit("10/second"),
        account=ACCOUNT,
    ) as limiter:
        await limiter.acquire()
        assert limiter.shared
