"""Creates through a ledger: idempotency keys, leases, and settling unknown outcomes.

`LedgerCreates` is what a client with a ledger uses for ``create()``. For one key:

1. `Ledger.begin` takes the key (`SEND`), or says it is done (its user's credentials are
   read back with ``list()``), busy (another caller holds it: poll until it is done or its
   holder's lease runs out) or unknown (`RECONCILE`).
2. A create is sent while a background task renews the holder's lease, so a slow but live
   holder (a long rate-limiter wait, a 429 pause) never loses it. Its answer is claimed
   for the key; an answer whose user someone's reconciliation already adopted, or a lost
   answer, leaves the key unknown.
3. An unknown key is reconciled: a list started at least ``settle_delay`` after the last
   attempt ended; an unowned user with the same limits is adopted (claimed); if there is
   none, the key is proven absent and sent again (at most ``max_rounds`` times). A lost
   claim race means listing again, never "absent".
"""

from __future__ import annotations

import enum
import os
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import anyio

from ._exceptions import LedgerError, OutcomeUnknownError, SarvError, ValidationError
from ._fence import Fence, LeaseLost, fenced
from ._ledger import Claim, Decision, Ledger, LedgerEntry
from ._models import SmtpCredentials, SmtpUser
from ._requests import CreateSmtpUserRequest

if TYPE_CHECKING:
    from ._client import AsyncSarvClient

__all__ = [
    "DEFAULT_LEASE",
    "MAX_KEY_LENGTH",
    "LedgerCreates",
    "check_key",
    "free_users",
    "holder_is_dead",
    "holding",
    "mismatch_error",
    "new_holder",
]

#: Seconds a holder's claim on a key lasts unless renewed (it is renewed every third of it).
DEFAULT_LEASE = 30.0
#: The longest idempotency key accepted.
MAX_KEY_LENGTH = 255
_POLL_FIRST = 0.05
_POLL_MAX = 1.0


