"""The `Ledger` contract: what every store (SQLite, Redis) must do, operation by operation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from typing import TypedDict

import anyio
import pytest

from sarv_async import Ledger
from sarv_async._ledger import Claim, Decision, EntryState, account_id
from tests.processes import PROJECT_ROOT

from .conftest import LedgerStore

pytestmark = pytest.mark.anyio

ACCOUNT = account_id("https://api.example.com/v1.0/", "acme")
OTHER = account_id("https://api.example.com/v1.0/", "globex")


class _Limits(TypedDict):
    total_limit: int
    hourly_limit: int


LIMITS = _Limits(total_limit=100, hourly_limit=10)


async def _ready(ledger: Ledger, account: str = ACCOUNT, names: tuple[str, ...] = ()) -> None:
    assert await ledger.record_baseline(account, names)


async def _send(ledger: Ledger, key: str, holder: str = "h1", lease: float = 60.0) -> None:
    begun = await ledger.begin(ACCOUNT, key, **LIMITS, holder=holder, lease=lease)
    assert begun.decision is Decision.SEND


async def test_nothing_is_begun_before_the_account_has_a_baseline(ledger: Ledger) -> None:
    """A key of an account with no baseline asks for one, and nothing is written."""
    begun = await ledger.begin(ACCOUNT, "k", **LIMITS, holder="h1", lease=60)
    assert begun.decision is Decision.NEED_BASELINE
    assert begun.entry is None
    assert await ledger.get(ACCOUNT, "k") is None


async def test_the_baseline_is_recorded_once_and_its_users_are_owned(ledger: Ledger) -> None:
    """The first baseline wins; later ones change nothing; its users count as owned."""
    assert await ledger.record_baseline(ACCOUNT, ["smtp1", "smtp2"])
    assert not await ledger.record_baseline(ACCOUNT, ["smtp3"])
    assert await ledger.owned(ACCOUNT, ["smtp1", "smtp2", "smtp3", "smtp4"]) == {"smtp1", "smtp2"}
    assert await ledger.owned(OTHER, ["smtp1"]) == set()
    assert await ledger.record_baseline(OTHER, [])


async def test_a_large_baseline_is_recorded_and_queried(ledger: Ledger) -> None:
    """Thousands of names go in one baseline and come back from one owned() query."""
    names = [f"smtp{i}" for i in range(5000)]
    await _ready(ledger, names=tuple(names))
    probe = [*names[::7], "smtp-new"]
    assert await ledger.owned(ACCOUNT, probe) == set(names[::7])


async def test_begin_gives_the_first_caller_the_send(ledger: Ledger) -> None:
    """A new key is PENDING, held by its caller under a lease; a second caller is BUSY."""
    await _ready(ledger)
    begun = await ledger.begin(ACCOUNT, "k", **LIMITS, holder="h1", lease=60, fingerprint="f")
    assert begun.decision is Decision.SEND
    entry = begun.entry
    assert entry is not None
    assert (entry.key, entry.total_limit, entry.hourly_limit) == ("k", 100, 10)
    assert (entry.state, entry.holder, entry.attempts) == (EntryState.PENDING, "h1", 1)
    assert entry.fingerprint == "f"
    assert entry.user_name is None
    assert entry.lease_left is not None
    # (now + 60) - now can round to 60.00000000000006 on the memory ledger's float clock.
    assert 50 < entry.lease_left <= 60 + 1e-9

    for holder in ("h2", "h1"):  # nor does the holder itself get a second send
        busy = await ledger.begin(ACCOUNT, "k", **LIMITS, holder=holder, lease=60, fingerprint="f")
        assert busy.decision is Decision.BUSY
        assert busy.entry is not None
        assert busy.entry.holder == "h1"
        assert busy.entry.lease_left is not None
        assert busy.entry.lease_left > 50


async def test_other_limits_or_fingerprint_under_one_key_are_a_mismatch(ledger: Ledger) -> None:
    """A key keeps the limits and fingerprint it was begun with; others change nothing."""
    await _ready(ledger)
    await ledger.begin(ACCOUNT, "k", **LIMITS, holder="h1", lease=60, fingerprint="row-1")
    for total, hourly, fingerprint in ((101, 10, "row-1"), (100, 11, "row-1"), (100, 10, "x")):
        begun = await ledger.begin(
            ACCOUNT,
            "k",
            total_limit=total,
            hourly_limit=hourly,
            holder="h2",
            lease=60,
            fingerprint=fingerprint,
        )
        assert begun.decision is Decision.MISMATCH
        assert begun.entry is not None
        assert (begun.entry.total_limit, begun.entry.fingerprint) == (100, "row-1")
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert (entry.state, entry.holder) == (EntryState.PENDING, "h1")


async def test_limits_of_any_size_are_kept_exactly(ledger: Ledger) -> None:
    """Limits beyond 64 bits (the API may refuse them, the ledger must not) round-trip."""
    await _ready(ledger)
    huge = 99999999999999999999
    begun = await ledger.begin(ACCOUNT, "k", total_limit=huge, hourly_limit=1, holder="h", lease=60)
    assert begun.decision is Decision.SEND
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert (entry.total_limit, entry.hourly_limit) == (huge, 1)
    again = await ledger.begin(ACCOUNT, "k", total_limit=huge, hourly_limit=1, holder="i", lease=1)
    assert again.decision is Decision.BUSY
    other = await ledger.begin(
        ACCOUNT, "k", total_limit=huge + 1, hourly_limit=1, holder="i", lease=1
    )
    assert other.decision is Decision.MISMATCH


async def test_a_claimed_user_settles_the_key(ledger: Ledger) -> None:
    """After a claim the key is CREATED with its user; begin says DONE; claims are idempotent."""
    await _ready(ledger)
    await _send(ledger, "k")
    assert await ledger.claim(ACCOUNT, "k", "smtp7") is Claim.CLAIMED
    begun = await ledger.begin(ACCOUNT, "k", **LIMITS, holder="h2", lease=60)
    assert begun.decision is Decision.DONE
    assert begun.entry is not None
    assert (begun.entry.state, begun.entry.user_name) == (EntryState.CREATED, "smtp7")
    assert begun.entry.holder is None
    assert await ledger.claim(ACCOUNT, "k", "smtp7") is Claim.CLAIMED
    assert await ledger.claim(ACCOUNT, "k", "smtp8") is Claim.SETTLED
    assert await ledger.claim(ACCOUNT, "nokey", "smtp9") is Claim.NO_ENTRY
    assert await ledger.owned(ACCOUNT, ["smtp7", "smtp8", "smtp9"]) == {"smtp7"}


async def test_a_user_owned_elsewhere_is_never_claimed_again(ledger: Ledger) -> None:
    """A user owned by another key, or in the baseline, is TAKEN: the key goes UNKNOWN."""
    await _ready(ledger, names=("old",))
    await _send(ledger, "a")
    await _send(ledger, "b", holder="h2")
    await _send(ledger, "c", holder="h3")
    assert await ledger.claim(ACCOUNT, "a", "smtp1") is Claim.CLAIMED
    assert await ledger.claim(ACCOUNT, "b", "smtp1") is Claim.TAKEN
    assert await ledger.claim(ACCOUNT, "c", "old") is Claim.TAKEN
    for key in ("b", "c"):
        entry = await ledger.get(ACCOUNT, key)
        assert entry is not None
        assert (entry.state, entry.user_name, entry.holder) == (EntryState.UNKNOWN, None, None)
        assert entry.ended_ago is not None
        assert entry.ended_ago < 5
    begun = await ledger.begin(ACCOUNT, "b", **LIMITS, holder="h4", lease=60)
    assert begun.decision is Decision.RECONCILE


async def test_an_unknown_outcome_is_reconciled_by_one_holder_at_a_time(ledger: Ledger) -> None:
    """mark_unknown ends the attempt; begin then gives RECONCILE to one caller, BUSY to others."""
    await _ready(ledger)
    await _send(ledger, "k")
    await ledger.mark_unknown(ACCOUNT, "k", holder="h1")
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert (entry.state, entry.holder, entry.lease_left) == (EntryState.UNKNOWN, None, None)
    assert entry.ended_ago is not None
    assert 0 <= entry.ended_ago < 5

    begun = await ledger.begin(ACCOUNT, "k", **LIMITS, holder="r1", lease=60)
    assert begun.decision is Decision.RECONCILE
    assert begun.entry is not None
    assert (begun.entry.state, begun.entry.holder) == (EntryState.UNKNOWN, "r1")
    assert begun.entry.ended_ago is not None
    assert (await ledger.begin(ACCOUNT, "k", **LIMITS, holder="r2", lease=60)).decision is (
        Decision.BUSY
    )
    # The holder asking again keeps reconciling; once it lets go, another may.
    assert (await ledger.begin(ACCOUNT, "k", **LIMITS, holder="r1", lease=60)).decision is (
        Decision.RECONCILE
    )
    await ledger.release(ACCOUNT, "k", holder="r2")  # not the holder: no effect
    assert (await ledger.begin(ACCOUNT, "k", **LIMITS, holder="r2", lease=60)).decision is (
        Decision.BUSY
    )
    await ledger.release(ACCOUNT, "k", holder="r1")
    assert (await ledger.begin(ACCOUNT, "k", **LIMITS, holder="r2", lease=60)).decision is (
        Decision.RECONCILE
    )


async def test_release_never_lets_go_of_a_pending_send(ledger: Ledger) -> None:
    """A create in flight stays held: release does nothing to a PENDING key."""
    await _ready(ledger)
    await _send(ledger, "k")
    await ledger.release(ACCOUNT, "k", holder="h1")
    assert (await ledger.begin(ACCOUNT, "k", **LIMITS, holder="h2", lease=60)).decision is (
        Decision.BUSY
    )


@pytest.mark.slow
async def test_a_holder_whose_lease_ran_out_is_taken_as_ended_then(ledger: Ledger) -> None:
    """A PENDING key past its lease is reconciled, its attempt ended when the lease ran out."""
    await _ready(ledger)
    await _send(ledger, "k", lease=0.2)
    # (BUSY while the lease runs is test_begin_gives_the_first_caller_the_send's concern: asserted
    # here, a loaded machine taking 0.2 s between two steps would fail it.)
    await anyio.sleep(0.5)
    begun = await ledger.begin(ACCOUNT, "k", **LIMITS, holder="h2", lease=60)
    assert begun.decision is Decision.RECONCILE
    assert begun.entry is not None
    assert (begun.entry.state, begun.entry.holder) == (EntryState.UNKNOWN, "h2")
    assert begun.entry.ended_ago is not None
    assert 0.2 <= begun.entry.ended_ago < 5
    # The old holder can no longer renew, resend or fail it.
    assert not await ledger.renew(ACCOUNT, "k", holder="h1", lease=60)
    assert not await ledger.resend(ACCOUNT, "k", holder="h1", lease=60)
    await ledger.mark_failed(ACCOUNT, "k", holder="h1")
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert (entry.state, entry.holder) == (EntryState.UNKNOWN, "h2")


async def test_a_holder_known_dead_is_expired_at_once(ledger: Ledger) -> None:
    """expire ends a dead holder's hold now: its PENDING key is UNKNOWN, free to reconcile."""
    await _ready(ledger)
    await _send(ledger, "k", holder="dead")
    assert not await ledger.expire(ACCOUNT, "k", holder="someone-else")
    assert (await ledger.begin(ACCOUNT, "k", **LIMITS, holder="h2", lease=60)).decision is (
        Decision.BUSY
    )
    assert await ledger.expire(ACCOUNT, "k", holder="dead")
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert (entry.state, entry.holder) == (EntryState.UNKNOWN, None)
    assert entry.ended_ago is not None
    assert entry.ended_ago < 5
    begun = await ledger.begin(ACCOUNT, "k", **LIMITS, holder="h2", lease=60)
    assert begun.decision is Decision.RECONCILE
    assert not await ledger.expire(ACCOUNT, "nokey", holder="dead")
    await ledger.claim(ACCOUNT, "k", "smtp1")
    assert not await ledger.expire(ACCOUNT, "k", holder="h2")  # CREATED: nothing to end


