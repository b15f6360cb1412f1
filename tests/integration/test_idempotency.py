"""``create(idempotency_key=...)`` with a ledger, against the emulator: one user per key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from sarv_async import (
    AsyncSarvClient,
    Backoff,
    OutcomeUnknownError,
    SmtpCredentials,
    SqliteLedger,
    ValidationError,
)
from sarv_async._ledger import EntryState, account_id
from sarv_async.testing import Emulator
from tests.helpers import renewed_past_its_lease
from tests.processes import PROJECT_ROOT

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)


def _client(emu: Emulator, ledger: Any, **kwargs: Any) -> AsyncSarvClient:
    kwargs.setdefault("settle_delay", 0.05)
    return emu.client(rate_limit=None, backoff=FAST, ledger=ledger, **kwargs)


def _creates(emu: Emulator) -> int:
    count: int = emu.stats()["requests"].get("/v1.0/settings/addSmtp", 0)
    return count


async def test_a_repeated_key_returns_the_same_user_and_sends_no_create(tmp_path: Path) -> None:
    """The second call with a key reads the user back from the list; one create in all."""
    async with Emulator() as emu:
        async with _client(emu, tmp_path / "ledger.sqlite3") as client:
            first = await client.smtp_users.create(
                total_limit=100, hourly_limit=10, idempotency_key="tenant-42"
            )
        # Another client, as another process would have, on the same ledger file.
        async with _client(emu, tmp_path / "ledger.sqlite3") as client:
            again = await client.smtp_users.create(
                total_limit=100, hourly_limit=10, idempotency_key="tenant-42"
            )
        assert _creates(emu) == 1
        [user] = emu.users()
    assert again.smtp_user_name == first.smtp_user_name == user["smtp_user_name"]
    assert again.smtp_password == first.smtp_password == user["password"]


async def test_a_key_with_other_limits_is_refused_before_sending(tmp_path: Path) -> None:
    """The same key with other limits is a ValidationError naming the key; nothing is sent."""
    async with Emulator() as emu, _client(emu, tmp_path / "l.sqlite3") as client:
        await client.smtp_users.create(total_limit=100, hourly_limit=10, idempotency_key="k")
        requests = sum(emu.stats()["requests"].values())
        with pytest.raises(ValidationError, match="'k' was already used with total_limit=100"):
            await client.smtp_users.create(total_limit=100, hourly_limit=11, idempotency_key="k")
        assert sum(emu.stats()["requests"].values()) == requests


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, 42])
async def test_a_bad_key_is_refused_before_sending(tmp_path: Path, key: Any) -> None:
    """Empty, blank, overlong or non-string keys are a ValidationError; nothing is sent."""
    async with Emulator() as emu, _client(emu, tmp_path / "l.sqlite3") as client:
        with pytest.raises(ValidationError) as info:
            await client.smtp_users.create(total_limit=1, hourly_limit=1, idempotency_key=key)
        assert info.value.field == "idempotency_key"
        assert emu.stats()["requests"] == {}


async def test_a_key_without_a_ledger_is_refused_before_sending() -> None:
    """Without a ledger a key could not be honoured: ValidationError, nothing sent."""
    async with Emulator() as emu, emu.client(rate_limit=None) as client:
        assert client.ledger is None
        with pytest.raises(ValidationError, match="needs a ledger") as info:
            await client.smtp_users.create(total_limit=1, hourly_limit=1, idempotency_key="k")
        assert info.value.field == "idempotency_key"
        assert emu.stats()["requests"] == {}


async def test_a_lost_answer_is_settled_by_adopting_its_user(tmp_path: Path) -> None:
    """A create that took effect but lost its answer returns the user it made; no second."""
    async with Emulator() as emu, _client(emu, tmp_path / "l.sqlite3") as client:
        emu.inject_fault("drop_after_apply", path="settings/addSmtp")
        creds = await client.smtp_users.create(total_limit=7, hourly_limit=3, idempotency_key="k")
        [user] = emu.users()
        assert _creates(emu) == 1
    assert (creds.smtp_user_name, creds.smtp_password) == (user["smtp_user_name"], user["password"])


async def test_a_create_proven_absent_is_sent_again(tmp_path: Path) -> None:
    """A create that never took effect is sent again once a list shows no user for it."""
    async with Emulator() as emu, _client(emu, tmp_path / "l.sqlite3") as client:
        emu.inject_fault("drop_before", path="settings/addSmtp")
        creds = await client.smtp_users.create(total_limit=7, hourly_limit=3, idempotency_key="k")
        [user] = emu.users()
        assert _creates(emu) == 2
    assert creds.smtp_user_name == user["smtp_user_name"]


async def test_users_that_existed_before_are_never_adopted(tmp_path: Path) -> None:
    """The baseline (users present when the ledger met the account) is never adopted."""
    async with Emulator() as emu:
        async with emu.client(rate_limit=None) as plain:
            old = await plain.smtp_users.create(total_limit=7, hourly_limit=3)
        async with _client(emu, tmp_path / "l.sqlite3") as client:
            emu.inject_fault("drop_before", path="settings/addSmtp")
            creds = await client.smtp_users.create(
                total_limit=7, hourly_limit=3, idempotency_key="k"
            )
        assert len(emu.users()) == 2
    assert creds.smtp_user_name != old.smtp_user_name


async def test_a_keyless_create_is_recorded_so_nobody_adopts_its_user(tmp_path: Path) -> None:
    """A create without a key still owns its user: another key's lost create is not it."""
    async with Emulator() as emu, _client(emu, tmp_path / "l.sqlite3") as client:
        mine = await client.smtp_users.create(total_limit=7, hourly_limit=3)
        emu.inject_fault("drop_before", path="settings/addSmtp")
        theirs = await client.smtp_users.create(total_limit=7, hourly_limit=3, idempotency_key="k")
        assert len(emu.users()) == 2
    assert theirs.smtp_user_name != mine.smtp_user_name


