"""The ledger: a durable record of every SMTP-user create, so each happens exactly once.

The API has no idempotency key. The ledger is one, kept client-side: an *entry* per
idempotency key, per account, saying whether a create for it may be in flight, its user,
or that its outcome is unknown; and per account a *baseline*, the users that existed when
the ledger first met it (never adopted by anyone). It holds no password and no token.

Users with the same limits are interchangeable, so "exactly once" means, per account:

1. each key gets at most one user, and each user is owned by at most one key, or is in
   the baseline (`Ledger.claim` is the one place a user becomes owned);
2. a create is sent for a key only by the caller that `Ledger.begin` (or `Ledger.resend`)
   gave it to, while no other create for that key may be in flight, and
3. a key whose attempt may have created a user (state `UNKNOWN`) is sent again only once a
   list, started at least a settle delay after that attempt ended, shows no unowned user
   with its limits (the SDK's reconciliation, in the engine: ``_engine.py``).

So users created equals keys settled, whatever crashes, reruns and processes do, provided
every create on the account goes through a ledger.

Every method is **one atomic operation of the store** (a SQLite transaction, one Redis
Lua script): no method's effect is ever seen half-done, and two callers racing on one key
or one user name are serialized by the store. Times are durations (``lease``,
``lease_left``, ``ended_ago``) so that no two hosts' clocks are compared; each store
measures them with its own clock.

Entry states::

    (no entry) --begin: SEND--> PENDING --claim--> CREATED
                                   |  \\--mark_failed--> FAILED --begin: SEND--> PENDING
                                   |--mark_unknown, or claim of an owned user--> UNKNOWN
                                   |--expire (its holder is known dead)--> UNKNOWN
                                   \\--lease expired; begin: RECONCILE--> UNKNOWN
    UNKNOWN --claim (adopt)--> CREATED
    UNKNOWN --resend (proven absent, by its holder)--> PENDING
    UNKNOWN --mark_failed (proven absent, by its holder)--> FAILED
"""

from __future__ import annotations

import enum
import os
from collections.abc import Collection
from typing import Protocol, runtime_checkable

import attrs

from ._account import account_id

__all__ = [
    "Begin",
    "Claim",
    "Decision",
    "EntryState",
    "Ledger",
    "LedgerEntry",
    "account_id",
    "open_ledger",
]


class EntryState(enum.StrEnum):
    """Where an idempotency key is."""

    #: A create for the key may be in flight; its holder's lease says for how long.
    PENDING = "pending"
    #: The key has its user (``user_name``): created, or adopted from a list.
    CREATED = "created"
    #: An attempt ended without an answer: a user may exist for the key. Reconcile it.
    UNKNOWN = "unknown"
    #: The last attempt failed for certain: no user was created. The key may be begun anew.
    FAILED = "failed"


class Decision(enum.StrEnum):
    """What `Ledger.begin` tells its caller to do."""

    #: The caller holds the key, now `PENDING`: send the create (renewing the lease).
    SEND = "send"
    #: The caller holds the key, which is `UNKNOWN`: reconcile before any create is sent.
    RECONCILE = "reconcile"
    #: The key has its user, ``entry.user_name``: send nothing.
    DONE = "done"
    #: Another caller holds the key: ask again, within ``entry.lease_left`` seconds.
    BUSY = "busy"
    #: The key was given other limits (or another fingerprint): nothing changed.
    MISMATCH = "mismatch"
    #: The account has no baseline yet: list it, `Ledger.record_baseline`, begin again.
    NEED_BASELINE = "need_baseline"


class Claim(enum.StrEnum):
    """What `Ledger.claim` did."""

    #: The user is now the key's (or already was): the key is `CREATED`.
    CLAIMED = "claimed"
    #: The user is in the baseline or owned by another key: nothing claimed; the key, if
    #: it was `PENDING`, is now `UNKNOWN` (its attempt ended now, nobody holds it), to be
    #: reconciled like a lost answer.
    TAKEN = "taken"
    #: The key already has another user: nothing changed.
    SETTLED = "settled"
    #: The ledger has no entry for the key: nothing changed.
    NO_ENTRY = "no_entry"


@attrs.frozen
class LedgerEntry:
    """One idempotency key's record, as the store saw it during the operation."""

    key: str
    total_limit: int
    hourly_limit: int
    state: EntryState
    #: The key's user, once `CREATED`.
    user_name: str | None = None
    #: An optional digest of what the key stands for (e.g. a CSV row), compared by `begin`.
    fingerprint: str | None = None
    #: Who holds the key (an opaque id per attempt), while someone does.
    holder: str | None = None
    #: Seconds until the holder's lease runs out (``None`` when nobody holds the key).
    lease_left: float | None = None
    #: Seconds since the key's last attempt ended (``None`` if none has ended).
    ended_ago: float | None = None
    #: Creates sent for the key so far (begun or resent).
    attempts: int = 0


@attrs.frozen
class Begin:
    """`Ledger.begin`'s answer: what to do, and the entry as it is now."""

    decision: Decision
    #: ``None`` only for `Decision.NEED_BASELINE` on a key the ledger has never seen.
    entry: LedgerEntry | None
    #: The store's identity for the account as of this call (see `Ledger.identity`);
    #: ``None`` if it has no baseline for the account (or does not say).
    identity: str | None = None


