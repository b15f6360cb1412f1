"""Bulk provisioning: create many SMTP users concurrently, exactly once, losing nothing.

Every spec has an idempotency key: its ``key`` field when given, else the run's ``run_id``
and its position. Each create goes through a ledger (the client's, or one in memory for
this run alone; see ``_ledger.py`` for the invariants). How a run goes:

1. List the account (one call); record its users as the ledger's baseline if it has none.
2. Workers take specs in order and `Ledger.begin` each key: a key already done is read
   back from the list (`ProvisionOutcome.EXISTING`); a free key is sent, its lease
   renewed while in flight, and its user claimed; a definite failure is `FAILED`.
3. A key whose outcome is unknown (a lost answer, a user someone else adopted first, a
   crashed earlier run, another process holding it) is set aside. While the workers go
   on, a reconciler lists the account once at least ``settle_delay`` has passed since such
   attempts ended, adopts an unowned user with the same limits for each, and sends again
   those proven absent (at most ``max_rounds`` times; then they fail with the error that
   lost them). If the account cannot be listed (three tries in a row) once every create
   has ended, what is still set aside ends `UNKNOWN`: the ledger keeps it, and a rerun
   settles it.
4. A last list finds the *orphans*: new users that no ledger entry owns.

The one assumption: every create on the account goes through a ledger shared by all who
create there (with no ledger configured: nobody else creates users during the run).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
    Sized,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._exceptions import (
    AuthenticationError,
    LedgerError,
    OutcomeUnknownError,
    SarvError,
    ValidationError,
)
from ._fence import Fence, LeaseLost, fenced
from ._idempotency import (
    LedgerCreates,
    check_key,
    free_users,
    holder_is_dead,
    mismatch_error,
    new_holder,
)
from ._ledger import Claim, Decision, LedgerEntry, account_id
from ._ledger_memory import MemoryLedger
from ._logging import logger
from ._models import SmtpCredentials, SmtpUser
from ._requests import CreateSmtpUserRequest

if TYPE_CHECKING:
    from ._client import AsyncSarvClient

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_SETTLE_DELAY",
    "AnyProvisionResult",
    "NotProvisioned",
    "ProgressCallback",
    "ProvisionOutcome",
    "ProvisionResult",
    "ProvisionSpec",
    "ProvisionSummary",
    "Provisioned",
    "Provisioning",
]

#: A spec: a `CreateSmtpUserRequest`, or a mapping with ``total_limit`` and ``hourly_limit``
#: (and optionally ``key``, its idempotency key, and ``fingerprint``, a digest of what else
#: it stands for: the same key with another fingerprint is refused).
ProvisionSpec: TypeAlias = CreateSmtpUserRequest | Mapping[str, Any]
#: Called as ``progress(done, failed, total)`` after each result; ``total`` is None if unknown.
ProgressCallback: TypeAlias = Callable[[int, int, "int | None"], None]

#: How many times specs proven not created are created again.
DEFAULT_MAX_ROUNDS = 3
#: Seconds to wait before a reconciling list, so that a create the server was still
#: processing when the client gave up on it has landed by then.
DEFAULT_SETTLE_DELAY = 5.0
#: Reconciling lists tried in a row, once every create has ended, before giving up.
_LIST_TRIES = 3


class ProvisionOutcome(enum.StrEnum):
    """How a spec ended."""

    #: A create call returned the user's credentials.
    CREATED = "created"
    #: The create's answer was lost; the user was found by listing and adopted.
    ADOPTED = "adopted"
    #: The spec's key had its user already (an earlier run, another process); its
    #: credentials were read with the list call. Nothing was sent.
    EXISTING = "existing"
    #: No user was created for the spec; ``error`` says why.
    FAILED = "failed"
    #: A user may exist for the spec: its create's answer was lost and the account could
    #: not be listed to find out. ``error`` is the `OutcomeUnknownError`. The ledger keeps
    #: the key: running the same provisioning again settles it.
    UNKNOWN = "unknown"


@attrs.frozen
class ProvisionResult:
    """What became of one spec: credentials, or a definite error."""

    #: The spec's position in the input, from 0.
    index: int
    #: The input spec, as given.
    spec: ProvisionSpec
    outcome: ProvisionOutcome
    credentials: SmtpCredentials | None = None
    error: SarvError | None = None
    #: The spec's idempotency key (``None`` if the spec itself was invalid).
    key: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the spec has its user and credentials."""
        return self.credentials is not None


