"""Bulk provisioning against the emulator: exactly once, nothing lost, every spec accounted for."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from sarv_async import (
    APIConnectionError,
    AsyncSarvClient,
    AuthenticationError,
    Backoff,
    CreateSmtpUserRequest,
    NotProvisioned,
    OutcomeUnknownError,
    Provisioned,
    ProvisionOutcome,
    ProvisionResult,
    ValidationError,
)
from sarv_async.testing import Emulator

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)


def _specs(count: int) -> list[dict[str, Any]]:
    return [{"total_limit": 100 + i % 7, "hourly_limit": 10 + i % 3} for i in range(count)]


async def _provision(emu: Emulator, specs: Any, **kwargs: Any) -> tuple[list[ProvisionResult], Any]:
    async with (
        emu.client(rate_limit=None, backoff=FAST) as client,
        client.smtp_users.provision(specs, **{"settle_delay": 0, **kwargs}) as run,
    ):
        results: list[ProvisionResult] = [result async for result in run]
    return results, run.summary


def _assert_server_matches(emu: Emulator, results: list[ProvisionResult], before: int = 0) -> None:
    users = {user["smtp_user_name"]: user for user in emu.users()}
    names = [r.credentials.smtp_user_name for r in results if r.credentials is not None]
    assert len(names) == len(set(names)), "two specs were given the same user"
    for result in results:
        # The class says what `ok` promises a type checker: credentials, or an error.
        provisioned = result.outcome in (ProvisionOutcome.CREATED, ProvisionOutcome.ADOPTED)
        assert isinstance(result, Provisioned if provisioned else NotProvisioned), result
        assert result.ok is provisioned
        assert (result.credentials is not None, result.error is None) == (provisioned,) * 2
        if result.credentials is None:
            continue
        user = users[result.credentials.smtp_user_name]
        assert user["password"] == result.credentials.smtp_password
        request = result.spec
        if isinstance(request, dict):
            assert (user["total_limit"], user["hourly_limit"]) == (
                request["total_limit"],
                request["hourly_limit"],
            )
    assert len(users) == before + len(names)


@pytest.mark.slow
async def test_every_spec_gets_exactly_one_user_through_faults() -> None:
    """With a quarter of requests failing, N specs give exactly N users, each once."""
    specs = _specs(60)
    async with Emulator(fault_rate=0.25, seed=7) as emu:
        results, summary = await _provision(emu, specs, concurrency=8)
        assert emu.stats()["faults"] > 0
        _assert_server_matches(emu, results)

    assert sorted(r.index for r in results) == list(range(60))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert summary.total == 60
    assert summary.created + summary.adopted == 60
    assert summary.failed == 0
    assert summary.orphans == ()


async def test_a_lost_answer_is_adopted_from_the_list() -> None:
    """A create whose answer was lost after it took effect is adopted, not created twice."""
    async with Emulator() as emu:
        emu.inject_fault("drop_after_apply", path="settings/addSmtp")
        results, summary = await _provision(emu, _specs(5), concurrency=1)
        _assert_server_matches(emu, results)

    outcomes = Counter(r.outcome for r in results)
    assert outcomes == {ProvisionOutcome.CREATED: 4, ProvisionOutcome.ADOPTED: 1}
    adopted = next(r for r in results if r.outcome is ProvisionOutcome.ADOPTED)
    assert adopted.index == 0
    assert (summary.adopted, summary.rounds) == (1, 1)


async def test_a_create_that_never_happened_is_made_again() -> None:
    """A create that failed before taking effect is proven absent by the list and redone."""
    async with Emulator() as emu:
        emu.inject_fault("drop_before", path="settings/addSmtp")
        results, summary = await _provision(emu, _specs(3), concurrency=1)
        _assert_server_matches(emu, results)

    assert [r.outcome for r in sorted(results, key=lambda r: r.index)] == [
        ProvisionOutcome.CREATED
    ] * 3
    assert summary.rounds == 1


async def test_existing_users_are_left_alone_and_not_adopted() -> None:
    """Users present before the run are never mistaken for the run's own."""
    async with Emulator() as emu:
        async with emu.client(rate_limit=None) as client:
            existing = await client.smtp_users.create(total_limit=100, hourly_limit=10)
        emu.inject_fault("drop_before", path="settings/addSmtp")
        results, _ = await _provision(
            emu, [{"total_limit": 100, "hourly_limit": 10}], concurrency=1
        )
        _assert_server_matches(emu, results, before=1)
    assert results[0].credentials is not None
    assert results[0].credentials.smtp_user_name != existing.smtp_user_name


