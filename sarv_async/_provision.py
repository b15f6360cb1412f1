"""Bulk provisioning: create many SMTP users concurrently, exactly once, losing nothing.

Every spec has an idempotency key: its ``key`` field when given, else the run's ``run_id``
and its position. Each key runs through the exactly-once engine (``_engine.py``) on a
ledger (the client's, or one in memory for this run alone); this module only decides
what concerns many keys at once. How a run goes:

1. List the account (one call); record its users as the ledger's baseline if it has none
   (only those of the caller's ``baseline``, if given: the others are *unexplained*).
2. Workers take specs in order and begin each key: a key already done is read back from
   the list (`ProvisionOutcome.EXISTING`); a free key is sent (at most ``concurrency``
   at once, their leases kept by one task for the run), and its user claimed.
3. A key whose outcome is unknown (a lost answer, a user someone else adopted first, a
   crashed earlier run, another process holding it) is set aside. While the workers go
   on, a reconciler lists the account once at least ``settle_delay`` has passed since such
   attempts ended, and settles every key that list can settle: one list serves them all.
   If the account cannot be listed (three tries in a row) once every create has ended,
   what is still set aside ends `UNKNOWN`: the ledger keeps it, and a rerun settles it.
4. A last list finds the *orphans*: new users that no ledger entry owns.

If the ledger fails or is lost, nothing more is begun: the creates in flight end (their
results handed over), and the run raises that one `LedgerError`.

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
    Collection,
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

from ._checks import DEFAULT_MAX_ROUNDS, DEFAULT_SETTLE_DELAY
from ._engine import AccountPort, Engine, KeyState, Leases, Next, Step
from ._exceptions import (
    AuthenticationError,
    LedgerError,
    OutcomeUnknownError,
    SarvError,
    ValidationError,
)
from ._idempotency import check_key
from ._logging import logger
from ._models import SmtpCredentials, SmtpUser
from ._requests import CreateSmtpUserRequest

if TYPE_CHECKING:
    pass

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
"""A spec: a `CreateSmtpUserRequest`, or a mapping with ``total_limit`` and ``hourly_limit``."""
#: Called as ``progress(done, failed, total)`` after each result; ``total`` is None if unknown.
ProgressCallback: TypeAlias = Callable[[int, int, "int | None"], None]
"""Called as ``progress(done, failed, total)`` after each result; ``total`` None if unknown."""

#: Reconciling lists tried in a row, once every create has ended, before giving up.
_LIST_TRIES = 3
#: How long a spec whose key someone else holds waits for the next list: each look
#: costs a list call, so at the slowest pace from the start.
_POLL_LISTS = 1.0


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
"""What a run yields: ``if result.ok:`` narrows it to `Provisioned`."""


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
    #: Users on the account at the start that neither the caller's ``baseline`` nor a
    #: key explains (only when the run recorded the ledger's baseline from ``baseline``:
    #: a ledger that was new, emptied or lost).
    unexplained: tuple[SmtpUser, ...] = ()


@attrs.define(eq=False)
class _Spec(KeyState):
    """A valid spec and its key, as the run handles it."""

    index: int = attrs.field(default=0, kw_only=True)
    spec: ProvisionSpec = attrs.field(default=None, kw_only=True)
    #: When (anyio clock) the reconciler may next look at it.
    ready_at: float = attrs.field(default=0.0, kw_only=True)
    #: Whether a list already missed the user the ledger gives the key.
    missed: bool = attrs.field(default=False, kw_only=True)


class Provisioning:
    """A running bulk provisioning: `async with` it, then `async for` its results.

    ```python
    async with client.smtp_users.provision(specs) as run:
        async for result in run:
            ...
    print(run.summary)
    ```

    Results stream as they become definite, so memory stays flat however many specs
    there are. Leaving the block early cancels the run; nothing already created is lost
    from the account (nor from the ledger), but unread results are.
    """

    def __init__(
        self,
        port: AccountPort,
        engine: Engine,
        specs: Iterable[ProvisionSpec] | AsyncIterable[ProvisionSpec],
        *,
        concurrency: int,
        progress: ProgressCallback | None,
        run_id: str | None = None,
        baseline: Collection[str] | None = None,
    ) -> None:
        self._engine = engine
        self._ledger = engine.ledger
        self._specs = specs
        self._workers = concurrency
        self._port = port
        # Creates in flight are bounded by ``concurrency`` (see `_create_all` for the
        # workers). No checkpoint when a slot is free: the create right after it awaits.
        self._slots = anyio.Semaphore(concurrency, fast_acquire=True)
        self._leases = Leases(engine)
        self._progress = progress
        self._settle_delay = engine.settle_delay
        self._run_id = f"run:{uuid.uuid4().hex}" if run_id is None else check_key(run_id, "run_id")
        self._baseline = None if baseline is None else frozenset(baseline)
        self._total: int | None = len(specs) if isinstance(specs, Sized) else None
        self._counts = {outcome: 0 for outcome in ProvisionOutcome}
        self._snapshot: set[str] = set()
        self._users: dict[str, SmtpUser] = {}
        self._pending: list[_Spec] = []
        self._wake = anyio.Event()
        self._reconciled = anyio.Event()
        self._sending = 0
        self._creating = True
        self._orphans: tuple[SmtpUser, ...] = ()
        self._orphans_checked = True
        self._unexplained: set[str] = set()
        self._rounds = 0
        self._auth_failure: AuthenticationError | None = None
        self._ledger_failure: LedgerError | None = None
        self._failure: SarvError | None = None
        self._summary: ProvisionSummary | None = None
        self._task_group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[AnyProvisionResult] | None = None
        self._send_stream: MemoryObjectSendStream[AnyProvisionResult] | None = None
        #: Set by `complete`: results are counted, not handed over (nobody reads them).
        self._dropping = False

    @property
    def run_id(self) -> str:
        """The prefix of the keys of specs that have no ``key`` of their own."""
        return self._run_id

    @property
    def summary(self) -> ProvisionSummary:
        """The run's counts and orphans; available once every result has been read.

        Raises the run's error if it could not start (its first list call failed) or
        was stopped by its ledger failing.
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
        """Read every result, dropping them, and return the summary.

        Results from now on are counted without being handed over, so the reader is not
        woken once per result; those already handed over are read and dropped.
        """
        self._dropping = True
        async for _ in self:
            pass
        return self.summary

    # -- the run -------------------------------------------------------------------

    async def _run(self, send: MemoryObjectSendStream[AnyProvisionResult]) -> None:
        async with send:
            self._send_stream = send
            try:
                before = await self._port.list()
            except SarvError as exc:
                # Without a snapshot nothing could be reconciled: do not create anything.
                self._failure = exc
                return
            self._snapshot = {user.smtp_user_name for user in before}
            self._users = {user.smtp_user_name: user for user in before}
            try:
                await self._record_baseline()
            except LedgerError as exc:
                self._failure = exc
                return
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
            if self._ledger_failure is not None:
                # Stopped before any more creates; what is in flight was waited for.
                self._failure = self._ledger_failure
                return
            if self._orphans_checked:
                await self._find_orphans()
            unexplained = await self._find_unexplained()
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
                unexplained=unexplained,
            )

    async def _record_baseline(self) -> None:
        """Record the first list as the ledger's baseline if it has none.

        With the caller's own ``baseline``, only those of its users still on the account
        are recorded; the others listed are unexplained (reported, never absorbed).
        """
        if self._baseline is None:
            await self._engine.record_baseline(self._port, self._snapshot)
            return
        given = self._snapshot & self._baseline
        if await self._engine.record_baseline(self._port, given):
            self._unexplained = self._snapshot - given

    async def _find_unexplained(self) -> tuple[SmtpUser, ...]:
        """Users listed at the start that neither the caller's baseline nor a key explains."""
        if not self._unexplained:
            return ()
        owned = await self._ledger.owned(self._engine.account, self._unexplained)
        return tuple(
            self._users[name] for name in sorted(self._unexplained - owned) if name in self._users
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
        # One worker per create in flight, whatever the ledger. Twice as many, so that
        # some workers' ledger steps overlap the others' calls, cost more CPU (the ledger's
        # thread and the event loop contend) than the overlap saves: SQLite 0.74-0.79x of
        # plain creates against 0.79-0.87x with one (bench/README.md, issue 17).
        workers = self._workers
        if not isinstance(self._specs, AsyncIterable):
            # A plain iterable is read without a lock: ``next`` runs to completion
            # between two awaits, so each spec goes to exactly one worker, numbered in order.
            numbered = enumerate(self._specs)

            async def worker() -> None:
                for index, spec in numbered:
                    if self._stopping():
                        return
                    await self._begin(index, spec)

            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(worker)
            return

        items = self._numbered(self._specs)
        lock = anyio.Lock()

        async def async_worker() -> None:
            while not self._stopping():
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
            key, fingerprint, known = self._key_of(index, spec)
        except ValidationError as exc:
            await self._emit(index, spec, None, ProvisionOutcome.FAILED, error=exc)
            return
        item = _Spec(
            request, key, fingerprint, known, "key", index=index, spec=spec, poll=_POLL_LISTS
        )
        if self._auth_failure is not None:
            await self._finish(item, ProvisionOutcome.FAILED, error=self._auth_failure)
            return
        try:
            step = await self._engine.begin(item)
            while step.step is Step.NEED_BASELINE:  # pragma: no cover - recorded at the start
                await self._engine.record_baseline(self._port)
                step = await self._engine.begin(item)
            if step.step is Step.SEND:
                await self._send(item)
                return
            # Nothing above need have waited (an instant ledger never does), and some
            # steps below do not wait either: let other tasks run before the next spec.
            await anyio.lowlevel.checkpoint()
            await self._after(item, step, None)
        except LedgerError as exc:
            self._stop(exc)

    def _key_of(self, index: int, spec: ProvisionSpec) -> tuple[str, str | None, str | None]:
        """The spec's key, fingerprint and the user the caller's record gives it."""
        if not isinstance(spec, Mapping):
            return f"{self._run_id}:{index}", None, None
        key = spec.get("key")
        fingerprint = spec.get("fingerprint")
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise ValidationError("fingerprint must be a string", field="fingerprint")
        known = spec.get("smtp_user_name")
        if known is not None and (not isinstance(known, str) or not known.strip()):
            raise ValidationError(
                "smtp_user_name must be a non-empty string (the user your record gives the "
                "spec), or absent",
                field="smtp_user_name",
            )
        key = f"{self._run_id}:{index}" if key is None else check_key(key, "key")
        return key, fingerprint, known

    async def _after(
        self, item: _Spec, step: Next, tg: TaskGroup | None, *, wait: bool = True
    ) -> None:
        """Act on the engine's next step for ``item`` (``tg``: where sends start, if not here;
        ``wait`` false: credentials fitting in the buffer go without a checkpoint)."""
        if step.step is Step.SEND:
            if tg is None:
                await self._send(item)
            else:
                self._start_send(item, tg)
        elif step.step is Step.SETTLED:
            assert step.credentials is not None
            outcome = ProvisionOutcome.ADOPTED if step.adopted else ProvisionOutcome.CREATED
            await self._finish(item, outcome, credentials=step.credentials, wait=wait)
            if step.ledger_error is not None:
                self._stop(step.ledger_error)
        elif step.step is Step.DONE:
            assert step.user_name is not None
            outcome = ProvisionOutcome.ADOPTED if item.lost else ProvisionOutcome.EXISTING
            await self._settled(item, step.user_name, outcome)
        elif step.step is Step.FAILED:
            assert step.error is not None
            await self._finish(item, ProvisionOutcome.FAILED, error=step.error)
        else:  # SETTLE, WAIT (NEED_BASELINE: at once): settled from a later list
            self._set_aside(item, step.at)

    async def _send(self, item: _Spec) -> None:
        """Send the create the ledger gave ``item``'s holder, and act on what came of it."""
        self._sending += 1
        try:
            step = await self._engine.send(item, self._port, self._leases, self._slots)
            if step.step is Step.FAILED and isinstance(step.error, AuthenticationError):
                # Every other create would fail the same way: stop sending them.
                self._auth_failure = step.error
            # The create's call was a checkpoint; a full buffer still waits.
            await self._after(item, step, None, wait=False)
        except LedgerError as exc:
            self._stop(exc)
        finally:
            self._sending -= 1
            if not self._creating:
                # The reconciler waits for the last create to end (not for each one:
                # what a create sets aside wakes it in `_set_aside`).
                self._wake.set()

    def _stopping(self) -> bool:
        """Whether the ledger failed, so that nothing more is begun."""
        return self._ledger_failure is not None

    def _stop(self, error: LedgerError) -> None:
        """The ledger failed: begin nothing more; what is in flight ends as it may."""
        if self._ledger_failure is None:
            logger.warning("stopping the provisioning run: %s", error)
            self._ledger_failure = error
        self._wake.set()

    # -- reconciliation ------------------------------------------------------------

    def _set_aside(self, item: _Spec, ready_at: float) -> None:
        item.ready_at = ready_at
        self._pending.append(item)
        self._wake.set()

    async def _renew(self, scope: anyio.CancelScope) -> None:
        """Renew the lease of every create in flight (one task for the run)."""
        with scope:
            await self._leases.run()

    async def _reconcile(self, tg: TaskGroup) -> None:
        """Settle set-aside specs from lists, for as long as creates may set more aside."""
        try:
            await self._reconcile_until_done(tg)
        except LedgerError as exc:
            self._stop(exc)
        finally:
            self._reconciled.set()

    async def _reconcile_until_done(self, tg: TaskGroup) -> None:
        failures = 0  # reconciling lists failed in a row
        while not self._stopping():
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
                users = await self._port.list()
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
            owned = await self._ledger.owned(
                self._engine.account, [u.smtp_user_name for u in users]
            )
            for item in ready:
                if self._stopping():
                    return
                step = await self._engine.settle(item, users, owned, started)
                await self._after(item, step, tg)

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

    def _start_send(self, item: _Spec, tg: TaskGroup) -> None:
        self._sending += 1  # counted now, so the reconciler does not end before it starts

        async def send() -> None:
            try:
                await self._send(item)
            finally:
                self._sending -= 1

        tg.start_soon(send)

    async def _settled(self, item: _Spec, user_name: str, outcome: ProvisionOutcome) -> None:
        """The key has its user: report it with the password from the latest list."""
        user = self._users.get(user_name)
        if user is None:
            if item.missed:  # a list started after the ledger said so has no such user
                error = self._engine.error(
                    f"the ledger gives SMTP user {user_name} to key {item.key!r}, "
                    "but the account has no such user"
                )
                await self._finish(item, ProvisionOutcome.FAILED, error=error)
                return
            item.missed = True  # created after the last list: read it from the next one
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
                owned = await self._ledger.owned(
                    self._engine.account, [u.smtp_user_name for u in new]
                )
            except Exception:
                # The ledger's own error. A cancellation (the attempt's deadline, say) is
                # none: if the list then fails, the orphans are unchecked, as usual.
                ledger_failed = True
                raise
            orphans.update((u.smtp_user_name, u) for u in new if u.smtp_user_name not in owned)

        try:
            await self._port.list_in_batches(check, on_answer=orphans.clear)
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
        if self._dropping:
            if wait:  # as `send` would: no worker runs through many specs without one
                await anyio.lowlevel.checkpoint()
            return
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