class Provisioned(ProvisionResult):
    """A result with credentials: the spec was ``created``, ``adopted`` or ``existing``.

    A run yields `Provisioned` or `NotProvisioned`, so ``if result.ok:`` tells a type
    checker that ``result.credentials`` is set (and otherwise that ``result.error`` is).
    """

    __slots__ = ()
    credentials: SmtpCredentials
    error: None

    @property
    def ok(self) -> Literal[True]:
        """Always true: the spec has its user and credentials."""
        return True


class NotProvisioned(ProvisionResult):
    """A result without credentials: the spec ``failed``, or its outcome is ``unknown``."""

    __slots__ = ()
    credentials: None
    error: SarvError

    @property
    def ok(self) -> Literal[False]:
        """Always false: ``error`` says why there are no credentials."""
        return False


#: What a run yields: ``if result.ok:`` narrows it to `Provisioned`.
AnyProvisionResult: TypeAlias = Provisioned | NotProvisioned


@attrs.frozen
class ProvisionSummary:
    """Counts for a whole run, and the new users no spec explains."""

    total: int
    created: int
    adopted: int
    failed: int
    #: Specs whose user may or may not exist (the account could not be listed to settle them).
    unknown: int
    #: New users on the account that no ledger entry accounts for.
    orphans: tuple[SmtpUser, ...]
    #: False when the final list call failed, so ``orphans`` could not be looked for.
    orphans_checked: bool
    #: Reconciling list calls made (0 when no outcome was ever unknown).
    rounds: int
    #: Specs whose key had its user before (nothing sent for them).
    existing: int = 0


@attrs.define
class _Spec:
    """A valid spec and its key, as the run handles it."""

    index: int
    spec: ProvisionSpec
    request: CreateSmtpUserRequest
    key: str
    fingerprint: str | None
    holder: str = attrs.field(factory=new_holder)
    #: The error that made the outcome unknown, while it is; the definite cause after.
    error: SarvError | None = None
    #: When (anyio clock) the reconciler may next look at it.
    ready_at: float = 0.0
    #: Creates sent again after it was proven absent.
    resends: int = 0
    #: Whether an attempt of this run lost its answer (adopted, not existing, if settled).
    lost: bool = False
    #: Until when the lease the ledger last gave ``holder`` surely runs (``_fence.py``).
    fence: Fence | None = None


