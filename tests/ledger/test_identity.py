"""Every store's identity for an account: made with its baseline, kept, and told by `begin`."""

from __future__ import annotations

import anyio
import pytest

from sarv_async import Ledger
from sarv_async._ledger import Claim, Decision, account_id
from tests.ledger.conftest import LedgerStore

pytestmark = pytest.mark.anyio

ACCOUNT = account_id("https://api.example.com/v1.0/", "acme")
OTHER = account_id("https://api.example.com/v1.0/", "globex")


async def test_an_account_has_no_identity_before_its_baseline(ledger: Ledger) -> None:
    """A store that never met the account has no identity for it, and begin says none."""
    assert await ledger.identity(ACCOUNT) is None
    begun = await ledger.begin(ACCOUNT, "k", total_limit=1, hourly_limit=1, holder="h", lease=5)
    assert begun.decision is Decision.NEED_BASELINE
    assert begun.identity is None


async def test_the_identity_is_made_with_the_baseline_and_told_by_begin(ledger: Ledger) -> None:
    """Recording the baseline makes an identity; every begin answers with that same one."""
    await ledger.record_baseline(ACCOUNT, ["old"])
    identity = await ledger.identity(ACCOUNT)
    assert identity
    await ledger.record_baseline(ACCOUNT, ["other"])  # recorded once: nothing changes
    assert await ledger.identity(ACCOUNT) == identity
    for holder in ("a", "b"):
        begun = await ledger.begin(
            ACCOUNT, "k", total_limit=1, hourly_limit=1, holder=holder, lease=5
        )
        assert begun.decision in (Decision.SEND, Decision.BUSY)
        assert begun.identity == identity


async def test_each_account_and_each_store_has_its_own_identity(
    ledger_store: LedgerStore, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two accounts of one store differ; a handle on the same store sees the same one."""
    first, second = ledger_store.make(), ledger_store.make()
    try:
        await first.record_baseline(ACCOUNT, [])
        await first.record_baseline(OTHER, [])
        assert await first.identity(ACCOUNT) != await first.identity(OTHER)
        assert await second.identity(ACCOUNT) == await first.identity(ACCOUNT)
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_store_says_whether_its_steps_ever_wait(ledger: Ledger) -> None:
    """Only a ledger in memory is instant (its callers may skip shielding its steps)."""
    assert ledger.instant is (type(ledger).__name__ == "MemoryLedger")


@pytest.mark.slow
async def test_one_caller_at_a_time_takes_the_baseline(ledger: Ledger) -> None:
    """The first taker lists; others are told how long to wait; a lapsed lease passes on."""
    assert await ledger.take_baseline(ACCOUNT, holder="a", lease=1.0) is None
    wait = await ledger.take_baseline(ACCOUNT, holder="b", lease=1.0)
    assert wait is not None
    assert 0 < wait <= 1.0
    assert await ledger.take_baseline(ACCOUNT, holder="a", lease=0.3) is None  # its own
    assert await ledger.take_baseline(OTHER, holder="b", lease=0.3) is None  # per account
    await anyio.sleep(0.35)
    assert await ledger.take_baseline(ACCOUNT, holder="b", lease=0.3) is None


async def test_a_known_user_may_be_claimed_out_of_the_baseline_only(ledger: Ledger) -> None:
    """A caller's record may give a key a baseline user; never a user another key owns."""
    await ledger.record_baseline(ACCOUNT, ["old", "older"])
    for key in ("k", "j"):
        await ledger.begin(ACCOUNT, key, total_limit=1, hourly_limit=1, holder=key, lease=5)
    assert await ledger.claim(ACCOUNT, "k", "old") is Claim.TAKEN  # by shape: never
    await ledger.begin(ACCOUNT, "k", total_limit=1, hourly_limit=1, holder="k2", lease=5)
    assert await ledger.claim(ACCOUNT, "k", "old", known=True) is Claim.CLAIMED
    assert await ledger.claim(ACCOUNT, "j", "old", known=True) is Claim.TAKEN