@pytest.mark.slow
async def test_renew_keeps_a_slow_holder_s_lease(ledger: Ledger) -> None:
    """A renewed lease does not run out; only the holder may renew it."""
    await _ready(ledger)
    await _send(ledger, "k", lease=1.0)
    for _ in range(3):
        await anyio.sleep(0.4)
        assert await ledger.renew(ACCOUNT, "k", holder="h1", lease=1.0)
    assert (await ledger.begin(ACCOUNT, "k", **LIMITS, holder="h2", lease=60)).decision is (
        Decision.BUSY
    )
    assert not await ledger.renew(ACCOUNT, "k", holder="h2", lease=60)
    assert not await ledger.renew(ACCOUNT, "nokey", holder="h1", lease=60)


async def test_resend_is_for_the_holder_of_an_unknown_key_only(ledger: Ledger) -> None:
    """Proven absent, the reconciling holder makes the key PENDING again, counting an attempt."""
    await _ready(ledger)
    await _send(ledger, "k")
    assert not await ledger.resend(ACCOUNT, "k", holder="h1", lease=60)  # still PENDING
    await ledger.mark_unknown(ACCOUNT, "k", holder="h1")
    assert not await ledger.resend(ACCOUNT, "k", holder="h1", lease=60)  # nobody holds it
    await ledger.begin(ACCOUNT, "k", **LIMITS, holder="r1", lease=60)
    assert not await ledger.resend(ACCOUNT, "k", holder="r2", lease=60)
    assert await ledger.resend(ACCOUNT, "k", holder="r1", lease=60)
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert (entry.state, entry.holder, entry.attempts) == (EntryState.PENDING, "r1", 2)
    assert await ledger.claim(ACCOUNT, "k", "smtp3") is Claim.CLAIMED


