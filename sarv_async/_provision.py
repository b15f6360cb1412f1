"""Bulk provisioning: create many SMTP users concurrently, exactly once, losing nothing.

How a run goes:

1. Snapshot the account's users (one list call).
2. Create every spec through the client's limiter and concurrency bound, streaming each
   definite result. A create that ends in `OutcomeUnknownError` is set aside, not retried.
3. If any were set aside, list the users again. A new user (not in the snapshot, not
   returned by a successful create) with the same limits as a set-aside spec is *adopted*
   for it, with its credentials from the list. A set-aside spec with no such user was
   provably not created, so it is created again, in a further round (at most
   ``max_rounds``; then it fails with the error that lost it).
4. A last list, after every create has ended, finds the new users no spec explains:
   the *orphans*. If a reconciling list call fails, the specs still set aside end as
   UNKNOWN: a user may exist for them.

The one assumption: nobody else creates users on the account during the run.
"""

from __future__ import annotations

import enum
from collections import defaultdict
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
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._exceptions import AuthenticationError, OutcomeUnknownError, SarvError, ValidationError
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

#: A spec: a `CreateSmtpUserRequest`, or a mapping with ``total_limit`` and ``hourly_limit``.
ProvisionSpec: TypeAlias = "CreateSmtpUserRequest | Mapping[str, Any]"
#: Called as ``progress(done, failed, total)`` after each result; ``total`` is None if unknown.
ProgressCallback: TypeAlias = Callable[[int, int, "int | None"], None]

#: How many times specs proven not created are created again.
DEFAULT_MAX_ROUNDS = 3
#: Seconds to wait before a reconciling list, so that a create the server was still
#: processing when the client gave up on it has landed by then.
DEFAULT_SETTLE_DELAY = 5.0


class ProvisionOutcome(enum.StrEnum):
    """How a spec ended."""

    #: A create call returned the user's credentials.
    CREATED = "created"
    #: The create's answer was lost; the user was found by listing and adopted.
    ADOPTED = "adopted"
    #: No user was created for the spec; ``error`` says why.
    FAILED = "failed"
    #: A user may exist for the spec: its create's answer was lost and the account could
    #: not be listed to find out. ``error`` is the `OutcomeUnknownError`.
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

    @property
    def ok(self) -> bool:
        """Whether the spec has its user and credentials."""
        return self.credentials is not None


