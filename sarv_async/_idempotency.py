"""``create(idempotency_key=...)``: one key driven through the engine, one step at a time.

`create_once` runs `Engine`'s steps for one key (``_engine.py``): a key already done is
read back with ``list()``; one held by another caller is asked about again, sooner at
first; an unknown one is settled with a list of its own, started ``settle_delay`` after
the attempt that lost its answer ended. The key's lease is renewed while its create is
in flight.
"""

from __future__ import annotations

import uuid

import anyio

from ._engine import AccountPort, Engine, KeyState, Step, renewing
from ._exceptions import OutcomeUnknownError, SarvError, ValidationError
from ._holders import holder_is_dead, new_holder
from ._logging import logger
from ._models import SmtpCredentials
from ._requests import CreateSmtpUserRequest

__all__ = ["MAX_KEY_LENGTH", "check_key", "create_once", "holder_is_dead", "new_holder"]

#: The longest idempotency key accepted.
MAX_KEY_LENGTH = 255


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


async def create_once(
    engine: Engine,
    port: AccountPort,
    request: CreateSmtpUserRequest,
    key: str | None,
    *,
    fingerprint: str | None = None,
) -> SmtpCredentials:
    """Create the key's user exactly once, or return the one it has.

    Without a key, one is made up: the user is recorded all the same, so no other
    caller's reconciliation ever adopts it.
    """
    state = KeyState(request, key if key is not None else f"auto:{uuid.uuid4().hex}", fingerprint)
    async with renewing(engine) as leases:
        step = await engine.begin(state)
        while True:
            if step.step is Step.SEND:
                step = await engine.send(state, port, leases)
            elif step.step is Step.SETTLED:
                assert step.credentials is not None
                if step.ledger_error is not None:
                    logger.warning(
                        "SMTP user %s was created for idempotency key %r, but the ledger "
                        "could not record it: %s",
                        step.credentials.smtp_user_name,
                        state.key,
                        step.ledger_error,
                    )
                return step.credentials
            elif step.step is Step.DONE:
                assert step.user_name is not None
                return await _read_back(engine, port, state.key, step.user_name)
            elif step.step is Step.FAILED:
                assert step.error is not None
                raise step.error
            elif step.step is Step.NEED_BASELINE:
                await engine.record_baseline(port)
                step = await engine.begin(state)
            elif step.step is Step.WAIT:
                await anyio.sleep_until(step.at)
                step = await engine.begin(state)
            else:  # SETTLE
                await anyio.sleep_until(step.at)
                started = anyio.current_time()
                try:
                    users = await port.list()
                except SarvError as exc:
                    raise OutcomeUnknownError(
                        f"a create for idempotency key {state.key!r} may or may not have "
                        f"taken effect, and the account could not be listed to find out "
                        f"({exc}); call again with the same key to settle it",
                        request=request,
                        idempotency_key=state.key,
                    ) from exc
                limits = (request.total_limit, request.hourly_limit)
                candidates = [
                    u.smtp_user_name for u in users if (u.total_limit, u.hourly_limit) == limits
                ]
                owned = await engine.ledger.owned(engine.account, candidates)
                step = await engine.settle(state, users, owned, started)


async def _read_back(
    engine: Engine, port: AccountPort, key: str, user_name: str
) -> SmtpCredentials:
    """The credentials of the key's user, read with ``list()``."""
    for user in await port.list():
        if user.smtp_user_name == user_name:
            return SmtpCredentials(user.smtp_user_name, user.smtp_password, "read back with list")
    raise engine.error(
        f"the ledger gives SMTP user {user_name} to idempotency key {key!r}, "
        "but the account has no such user"
    )