async def test_unexplained_new_users_are_reported_as_orphans() -> None:
    """A new user that matches no spec is listed as an orphan rather than adopted."""
    async with Emulator() as emu, emu.client(rate_limit=None, backoff=FAST) as client:

        async def specs() -> AsyncIterator[dict[str, int]]:
            # After the run's snapshot, someone else creates a user with other limits...
            await client.smtp_users.create(total_limit=999, hourly_limit=9)
            # ...and the run's own create loses its answer.
            emu.inject_fault("drop_after_apply", path="settings/addSmtp")
            yield {"total_limit": 5, "hourly_limit": 1}

        async with client.smtp_users.provision(specs(), concurrency=1, settle_delay=0) as run:
            results = [r async for r in run]
    assert results[0].outcome is ProvisionOutcome.ADOPTED
    assert [user.total_limit for user in run.summary.orphans] == [999]


@pytest.mark.slow
async def test_the_last_list_reads_a_big_account_and_keeps_only_the_orphans() -> None:
    """The orphan check reads 1,500 users from a real server, as they arrive."""
    async with Emulator() as emu, emu.client(rate_limit=None, backoff=FAST) as client:

        async def create_others() -> None:
            for _ in range(100):
                await client.smtp_users.create(total_limit=999, hourly_limit=9)

        async def specs() -> AsyncIterator[dict[str, int]]:
            # After the run's snapshot, someone else creates 1,500 users.
            async with anyio.create_task_group() as tg:
                for _ in range(15):
                    tg.start_soon(create_others)
            yield {"total_limit": 5, "hourly_limit": 1}

        async with client.smtp_users.provision(specs(), concurrency=1, settle_delay=0) as run:
            results = [r async for r in run]
        assert len(emu.users()) == 1501
    assert results[0].outcome is ProvisionOutcome.CREATED
    assert run.summary.orphans_checked
    orphans = run.summary.orphans
    assert len({user.smtp_user_name for user in orphans}) == len(orphans) == 1500
    assert {(user.total_limit, user.hourly_limit) for user in orphans} == {(999, 9)}
    assert results[0].credentials is not None
    assert results[0].credentials.smtp_user_name not in {u.smtp_user_name for u in orphans}


async def test_invalid_specs_fail_alone() -> None:
    """A bad spec is reported for itself; the others are still created."""
    specs: list[Any] = [
        {"total_limit": 10, "hourly_limit": 1},
        {"total_limit": 0, "hourly_limit": 1},
        {"hourly_limit": 1},
        "not a spec",
        CreateSmtpUserRequest(total_limit=3, hourly_limit=3),
    ]
    async with Emulator() as emu:
        results, summary = await _provision(emu, specs)
        _assert_server_matches(emu, results)
    by_index = {r.index: r for r in results}
    assert by_index[0].ok
    assert by_index[4].ok
    for index, field in [(1, "total_limit"), (2, "total_limit"), (3, None)]:
        assert by_index[index].outcome is ProvisionOutcome.FAILED
        assert isinstance(by_index[index].error, ValidationError)
        assert by_index[index].error.field == field  # type: ignore[union-attr]
    assert (summary.created, summary.failed) == (2, 3)


async def test_authentication_failure_stops_sending_creates() -> None:
    """A wrong token fails the run at its first call, before any create is sent."""
    async with Emulator() as emu:
        async with emu.client(rate_limit=None) as good:
            bad = type(good)(good.owner_id, "wrong", base_url=emu.base_url, rate_limit=None)
        async with bad:
            with pytest.raises(AuthenticationError):
                async with bad.smtp_users.provision(_specs(10)) as run:
                    [r async for r in run]
        assert emu.stats()["requests"].get("/v1.0/settings/addSmtp", 0) == 0