class Provisioned(ProvisionResult):
    """A result with credentials: the spec was ``created`` or ``adopted``.

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
    #: New users on the account that no spec of this run accounts for.
    orphans: tuple[SmtpUser, ...]
    #: False when the final list call failed, so ``orphans`` could not be looked for.
    orphans_checked: bool
    #: Reconciliation passes that ran (0 when no outcome was ever unknown).
    rounds: int


@attrs.define
class _Pending:
    index: int
    spec: ProvisionSpec
    request: CreateSmtpUserRequest
    error: OutcomeUnknownError

    @property
    def cause(self) -> SarvError:
        """What made the outcome unknown: the definite error once the user is proven absent."""
        cause = self.error.__cause__
        return cause if isinstance(cause, SarvError) else self.error


class Provisioning:
    """A running bulk provisioning: ``async with`` it, then ``async for`` its results.

    ::

        async with client.smtp_users.provision(specs) as run:
            async for result in run:
                ...
        print(run.summary)

    Results stream as they become definite (those needing reconciliation come last), so
    memory stays flat however many specs there are. Leaving the block early cancels the
    run; nothing already created is lost from the account, but unread results are.
    """

    def __init__(
        self,
        client: AsyncSarvClient,
        specs: Iterable[ProvisionSpec] | AsyncIterable[ProvisionSpec],
        *,
        concurrency: int | None,
        progress: ProgressCallback | None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        settle_delay: float = DEFAULT_SETTLE_DELAY,
    ) -> None:
        if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
            raise ValidationError(
                f"concurrency must be a positive integer, got {concurrency!r}", field="concurrency"
            )
        self._client = client
        self._specs = specs
        self._workers = concurrency or client._shared.pipeline.max_concurrency
        self._progress = progress
        if type(max_rounds) is not int or max_rounds < 0:
            raise ValidationError(
                f"max_rounds must be a non-negative integer, got {max_rounds!r}",
                field="max_rounds",
            )
        self._max_rounds = max_rounds
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
        self._total: int | None = len(specs) if isinstance(specs, Sized) else None
        self._counts = {outcome: 0 for outcome in ProvisionOutcome}
        self._known: set[str] = set()
        self._snapshot: set[str] = set()
        self._pending: list[_Pending] = []
        self._orphans: tuple[SmtpUser, ...] = ()
        self._orphans_checked = True
        self._rounds = 0
        self._auth_failure: AuthenticationError | None = None
        self._failure: SarvError | None = None
        self._summary: ProvisionSummary | None = None
        self._task_group: TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[AnyProvisionResult] | None = None

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
        return self._receive.__aiter__()

    async def complete(self) -> ProvisionSummary:
        """Read every result, dropping them, and return the summary."""
        async for _ in self:
            pass
        return self.summary

    # -- the run -------------------------------------------------------------------

    async def _run(self, send: MemoryObjectSendStream[AnyProvisionResult]) -> None:
        async with send:
            try:
                before = await self._client.smtp_users.list()
            except SarvError as exc:
                # Without a snapshot nothing could be reconciled: do not create anything.
                self._failure = exc
                return
            self._snapshot = {user.smtp_user_name for user in before}
            await self._create_all(self._numbered(), send)
            while True:
                if self._pending:
                    self._rounds += 1
                    logger.info(
                        "listing the account in %g s to settle the creates whose answers were "
                        "lost (%d)",
                        self._settle_delay,
                        len(self._pending),
                    )
                    # A timed-out create may still be running on the server: let it land
                    # before a list decides that it never happened.
                    await anyio.sleep(self._settle_delay)
                try:
                    users = await self._client.smtp_users.list()
                except SarvError as exc:
                    # Nothing can be settled now: what was set aside stays unknown.
                    self._orphans_checked = False
                    for item in self._take_pending():
                        item.error.__context__ = exc
                        await self._emit(send, item, ProvisionOutcome.UNKNOWN, error=item.error)
                    break
                retry = await self._adopt(users, send)
                if not retry:
                    break
                if self._rounds > self._max_rounds:
                    # Provably not created, but out of rounds: a definite failure.
                    for item in retry:
                        await self._emit(send, item, ProvisionOutcome.FAILED, error=item.cause)
                    break
                await self._create_all(_iterate([(i.index, i.spec) for i in retry]), send)
            self._summary = ProvisionSummary(
                total=sum(self._counts.values()),
                created=self._counts[ProvisionOutcome.CREATED],
                adopted=self._counts[ProvisionOutcome.ADOPTED],
                failed=self._counts[ProvisionOutcome.FAILED],
                unknown=self._counts[ProvisionOutcome.UNKNOWN],
                orphans=self._orphans,
                orphans_checked=self._orphans_checked,
                rounds=self._rounds,
            )

    async def _numbered(self) -> AsyncGenerator[tuple[int, ProvisionSpec], None]:
        index = 0
        if isinstance(self._specs, AsyncIterable):
            async for spec in self._specs:
                yield index, spec
                index += 1
        else:
            for spec in self._specs:
                yield index, spec
                index += 1

    async def _create_all(
        self,
        items: AsyncGenerator[tuple[int, ProvisionSpec], None],
        send: MemoryObjectSendStream[AnyProvisionResult],
    ) -> None:
        lock = anyio.Lock()

        async def worker() -> None:
            while True:
                async with lock:  # one reader of the (possibly async) input at a time
                    try:
                        index, spec = await items.__anext__()
                    except StopAsyncIteration:
                        return
                await self._create_one(index, spec, send)

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self._workers):
                    tg.start_soon(worker)
        finally:
            with anyio.CancelScope(shield=True):
                await items.aclose()

    async def _create_one(
        self, index: int, spec: ProvisionSpec, send: MemoryObjectSendStream[AnyProvisionResult]
    ) -> None:
        try:
            request = _to_request(spec)
        except ValidationError as exc:
            await self._emit(send, (index, spec), ProvisionOutcome.FAILED, error=exc)
            return
        if self._auth_failure is not None:
            await self._emit(send, (index, spec), ProvisionOutcome.FAILED, error=self._auth_failure)
            return
        try:
            creds = await self._client.send(request)
        except OutcomeUnknownError as exc:
            self._pending.append(_Pending(index, spec, request, exc))
        except AuthenticationError as exc:
            # Every other create would fail the same way: stop sending them.
            self._auth_failure = exc
            await self._emit(send, (index, spec), ProvisionOutcome.FAILED, error=exc)
        except SarvError as exc:
            await self._emit(send, (index, spec), ProvisionOutcome.FAILED, error=exc)
        else:
            self._known.add(creds.smtp_user_name)
            await self._emit(send, (index, spec), ProvisionOutcome.CREATED, credentials=creds)

    def _take_pending(self) -> list[_Pending]:
        pending, self._pending = self._pending, []
        return sorted(pending, key=lambda item: item.index)

    async def _adopt(
        self, users: list[SmtpUser], send: MemoryObjectSendStream[AnyProvisionResult]
    ) -> list[_Pending]:
        """Adopt lost users for the set-aside specs; return those provably not created.

        ``users`` was listed after every create so far had ended, so what is new and
        not adopted now is an orphan.
        """
        candidates: dict[tuple[int, int], list[SmtpUser]] = defaultdict(list)
        for user in users:
            if user.smtp_user_name not in self._snapshot and user.smtp_user_name not in self._known:
                candidates[(user.total_limit, user.hourly_limit)].append(user)
        not_created: list[_Pending] = []
        for item in self._take_pending():
            same_limits = candidates.get((item.request.total_limit, item.request.hourly_limit))
            if same_limits:
                user = same_limits.pop(0)
                self._known.add(user.smtp_user_name)
                creds = SmtpCredentials(
                    user.smtp_user_name, user.smtp_password, "adopted from list"
                )
                await self._emit(send, item, ProvisionOutcome.ADOPTED, credentials=creds)
            else:
                not_created.append(item)
        self._orphans = tuple(user for group in candidates.values() for user in group)
        return not_created

    async def _emit(
        self,
        send: MemoryObjectSendStream[AnyProvisionResult],
        item: _Pending | tuple[int, ProvisionSpec],
        outcome: ProvisionOutcome,
        *,
        credentials: SmtpCredentials | None = None,
        error: SarvError | None = None,
    ) -> None:
        index, spec = (item.index, item.spec) if isinstance(item, _Pending) else item
        self._counts[outcome] += 1
        if self._progress is not None:
            done = sum(self._counts.values())
            self._progress(done, self._counts[ProvisionOutcome.FAILED], self._total)
        result: AnyProvisionResult
        if credentials is not None:
            result = Provisioned(index, spec, outcome, credentials, None)
        else:
            assert error is not None
            result = NotProvisioned(index, spec, outcome, None, error)
        await send.send(result)


async def _iterate(
    items: list[tuple[int, ProvisionSpec]],
) -> AsyncGenerator[tuple[int, ProvisionSpec], None]:
    for item in items:
        yield item


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