async def test_a_failed_key_can_be_begun_again_with_new_limits(ledger: Ledger) -> None:
    """mark_failed by the holder frees the key, which may then be begun with other limits."""
    await _ready(ledger)
    await _send(ledger, "k")
    await ledger.mark_failed(ACCOUNT, "k", holder="h2")  # not the holder: no effect
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert entry.state is EntryState.PENDING
    await ledger.mark_failed(ACCOUNT, "k", holder="h1")
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert (entry.state, entry.holder) == (EntryState.FAILED, None)
    begun = await ledger.begin(
        ACCOUNT, "k", total_limit=5, hourly_limit=1, holder="h3", lease=60, fingerprint="new"
    )
    assert begun.decision is Decision.SEND
    assert begun.entry is not None
    assert (begun.entry.total_limit, begun.entry.fingerprint, begun.entry.attempts) == (5, "new", 2)


async def test_an_unknown_key_proven_absent_can_be_failed_by_its_holder(ledger: Ledger) -> None:
    """The reconciling holder may give up on an UNKNOWN key: it becomes FAILED."""
    await _ready(ledger)
    await _send(ledger, "k")
    await ledger.mark_unknown(ACCOUNT, "k", holder="h1")
    await ledger.begin(ACCOUNT, "k", **LIMITS, holder="r1", lease=60)
    await ledger.mark_failed(ACCOUNT, "k", holder="r1")
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert entry.state is EntryState.FAILED