async def test_async_iterables_and_progress_are_supported() -> None:
    """Specs may come from an async iterator; progress reports done, failed and total."""
    seen: list[tuple[int, int, int | None]] = []

    async def specs() -> AsyncIterator[dict[str, int]]:
        for spec in _specs(4):
            yield spec

    async with Emulator() as emu:
        _, summary = await _provision(emu, specs(), progress=lambda *args: seen.append(args))
    assert summary.created == 4
    assert seen[-1] == (4, 0, None)
    assert [done for done, _, _ in seen] == [1, 2, 3, 4]


async def test_progress_knows_the_total_of_sized_inputs() -> None:
    """For a list of specs, progress reports the total."""
    seen: list[tuple[int, int, int | None]] = []
    async with Emulator() as emu:
        await _provision(emu, _specs(3), progress=lambda *args: seen.append(args))
    assert seen[-1] == (3, 0, 3)


async def test_summary_before_the_end_is_refused() -> None:
    """The summary is only available once every result was read."""
    async with Emulator() as emu, emu.client(rate_limit=None) as client:
        async with client.smtp_users.provision(_specs(3)) as run:
            with pytest.raises(RuntimeError, match="not finished"):
                _ = run.summary
            await run.complete()
        assert run.summary.created == 3


async def test_leaving_early_cancels_the_run_cleanly() -> None:
    """Breaking out of the results stops the run without errors; the client stays usable."""
    async with Emulator() as emu, emu.client(rate_limit=None) as client:
        async with client.smtp_users.provision(_specs(50), concurrency=2) as run:
            async for _ in run:
                break
        assert len(await client.smtp_users.list()) < 50


@pytest.mark.slow
async def test_a_spec_whose_user_may_exist_is_reported_unknown() -> None:
    """A lost create that the failed list cannot settle is UNKNOWN, never FAILED."""
    async with Emulator() as emu:
        # Spec 0's create is applied but its answer is lost: it is set aside.
        emu.inject_fault("drop_after_apply", "addSmtp")

        async def specs() -> AsyncIterator[dict[str, int]]:
            yield {"total_limit": 10, "hourly_limit": 1}
            yield {"total_limit": 20, "hourly_limit": 2}
            # Once spec 1 is done, make the reconciliation's list calls fail.
            emu.inject_fault("general_error", "listSmtp", count=3)

        async with (
            emu.client(rate_limit=None, max_retries=0, backoff=FAST) as c,
            c.smtp_users.provision(specs(), concurrency=1, settle_delay=0.3) as run,
        ):
            results: list[ProvisionResult] = [result async for result in run]
        on_server = {user["smtp_user_name"] for user in emu.users()}
    first, second = sorted(results, key=lambda r: r.index)
    assert first.outcome is ProvisionOutcome.UNKNOWN
    assert isinstance(first, NotProvisioned)
    assert isinstance(first.error, OutcomeUnknownError)
    assert first.error.idempotency_key == first.key
    assert second.outcome is ProvisionOutcome.CREATED
    assert len(on_server) == 2  # spec 0's user does exist, as UNKNOWN allows
    summary = run.summary
    assert (summary.created, summary.unknown, summary.failed) == (1, 1, 0)
    assert summary.orphans_checked is False


async def test_specs_still_lost_after_the_last_round_fail_with_the_cause() -> None:
    """A spec proven not created, but lost again in every round, fails with a definite error."""
    async with Emulator() as emu:
        emu.inject_fault("drop_before", path="addSmtp", count=2)
        async with (
            emu.client(rate_limit=None, backoff=FAST) as client,
            client.smtp_users.provision(_specs(1), max_rounds=1, settle_delay=0) as run,
        ):
            results = [r async for r in run]
        assert emu.users() == []
    assert results[0].outcome is ProvisionOutcome.FAILED
    assert isinstance(results[0].error, APIConnectionError)
    assert (run.summary.failed, run.summary.rounds, run.summary.unknown) == (1, 2, 0)


