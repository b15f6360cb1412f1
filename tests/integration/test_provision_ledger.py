"""Provisioning with a ledger: reruns resume, keys are honoured, concurrent runs stay apart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from sarv_async import Backoff, ProvisionOutcome, ProvisionResult, ValidationError
from sarv_async.testing import Emulator
from tests.helpers import renewed_past_its_lease

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)


def _specs(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"total_limit": 100 + i % 5, "hourly_limit": 10, **extra} for i in range(count)]


async def _run(emu: Emulator, ledger: Path, specs: Any, **kwargs: Any) -> list[ProvisionResult]:
    # Through 20% faults a spec may lose its create a few times in a row: do not give up.
    kwargs.setdefault("max_rounds", 10)
    async with (
        emu.client(rate_limit=None, backoff=FAST, ledger=ledger, settle_delay=0.05) as client,
        client.smtp_users.provision(specs, **kwargs) as run,
    ):
        return sorted([result async for result in run], key=lambda r: r.index)


def _pair(result: ProvisionResult) -> tuple[str, str] | None:
    creds = result.credentials
    return None if creds is None else (creds.smtp_user_name, creds.smtp_password)


def _by_name(emu: Emulator) -> dict[str, dict[str, Any]]:
    return {user["smtp_user_name"]: user for user in emu.users()}


@pytest.mark.slow
async def test_a_rerun_with_the_same_run_id_creates_nothing(tmp_path: Path) -> None:
    """The second run of the same specs and run id reads every user back; no create."""
    ledger = tmp_path / "l.sqlite3"
    async with Emulator(fault_rate=0.2, seed=3) as emu:
        first = await _run(emu, ledger, _specs(20), run_id="batch-1")
        creates = emu.stats()["requests"]["/v1.0/settings/addSmtp"]
        again = await _run(emu, ledger, _specs(20), run_id="batch-1")
        assert emu.stats()["requests"]["/v1.0/settings/addSmtp"] == creates
        users = _by_name(emu)
    assert all(r.ok for r in first), [r.error for r in first]
    assert {r.outcome for r in again} == {ProvisionOutcome.EXISTING}
    assert [_pair(r) for r in first] == [_pair(r) for r in again]
    assert len(users) == 20
    for result in again:
        assert result.credentials is not None
        assert users[result.credentials.smtp_user_name]["password"] == (
            result.credentials.smtp_password
        )


@pytest.mark.slow
async def test_a_cancelled_run_resumes_with_one_user_per_spec(tmp_path: Path) -> None:
    """Cancelled midway (through faults), then run again: exactly one user per spec."""
    ledger = tmp_path / "l.sqlite3"
    specs = _specs(30)
    async with Emulator(fault_rate=0.2, seed=9, latency_ms=5) as emu:
        async with (
            emu.client(rate_limit=None, backoff=FAST, ledger=ledger, settle_delay=0.05) as client,
            client.smtp_users.provision(specs, run_id="batch", concurrency=4, max_rounds=10) as run,
        ):
            async for result in run:
                if result.index >= 10:
                    break  # leaving the block cancels the creates in flight
        partial = len(emu.users())
        results = await _run(emu, ledger, specs, run_id="batch", concurrency=4)
        users = _by_name(emu)
    assert 0 < partial < 30
    assert all(r.ok for r in results), [(r.outcome, r.error) for r in results if not r.ok]
    names = [r.credentials.smtp_user_name for r in results if r.credentials is not None]
    assert len(set(names)) == 30 == len(users)
    assert Counter(r.outcome for r in results)[ProvisionOutcome.EXISTING] > 0


@pytest.mark.slow
async def test_spec_keys_make_an_ensure_these_exist_list(tmp_path: Path) -> None:
    """Specs with keys: a later run with more keys creates only the new ones."""
    ledger = tmp_path / "l.sqlite3"
    keyed = [{**spec, "key": f"tenant-{i}"} for i, spec in enumerate(_specs(6))]
    async with Emulator() as emu:
        await _run(emu, ledger, keyed[:4])
        results = await _run(emu, ledger, list(reversed(keyed)))
        assert len(emu.users()) == 6
    outcomes = {r.key: r.outcome for r in results}
    assert outcomes == {
        **{f"tenant-{i}": ProvisionOutcome.EXISTING for i in range(4)},
        "tenant-4": ProvisionOutcome.CREATED,
        "tenant-5": ProvisionOutcome.CREATED,
    }


async def test_a_key_reused_with_other_limits_fails_that_spec(tmp_path: Path) -> None:
    """A spec whose key was used with other limits fails with a ValidationError on 'key'."""
    ledger = tmp_path / "l.sqlite3"
    async with Emulator() as emu:
        await _run(emu, ledger, [{"total_limit": 5, "hourly_limit": 1, "key": "a"}])
        [result] = await _run(emu, ledger, [{"total_limit": 6, "hourly_limit": 1, "key": "a"}])
        assert len(emu.users()) == 1
    assert result.outcome is ProvisionOutcome.FAILED
    assert isinstance(result.error, ValidationError)
    assert result.error.field == "key"
    assert "total_limit=5" in str(result.error)


@pytest.mark.slow
async def test_concurrent_runs_on_one_ledger_never_share_a_user(tmp_path: Path) -> None:
    """Two runs at once through 20% faults, same limits: no user adopted by both."""
    ledger = tmp_path / "l.sqlite3"
    found: dict[str, list[ProvisionResult]] = {}
    async with Emulator(fault_rate=0.2, seed=21) as emu:

        async def one(run_id: str) -> None:
            found[run_id] = await _run(emu, ledger, _specs(25), run_id=run_id, concurrency=5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "a")
            tg.start_soon(one, "b")
        users = _by_name(emu)
    names = [
        r.credentials.smtp_user_name
        for results in found.values()
        for r in results
        if r.credentials is not None
    ]
    assert all(r.ok for results in found.values() for r in results)
    assert len(names) == len(set(names)) == 50 == len(users)


@pytest.mark.slow
async def test_a_slow_create_in_a_run_keeps_its_key_past_its_lease(tmp_path: Path) -> None:
    """The run renews the lease of every create in flight, however slow the call."""
    from sarv_async._ledger import account_id

    async with Emulator(latency_ms=1200) as emu:
        async with emu.client(
            rate_limit=None, backoff=FAST, ledger=tmp_path / "l.sqlite3", settle_delay=0.05
        ) as client:
            assert client._shared.creates is not None
            client._shared.creates.lease = 0.3  # renewed every 0.1 s
            assert client.ledger is not None
            spec = {"total_limit": 5, "hourly_limit": 1, "key": "k"}
            async with client.smtp_users.provision([spec]) as run:
                account = account_id(emu.base_url, "demo")
                await renewed_past_its_lease(client.ledger, account, "k", 0.3)
                [result] = [r async for r in run]
        assert len(emu.users()) == 1
    assert result.outcome is ProvisionOutcome.CREATED