class Provisioning:
    """A running bulk provisioning: ``async with`` it, then ``async for`` its results.

    ::

        async with client.smtp_users.provision(specs) as run:
            async for result in run:
                ...
        print(run.summary)

    Results stream as they become definite, so memory stays flat however many specs
    there are. Leaving the block early cancels the run; nothing already created is lost
    from the account (nor from the ledger), but unread results are.
    """

    def __init__(
        self,
        client: AsyncSarvClient,
        specs: Iterable[ProvisionSpec] | AsyncIterable[ProvisionSpec],
        *,
        concurrency: int | None,
        progress: ProgressCallback | None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        settle_delay: float | None = None,
        run_id: str | None = None,
    ) -> None:
        if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
            raise ValidationError(
                f"concurrency must be a positive integer, got {concurrency!r}", field="concurrency"
            )
        self._client = client
        self._specs = specs
        self._workers = concurrency or client._shared.pipeline.max_concurrency
        # Creates in flight are bounded by ``concurrency`` (see `_create_all` for the
        # workers). No checkpoint when a slot is free: the create right after it awaits.
        self._calls = anyio.Semaphore(self._workers, fast_acquire=True)
        self._progress = progress
        if type(max_rounds) is not int or max_rounds < 0:
            raise ValidationError(
                f"max_rounds must be a non-negative integer, got {max_rounds!r}",
                field="max_rounds",
            )
        self._max_rounds = max_rounds
        if settle_delay is None:
            settle_delay = client.settle_delay
        if (
            isinstance(settle_delay, bool)
            or not isinstance(settle_delay, (int, float))
            or not (0 <= settle_delay < float("inf"))
        ):
            raise ValidationError(
                f"settle_delay must be non-negative seconds, got {settle_delay!r}",
                field="settle_delay",
            )
        self._settle_delay = float(settle_delay)
        self._run_id = f"run:{uuid.uuid4().hex}" if run_id is None else check_key(run_id, "run_id")
        creates = client._shared.creates
        if creates is None:  # exactly once within this run, in memory
            account = account_id(str(client.base_url), client.owner_id)
            creates = LedgerCreates(client, MemoryLedger(), account, settle_delay=settle_delay)
        self._creates = creates.using(client)
        self._ledger = creates.ledger
        # Exactly a `MemoryLedger` (not a subclass): its steps never suspend.
        self._memory = type(self._ledger) is MemoryLedger
        self._account = creates.account
        self._lease = creates.lease
        self._total: int | None = len(specs) if isinstance(specs, Sized) else None
        self._counts = {outcome: 0 for outcome in ProvisionOutcome}
        self._snapshot: set[str] = set()
        self._users: dict[str, SmtpUser] = {}
        self._pending: list[_Spec] = []
        self._wake = anyio.Event()
        self._reconciled = anyio.Event()
        self._in_flight: dict[str, _Spec] = {}
        self._sending = 0
        self._creating = True
        self._orphans: tuple[SmtpUser, ...] = ()
        self._orphans_checked = True
        self._rounds = 0
        self._auth_failure: AuthenticationError | None = None
        self._failure: SarvError | None = None
        self._summary: ProvisionSummary | None = None
        self._task_group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[AnyProvisionResult] | None = None
        self._send_stream: MemoryObjectSendStream[AnyProvisionResult] | None = None

    @property
    def run_id(self) -> str:
        """The prefix of the keys of specs that have no ``key`` of their own."""
        return self._run_id

    @property
    def summary(self) -> ProvisionSummary:
        """The run's counts and orphans; available once every result has been read.

        Raises the run's error if it could not start (its first list call failed).
        """
        if self._failure is not None:
            raise self._failure
        if self._summary is None:
            raise RuntimeError("the run is not finished: read every result first")
        return self._summary

    async def __aenter__(self) -> Provisioning:
        send, receive = anyio.create_memory_object_stream[AnyProvisionResult](self._workers)
        self._receive = receive
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._run, send)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        assert self._receive is not None
        if exc is not None or self._summary is None:
            self._task_group.cancel_scope.cancel()
        self._receive.close()
        try:
            await self._task_group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The task group is an implementation detail: raise what went wrong as itself.
            errors = _leaves(group)
            if exc is not None and all(error is exc for error in errors):
                return None  # the block's own exception propagates unwrapped
            if len(errors) == 1:
                raise errors[0] from None
            raise
        if self._failure is not None and exc is None:
            raise self._failure
        return None

    def __aiter__(self) -> AsyncIterator[AnyProvisionResult]:
        if self._receive is None:
            raise RuntimeError("use 'async with client.smtp_users.provision(...) as run'")
        return _Results(self._receive)

    async def complete(self) -> ProvisionSummary:
        """Read every result, dropping them, and return the summary."""
        async for _ in self:
            pass
        return self.summary

    # -- the run -------------------------------------------------------------------

    async def _run(self, send: MemoryObjectSendStream[AnyProvisionResult]) -> None:
        async with send:
            self._send_stream = send
            try:
                before = await self._client.smtp_users.list()
            except SarvError as exc:
                # Without a snapshot nothing could be reconciled: do not create anything.
                self._failure = exc
                return
            self._snapshot = {user.smtp_user_name for user in before}
            self._users = {user.smtp_user_name: user for user in before}
            await self._ledger.record_baseline(self._account, self._snapshot)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._reconcile, tg)
                renewer = anyio.CancelScope()
                tg.start_soon(self._renew, renewer)
                try:
                    await self._create_all()
                finally:
                    self._creating = False
                    self._wake.set()
                await self._reconciled.wait()
                renewer.cancel()
            if self._orphans_checked:
                await self._find_orphans()
            self._summary = ProvisionSummary(
                total=sum(self._counts.values()),
                created=self._counts[ProvisionOutcome.CREATED],
                adopted=self._counts[ProvisionOutcome.ADOPTED],
                failed=self._counts[ProvisionOutcome.FAILED],
                unknown=self._counts[ProvisionOutcome.UNKNOWN],
                orphans=self._orphans,
                orphans_checked=self._orphans_checked,
                rounds=self._rounds,
                existing=self._counts[ProvisionOutcome.EXISTING],
            )

    @staticmethod
    async def _numbered(
        specs: AsyncIterable[ProvisionSpec],
    ) -> AsyncGenerator[tuple[int, ProvisionSpec], None]:
        index = 0
        async for spec in specs:
            yield index, spec
            index += 1

    async def _create_all(self) -> None:
        # Twice as many workers as creates in flight let the ledger's steps (begin,
        # claim) of some overlap with the calls of others; steps of a `MemoryLedger`
        # never wait, so there the extra workers would only queue for the semaphore.
        workers = self._workers if self._memory else 2 * self._workers
        if not isinstance(self._specs, AsyncIterable):
            # A plain iterable is read without a lock: ``next`` runs to completion
            # between two awaits, so each spec goes to exactly one worker, numbered in order.
            numbered = enumerate(self._specs)

            async def worker() -> None:
                for index, spec in numbered:
                    await self._begin(index, spec)

            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(worker)
            return

        items = self._numbered(self._specs)
        lock = anyio.Lock()

        async def async_worker() -> None:
            while True:
                async with lock:  # one reader of the async input at a time
                    try:
                        index, spec = await items.__anext__()
                    except StopAsyncIteration:
                        return
                await self._begin(index, spec)

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(async_worker)
        finally:
            with anyio.CancelScope(shield=True):
                await items.aclose()

    async def _begin(self, index: int, spec: ProvisionSpec) -> None:
        """Take one spec's key and act on what the ledger says."""
        try:
            request = _to_request(spec)
            key, fingerprint = self._key_of(index, spec)
        except ValidationError as exc:
            await self._emit(index, spec, None, ProvisionOutcome.FAILED, error=exc)
            return
        item = _Spec(index, spec, request, key, fingerprint)
        if self._auth_failure is not None:
            await self._finish(item, ProvisionOutcome.FAILED, error=self._auth_failure)
            return
        while True:
            # Read before the ledger grants the lease: the fence then ends no later than it.
            asked = anyio.current_time()
            begun = await self._ledger.begin(
                self._account,
                key,
                total_limit=request.total_limit,
                hourly_limit=request.hourly_limit,
                holder=item.holder,
                lease=self._lease,
                fingerprint=fingerprint,
            )
            if begun.decision is not Decision.NEED_BASELINE:
                break
            await self._creates.record_baseline()
        entry = begun.entry
        assert entry is not None
        if begun.decision is Decision.SEND:
            item.fence = Fence(asked + self._lease)
            await self._send(item)
            return
        # Read after the ledger answered: `_settled_at` then errs late, never early.
        now = anyio.current_time()
        # Nothing above need have waited (a `MemoryLedger` never does), and some branches
        # below do not wait either: let other tasks run before the next spec.
        await anyio.lowlevel.checkpoint()
        if begun.decision is Decision.DONE:
            await self._settled(item, entry, ProvisionOutcome.EXISTING)
        elif begun.decision is Decision.MISMATCH:
            error = mismatch_error(key, entry, request, fingerprint, field="key")
            await self._finish(item, ProvisionOutcome.FAILED, error=error)
        elif begun.decision is Decision.BUSY:
            if holder_is_dead(entry.holder):  # a killed earlier run's: settle it now
                assert entry.holder is not None
                await self._ledger.expire(self._account, key, holder=entry.holder)
                self._set_aside(item, now + self._settle_delay)
            else:
                self._set_aside(item, now + _poll(entry))
        else:  # RECONCILE: the reconciler takes it from here, when the time comes
            await self._ledger.release(self._account, key, holder=item.holder)
            self._set_aside(item, self._settled_at(entry, now))

    def _key_of(self, index: int, spec: ProvisionSpec) -> tuple[str, str | None]:
        if isinstance(spec, Mapping):
            key = spec.get("key")
            fingerprint = spec.get("fingerprint")
            if fingerprint is not None and not isinstance(fingerprint, str):
                raise ValidationError("fingerprint must be a string", field="fingerprint")
            if key is not None:
                return check_key(key, "key"), fingerprint
            return f"{self._run_id}:{index}", fingerprint
        return f"{self._run_id}:{index}", None

    async def _send(self, item: _Spec) -> None:
        """Send the create the ledger gave ``item``'s holder; claim its user."""
        ledger, account, key, holder = self._ledger, self._account, item.key, item.holder
        self._sending += 1
        self._in_flight[key] = item  # the run's renewer keeps its lease (and fence)
        try:
            try:
                async with self._calls:
                    with fenced(item.fence):
                        creds = await self._client.send(item.request)
            except LeaseLost:
                # Frozen past the lease before the create left: nothing was sent. The
                # reconciler settles the key (someone may have made its user meanwhile).
                self._set_aside(item, anyio.current_time() + self._settle_delay)
                return
            except OutcomeUnknownError as exc:
                with anyio.CancelScope(shield=True):
                    await ledger.mark_unknown(account, key, holder=holder)
                item.error = exc
                item.lost = True
                self._set_aside(item, anyio.current_time() + self._settle_delay)
                return
            except AuthenticationError as exc:
                # Every other create would fail the same way: stop sending them.
                self._auth_failure = exc
                with anyio.CancelScope(shield=True):
                    await ledger.mark_failed(account, key, holder=holder)
                await self._finish(item, ProvisionOutcome.FAILED, error=exc)
                return
            except SarvError as exc:
                with anyio.CancelScope(shield=True):
                    await ledger.mark_failed(account, key, holder=holder)
                await self._finish(item, ProvisionOutcome.FAILED, error=exc)
                return
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await ledger.mark_unknown(account, key, holder=holder)
                raise
            if self._memory:  # its steps never suspend: nothing can cancel this one
                claim = await ledger.claim(account, key, creds.smtp_user_name)
            else:  # the user exists: record it whatever happens
                with anyio.CancelScope(shield=True):
                    claim = await ledger.claim(account, key, creds.smtp_user_name)
            if claim is Claim.CLAIMED:
                # The create's call was a checkpoint; a full buffer still waits.
                await self._finish(item, ProvisionOutcome.CREATED, credentials=creds, wait=False)
            elif claim is Claim.NO_ENTRY:
                error = LedgerError(f"the ledger lost key {key!r} while its create was in flight")
                await self._finish(item, ProvisionOutcome.FAILED, error=error)
            else:
                # TAKEN: someone's reconciliation adopted this user first, and the key is
                # unknown now. SETTLED: the key had another user by then. Either way, the
                # reconciler settles it from a list.
                item.lost = True
                self._set_aside(item, anyio.current_time() + self._settle_delay)
        finally:
            self._in_flight.pop(key, None)
            self._sending -= 1
            if not self._creating:
                # The reconciler waits for the last create to end (not for each one:
                # what a create sets aside wakes it in `_set_aside`).
                self._wake.set()

    # -- reconciliation ------------------------------------------------------------

    def _set_aside(self, item: _Spec, ready_at: float) -> None:
        item.ready_at = ready_at
        self._pending.append(item)
        self._wake.set()

    def _settled_at(self, entry: LedgerEntry, asked: float) -> float:
        """When a list may first prove the entry's last attempt absent (anyio clock).

        ``asked`` is a moment next to the ledger call whose answer ``entry`` is: read
        before the call (the store measured ``ended_ago`` a moment later), the answer
        errs early by at most one ledger call, far below any settle delay; read after
        it, late by as much. It keeps two clocks from ever being compared.
        """
        return asked - (entry.ended_ago or 0.0) + self._settle_delay

    async def _renew(self, scope: anyio.CancelScope) -> None:
        """Renew the lease of every create in flight, every third of the lease.

        One task for the run, rather than one per create: a live but slow create (a long
        wait for the rate limiter, a 429 pause) never loses its key to another caller.
        """
        with scope:
            while True:
                await anyio.sleep(self._lease / 3)
                for key, item in list(self._in_flight.items()):
                    asked = anyio.current_time()
                    if (
                        await self._ledger.renew(
                            self._account, key, holder=item.holder, lease=self._lease
                        )
                        and item.fence is not None
                    ):
                        item.fence.extend(asked, self._lease)

    async def _reconcile(self, tg: TaskGroup) -> None:
        """Settle set-aside specs from lists, for as long as creates may set more aside."""
        try:
            await self._reconcile_until_done(tg)
        finally:
            self._reconciled.set()

    async def _reconcile_until_done(self, tg: TaskGroup) -> None:
        failures = 0  # reconciling lists failed in a row
        while True:
            if not self._pending:
                if not self._creating and not self._sending:
                    return
                await self._wait(None)
                continue
            now = anyio.current_time()
            first = min(item.ready_at for item in self._pending)
            if first > now:
                await self._wait(first)
                continue
            self._rounds += 1
            logger.info(
                "listing the account to settle the creates whose answers were lost (%d)",
                len(self._pending),
            )
            started = anyio.current_time()
            try:
                users = await self._client.smtp_users.list()
            except SarvError as exc:
                failures += 1
                if not self._creating and not self._sending and failures >= _LIST_TRIES:
                    await self._give_up(exc)
                    return
                # Creates are still running, or tries are left: try again a little later.
                for item in self._pending:
                    item.ready_at = max(item.ready_at, started + max(self._settle_delay, 0.1))
                continue
            failures = 0
            self._users.update((user.smtp_user_name, user) for user in users)
            ready = sorted(
                (item for item in self._pending if item.ready_at <= started),
                key=lambda item: item.index,
            )
            self._pending = [item for item in self._pending if item.ready_at > started]
            owned = await self._ledger.owned(self._account, [u.smtp_user_name for u in users])
            for item in ready:
                await self._settle(item, users, owned, started, tg)

    async def _wait(self, until: float | None) -> None:
        """Sleep until ``until`` (anyio clock), or until something is set aside or ends."""
        self._wake = anyio.Event()
        if until is None:
            await self._wake.wait()
            return
        with anyio.move_on_after(max(0.0, until - anyio.current_time())):
            await self._wake.wait()

    async def _give_up(self, error: SarvError) -> None:
        """The account cannot be listed: what is set aside ends UNKNOWN (the ledger keeps it)."""
        self._orphans_checked = False
        pending, self._pending = self._pending, []
        for item in sorted(pending, key=lambda item: item.index):
            unknown = item.error if isinstance(item.error, OutcomeUnknownError) else None
            if unknown is None:
                unknown = OutcomeUnknownError(
                    f"key {item.key!r} may or may not have its user: the account could not "
                    "be listed to find out; run again to settle it",
                    request=item.request,
                    idempotency_key=item.key,
                )
            unknown.idempotency_key = item.key
            unknown.__context__ = error
            await self._finish(item, ProvisionOutcome.UNKNOWN, error=unknown)

    async def _settle(
        self,
        item: _Spec,
        users: list[SmtpUser],
        owned: set[str],
        started: float,
        tg: TaskGroup,
    ) -> None:
        """Settle one set-aside spec from a list started at ``started``."""
        ledger, account, request = self._ledger, self._account, item.request
        asked = anyio.current_time()
        begun = await ledger.begin(
            account,
            item.key,
            total_limit=request.total_limit,
            hourly_limit=request.hourly_limit,
            holder=item.holder,
            lease=self._lease,
            fingerprint=item.fingerprint,
        )
        entry = begun.entry
        now = anyio.current_time()
        if begun.decision is Decision.NEED_BASELINE or entry is None:  # pragma: no cover
            self._set_aside(item, now)
            return
        if begun.decision is Decision.SEND:  # it had failed for certain meanwhile
            item.fence = Fence(asked + self._lease)
            self._start_send(item, tg)
            return
        if begun.decision is Decision.DONE:
            outcome = ProvisionOutcome.ADOPTED if item.lost else ProvisionOutcome.EXISTING
            await self._settled(item, entry, outcome)
            return
        if begun.decision is Decision.MISMATCH:
            error = mismatch_error(item.key, entry, request, item.fingerprint, field="key")
            await self._finish(item, ProvisionOutcome.FAILED, error=error)
            return
        if begun.decision is Decision.BUSY:
            if holder_is_dead(entry.holder):
                assert entry.holder is not None
                await ledger.expire(account, item.key, holder=entry.holder)
                self._set_aside(item, now + self._settle_delay)
            else:
                self._set_aside(item, now + _poll(entry))
            return
        # RECONCILE: this list proves absence only if started settle_delay after the end.
        settled_at = self._settled_at(entry, asked)
        if started < settled_at:
            await ledger.release(account, item.key, holder=item.holder)
            self._set_aside(item, settled_at)
            return
        free = free_users(users, request.total_limit, request.hourly_limit, owned)
        for user in free:
            claim = await ledger.claim(account, item.key, user.smtp_user_name)
            owned.add(user.smtp_user_name)
            if claim is Claim.CLAIMED:
                creds = SmtpCredentials(
                    user.smtp_user_name, user.smtp_password, "adopted from list"
                )
                await self._finish(item, ProvisionOutcome.ADOPTED, credentials=creds)
                return
            if claim is not Claim.TAKEN:  # settled meanwhile: read it from the next list
                self._set_aside(item, now)
                return
        if free:  # every candidate was taken by someone else first: list again
            await ledger.release(account, item.key, holder=item.holder)
            self._set_aside(item, now)
            return
        # Proven absent.
        if item.resends >= self._max_rounds:
            await ledger.mark_failed(account, item.key, holder=item.holder)
            cause = item.error.__cause__ if item.error is not None else None
            failure = cause if isinstance(cause, SarvError) else item.error
            if failure is None:
                failure = LedgerError(f"key {item.key!r}: no user was created; giving up")
            await self._finish(item, ProvisionOutcome.FAILED, error=failure)
            return
        resent_at = anyio.current_time()
        if not await ledger.resend(account, item.key, holder=item.holder, lease=self._lease):
            self._set_aside(item, now)
            return
        item.fence = Fence(resent_at + self._lease)
        item.resends += 1
        self._start_send(item, tg)

    def _start_send(self, item: _Spec, tg: TaskGroup) -> None:
        self._sending += 1  # counted now, so the reconciler does not end before it starts

        async def send() -> None:
            try:
                await self._send(item)
            finally:
                self._sending -= 1

        tg.start_soon(send)

    async def _settled(self, item: _Spec, entry: LedgerEntry, outcome: ProvisionOutcome) -> None:
        """The key has its user: report it with the password from the latest list."""
        assert entry.user_name is not None
        user = self._users.get(entry.user_name)
        if user is None:  # created after the last list: read it from the next one
            self._set_aside(item, anyio.current_time())
            return
        creds = SmtpCredentials(user.smtp_user_name, user.smtp_password, "read back with list")
        await self._finish(item, outcome, credentials=creds)

    async def _find_orphans(self) -> None:
        """New users (since the run's first list) that no ledger entry owns.

        The list's answer is read in batches as it arrives, so a run that made 100,000
        users does not hold them all at once: only the orphans are kept.
        """
        # By name: a retried list hands users over again. Only the last answer counts:
        # a user of a cut one may be gone, or owned, by the time of the retry.
        orphans: dict[str, SmtpUser] = {}
        ledger_failed = False

        async def check(users: list[SmtpUser]) -> None:
            nonlocal ledger_failed
            new = [user for user in users if user.smtp_user_name not in self._snapshot]
            if not new:
                return
            try:
                owned = await self._ledger.owned(self._account, [u.smtp_user_name for u in new])
            except Exception:
                # The ledger's own error. A cancellation (the attempt's deadline, say) is
                # none: if the list then fails, the orphans are unchecked, as usual.
                ledger_failed = True
                raise
            orphans.update((u.smtp_user_name, u) for u in new if u.smtp_user_name not in owned)

        try:
            await self._client.smtp_users._list_in_batches(check, on_answer=orphans.clear)
        except SarvError:
            if ledger_failed:
                raise
            self._orphans_checked = False
            return
        self._orphans = tuple(orphans.values())

    async def _finish(
        self,
        item: _Spec,
        outcome: ProvisionOutcome,
        *,
        credentials: SmtpCredentials | None = None,
        error: SarvError | None = None,
        wait: bool = True,
    ) -> None:
        await self._emit(item.index, item.spec, item.key, outcome, credentials, error, wait)

    async def _emit(
        self,
        index: int,
        spec: ProvisionSpec,
        key: str | None,
        outcome: ProvisionOutcome,
        credentials: SmtpCredentials | None = None,
        error: SarvError | None = None,
        wait: bool = True,
    ) -> None:
        """Count a result and hand it to the reader.

        With ``wait`` false, a result that fits in the buffer is handed over without a
        checkpoint (for callers that have just awaited one).
        """
        self._counts[outcome] += 1
        if self._progress is not None:
            done = sum(self._counts.values())
            self._progress(done, self._counts[ProvisionOutcome.FAILED], self._total)
        assert self._send_stream is not None
        result: AnyProvisionResult
        if credentials is not None:
            result = Provisioned(index, spec, outcome, credentials, None, key)
        else:
            assert error is not None
            result = NotProvisioned(index, spec, outcome, None, error, key)
        if not wait:
            try:
                self._send_stream.send_nowait(result)
            except (anyio.WouldBlock, anyio.BrokenResourceError):
                pass  # full, or the reader left (cancelling the run): as `send` does
            else:
                return
        await self._send_stream.send(result)