@runtime_checkable
class Ledger(Protocol):
    """A durable, shared record of creates per account; every method is one atomic step.

    ``account`` is `account_id` of the client's base URL and owner id; ``key`` any
    non-empty string; ``holder`` an opaque id unique to one attempt; ``lease`` seconds.
    A ledger is safe to share between tasks, threads and processes (and, for the stores
    that say so, hosts). Implementations: `SqliteLedger` (one host); `RedisLedger` (many hosts).

    Each store has an *identity* per account, a random id made when the account's
    baseline is recorded (`identity`, and `Begin.identity` with every `begin`), so that
    its users notice when the record they began keys in is gone: a store emptied,
    restarted without persistence, deleted or replaced answers with another identity,
    or none, and the SDK raises `LedgerLostError` instead of starting afresh.
    """

    #: True if every operation completes without waiting (a ledger in memory): its
    #: callers may skip what only guards against a wait (shielding, extra workers).
    instant: bool

    async def record_baseline(self, account: str, user_names: Collection[str]) -> bool:
        """Record the account's existing users, once: True if recorded now.

        The first call for an account wins; later calls change nothing and return False.
        Call it with a list taken before any create was begun for the account.
        """
        ...

    async def take_baseline(self, account: str, *, holder: str, lease: float) -> float | None:
        """Ask to be the one caller that lists the account for its baseline.

        None: ``holder`` is, for ``lease`` seconds (list the account, then
        `record_baseline`). Otherwise the seconds until the current taker's lease runs
        out: wait (at most that long) and look again, so that however many callers and
        processes meet an account without a baseline at once, one of them lists it.
        """
        ...

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
        """Take ``key`` for an attempt, or say why not (see `Decision`).

        - no entry, or `FAILED`: `NEED_BASELINE` if the account has no baseline;
          otherwise the entry is (re)written with these limits and fingerprint,
          `PENDING`, held by ``holder`` for ``lease`` seconds: `SEND`.
        - other limits or fingerprint than the entry's: `MISMATCH`.
        - `CREATED`: `DONE`.
        - held by another holder whose lease is running: `BUSY`.
        - `PENDING` held by ``holder`` itself: `BUSY` (never two sends for one attempt).
        - `UNKNOWN`, or `PENDING` whose lease ran out (its attempt is taken to have
          ended when the lease ran out): `UNKNOWN`, held by ``holder``: `RECONCILE`.
        """
        ...

    async def renew(self, account: str, key: str, *, holder: str, lease: float) -> bool:
        """Extend ``holder``'s lease on ``key`` to ``lease`` seconds from now; False if not held."""
        ...

    async def expire(self, account: str, key: str, *, holder: str) -> bool:
        """``holder`` is known to be dead (its process is gone): end its hold now.

        As if its lease ran out now: a `PENDING` key becomes `UNKNOWN` with its attempt
        ended now, and nobody holds the key (an `UNKNOWN` one is simply let go). True if
        ``holder`` held the key; False, and nothing changed, otherwise.
        """
        ...

    async def release(self, account: str, key: str, *, holder: str) -> None:
        """Let go of ``key`` if ``holder`` holds it and it is not `PENDING`."""
        ...

    async def claim(self, account: str, key: str, user_name: str) -> Claim:
        """Make ``user_name`` the key's user, atomically unique per account (see `Claim`).

        Any caller may claim, holder or not: the create's own answer, or a reconciling
        list adopting a user. On `Claim.CLAIMED` the key is `CREATED` and nobody holds it.
        """
        ...

    async def mark_unknown(self, account: str, key: str, *, holder: str) -> None:
        """``holder``'s attempt ended with no answer: a `PENDING` key becomes `UNKNOWN`.

        The key's last attempt is recorded as ended now (whoever holds it), and
        ``holder`` lets go of it.
        """
        ...

    async def mark_failed(self, account: str, key: str, *, holder: str) -> None:
        """No user was created for ``key``: if ``holder`` holds it, it becomes `FAILED`.

        For a `PENDING` key: its create failed for certain. For an `UNKNOWN` key: its
        holder proved by listing that no user was created and gives up.
        """
        ...

    async def resend(self, account: str, key: str, *, holder: str, lease: float) -> bool:
        """``holder`` proved the `UNKNOWN` key has no user: make it `PENDING` for a new send.

        True if ``holder`` held the key and it was `UNKNOWN` (the lease is renewed and
        ``attempts`` counts one more); False otherwise, and nothing changed.
        """
        ...

    async def owned(self, account: str, user_names: Collection[str]) -> set[str]:
        """Which of ``user_names`` are in the baseline or owned by a key."""
        ...

    async def get(self, account: str, key: str) -> LedgerEntry | None:
        """The entry for ``key``, if any."""
        ...

    async def identity(self, account: str) -> str | None:
        """The store's identity for the account: made with its baseline, None before."""
        ...

    async def aclose(self) -> None:
        """Release the ledger's connections; it may not be used afterwards."""
        ...


def open_ledger(ledger: object) -> Ledger:
    """A ledger object as given, the Redis ledger at a ``redis://`` (``rediss://``,
    ``unix://``) URL, or the SQLite ledger at a path (`ValidationError` otherwise)."""
    if isinstance(ledger, str) and ledger.startswith(("redis://", "rediss://", "unix://")):
        from ._ledger_redis import RedisLedger

        return RedisLedger(ledger)
    if isinstance(ledger, (str, os.PathLike)):
        from ._ledger_sqlite import SqliteLedger

        return SqliteLedger(ledger)
    if not isinstance(ledger, Ledger):
        from ._exceptions import ValidationError

        raise ValidationError(
            f"ledger must be a path or a Ledger, not a {type(ledger).__name__}", field="ledger"
        )
    return ledger