def _host_id() -> str:
    """This host's name, and on Linux its PID namespace: what a process id is unique in.

    Containers sharing the host name (host networking) each have their own process ids,
    so a process id alone says nothing about a holder of another PID namespace.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{namespace.removeprefix('pid:').strip('[]')}"


_HOST = _host_id()

T = TypeVar("T")


def new_holder() -> str:
    """An id for one attempt: host (and PID namespace), process and a random part."""
    return f"{_HOST}:{os.getpid()}:{os.urandom(8).hex()}"  # 64 random bits


def holder_is_dead(holder: str | None) -> bool:
    """Whether ``holder`` is an attempt of a process of this host (and PID namespace)
    that no longer runs.

    Its hold can then end at once instead of when its lease runs out (a rerun after
    ``kill -9`` need not wait). Anything unsure (another host, a process id now used by
    another process, no way to ask) counts as alive: its lease still bounds the wait.
    """
    if holder is None or sys.platform == "win32":
        return False
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def check_key(key: object, field: str = "idempotency_key") -> str:
    """``key`` if it is a usable idempotency key; `ValidationError` naming ``field`` if not."""
    if not isinstance(key, str) or not key.strip():
        shown = "an empty string" if isinstance(key, str) else f"a {type(key).__name__}"
        raise ValidationError(f"{field} must be a non-empty string, got {shown}", field=field)
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationError(
            f"{field} must be at most {MAX_KEY_LENGTH} characters, got {len(key)}", field=field
        )
    return key


def free_users(
    users: Sequence[SmtpUser], total_limit: int, hourly_limit: int, owned: set[str]
) -> list[SmtpUser]:
    """The listed users with these limits that no key owns and the baseline does not hold."""
    return [
        user
        for user in users
        if user.total_limit == total_limit
        and user.hourly_limit == hourly_limit
        and user.smtp_user_name not in owned
    ]


async def holding(
    ledger: Ledger,
    account: str,
    key: str,
    holder: str,
    lease: float,
    call: Callable[[], Awaitable[T]],
    fence: Fence | None = None,
) -> T:
    """``await call()`` while renewing ``holder``'s lease on ``key`` every third of ``lease``.

    With a ``fence`` (a create), each renewal extends it and every attempt ``call`` sends
    checks it (see ``_fence.py``). What ``call`` raises is raised as itself, not wrapped
    in an exception group.
    """

    async def renew() -> None:
        while True:
            await anyio.sleep(lease / 3)
            asked = anyio.current_time()
            if not await ledger.renew(account, key, holder=holder, lease=lease):
                return  # settled or taken over: nothing left to keep
            if fence is not None:
                fence.extend(asked, lease)

    results: list[T] = []
    errors: list[Exception] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(renew)
        try:
            with fenced(fence):
                results.append(await call())
        except Exception as exc:
            errors.append(exc)
        finally:
            tg.cancel_scope.cancel()
    if errors:
        raise errors[0]
    return results[0]


class _Next(enum.Enum):
    """What a keyed create does next, when a phase did not end with credentials."""

    AGAIN = "begin again"


_AGAIN = _Next.AGAIN


class LedgerCreates:
    """A client's creates through its ledger (see the module docstring)."""

    def __init__(
        self,
        client: AsyncSarvClient,
        ledger: Ledger,
        account: str,
        *,
        settle_delay: float,
        lease: float = DEFAULT_LEASE,
        max_rounds: int = 3,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.account = account
        self.settle_delay = settle_delay
        self.lease = lease
        self.max_rounds = max_rounds

    def using(self, client: AsyncSarvClient) -> LedgerCreates:
        """The same, sending through ``client`` (a `with_options` copy, say)."""
        if client is self.client:
            return self
        copy = object.__new__(LedgerCreates)
        copy.__dict__.update(self.__dict__)
        copy.client = client
        return copy

    async def record_baseline(self) -> None:
        """List the account and record its users as the baseline, if none is recorded."""
        users = await self.client.smtp_users.list()
        await self.ledger.record_baseline(self.account, [user.smtp_user_name for user in users])

    async def create(
        self, request: CreateSmtpUserRequest, key: str | None, *, fingerprint: str | None = None
    ) -> SmtpCredentials:
        """Create the key's user exactly once, or return the one it has.

        Without a key, one is made up: the user is recorded all the same, so no other
        caller's reconciliation ever adopts it.
        """
        key = key if key is not None else f"auto:{uuid.uuid4().hex}"
        holder = new_holder()
        poll = _POLL_FIRST
        resends = 0
        while True:
            asked = granted = anyio.current_time()
            begun = await self.ledger.begin(
                self.account,
                key,
                total_limit=request.total_limit,
                hourly_limit=request.hourly_limit,
                holder=holder,
                lease=self.lease,
                fingerprint=fingerprint,
            )
            entry = begun.entry
            decision = begun.decision
            if decision is Decision.NEED_BASELINE:
                await self.record_baseline()
                continue
            assert entry is not None
            if decision is Decision.MISMATCH:
                raise mismatch_error(key, entry, request, fingerprint)
            if decision is Decision.DONE:
                assert entry.user_name is not None
                return await self.read_back(key, entry.user_name)
            if decision is Decision.BUSY:
                if holder_is_dead(entry.holder):
                    assert entry.holder is not None
                    await self.ledger.expire(self.account, key, holder=entry.holder)
                    continue
                left = entry.lease_left if entry.lease_left is not None else poll
                await anyio.sleep(max(0.0, min(poll, left + 0.01)))
                poll = min(poll * 2, _POLL_MAX)
                continue
            if decision is Decision.RECONCILE:
                settled = await self._reconcile(request, key, holder, entry, asked, resends)
                if isinstance(settled, SmtpCredentials):
                    return settled
                if settled is _AGAIN:
                    continue
                granted = settled
                resends += 1
            sent = await self._send(request, key, holder, Fence(granted + self.lease))
            if isinstance(sent, SmtpCredentials):
                return sent

    async def read_back(self, key: str, user_name: str) -> SmtpCredentials:
        """The credentials of the key's user, read with ``list()``."""
        for user in await self.client.smtp_users.list():
            if user.smtp_user_name == user_name:
                return _credentials(user, "read back with list")
        raise LedgerError(
            f"the ledger gives SMTP user {user_name} to idempotency key {key!r}, "
            "but the account has no such user"
        )

    async def _send(
        self, request: CreateSmtpUserRequest, key: str, holder: str, fence: Fence
    ) -> SmtpCredentials | _Next:
        """Send the create the ledger gave ``holder``; claim its user for ``key``.

        ``fence`` says until when ``holder``'s lease surely runs: no attempt leaves later.
        """
        ledger, account = self.ledger, self.account
        try:
            creds = await holding(
                ledger, account, key, holder, self.lease, lambda: self.client.send(request), fence
            )
        except LeaseLost:
            # Frozen past the lease before the create left: nothing was sent. Beginning
            # again reconciles the key (someone else may have made its user meanwhile).
            return _AGAIN
        except OutcomeUnknownError:
            with anyio.CancelScope(shield=True):
                await ledger.mark_unknown(account, key, holder=holder)
            return _AGAIN
        except SarvError:
            with anyio.CancelScope(shield=True):
                await ledger.mark_failed(account, key, holder=holder)
            raise
        except BaseException:
            # Cancelled (or worse) while the create may have been on its way.
            with anyio.CancelScope(shield=True):
                await ledger.mark_unknown(account, key, holder=holder)
            raise
        with anyio.CancelScope(shield=True):  # the user exists: record it whatever happens
            claim = await ledger.claim(account, key, creds.smtp_user_name)
        if claim is Claim.CLAIMED:
            return creds
        if claim is Claim.NO_ENTRY:
            raise LedgerError(f"the ledger lost idempotency key {key!r} while it was in flight")
        # SETTLED: the key had another user by then (begin again reads it back). TAKEN:
        # someone's reconciliation adopted this user first; the key is unknown now.
        return _AGAIN

    async def _reconcile(
        self,
        request: CreateSmtpUserRequest,
        key: str,
        holder: str,
        entry: LedgerEntry,
        asked: float,
        resends: int,
    ) -> SmtpCredentials | _Next | float:
        """Settle an unknown key ``holder`` holds: adopt a user, or prove it absent.

        Returns credentials; `_AGAIN` to begin again; when the key was proven absent and
        made `PENDING` again for ``holder`` to send, the anyio time the ledger was asked
        (its new lease runs from no earlier).
        """
        ledger, account = self.ledger, self.account
        limits = (request.total_limit, request.hourly_limit)
        # From when begin was asked: errs early by at most one ledger call (see provision).
        ready_at = asked - (entry.ended_ago or 0.0) + self.settle_delay

        async def settle() -> SmtpCredentials | _Next | float:
            nonlocal ready_at
            while True:
                await anyio.sleep_until(ready_at)
                try:
                    users = await self.client.smtp_users.list()
                except SarvError as exc:
                    await ledger.release(account, key, holder=holder)
                    raise OutcomeUnknownError(
                        f"a create for idempotency key {key!r} may or may not have taken "
                        f"effect, and the account could not be listed to find out ({exc}); "
                        "call again with the same key to settle it",
                        request=request,
                        idempotency_key=key,
                    ) from exc
                candidates = [u for u in users if (u.total_limit, u.hourly_limit) == limits]
                owned = await ledger.owned(account, [u.smtp_user_name for u in candidates])
                free = free_users(candidates, *limits, owned)
                for user in free:
                    claim = await ledger.claim(account, key, user.smtp_user_name)
                    if claim is Claim.CLAIMED:
                        return _credentials(user, "adopted from list")
                    if claim is not Claim.TAKEN:
                        return _AGAIN  # settled meanwhile (a late answer)
                if free:
                    ready_at = anyio.current_time()  # lost every race: list again
                    continue
                if resends >= self.max_rounds:
                    await ledger.mark_failed(account, key, holder=holder)
                    raise LedgerError(
                        f"idempotency key {key!r}: no user was created after "
                        f"{resends + 1} attempts whose answers were lost; giving up"
                    )
                resent_at = anyio.current_time()
                if await ledger.resend(account, key, holder=holder, lease=self.lease):
                    return resent_at
                return _AGAIN

        return await holding(ledger, account, key, holder, self.lease, settle)


def _credentials(user: SmtpUser, message: str) -> SmtpCredentials:
    return SmtpCredentials(user.smtp_user_name, user.smtp_password, message)


def mismatch_error(
    key: str,
    entry: LedgerEntry,
    request: CreateSmtpUserRequest,
    fingerprint: str | None,
    field: str = "idempotency_key",
) -> ValidationError:
    """The error for a key given again with other limits (or other content)."""
    if (entry.total_limit, entry.hourly_limit) == (request.total_limit, request.hourly_limit):
        what = "for other content" if entry.fingerprint != fingerprint else "otherwise"
    else:
        what = f"with total_limit={entry.total_limit}, hourly_limit={entry.hourly_limit}"
    return ValidationError(
        f"idempotency key {key!r} was already used {what}; a key stands for one user",
        field=field,
    )