async def test_mark_unknown_never_undoes_a_created_key(ledger: Ledger) -> None:
    """A late 'unknown' for a key that has its user changes nothing."""
    await _ready(ledger)
    await _send(ledger, "k")
    await ledger.claim(ACCOUNT, "k", "smtp1")
    await ledger.mark_unknown(ACCOUNT, "k", holder="h1")
    entry = await ledger.get(ACCOUNT, "k")
    assert entry is not None
    assert (entry.state, entry.user_name) == (EntryState.CREATED, "smtp1")


@pytest.mark.slow
async def test_a_late_answer_settles_a_key_another_holder_reconciles(ledger: Ledger) -> None:
    """Anyone may claim for a key not yet created: the create's own answer wins if first."""
    await _ready(ledger)
    await _send(ledger, "k", lease=0.1)
    await anyio.sleep(0.3)
    assert (await ledger.begin(ACCOUNT, "k", **LIMITS, holder="r1", lease=60)).decision is (
        Decision.RECONCILE
    )
    assert await ledger.claim(ACCOUNT, "k", "smtp1") is Claim.CLAIMED
    assert await ledger.claim(ACCOUNT, "k", "smtp2") is Claim.SETTLED
    assert not await ledger.resend(ACCOUNT, "k", holder="r1", lease=60)


async def test_accounts_are_separate_namespaces(ledger: Ledger) -> None:
    """One key and one user name in two accounts are two independent records."""
    await _ready(ledger)
    await _ready(ledger, account=OTHER)
    for account in (ACCOUNT, OTHER):
        begun = await ledger.begin(account, "k", **LIMITS, holder="h", lease=60)
        assert begun.decision is Decision.SEND
        assert await ledger.claim(account, "k", "smtp1") is Claim.CLAIMED
    other = await ledger.begin(OTHER, "j", total_limit=1, hourly_limit=1, holder="h", lease=60)
    assert other.decision is Decision.SEND
    assert await ledger.get(ACCOUNT, "j") is None