async def test_a_keyless_create_with_a_ledger_settles_a_lost_answer(tmp_path: Path) -> None:
    """With a ledger even a keyless create settles its lost answer instead of raising."""
    async with Emulator() as emu, _client(emu, tmp_path / "l.sqlite3") as client:
        emu.inject_fault("truncated_json", path="settings/addSmtp")
        creds = await client.smtp_users.create(total_limit=7, hourly_limit=3)
        [user] = emu.users()
    assert creds.smtp_user_name == user["smtp_user_name"]


async def test_an_unlistable_account_leaves_the_key_to_settle_later(tmp_path: Path) -> None:
    """If the list fails too, OutcomeUnknownError names the key; calling again settles it."""
    path = tmp_path / "l.sqlite3"
    async with Emulator() as emu:
        async with _client(emu, path, max_retries=0) as client:
            await client.smtp_users.create(total_limit=1, hourly_limit=1)  # baseline recorded
            emu.inject_fault("drop_after_apply", path="settings/addSmtp")
            emu.inject_fault("drop_before", path="settings/listSmtp")
            with pytest.raises(OutcomeUnknownError) as info:
                await client.smtp_users.create(total_limit=7, hourly_limit=3, idempotency_key="k")
            assert info.value.idempotency_key == "k"
            creds = await client.smtp_users.create(
                total_limit=7, hourly_limit=3, idempotency_key="k"
            )
        [user] = [user for user in emu.users() if user["total_limit"] == 7]
        assert len(emu.users()) == 2
    assert creds.smtp_user_name == user["smtp_user_name"]


@pytest.mark.slow
async def test_two_callers_with_one_key_get_one_user(tmp_path: Path) -> None:
    """Ten tasks with one key at once: one create is sent, and all get its user."""
    results: list[SmtpCredentials] = []
    async with Emulator(latency_ms=50) as emu, _client(emu, tmp_path / "l.sqlite3") as client:

        async def call() -> None:
            results.append(
                await client.smtp_users.create(total_limit=7, hourly_limit=3, idempotency_key="k")
            )

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(call)
        assert _creates(emu) == 1
        [user] = emu.users()
    assert {(c.smtp_user_name, c.smtp_password) for c in results} == {
        (user["smtp_user_name"], user["password"])
    }


