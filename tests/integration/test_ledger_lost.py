"""A ledger lost, replaced or failing while in use: the engine stops before the next create.

And a caller's own record (what a provisioning output file holds) standing in for a
ledger that was lost between runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from sarv_async import (
    AsyncSarvClient,
    Backoff,
    LedgerError,
    LedgerLostError,
    Provisioning,
    ProvisionOutcome,
    RedisLedger,
)
from sarv_async._ledger_memory import MemoryLedger
from sarv_async.testing import Emulator
from tests.processes import child_env
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)


def _client(emu: Emulator, ledger: Any, **kwargs: Any) -> AsyncSarvClient:
    kwargs.setdefault("settle_delay", 0.05)
    return emu.client(rate_limit=None, backoff=FAST, ledger=ledger, **kwargs)


def _calls(emu: Emulator, path: str) -> int:
    count: int = emu.stats()["requests"].get(f"/v1.0/settings/{path}", 0)
    return count


async def test_a_deleted_ledger_file_stops_the_next_create(tmp_path: Path) -> None:
    """create() on a ledger whose file was deleted raises LedgerLostError; nothing is sent."""
    path = tmp_path / "ledger.sqlite3"
    async with Emulator() as emu, _client(emu, path) as client:
        await client.smtp_users.create(total_limit=5, hourly_limit=1, idempotency_key="a")
        for name in ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        with pytest.raises(LedgerLostError, match=str(path)):
            await client.smtp_users.create(total_limit=5, hourly_limit=1, idempotency_key="b")
        assert _calls(emu, "addSmtp") == 1
        assert len(emu.users()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flushed", "restarted empty"])
async def test_a_redis_emptied_mid_life_stops_the_next_create(
    volatile_redis_server: RedisServer, how: str
) -> None:
    """Redis emptied or restarted without persistence: LedgerLostError, no fresh baseline."""
    url = f"{volatile_redis_server.url}?allow_volatile=1"
    async with Emulator() as emu, _client(emu, RedisLedger(url)) as client:
        await client.smtp_users.create(total_limit=5, hourly_limit=1, idempotency_key="a")
        if how == "flushed":
            volatile_redis_server.command("FLUSHALL")
        else:
            volatile_redis_server.kill()
            volatile_redis_server.start()
        lists = _calls(emu, "listSmtp")
        for key in ("a", "b"):  # a key begun before the loss, and a new one
            with pytest.raises(LedgerLostError, match="lost its record"):
                await client.smtp_users.create(total_limit=5, hourly_limit=1, idempotency_key=key)
        assert _calls(emu, "addSmtp") == 1
        assert _calls(emu, "listSmtp") == lists  # no new baseline was listed
        assert volatile_redis_server.query("DBSIZE") == 0  # nor recorded


@pytest.mark.slow
async def test_provisioning_stops_when_redis_is_emptied_mid_run(
    volatile_redis_server: RedisServer,
) -> None:
    """The run stops with one LedgerLostError; every user made is handed over, none twice."""
    url = f"{volatile_redis_server.url}?allow_volatile=1"
    seen: list[Any] = []

    def progress(done: int, failed: int, total: int | None) -> None:
        if done == 5:
            volatile_redis_server.command("FLUSHALL")

    async with Emulator() as emu, _client(emu, RedisLedger(url)) as client:
        specs = [{"total_limit": 5, "hourly_limit": 1, "key": f"k{i}"} for i in range(40)]
        with pytest.raises(LedgerLostError):
            await _drain(client.smtp_users.provision(specs, concurrency=4, progress=progress), seen)
        users = {user["smtp_user_name"] for user in emu.users()}
    handed = [r.credentials.smtp_user_name for r in seen if r.credentials is not None]
    assert len(handed) == len(set(handed))
    assert set(handed) == users  # nothing created that was not handed over
    assert len(users) < 40  # it stopped


class _FailingLedger(MemoryLedger):
    """A ledger whose store fails (a disk full, say) after a number of claims."""

    def __init__(self, claims: int) -> None:
        super().__init__()
        self.claims = claims

    async def claim(self, account: str, key: str, user_name: str, *, known: bool = False) -> Any:
        self.claims -= 1
        if self.claims < 0:
            raise LedgerError("the ledger /tmp/full.sqlite3 failed: database or disk is full")
        return await super().claim(account, key, user_name, known=known)


async def test_provisioning_raises_one_ledger_error_when_its_store_fails() -> None:
    """Many workers meeting a failed store end the run with that one error, not a group."""
    seen: list[Any] = []
    async with Emulator() as emu, _client(emu, _FailingLedger(claims=6)) as client:
        specs = [{"total_limit": 5, "hourly_limit": 1} for _ in range(50)]
        with pytest.raises(LedgerError, match="disk is full") as info:
            await _drain(client.smtp_users.provision(specs, concurrency=8), seen)
        users = {user["smtp_user_name"] for user in emu.users()}
    assert type(info.value) is LedgerError
    handed = {r.credentials.smtp_user_name for r in seen if r.credentials is not None}
    assert handed == users  # creates in flight finished and were handed over
    assert len(users) <= 6 + 8


@pytest.mark.slow
async def test_concurrent_first_creates_list_the_account_once(tmp_path: Path) -> None:
    """40 create()s starting together on a fresh ledger make one baseline list between them."""
    async with Emulator() as emu, _client(emu, tmp_path / "l.sqlite3") as client:
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(
                    lambda i=i: client.smtp_users.create(  # type: ignore[misc]
                        total_limit=5, hourly_limit=1, idempotency_key=f"k{i}"
                    )
                )
        assert _calls(emu, "listSmtp") == 1
        assert len(emu.users()) == 40


@pytest.mark.slow
async def test_a_caller_s_record_stands_in_for_a_lost_ledger(tmp_path: Path) -> None:
    """Known users are entered, not created; users nothing explains are named, not absorbed."""
    async with Emulator() as emu:
        async with _client(emu, None) as client:
            before = await client.smtp_users.create(total_limit=9, hourly_limit=9)
        specs = [{"total_limit": 5, "hourly_limit": 1, "key": f"k{i}"} for i in range(5)]
        async with _client(emu, tmp_path / "first.sqlite3") as client:
            first = {
                r.key: r.credentials.smtp_user_name
                async for r in _results(client, specs)
                if r.credentials is not None
            }
        assert len(first) == 5
        # The ledger is lost; the caller's record (an output file) has three of the five.
        known = [dict(spec, smtp_user_name=first[spec["key"]]) for spec in specs[:3]]
        async with _client(emu, tmp_path / "new.sqlite3") as client:
            async with client.smtp_users.provision(
                [*known, *specs[3:]], baseline=[before.smtp_user_name]
            ) as run:
                again = {r.key: r async for r in run}
            summary = run.summary
        assert [again[f"k{i}"].outcome for i in range(3)] == [ProvisionOutcome.EXISTING] * 3
        assert [again[f"k{i}"].credentials.smtp_user_name for i in range(3)] == [  # type: ignore[union-attr]
            first[f"k{i}"] for i in range(3)
        ]
        assert summary.created == 2  # the two the record did not have: made again...
        assert {u.smtp_user_name for u in summary.unexplained} == {first["k3"], first["k4"]}
        assert _calls(emu, "addSmtp") == 1 + 5 + 2  # ...and named, never absorbed


async def test_a_known_user_the_ledger_gives_elsewhere_fails_the_spec(tmp_path: Path) -> None:
    """A record that contradicts the ledger fails that spec with a LedgerError; nothing sent."""
    async with Emulator() as emu, _client(emu, tmp_path / "l.sqlite3") as client:
        made = await client.smtp_users.create(total_limit=5, hourly_limit=1, idempotency_key="a")
        spec = {
            "total_limit": 5,
            "hourly_limit": 1,
            "key": "b",
            "smtp_user_name": made.smtp_user_name,
        }
        async with client.smtp_users.provision([spec]) as run:
            [result] = [r async for r in run]
        assert result.outcome is ProvisionOutcome.FAILED
        assert isinstance(result.error, LedgerError)
        assert _calls(emu, "addSmtp") == 1


async def _drain(run: Provisioning, seen: list[Any]) -> None:
    """Read every result of ``run`` into ``seen``."""
    async with run:
        async for result in run:
            seen.append(result)


async def _results(client: AsyncSarvClient, specs: list[dict[str, Any]]) -> Any:
    async with client.smtp_users.provision(specs) as run:
        async for result in run:
            yield result


@pytest.mark.slow
async def test_a_persistent_redis_restarted_is_the_same_ledger(redis_server: RedisServer) -> None:
    """Redis down: a LedgerError, nothing sent; back with its data: creates go on, no loss."""
    async with Emulator() as emu, _client(emu, RedisLedger(redis_server.url)) as client:
        first = await client.smtp_users.create(total_limit=5, hourly_limit=1, idempotency_key="a")
        redis_server.kill()
        with pytest.raises(LedgerError, match="failed"):
            await client.smtp_users.create(total_limit=5, hourly_limit=1, idempotency_key="b")
        assert _calls(emu, "addSmtp") == 1
        redis_server.start()
        again = await client.smtp_users.create(total_limit=5, hourly_limit=1, idempotency_key="a")
        other = await client.smtp_users.create(total_limit=5, hourly_limit=1, idempotency_key="b")
    assert again.smtp_user_name == first.smtp_user_name
    assert other.smtp_user_name != first.smtp_user_name
    assert _calls(emu, "addSmtp") == 2


_FIRST_CREATES = """
import sys, anyio
from sarv_async import AsyncSarvClient

async def main(url, ledger, name):
    async with AsyncSarvClient("demo", "demo-token", base_url=url, rate_limit=None,
                               ledger=ledger) as client:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(lambda i=i: client.smtp_users.create(
                    total_limit=5, hourly_limit=1, idempotency_key=f"{name}-{i}"))

anyio.run(main, *sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_processes_meeting_a_fresh_ledger_list_the_account_once(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    """Four processes of ten first creates each, at once, on a fresh ledger: one list."""
    if store == "redis":
        ledger = request.getfixturevalue("redis_server").url
    else:
        ledger = str(tmp_path / "l.sqlite3")
    with Emulator() as emu:
        procs = [
            subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                [sys.executable, "-c", _FIRST_CREATES, emu.base_url, ledger, f"p{n}"],
                stderr=subprocess.PIPE,
                env=child_env(),
            )
            for n in range(4)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()[-2000:]
        assert _calls(emu, "listSmtp") == 1
        assert len(emu.users()) == 40