@pytest.mark.slow
async def test_reconciliation_waits_for_late_creates_to_settle() -> None:
    """The reconciling list waits settle_delay, so a create still running lands first."""
    async with Emulator() as emu:
        emu.inject_fault("drop_after_apply", path="addSmtp")
        started = anyio.current_time()
        results, _ = await _provision(emu, _specs(1), settle_delay=0.3)
        elapsed = anyio.current_time() - started
    assert results[0].outcome is ProvisionOutcome.ADOPTED
    assert elapsed >= 0.3


async def test_no_settle_wait_when_nothing_was_lost() -> None:
    """Without lost answers, the run does not wait."""
    async with Emulator() as emu:
        started = anyio.current_time()
        await _provision(emu, _specs(2), settle_delay=30)
        assert anyio.current_time() - started < 5


async def test_an_exception_in_the_block_propagates_as_itself() -> None:
    """The run's task group is hidden: the caller's own exception comes out unwrapped."""

    async def read_one(client: AsyncSarvClient) -> None:
        async with client.smtp_users.provision(_specs(20), concurrency=2) as run:
            async for _ in run:
                raise KeyError("boom")

    async with Emulator() as emu, emu.client(rate_limit=None) as client:
        with pytest.raises(KeyError, match="boom"):
            await read_one(client)


async def _complete(client: AsyncSarvClient) -> None:
    async with client.smtp_users.provision(_specs(3)) as run:
        await run.complete()


async def test_complete_after_some_results_were_read_counts_every_spec() -> None:
    """Read two results, then complete(): the summary and the progress count all of them,
    invalid specs too, and the emulator holds exactly the users created."""
    specs: list[Any] = [*_specs(30), {"total_limit": -1, "hourly_limit": 1}]
    seen: list[int] = []
    async with Emulator() as emu, emu.client(rate_limit=None) as client:

        def progress(done: int, failed: int, total: int | None) -> None:
            seen.append(done)

        async with client.smtp_users.provision(specs, concurrency=4, progress=progress) as run:
            read: list[Any] = []
            async for result in run:
                read.append(result)
                if len(read) == 2:
                    break
            summary = await run.complete()
        assert len(read) == 2
        assert (summary.total, summary.created, summary.failed) == (31, 30, 1)
        assert seen[-1] == 31
        assert len(emu.users()) == 30


async def test_a_failed_snapshot_raises_its_error_unwrapped() -> None:
    """When the first list fails, complete() and the block raise that SarvError itself."""
    async with Emulator() as emu:
        bad = AsyncSarvClient("demo", "wrong", base_url=emu.base_url, rate_limit=None)
        async with bad:
            with pytest.raises(AuthenticationError):
                await _complete(bad)


@pytest.mark.parametrize("value", ["\u00b2", "1e3", " ", "-1"])
async def test_odd_limit_strings_fail_their_spec_only(value: str) -> None:
    """A limit string that is not plain ASCII digits fails its own spec, not the run."""
    async with Emulator() as emu:
        results, summary = await _provision(
            emu, [{"total_limit": value, "hourly_limit": 1}, {"total_limit": 1, "hourly_limit": 1}]
        )
    by_index = {r.index: r for r in results}
    assert isinstance(by_index[0].error, ValidationError)
    assert by_index[1].ok
    assert (summary.failed, summary.created) == (1, 1)


@pytest.mark.slow
async def test_specs_that_are_not_sent_still_let_other_tasks_run() -> None:
    """Workers taking specs the ledger does not let send (one key repeated) yield between them.

    A program's other tasks (a progress display, a signal handler) keep running: every
    spec taken lets them run, even when nothing about it waits on the network.
    """
    ticks = 0
    seen: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    def specs() -> Any:
        for _ in range(200):
            seen.append(ticks)  # how far the ticker had got when this spec was taken
            yield {"key": "one-user", "total_limit": 100, "hourly_limit": 10}

    async with Emulator() as emu, anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        results, summary = await _provision(emu, specs(), concurrency=2)
        tg.cancel_scope.cancel()
        assert len(emu.users()) == 1
    assert summary.created == 1
    assert Counter(result.outcome for result in results)[ProvisionOutcome.EXISTING] == 199
    longest = max(len(list(run)) for _, run in itertools.groupby(seen))
    assert longest <= 4, f"{longest} specs were taken without letting the ticker run"