async def test_another_handle_sees_what_one_recorded(ledger_store: LedgerStore) -> None:
    """Entries are durable: a new handle on the store, after the first closed, sees them."""
    first = ledger_store.make()
    await _ready(first)
    await _send(first, "k")
    await first.claim(ACCOUNT, "k", "smtp1")
    await first.aclose()
    second = ledger_store.make()
    try:
        entry = await second.get(ACCOUNT, "k")
        assert entry is not None
        assert (entry.state, entry.user_name) == (EntryState.CREATED, "smtp1")
        assert not await second.record_baseline(ACCOUNT, ["x"])
    finally:
        await second.aclose()


@pytest.mark.slow
async def test_concurrent_callers_in_one_process_get_one_send(ledger_store: LedgerStore) -> None:
    """Fifty tasks on two handles begin one key at once: exactly one is told to send."""
    handles = [ledger_store.make(), ledger_store.make()]
    decisions: list[Decision] = []
    try:
        await _ready(handles[0])

        async def one(i: int) -> None:
            begun = await handles[i % 2].begin(ACCOUNT, "k", **LIMITS, holder=f"h{i}", lease=60)
            decisions.append(begun.decision)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
    finally:
        for handle in handles:
            await handle.aclose()
    assert Counter(decisions) == {Decision.SEND: 1, Decision.BUSY: 49}


@pytest.mark.slow
async def test_concurrent_claims_of_one_user_give_it_to_one_key(ledger: Ledger) -> None:
    """Twenty keys claim one user at once: one gets it, the others go UNKNOWN."""
    await _ready(ledger)
    for i in range(20):
        await _send(ledger, f"k{i}", holder=f"h{i}")
    results: dict[str, Claim] = {}

    async def one(i: int) -> None:
        results[f"k{i}"] = await ledger.claim(ACCOUNT, f"k{i}", "smtp1")

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)
    assert Counter(results.values()) == {Claim.CLAIMED: 1, Claim.TAKEN: 19}
    [winner] = [key for key, claim in results.items() if claim is Claim.CLAIMED]
    for key in results:
        entry = await ledger.get(ACCOUNT, key)
        assert entry is not None
        assert entry.state is (EntryState.CREATED if key == winner else EntryState.UNKNOWN)


@pytest.mark.skipif(sys.platform == "win32", reason="select() on pipes")
@pytest.mark.slow
def test_two_processes_racing_on_one_store_keep_every_invariant(
    shared_ledger_store: LedgerStore,
) -> None:
    """Two processes begin 60 keys and claim 30 user names at once: one send per key,
    one baseline, one key per user, and each TAKEN key left UNKNOWN."""
    ledger_store = shared_ledger_store
    keys, users = 60, 30
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    procs = [
        subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "tests.ledger._contender",
                ledger_store.opener,
                ledger_store.address,
                ACCOUNT,
                name,
                str(keys),
                str(users),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=PROJECT_ROOT,
        )
        for name in ("p1", "p2")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready", proc.stderr
        for proc in procs:  # both start at once
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()
            outputs.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    assert sorted(output["baseline"] for output in outputs) == [False, True]
    sends = [key for output in outputs for key in output["sends"]]
    assert sorted(sends) == sorted(f"k{i}" for i in range(keys)), "a key was sent twice or never"
    claims = {key: claim for output in outputs for key, claim in output["claims"].items()}
    claimed = [key for key, claim in claims.items() if claim == "claimed"]
    assert len(claimed) == users, "each user name goes to exactly one key"
    assert all(claim in ("claimed", "taken") for claim in claims.values())

    async def check() -> None:
        ledger = ledger_store.make()
        try:
            owners: dict[str, str] = {}
            for key, claim in claims.items():
                entry = await ledger.get(ACCOUNT, key)
                assert entry is not None
                if claim == "claimed":
                    assert entry.state is EntryState.CREATED
                    assert entry.user_name is not None
                    assert entry.user_name not in owners
                    owners[entry.user_name] = key
                else:
                    assert (entry.state, entry.user_name) == (EntryState.UNKNOWN, None)
            assert set(owners) == {f"u{i}" for i in range(users)}
            baseline = await ledger.owned(ACCOUNT, ["base-p1", "base-p2"])
            assert len(baseline) == 1
        finally:
            await ledger.aclose()

    anyio.run(check)
