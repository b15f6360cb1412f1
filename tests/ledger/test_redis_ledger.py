"""What only the Redis ledger promises: its keys, and failing fast when Redis does not answer."""

from __future__ import annotations

import anyio
import pytest

from sarv_async import LedgerError
from sarv_async._ledger import account_id, open_ledger
from sarv_async._ledger_redis import RedisLedger
from tests.redis_server import RedisServer
from tests.test_limiter_redis import redis_dump

pytestmark = pytest.mark.anyio

ACCOUNT = account_id("https://api.example.com/v1.0/", "acme")


async def test_an_account_s_keys_share_a_hash_tag_and_never_expire(
    redis_server: RedisServer,
) -> None:
    """Four keys per account, one hash tag, no TTL: a ledger does not forget."""
    ledger = open_ledger(redis_server.url)
    assert isinstance(ledger, RedisLedger)
    await ledger.record_baseline(ACCOUNT, ["smtp1"])
    await ledger.begin(ACCOUNT, "k", total_limit=1, hourly_limit=1, holder="h", lease=60)
    await ledger.claim(ACCOUNT, "k", "smtp2")
    await ledger.aclose()
    dump = await redis_dump(redis_server.url)
    assert sorted(k.rpartition(":")[2] for k in dump) == [
        "baseline",
        "baseline-at",
        "entries",
        "owners",
    ]
    assert all(k.startswith(f"sarv:{{{ACCOUNT}}}:ledger:") for k in dump)
    for key in dump:
        assert redis_server.command("PTTL", key) == b":-1\r\n"


async def test_an_unreachable_redis_is_a_ledger_error_at_once() -> None:
    """Nothing listening: LedgerError naming where, without the password, in no time."""
    ledger = RedisLedger("redis://:hunter2@127.0.0.1:9/0", timeout=0.5)
    with anyio.fail_after(2), pytest.raises(LedgerError, match=r"127\.0\.0\.1:9") as info:
        await ledger.get(ACCOUNT, "k")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(ledger)
