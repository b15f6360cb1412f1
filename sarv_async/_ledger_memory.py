"""`MemoryLedger`: a `Ledger` in one process's memory, for a single run with no ledger given.

Provisioning without a configured ledger uses one for the length of the run, so that a
run has one code path: exactly once within the run, nothing across runs or processes.
Every method runs to completion without awaiting, so each is atomic for the event loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection

import attrs

from ._ledger import Begin, Claim, Decision, EntryState, LedgerEntry

__all__ = ["MemoryLedger"]


@attrs.define
class _Record:
    key: str
    total_limit: int
    hourly_limit: int
    fingerprint: str | None
    state: EntryState
    attempts: int
    user_name: str | None = None
    holder: str | None = None
    lease_until: float | None = None
    ended_at: float | None = None

    def entry(self, now: float) -> LedgerEntry:
        return LedgerEntry(
            key=self.key,
            total_limit=self.total_limit,
            hourly_limit=self.hourly_limit,
            state=self.state,
            user_name=self.user_name,
            fingerprint=self.fingerprint,
            holder=self.holder,
            lease_left=None
            if self.holder is None or self.lease_until is None
            else self.lease_until - now,
            ended_ago=None if self.ended_at is None else max(0.0, now - self.ended_at),
            attempts=self.attempts,
        )


@attrs.define
class _Account:
    baseline: set[str] | None = None
    identity: str | None = None
    #: Who lists the account for its baseline, and until when (`Ledger.take_baseline`).
    taker: tuple[str, float] | None = None
    entries: dict[str, _Record] = attrs.Factory(dict)
    owners: dict[str, str] = attrs.Factory(dict)


class MemoryLedger:
    """A `Ledger` held in memory: forgotten when the process ends, invisible to others."""

    #: Every operation completes without waiting.
    instant = True

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}

    def __repr__(self) -> str:
        return f"<MemoryLedger of {len(self._accounts)} accounts>"

    def _account(self, account: str) -> _Account:
        found = self._accounts.get(account)
        if found is None:
            found = self._accounts[account] = _Account()
        return found

    async def record_baseline(self, account: str, user_names: Collection[str]) -> bool:
        found = self._account(account)
        if found.baseline is not None:
            return False
        found.baseline = set(user_names)
        found.identity = os.urandom(8).hex()
        return True

    async def take_baseline(self, account: str, *, holder: str, lease: float) -> float | None:
        found, now = self._account(account), time.monotonic()
        if found.taker is not None and found.taker[0] != holder and found.taker[1] > now:
            return found.taker[1] - now
        found.taker = (holder, now + lease)
        return None

    async def begin(
        self,
        account: str,
        key: str,
        *,
        total_limit: int,
        hourly_limit: int,
        holder: str,
        lease: float,
        fingerprint: str | None = None,
    ) -> Begin:
        now = time.monotonic()
        found = self._account(account)
        record = found.entries.get(key)
        if record is None or record.state is EntryState.FAILED:
            if found.baseline is None:
                return Begin(
                    Decision.NEED_BASELINE,
                    None if record is None else record.entry(now),
                    found.identity,
                )
            attempts = 1 if record is None else record.attempts + 1
            record = found.entries[key] = _Record(
                key,
                total_limit,
                hourly_limit,
                fingerprint,
                EntryState.PENDING,
                attempts,
                holder=holder,
                lease_until=now + lease,
                ended_at=None if record is None else record.ended_at,
            )
            return Begin(Decision.SEND, record.entry(now), found.identity)
        if (record.total_limit, record.hourly_limit, record.fingerprint) != (
            total_limit,
            hourly_limit,
            fingerprint,
        ):
            return Begin(Decision.MISMATCH, record.entry(now), found.identity)
        if record.state is EntryState.CREATED:
            return Begin(Decision.DONE, record.entry(now), found.identity)
        held = record.holder is not None and (record.lease_until or 0) > now
        if held and (record.holder != holder or record.state is EntryState.PENDING):
            return Begin(Decision.BUSY, record.entry(now), found.identity)
        if record.state is EntryState.PENDING:
            assert record.lease_until is not None
            record.ended_at = max(record.ended_at or record.lease_until, record.lease_until)
        record.state = EntryState.UNKNOWN
        record.holder = holder
        record.lease_until = now + lease
        return Begin(Decision.RECONCILE, record.entry(now), found.identity)

    async def renew(self, account: str, key: str, *, holder: str, lease: float) -> bool:
        record = self._account(account).entries.get(key)
        if record is None or record.holder != holder or record.state not in _HELD_STATES:
            return False
        record.lease_until = time.monotonic() + lease
        return True

    async def expire(self, account: str, key: str, *, holder: str) -> bool:
        record = self._account(account).entries.get(key)
        if record is None or record.holder != holder or record.state not in _HELD_STATES:
            return False
        record.state = EntryState.UNKNOWN
        record.holder = record.lease_until = None
        record.ended_at = max(record.ended_at or 0.0, time.monotonic())
        return True

    async def release(self, account: str, key: str, *, holder: str) -> None:
        record = self._account(account).entries.get(key)
        if (
            record is not None
            and record.holder == holder
            and record.state is not EntryState.PENDING
        ):
            record.holder = record.lease_until = None

    async def claim(self, account: str, key: str, user_name: str) -> Claim:
        found = self._account(account)
        record = found.entries.get(key)
        if record is None:
            return Claim.NO_ENTRY
        if record.state is EntryState.CREATED:
            return Claim.CLAIMED if record.user_name == user_name else Claim.SETTLED
        now = time.monotonic()
        if user_name in found.owners or user_name in (found.baseline or ()):
            if record.state is EntryState.PENDING:
                record.state = EntryState.UNKNOWN
                record.holder = record.lease_until = None
                record.ended_at = now
            return Claim.TAKEN
        found.owners[user_name] = key
        record.state = EntryState.CREATED
        record.user_name = user_name
        record.holder = record.lease_until = None
        record.ended_at = now
        return Claim.CLAIMED

    async def mark_unknown(self, account: str, key: str, *, holder: str) -> None:
        record = self._account(account).entries.get(key)
        if record is None or record.state is EntryState.CREATED:
            return
        record.state = EntryState.UNKNOWN
        record.ended_at = max(record.ended_at or 0.0, time.monotonic())
        if record.holder == holder:
            record.holder = record.lease_until = None

    async def mark_failed(self, account: str, key: str, *, holder: str) -> None:
        record = self._account(account).entries.get(key)
        if record is None or record.holder != holder or record.state not in _HELD_STATES:
            return
        record.state = EntryState.FAILED
        record.holder = record.lease_until = None
        record.ended_at = time.monotonic()

    async def resend(self, account: str, key: str, *, holder: str, lease: float) -> bool:
        record = self._account(account).entries.get(key)
        if record is None or record.holder != holder or record.state is not EntryState.UNKNOWN:
            return False
        record.state = EntryState.PENDING
        record.lease_until = time.monotonic() + lease
        record.attempts += 1
        return True

    async def owned(self, account: str, user_names: Collection[str]) -> set[str]:
        found = self._account(account)
        baseline = found.baseline or set()
        return {name for name in user_names if name in found.owners or name in baseline}

    async def get(self, account: str, key: str) -> LedgerEntry | None:
        record = self._account(account).entries.get(key)
        return None if record is None else record.entry(time.monotonic())

    async def identity(self, account: str) -> str | None:
        return self._account(account).identity

    async def aclose(self) -> None:
        """Nothing to release."""


_HELD_STATES = (EntryState.PENDING, EntryState.UNKNOWN)
