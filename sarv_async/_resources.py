"""``client.smtp_users``: the four SMTP-user calls as methods, and bulk provisioning."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING

from . import _checks
from ._checks import DEFAULT_MAX_ROUNDS
from ._exceptions import ValidationError
from ._models import SmtpCredentials, SmtpUser, SmtpUserStatus, UpdateSmtpUserResponse
from ._requests import (
    CreateSmtpUserRequest,
    ListSmtpUsersRequest,
    ResetSmtpPasswordRequest,
    UpdateSmtpUserRequest,
)

if TYPE_CHECKING:
    from collections.abc import Collection

    from ._client import AsyncSarvClient
    from ._fence import Fence
    from ._list_stream import OnAnswer, OnUsers
    from ._provision import ProgressCallback, Provisioning, ProvisionSpec

__all__ = ["ClientAccount", "SmtpUsers"]


class ClientAccount:
    """The account as the exactly-once engine reaches it: through a client's calls."""

    __slots__ = ("_client",)

    def __init__(self, client: AsyncSarvClient) -> None:
        self._client = client

    async def create(
        self, request: CreateSmtpUserRequest, fence: Fence | None = None
    ) -> SmtpCredentials:
        return await self._client._send_fenced(request, fence)

    async def list(self) -> builtins.list[SmtpUser]:
        return await self._client.smtp_users.list()

    async def list_in_batches(
        self, on_users: OnUsers, *, on_answer: OnAnswer | None = None
    ) -> None:
        await self._client.smtp_users._list_in_batches(on_users, on_answer=on_answer)


class SmtpUsers:
    """The SMTP users of the client's account. Each method builds a request and sends it."""

    __slots__ = ("_client",)

    def __init__(self, client: AsyncSarvClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<SmtpUsers of {self._client!r}>"

    async def create(
        self, *, total_limit: int, hourly_limit: int, idempotency_key: str | None = None
    ) -> SmtpCredentials:
        """Add an SMTP user with these quotas; return its name and password.

        Without a ledger, the create is never repeated once it may have reached the
        server: such a failure raises `OutcomeUnknownError` (reconcile with `list`).

        With a ledger (see `AsyncSarvClient`), the create is recorded before it is sent,
        and a lost answer is settled before returning: by adopting the user it made, or
        by creating again once the account provably has none. ``idempotency_key`` makes
        the call repeatable: a later call with the same key, from any task or process
        sharing the ledger, returns that user (its current password read with `list`)
        and sends no create. The same key with other limits is a `ValidationError`, as is
        a key without a ledger. Nothing is sent in either case.
        """
        request = CreateSmtpUserRequest(total_limit=total_limit, hourly_limit=hourly_limit)
        if idempotency_key is not None:
            from ._idempotency import check_key

            idempotency_key = check_key(idempotency_key)
        engine = self._client._shared.creates
        if engine is None:
            if idempotency_key is not None:
                raise ValidationError(
                    "idempotency_key needs a ledger: pass ledger= (a path or a Ledger) to "
                    "the client, or set SARV_LEDGER",
                    field="idempotency_key",
                )
            return await self._client.send(request)
        from ._idempotency import create_once  # loaded with the first keyed create

        return await create_once(engine, ClientAccount(self._client), request, idempotency_key)

    async def update(
        self,
        smtp_user_name: str,
        *,
        total_limit: int | None = None,
        hourly_limit: int | None = None,
        status: SmtpUserStatus | str | None = None,
    ) -> UpdateSmtpUserResponse:
        """Change an SMTP user's quotas or status; what is not given stays as it is."""
        request = UpdateSmtpUserRequest(
            smtp_user_name,
            total_limit=total_limit,
            hourly_limit=hourly_limit,
            status=status,
        )
        return await self._client.send(request)

    async def reset_password(self, smtp_user_name: str) -> SmtpCredentials:
        """Give an SMTP user a new password; return it."""
        return await self._client.send(ResetSmtpPasswordRequest(smtp_user_name))

    async def list(self) -> builtins.list[SmtpUser]:
        """Every SMTP user of the account, with its password."""
        answer = await self._client.send(ListSmtpUsersRequest())
        return answer.smtp_list

    async def _list_in_batches(
        self, on_users: OnUsers, *, on_answer: OnAnswer | None = None
    ) -> None:
        """Every SMTP user, handed to ``on_users`` in batches as the answer arrives.

        Holds one batch at a time, not the account. The call is retried as `list` is,
        so after a retry ``on_users`` meets users it was given before; ``on_answer`` is
        called as each answer starts, so what came before it can be forgotten.
        """
        from ._list_stream import UserStream  # only provisioning's last list needs it

        reader = UserStream(on_users, on_answer)
        answer = await self._client._send_streaming(ListSmtpUsersRequest(), reader)
        if answer is not None:  # not readable in pieces: read whole
            await on_users(answer.smtp_list)

    def provision(
        self,
        specs: Iterable[ProvisionSpec] | AsyncIterable[ProvisionSpec],
        *,
        concurrency: int | None = None,
        progress: ProgressCallback | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        settle_delay: float | None = None,
        run_id: str | None = None,
        baseline: Collection[str] | None = None,
    ) -> Provisioning:
        """Create many SMTP users concurrently, exactly once, and stream what became of each.

        ``specs`` are `CreateSmtpUserRequest`s or mappings with ``total_limit`` and
        ``hourly_limit``, and optionally ``key``, the spec's idempotency key. A spec
        without one gets ``f"{run_id}:{position}"`` (``run_id`` is random unless given).
        With the client's ledger, a spec whose key has its user already is not created
        again (`ProvisionOutcome.EXISTING`, credentials read with `list`): run the same
        specs with the same ``run_id`` again after a crash, and the run resumes.

        ``concurrency`` defaults to the client's ``max_concurrency``;
        ``progress(done, failed, total)`` is called after each result. Creates whose
        outcome is unknown are reconciled during the run by listing the account
        ``settle_delay`` seconds (default: the client's) after they ended (a create the
        server was still processing must land first); specs proven not created are
        created again, up to ``max_rounds`` times (see `Provisioning`).

        Your own record of what was provisioned can stand in for a ledger that was lost:
        a spec may carry ``smtp_user_name``, the user your record gives it (entered in
        the ledger as the key's if it has none; nothing is sent), and ``baseline`` names
        the users that were on the account before the job began. If the ledger has no
        baseline for the account, the users of ``baseline`` still there are recorded as
        it, instead of every listed user, and the summary names the listed users that
        neither explains (`ProvisionSummary.unexplained`).

        ```python
        async with client.smtp_users.provision(specs) as run:
            async for result in run:
                print(result.index, result.outcome, result.credentials)
        print(run.summary)
        ```
        """
        from ._engine import Engine
        from ._ledger_memory import MemoryLedger
        from ._provision import Provisioning  # loaded with the first run

        client = self._client
        workers = client._shared.pipeline.max_concurrency
        if concurrency is not None:
            workers = _checks.positive_int(concurrency, "concurrency")
        rounds = _checks.non_negative_int(max_rounds, "max_rounds")
        delay = client.settle_delay if settle_delay is None else _checks.settle_delay(settle_delay)
        engine = client._shared.creates
        if engine is None:  # exactly once within this run, in memory
            engine = Engine(MemoryLedger(), client.account_id, settle_delay=delay)
        return Provisioning(
            ClientAccount(client),
            engine.derive(settle_delay=delay, max_rounds=rounds),
            specs,
            concurrency=workers,
            progress=progress,
            run_id=run_id,
            baseline=baseline,
        )