class _Results:
    """The results as they arrive: those already buffered are read without a checkpoint.

    At most the buffer and one result per worker are read in a row without one; an empty
    buffer waits as `MemoryObjectReceiveStream.receive` does.
    """

    __slots__ = ("_receive",)

    def __init__(self, receive: MemoryObjectReceiveStream[AnyProvisionResult]) -> None:
        self._receive = receive

    def __aiter__(self) -> _Results:
        return self

    async def __anext__(self) -> AnyProvisionResult:
        try:
            try:
                return self._receive.receive_nowait()
            except anyio.WouldBlock:
                return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


def _poll(entry: LedgerEntry) -> float:
    """How long to wait before asking again about a key someone else holds."""
    left = entry.lease_left if entry.lease_left is not None else 1.0
    return max(0.05, min(1.0, left + 0.01))


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in a (nested) group, with anyio's cancellations left out."""
    found: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found += _leaves(error)
        elif not isinstance(error, anyio.get_cancelled_exc_class()):
            found.append(error)
    return found or list(group.exceptions)


def _to_request(spec: ProvisionSpec) -> CreateSmtpUserRequest:
    if isinstance(spec, CreateSmtpUserRequest):
        return spec
    if isinstance(spec, Mapping):
        missing = [key for key in ("total_limit", "hourly_limit") if key not in spec]
        if missing:
            raise ValidationError(f"spec lacks {' and '.join(missing)}", field=missing[0])
        return CreateSmtpUserRequest(
            total_limit=_limit(spec["total_limit"]),
            hourly_limit=_limit(spec["hourly_limit"]),
        )
    raise ValidationError(
        f"a spec is a CreateSmtpUserRequest or a mapping, not a {type(spec).__name__}"
    )


def _limit(value: object) -> Any:
    """Digit strings (as in CSV files) count as integers; the request checks the rest."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return value