@pytest.mark.slow
async def test_a_dead_holder_s_key_is_reconciled_by_the_next_caller(tmp_path: Path) -> None:
    """A key left PENDING by a crashed caller is settled once its lease runs out."""
    path = tmp_path / "l.sqlite3"
    async with Emulator() as emu:
        async with emu.client(rate_limit=None) as plain:
            made = await plain.smtp_users.create(total_limit=7, hourly_limit=3)
        ledger = SqliteLedger(path)
        account = account_id(emu.base_url, "demo")
        # What a process killed right after sending leaves behind: a PENDING key, a user.
        await ledger.record_baseline(account, [])
        await ledger.begin(account, "k", total_limit=7, hourly_limit=3, holder="dead", lease=0.2)
        await ledger.aclose()
        async with _client(emu, path) as client:
            creds = await client.smtp_users.create(
                total_limit=7, hourly_limit=3, idempotency_key="k"
            )
            assert client.ledger is not None
            entry = await client.ledger.get(account, "k")
        assert len(emu.users()) == 1
    assert creds.smtp_user_name == made.smtp_user_name
    assert entry is not None
    assert entry.state is EntryState.CREATED


_SCRIPT = """
import json, sys, anyio
from sarv_async import AsyncSarvClient, Backoff, SarvError

async def main(url, ledger, keys):
    out = {}
    async with AsyncSarvClient("demo", "demo-token", base_url=url, rate_limit=None,
                               backoff=Backoff(initial=0.01, maximum=0.05), ledger=ledger,
                               settle_delay=0.2) as client:
        async def one(i):
            while True:  # a job queue retries a failed job, with the same key
                try:
                    creds = await client.smtp_users.create(
                        total_limit=100 + i % 3, hourly_limit=10, idempotency_key=f"job-{i}")
                except SarvError:
                    continue
                out[f"job-{i}"] = [creds.smtp_user_name, creds.smtp_password]
                return
        async with anyio.create_task_group() as tg:
            for i in range(keys):
                tg.start_soon(one, i)
    print(json.dumps(out))

anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")
@pytest.mark.slow
def test_keys_from_two_processes_at_once_give_one_user_each(tmp_path: Path) -> None:
    """Two processes run the same 12 jobs at once through 20% faults, each retrying failed
    jobs with their key: 12 users, and both processes got the same one per key."""
    keys = 12
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SARV_", "SENDCLEAN_"))}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    with Emulator(fault_rate=0.2, seed=5) as emu:
        argv = [sys.executable, "-c", _SCRIPT, emu.base_url, str(tmp_path / "l.sqlite3")]
        procs = [
            subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                [*argv, str(keys)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
            for _ in range(2)
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()[-2000:]
            results.append(json.loads(out))
        users = {user["smtp_user_name"]: user for user in emu.users()}
        assert emu.stats()["faults"] > 0
    assert results[0] == results[1], "the two processes got different users for one key"
    assert len(users) == keys
    assert {name for name, _ in results[0].values()} == set(users)
    for key, (name, password) in results[0].items():
        i = int(key.removeprefix("job-"))
        assert users[name]["password"] == password
        assert users[name]["total_limit"] == 100 + i % 3


@pytest.mark.slow
async def test_a_slow_create_keeps_its_key_past_its_lease(tmp_path: Path) -> None:
    """A live create slower than its lease renews it: another caller waits, sends nothing."""
    path = tmp_path / "l.sqlite3"
    async with Emulator(latency_ms=1200) as emu:
        async with _client(emu, path) as warm:  # record the baseline first
            await warm.smtp_users.create(total_limit=1, hourly_limit=1)
        slow, other = _client(emu, path), _client(emu, path)
        for client in (slow, other):
            assert client._shared.creates is not None
            client._shared.creates.lease = 0.3  # renewed every 0.1 s
        found: list[SmtpCredentials] = []
        async with slow, other:
            assert other.ledger is not None
            account = account_id(emu.base_url, "demo")

            async def call(client: AsyncSarvClient) -> None:
                found.append(
                    await client.smtp_users.create(
                        total_limit=7, hourly_limit=3, idempotency_key="k"
                    )
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, slow)
                await renewed_past_its_lease(other.ledger, account, "k", 0.3)
                tg.start_soon(call, other)
        assert _creates(emu) == 2  # the warm-up and one for the key
    assert found[0].smtp_user_name == found[1].smtp_user_name
