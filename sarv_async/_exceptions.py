"""Every error this SDK raises.

::

    SarvError
    ├── APIError                  the server answered with its error envelope
    │   ├── ValidationError       bad or missing parameters (also raised locally, before sending)
    │   ├── AuthenticationError   owner_id and token do not match
    │   ├── GeneralError          an unexpected error on the server
    │   └── RateLimitError        HTTP 429, once retries are spent
    ├── APIConnectionError        no usable answer: the connection failed or dropped
    │   └── APITimeoutError       the call timed out
    ├── UnexpectedResponseError   an answer that is not the documented JSON
    ├── OutcomeUnknownError       a call unsafe to repeat may or may not have taken effect
    ├── LedgerError               the ledger's store failed, or contradicts the account
    │   └── LedgerLostError       the ledger was lost or replaced while in use
    └── StoreUnavailableError     the shared store (Redis) did not answer in time

Messages never carry the token, a request body or an SMTP password. Every error
pickles with its attributes (and a `SarvError` cause), so it crosses process pools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._requests import SarvRequest

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "GeneralError",
    "LedgerError",
    "LedgerLostError",
    "OutcomeUnknownError",
    "RateLimitError",
    "SarvError",
    "StoreUnavailableError",
    "UnexpectedResponseError",
    "ValidationError",
]


class SarvError(Exception):
    """The root of every error raised by sarv-async."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls ``cls(*args)``, which loses keyword-only arguments
        # (``OutcomeUnknownError(message)`` without ``request`` cannot even be built).
        state = dict(vars(self))
        if isinstance(self.__cause__, SarvError):
            state["__cause__"] = self.__cause__
        return (_rebuild, (type(self), self.args), state)


def _rebuild(cls: type[SarvError], args: tuple[Any, ...]) -> SarvError:
    """An error of ``cls`` with ``args``, its attributes to be set by unpickling."""
    return cls.__new__(cls, *args)


class APIError(SarvError):
    """The API answered with its error envelope (whatever the HTTP status)."""

    #: The error kind the server named (``"ValidationError"``, ...).
    name: str
    #: The envelope's ``code`` (the API uses ``-1``); ``None`` when absent or raised locally.
    code: int | str | None
    #: The server's human-readable message.
    message: str
    #: The HTTP status of the answer; ``None`` for errors raised before sending.
    status_code: int | None

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        code: int | str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name if name is not None else type(self).__name__
        self.code = code
        self.status_code = status_code

    def __str__(self) -> str:
        where = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        return f"{self.name}: {self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, code={self.code!r}, "
            f"message={self.message!r}, status_code={self.status_code!r})"
        )


class ValidationError(APIError, ValueError):
    """Bad or missing parameters, found by the server or locally before any request."""

    #: The argument at fault, when the error was raised locally.
    field: str | None

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        name: str | None = None,
        code: int | str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, name=name, code=code, status_code=status_code)
        self.field = field


class AuthenticationError(APIError):
    """The owner_id and token do not match (the API says "Token MissMatch")."""


class GeneralError(APIError):
    """The server reported an unexpected error while processing the call."""


class RateLimitError(APIError):
    """The API answered HTTP 429 and the retries are spent, or its wait is too long to sit out.

    Only an HTTP 429 raises it: an error envelope that merely names ``RateLimitError``
    with another status proves nothing about the call and raises `APIError`.
    """

    #: Seconds the server asked us to wait, when it said.
    retry_after: float | None

    def __init__(
        self,
        message: str = "rate limit exceeded",
        *,
        retry_after: float | None = None,
        name: str | None = None,
        code: int | str | None = None,
        status_code: int | None = 429,
    ) -> None:
        super().__init__(message, name=name, code=code, status_code=status_code)
        self.retry_after = retry_after

    def __str__(self) -> str:
        base = super().__str__()
        return base if self.retry_after is None else f"{base}; retry after {self.retry_after:g} s"


class APIConnectionError(SarvError):
    """No usable answer came back: the connection could not be made, or it dropped."""


class APITimeoutError(APIConnectionError):
    """The call did not finish within its timeout."""


class UnexpectedResponseError(SarvError):
    """The answer was not the documented JSON: an HTML gateway page, a bad shape, missing fields."""

    #: The HTTP status of the answer.
    status_code: int | None

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class OutcomeUnknownError(SarvError):
    """A call that is unsafe to repeat may have taken effect; it was not repeated.

    ``request`` is the call that was sent, so its outcome can be reconciled, for an
    SMTP user with ``client.smtp_users.list()``, which returns every user with its
    password. ``__cause__`` is the failure that made the outcome unknowable.
    """

    #: The request whose outcome is unknown (it holds no secret).
    request: SarvRequest[Any]
    #: With a ledger: the idempotency key to call again with to settle the outcome.
    idempotency_key: str | None

    def __init__(
        self, message: str, *, request: SarvRequest[Any], idempotency_key: str | None = None
    ) -> None:
        super().__init__(message)
        self.request = request
        self.idempotency_key = idempotency_key


class LedgerError(SarvError):
    """The ledger could not be read or written, or what it records contradicts the account.

    Nothing is sent when the ledger fails before a create; a create whose result could not
    be recorded stays `PENDING` in the ledger and is reconciled by the next caller.
    """


class LedgerLostError(LedgerError):
    """The ledger in use was lost or replaced: its store no longer holds the account's record.

    Raised before the next create, never after a fresh record was started in its place:
    a Redis restarted empty, a SQLite file deleted, truncated or replaced. Keys begun
    before the loss are unknown to the store now, so going on could create their users
    twice. Recover from your own record of what was created (see docs/idempotency.md).
    """


class StoreUnavailableError(SarvError):
    """Redis, which shares the account's rate budget between processes, did not answer in time.

    Raised only when falling back to in-process pacing was switched off
    (``on_redis_error="raise"``); nothing was sent.
    """
