"""The exactly-once engine: one idempotency key's life, from `Ledger.begin` to a settled user.

Every create with a ledger runs here, whether one at a time (``create(idempotency_key=)``,
in ``_idempotency.py``) or many (``provision()``, in ``_provision.py``); those drivers only
decide *when* each step runs and where lists come from. For one key (see ``_ledger.py``
for the invariants):

1. `Engine.begin` asks the ledger. The key is sent (`Step.SEND`), is done (`Step.DONE`:
   its user's credentials are read from a list), is held by another caller (`Step.WAIT`:
   begin again later; a holder whose process is gone is expired at once), or its outcome
   is unknown (`Step.SETTLE`: settle it with a list started at least ``settle_delay``
   after its last attempt ended).
2. `Engine.send` sends the create with the key's lease kept by `Leases` and checked by a
   fence before the create leaves (``_fence.py``), then claims the user for the key. A
   lost answer, or a user someone's reconciliation adopted first, makes it `Step.SETTLE`.
3. `Engine.settle` takes a list: it adopts an unowned user with the key's limits, or,
   once the list proves there is none, sends again (at most ``max_rounds`` times).

A key may come with the user the caller's own record already gives it (``known_user``,
e.g. a provisioning output file): if the ledger has none, that user is claimed for it and
nothing is sent.

The engine also watches the store's identity for the account (`Ledger.identity`): if it
changes or vanishes while the engine is in use, the next step raises `LedgerLostError`
instead of starting a fresh record over the lost one. The account is reached only
through `AccountPort`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import anyio
import attrs

from ._checks import DEFAULT_MAX_ROUNDS
from ._exceptions import (
    LedgerError,
    LedgerLostError,
    OutcomeUnknownError,
    SarvError,
    ValidationError,
)
from ._fence import Fence, LeaseLost
from ._holders import holder_is_dead, new_holder
from ._ledger import Begin, Claim, Decision, Ledger, LedgerEntry
from ._models import SmtpCredentials, SmtpUser
from ._requests import CreateSmtpUserRequest

if TYPE_CHECKING:
    from ._list_stream import OnAnswer, OnUsers

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_MAX_ROUNDS",
    "AccountPort",
    "Engine",
    "KeyState",
    "Leases",
    "Next",
    "Step",
]

#: Seconds a holder's claim on a key lasts unless renewed (it is renewed every third of it).
DEFAULT_LEASE = 30.0
_POLL_FIRST = 0.05
_POLL_MAX = 1.0


class AccountPort(Protocol):
    """What the engine needs of the account: send one create, and list its users."""

    async def create(
        self, request: CreateSmtpUserRequest, fence: Fence | None = None
    ) -> SmtpCredentials:
        """Send one create; `OutcomeUnknownError` if it may have taken effect unanswered.

        No attempt leaves once ``fence`` has lapsed (`LeaseLost`; see ``_fence.py``).
        """
        ...

    async def list(self) -> list[SmtpUser]:
        """Every user of the account, with its password."""
        ...

    async def list_in_batches(
        self, on_users: OnUsers, *, on_answer: OnAnswer | None = None
    ) -> None:
        """Every user, handed to ``on_users`` in batches as the answer arrives."""
        ...


class Step(enum.Enum):
    """What a key needs next."""

    #: The caller holds the key for a create: call `Engine.send`.
    SEND = "send"
    #: The key has its user: ``credentials`` (created, or adopted from a list).
    SETTLED = "settled"
    #: The key had its user already (``user_name``): read its credentials from a list.
    DONE = "done"
    #: The outcome is unknown: call `Engine.settle` with a list started at ``at`` or later.
    SETTLE = "settle"
    #: Someone else holds the key: begin again at ``at`` (anyio clock).
    WAIT = "wait"
    #: No user, for certain: ``error`` says why.
    FAILED = "failed"
    #: The ledger has no baseline for the account: `Engine.record_baseline`, then begin.
    NEED_BASELINE = "need_baseline"


@attrs.define  # not frozen: made twice per key, and frozen attrs classes build slower
class Next:
    """A step and what it needs: a time, credentials, a user's name or an error."""

    step: Step
    at: float = 0.0
    credentials: SmtpCredentials | None = None
    user_name: str | None = None
    error: SarvError | None = None
    #: `Step.SETTLED` by a create whose user the ledger could not record (it failed or
    #: was lost meanwhile): the credentials are good, the caller stops after this key.
    ledger_error: LedgerError | None = None
    #: `Step.SETTLED`: adopted from a list rather than answered by a create.
    adopted: bool = False


@attrs.define(eq=False)
class KeyState:
    """One key as a caller handles it."""

    request: CreateSmtpUserRequest
    key: str
    fingerprint: str | None = None
    #: The user the caller's own record gives the key, if any.
    known_user: str | None = None
    #: The argument that named the key, for errors.
    field: str = "idempotency_key"
    holder: str = attrs.field(factory=new_holder)
    #: Until when the lease the ledger last gave ``holder`` surely runs.
    fence: Fence | None = None
    #: Creates sent again after the key was proven absent.
    resends: int = 0
    #: Whether an attempt of this caller lost its answer.
    lost: bool = False
    #: The error that made the outcome unknown, while it is.
    error: SarvError | None = None
    #: How long to wait before asking again about a key someone else holds.
    poll: float = _POLL_FIRST


class Engine:
    """Exactly-once creates through one ledger for one account (see the module docstring)."""

    def __init__(
        self,
        ledger: Ledger,
        account: str,
        *,
        settle_delay: float,
        lease: float = DEFAULT_LEASE,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        location: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.account = account
        self.settle_delay = settle_delay
        self.lease = lease
        self.max_rounds = max_rounds
        #: How messages name the ledger (its path or URL without password).
        self.location = location or repr(ledger)
        self._seen = _Seen()

    def derive(self, *, settle_delay: float, max_rounds: int) -> Engine:
        """The same engine (ledger, account, what it has seen) with other settings."""
        if (settle_delay, max_rounds) == (self.settle_delay, self.max_rounds):
            return self
        copy = object.__new__(Engine)
        copy.__dict__.update(self.__dict__)
        copy.settle_delay, copy.max_rounds = settle_delay, max_rounds
        return copy

    @property
    def identity(self) -> str | None:
        """The store's identity for the account, once seen (another later means it was lost)."""
        return self._seen.identity

    # -- the store's identity and the baseline -----------------------------------------

    def error(self, message: str) -> LedgerError:
        """A `LedgerError` saying ``message``, naming the ledger."""
        return LedgerError(f"{message} (ledger {self.location})")

    def _lost(self, what: str) -> LedgerLostError:
        return LedgerLostError(
            f"the ledger {self.location} {what} while in use: it no longer holds the keys "
            "begun in it, so nothing more is created (see docs/idempotency.md on "
            "recovering from a lost ledger)"
        )

    def _check(self, begun: Begin) -> Begin:
        """``begun``, after checking that the store is the one seen before."""
        seen = self._seen
        if begun.decision is Decision.NEED_BASELINE:
            if seen.identity is not None:
                raise self._lost("lost its record of the account")
        elif begun.identity is not None:
            if seen.identity is None:
                seen.identity = begun.identity
            elif begun.identity != seen.identity:
                raise self._lost("was replaced")
        return begun

    async def record_baseline(
        self, port: AccountPort, names: Collection[str] | None = None
    ) -> bool:
        """Record the account's users as the baseline unless it has one; True if recorded.

        ``names`` (a list the caller took) or else one list: however many callers ask at
        once, in this process or others sharing the ledger, one of them lists and the
        others wait for it (`Ledger.take_baseline`). A store that lost the baseline it had
        is `LedgerLostError`, never a fresh start.
        """
        seen = self._seen
        if seen.lock is None:
            seen.lock = anyio.Lock()
        async with seen.lock:
            holder = new_holder()
            while True:
                current = await self.ledger.identity(self.account)
                if seen.identity is not None:
                    if current is None:
                        raise self._lost("lost its record of the account")
                    if current != seen.identity:
                        raise self._lost("was replaced")
                    return False
                if current is not None:
                    seen.identity = current
                    return False
                if names is None:
                    wait = await self.ledger.take_baseline(
                        self.account, holder=holder, lease=self.lease
                    )
                    if wait is not None:  # another process lists it now
                        await anyio.sleep(min(max(wait, 0.0), _POLL_MAX))
                        continue
                    names = [user.smtp_user_name for user in await port.list()]
                recorded = await self.ledger.record_baseline(self.account, names)
                seen.identity = await self.ledger.identity(self.account)
                return recorded

    # -- one key's steps -------------------------------------------------------------

    async def _begin(self, state: KeyState) -> tuple[Begin, float]:
        """The ledger's `begin` for ``state``, and the anyio time it was asked."""
        request = state.request
        asked = anyio.current_time()
        begun = await self.ledger.begin(
            self.account,
            state.key,
            total_limit=request.total_limit,
            hourly_limit=request.hourly_limit,
            holder=state.holder,
            lease=self.lease,
            fingerprint=state.fingerprint,
        )
        return self._check(begun), asked

    async def begin(self, state: KeyState) -> Next:
        """Take the key for an attempt, or say what it needs first."""
        begun, asked = await self._begin(state)
        entry = begun.entry
        if begun.decision is Decision.NEED_BASELINE:
            return Next(Step.NEED_BASELINE)
        assert entry is not None
        if begun.decision is Decision.SEND:
            state.fence = Fence(asked + self.lease)
            if state.known_user is not None:
                return await self._enter_known(state)
            return Next(Step.SEND)
        # Read after the ledger answered: `settled_at` then errs late, never early.
        now = anyio.current_time()
        if begun.decision is Decision.RECONCILE:
            if state.known_user is not None:
                return await self._enter_known(state)
            # Settled from a list, begun again then: nobody need hold it meanwhile.
            await self.ledger.release(self.account, state.key, holder=state.holder)
            return Next(Step.SETTLE, at=self.settled_at(entry, now))
        return await self._not_ours(state, begun, entry, now)

    async def _not_ours(
        self, state: KeyState, begun: Begin, entry: LedgerEntry, now: float
    ) -> Next:
        """What a key that ``begin`` did not give the caller needs (done, busy, mismatch)."""
        if begun.decision is Decision.DONE:
            assert entry.user_name is not None
            if state.known_user not in (None, entry.user_name):
                return Next(Step.FAILED, error=self._contradiction(state, entry.user_name))
            return Next(Step.DONE, user_name=entry.user_name)
        if begun.decision is Decision.MISMATCH:
            return Next(Step.FAILED, error=self._mismatch(state, entry))
        # BUSY
        if holder_is_dead(entry.holder):  # a killed earlier run's: end its hold, ask again
            assert entry.holder is not None
            await self.ledger.expire(self.account, state.key, holder=entry.holder)
            return await self.begin(state)
        left = entry.lease_left if entry.lease_left is not None else state.poll
        wait = max(0.0, min(state.poll, left + 0.01))
        state.poll = min(state.poll * 2, _POLL_MAX)
        return Next(Step.WAIT, at=now + wait)

    async def send(
        self,
        state: KeyState,
        port: AccountPort,
        leases: Leases,
        slots: anyio.Semaphore | None = None,
    ) -> Next:
        """Send the create the ledger gave ``state``'s holder; claim its user for the key.

        ``slots`` bounds the creates in flight, when the caller bounds them.
        """
        ledger, account, key, holder = self.ledger, self.account, state.key, state.holder
        leases.add(state)  # its lease renewed (and fence extended) while in flight
        try:
            if slots is None:
                creds = await port.create(state.request, state.fence)
            else:
                async with slots:
                    creds = await port.create(state.request, state.fence)
        except LeaseLost:
            # Frozen past the lease before the create left: nothing was sent. The key is
            # settled like a lost answer (someone may have made its user meanwhile).
            return Next(Step.SETTLE, at=anyio.current_time() + self.settle_delay)
        except OutcomeUnknownError as exc:
            with anyio.CancelScope(shield=True):
                await ledger.mark_unknown(account, key, holder=holder)
            state.error = exc
            state.lost = True
            return Next(Step.SETTLE, at=anyio.current_time() + self.settle_delay)
        except SarvError as exc:
            with anyio.CancelScope(shield=True):
                await ledger.mark_failed(account, key, holder=holder)
            return Next(Step.FAILED, error=exc)
        except BaseException:
            # Cancelled (or worse) while the create may have been on its way.
            with anyio.CancelScope(shield=True):
                await ledger.mark_unknown(account, key, holder=holder)
            raise
        finally:
            leases.discard(state)
        try:
            if ledger.instant:  # its steps never suspend: nothing can cancel this one
                claim = await ledger.claim(account, key, creds.smtp_user_name)
            else:  # the user exists: record it whatever happens
                with anyio.CancelScope(shield=True):
                    claim = await ledger.claim(account, key, creds.smtp_user_name)
        except LedgerError as exc:
            # The user exists and its password is here: hand it over, then stop.
            return Next(Step.SETTLED, credentials=creds, ledger_error=exc)
        if claim is Claim.CLAIMED:
            return Next(Step.SETTLED, credentials=creds)
        if claim is Claim.NO_ENTRY:
            lost = self._lost(f"lost idempotency key {key!r} while its create was in flight")
            return Next(Step.SETTLED, credentials=creds, ledger_error=lost)
        # TAKEN: someone's reconciliation adopted this user first, and the key is unknown
        # now. SETTLED: the key had another user by then. Either way, settle from a list.
        state.lost = True
        return Next(Step.SETTLE, at=anyio.current_time() + self.settle_delay)

    async def settle(
        self, state: KeyState, users: list[SmtpUser], owned: set[str], started: float
    ) -> Next:
        """Settle the key with a list of the account started at ``started`` (anyio clock).

        ``owned`` are the listed users the ledger said are owned (added to as users are
        claimed here, so one list serves many keys).
        """
        ledger, account, request = self.ledger, self.account, state.request
        begun, asked = await self._begin(state)
        entry = begun.entry
        now = anyio.current_time()
        if begun.decision is Decision.NEED_BASELINE or entry is None:  # pragma: no cover
            return Next(Step.WAIT, at=now)
        if begun.decision is Decision.SEND:  # it had failed for certain meanwhile
            state.fence = Fence(asked + self.lease)
            if state.known_user is not None:
                return await self._enter_known(state)
            return Next(Step.SEND)
        if begun.decision is not Decision.RECONCILE:
            return await self._not_ours(state, begun, entry, now)
        if state.known_user is not None:
            return await self._enter_known(state)
        # This list proves absence only if started settle_delay after the attempt ended.
        settled_at = self.settled_at(entry, asked)
        if started < settled_at:
            await ledger.release(account, state.key, holder=state.holder)
            return Next(Step.SETTLE, at=settled_at)
        limits = (request.total_limit, request.hourly_limit)
        free = [
            user
            for user in users
            if (user.total_limit, user.hourly_limit) == limits and user.smtp_user_name not in owned
        ]
        for user in free:
            claim = await ledger.claim(account, state.key, user.smtp_user_name)
            owned.add(user.smtp_user_name)
            if claim is Claim.CLAIMED:
                creds = SmtpCredentials(
                    user.smtp_user_name, user.smtp_password, "adopted from list"
                )
                return Next(Step.SETTLED, credentials=creds, adopted=True)
            if claim is not Claim.TAKEN:  # settled meanwhile (a late answer): begin again
                return Next(Step.WAIT, at=now)
        if free:  # every candidate was taken by someone else first: list again
            await ledger.release(account, state.key, holder=state.holder)
            return Next(Step.SETTLE, at=now)
        # Proven absent.
        if state.resends >= self.max_rounds:
            await ledger.mark_failed(account, state.key, holder=state.holder)
            return Next(Step.FAILED, error=self._gave_up(state))
        resent_at = anyio.current_time()
        if not await ledger.resend(account, state.key, holder=state.holder, lease=self.lease):
            return Next(Step.WAIT, at=now)
        state.fence = Fence(resent_at + self.lease)
        state.resends += 1
        return Next(Step.SEND)

    def settled_at(self, entry: LedgerEntry, asked: float) -> float:
        """When a list may first prove the entry's last attempt absent (anyio clock).

        ``asked`` is a moment next to the ledger call whose answer ``entry`` is: read
        before the call (the store measured ``ended_ago`` a moment later), the answer
        errs early by at most one ledger call, far below any settle delay; read after
        it, late by as much. It keeps two clocks from ever being compared.
        """
        return asked - (entry.ended_ago or 0.0) + self.settle_delay

    async def _enter_known(self, state: KeyState) -> Next:
        """Claim the user the caller's record gives the key, which the ledger held for it."""
        assert state.known_user is not None
        claim = await self.ledger.claim(self.account, state.key, state.known_user, known=True)
        if claim is Claim.CLAIMED:
            return Next(Step.DONE, user_name=state.known_user)
        if claim is Claim.NO_ENTRY:
            raise self._lost(f"lost idempotency key {state.key!r}")
        with anyio.CancelScope(shield=True):
            await self.ledger.mark_failed(self.account, state.key, holder=state.holder)
        owner = "another key" if claim is Claim.TAKEN else "nobody"
        return Next(
            Step.FAILED,
            error=self.error(
                f"idempotency key {state.key!r}: your record gives it SMTP user "
                f"{state.known_user}, which the ledger gives to {owner}; nothing was sent"
            ),
        )

    def _contradiction(self, state: KeyState, user_name: str) -> LedgerError:
        return self.error(
            f"idempotency key {state.key!r}: your record gives it SMTP user "
            f"{state.known_user}, the ledger gives it {user_name}; nothing was sent"
        )

    def _mismatch(self, state: KeyState, entry: LedgerEntry) -> ValidationError:
        """The error for a key given again with other limits (or other content)."""
        request = state.request
        if (entry.total_limit, entry.hourly_limit) == (request.total_limit, request.hourly_limit):
            what = "for other content" if entry.fingerprint != state.fingerprint else "otherwise"
        else:
            what = f"with total_limit={entry.total_limit}, hourly_limit={entry.hourly_limit}"
        return ValidationError(
            f"idempotency key {state.key!r} was already used {what}; a key stands for one user",
            field=state.field,
        )

    def _gave_up(self, state: KeyState) -> SarvError:
        """Why a key proven absent after ``max_rounds`` resends failed."""
        cause = state.error.__cause__ if state.error is not None else None
        if isinstance(cause, SarvError):
            return cause
        return self.error(
            f"idempotency key {state.key!r}: no user was created after "
            f"{state.resends + 1} attempts whose answers were lost; giving up"
        )


@attrs.define
class _Seen:
    """What an engine and its `Engine.derive` copies have seen of the store."""

    identity: str | None = None
    #: Held by the one caller listing the account for its baseline (made in a loop).
    lock: anyio.Lock | None = None


class Leases:
    """Keeps the leases of the keys being sent: one renewal per key every third of a lease.

    One task renews every key added, so a live but slow create (a long wait
    for the rate limiter, a 429 pause) never loses its key to another caller, and each
    renewal extends the key's fence. Run it with `renewing`.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._held: dict[str, KeyState] = {}

    def add(self, state: KeyState) -> None:
        """Renew ``state``'s lease from now on."""
        self._held[state.key] = state

    def discard(self, state: KeyState) -> None:
        """Stop renewing ``state``'s lease."""
        self._held.pop(state.key, None)

    async def run(self) -> None:
        """Renew every held lease, every third of the lease, until cancelled."""
        engine = self._engine
        while True:
            await anyio.sleep(engine.lease / 3)
            for key, state in list(self._held.items()):
                asked = anyio.current_time()
                renewed = await engine.ledger.renew(
                    engine.account, key, holder=state.holder, lease=engine.lease
                )
                if renewed and state.fence is not None:
                    state.fence.extend(asked, engine.lease)


@asynccontextmanager
async def renewing(engine: Engine) -> AsyncIterator[Leases]:
    """`Leases` renewed for the length of the block; what the block raises, raised as itself."""
    leases = Leases(engine)
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(leases.run)
        try:
            yield leases
        except Exception as exc:  # not wrapped in the task group's exception group
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
