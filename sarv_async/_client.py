"""`AsyncSarvClient` and `AsyncSendCleanClient`: an account's API, as an async resource."""

from __future__ import annotations

import enum
import math
import os
import warnings
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import httpx

from . import _checks
from ._account import account_id
from ._answer_body import DEFAULT_MAX_ANSWER_BYTES
from ._checks import DEFAULT_SETTLE_DELAY
from ._config import (
    SARV,
    SENDCLEAN,
    Brand,
    Secret,
    from_environment,
    resolve,
    resolve_redis_url,
)
from ._exceptions import ValidationError
from ._limiter import RateLimiter, SlidingWindowLimiter
from ._pipeline import AnswerReader, CallOptions, Pipeline
from ._rate_spec import RateWindow, parse_rate_limit
from ._requests import SarvRequest
from ._resources import SmtpUsers
from ._retry import Backoff
from ._version import __version__

if TYPE_CHECKING:
    from ._engine import Engine
    from ._fence import Fence
    from ._ledger import Ledger
    from ._limiter_redis import RedisRateLimiter
    from ._models import SmtpCredentials
    from ._requests import CreateSmtpUserRequest

__all__ = [
    "DEFAULT_MAX_ANSWER_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_TIMEOUT",
    "AsyncSarvClient",
    "AsyncSendCleanClient",
    "ClientState",
]

T = TypeVar("T")
Self = TypeVar("Self", bound="AsyncSarvClient")

#: Connect within 5 s; every other phase within 30 s.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
#: The API's published limits (api-facts): pace to them unless told otherwise.
DEFAULT_RATE_LIMIT = "60/minute;3600/hour;50000/day"
DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_MAX_RETRY_AFTER = 120.0


class ClientState(enum.Enum):
    """Where a client is in its life."""

    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class _Shared:
    """What a client shares with its `with_options` copies: pipeline, pool and state.

    It outlives every copy, so it is what warns when the last of them is collected
    while the pool it opened is still open.
    """

    __slots__ = (
        "creates",
        "description",
        "http",
        "owned_limiter",
        "owns_http",
        "owns_ledger",
        "pipeline",
        "state",
        "used",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        http: httpx.AsyncClient,
        owns_http: bool,
        description: str,
        owned_limiter: AbstractAsyncContextManager[Any] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.http = http
        self.owns_http = owns_http
        self.description = description
        #: A limiter the client built (on Redis) and so opens and closes with itself.
        self.owned_limiter = owned_limiter
        self.state = ClientState.UNOPENED
        self.used = False
        #: The exactly-once engine on the client's ledger, when it has one.
        self.creates: Engine | None = None
        self.owns_ledger = False

    def __del__(self) -> None:
        if (
            self.owns_http
            and self.state is not ClientState.CLOSED
            and (self.state is ClientState.OPENED or self.used)
            and not self.http.is_closed
        ):
            warnings.warn(
                f"unclosed {self.description}: use 'async with' or await aclose()",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )


class AsyncSarvClient:
    """The Sarv SMTP-user API for one account.

    ```python
    async with AsyncSarvClient(owner_id="...", token="...", app_domain="tes.example.com") as c:
        creds = await c.smtp_users.create(total_limit=100, hourly_limit=10)
    ```

    ``owner_id``, ``token`` and the endpoint come from the ``SARV_OWNER_ID``,
    ``SARV_TOKEN``, ``SARV_BASE_URL`` / ``SARV_APP_DOMAIN`` variables when not given.
    An integer ``owner_id`` (as the official clients take it) is sent as its digits.
    ``base_url`` wins over ``app_domain`` (which gives ``https://api.{app_domain}/v1.0/``).
    Plain ``http://`` is refused but for loopback, or with ``allow_insecure_http=True``.

    ``timeout`` (seconds or an `httpx.Timeout`, for each phase), ``attempt_timeout``
    (seconds one attempt may take in all; by default connect + write + read of
    ``timeout``), ``max_answer_bytes`` (the most an answer's body may hold, decoded;
    64 MiB by default), ``max_retries``, ``rate_limit`` (e.g. ``"60/minute;3600/hour"``,
    ``None`` for no pacing) and ``max_concurrency`` (requests in flight) hold for every
    task using the client. An ``http_client`` you pass is used as is and never closed by
    the client.

    ``ledger`` (a `Ledger`, or the path of a `SqliteLedger` file; ``SARV_LEDGER`` when not
    given) records every create durably, so that ``create(idempotency_key=...)`` and
    ``provision()`` create each user exactly once across crashes, reruns and processes
    (see docs/idempotency.md). A ledger opened from a path is closed with the client.
    ``settle_delay`` is how long after a create's answer was lost the account is listed
    to settle it, so a create the server was still processing has landed by then.

    ``redis_url`` (or ``SARV_REDIS_URL``), e.g. ``"redis://localhost:6379/0"``, shares the
    rate budget and the 429 pause with every process using the same Redis and account
    (needs ``sarv-async[redis]``), and keeps the ledger there unless ``ledger`` or
    ``SARV_LEDGER`` says otherwise; such a client must be opened with ``async with``. When
    Redis fails, the client paces itself alone with one warning, or with
    ``on_redis_error="raise"`` raises `StoreUnavailableError`.
    """

    _brand: ClassVar[Brand] = SARV

    smtp_users: SmtpUsers
    _shared: _Shared
    _options: CallOptions

    def __init__(
        self,
        owner_id: str | int | None = None,
        token: str | None = None,
        *,
        app_domain: str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        rate_limit: str | None = DEFAULT_RATE_LIMIT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        backoff: Backoff | None = None,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        attempt_timeout: float | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        limiter: RateLimiter | None = None,
        http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        redis_url: str | None = None,
        on_redis_error: Literal["fallback", "raise"] = "fallback",
        ledger: Ledger | str | os.PathLike[str] | None = None,
        settle_delay: float = DEFAULT_SETTLE_DELAY,
    ) -> None:
        # From here on the token lives in a Secret only: no frame of an error raised
        # below (a bad option, a bad base URL) holds it as a plain local.
        secret = None if token is None else Secret(token)
        del token
        settings = resolve(
            self._brand,
            owner_id=owner_id,
            token=secret,
            app_domain=app_domain,
            base_url=base_url,
            allow_insecure_http=allow_insecure_http,
        )
        _checks.positive_int(max_concurrency, "max_concurrency")
        options = _call_options(
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff if backoff is not None else Backoff(),
            max_retry_after=max_retry_after,
            attempt_timeout=attempt_timeout,
            max_answer_bytes=max_answer_bytes,
        )
        owned_limiter: RedisRateLimiter | None = None
        redis = resolve_redis_url(self._brand, redis_url)
        if limiter is None and redis is not None:
            from ._limiter_redis import RedisRateLimiter

            limiter = owned_limiter = RedisRateLimiter(
                redis,
                _parse_rate_limit(rate_limit),
                account=account_id(str(settings.base_url), settings.owner_id),
                max_pause=options.max_retry_after,
                on_unavailable=on_redis_error,
            )
        elif limiter is None:
            limiter = SlidingWindowLimiter(
                _parse_rate_limit(rate_limit), max_pause=options.max_retry_after
            )

        user_agent = f"sarv-async/{__version__}"
        # identity: httpx would inflate a compressed answer with no bound (see _answer_body).
        headers = {
            "User-Agent": user_agent,
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
        }
        owns_http = http_client is None
        fresh_http = None
        if http_client is None:
            http_client = httpx.AsyncClient(
                headers=headers,
                timeout=options.timeout,
                limits=httpx.Limits(
                    max_connections=max_concurrency, max_keepalive_connections=max_concurrency
                ),
            )

            def fresh_http() -> httpx.AsyncClient:
                # Creates go out on a connection of their own, closed after the answer:
                # no bytes left on a reused connection can pass for a create's answer.
                return httpx.AsyncClient(
                    headers={**headers, "Connection": "close"},
                    timeout=options.timeout,
                    limits=httpx.Limits(
                        max_connections=max_concurrency, max_keepalive_connections=0
                    ),
                )

        pipeline = Pipeline(
            http=http_client,
            base_url=settings.base_url,
            owner_id=settings.owner_id,
            token=settings.token,
            limiter=limiter,
            max_concurrency=max_concurrency,
            # Our own pool carries the headers already; a borrowed one gets them per request.
            headers=None if owns_http else headers,
            fresh_http=fresh_http,
        )
        self._shared = _Shared(
            pipeline,
            http_client,
            owns_http,
            f"{type(self).__name__} for {settings.owner_id!r} at {settings.base_url}",
            owned_limiter,
        )
        self._options = options
        self._attempt_timeout = attempt_timeout
        self._owner_id = settings.owner_id
        self._base_url = settings.base_url
        self._settle_delay = _checks.settle_delay(settle_delay)
        self._account_id = account_id(str(settings.base_url), settings.owner_id)
        if ledger is None:
            # SARV_LEDGER, else the Redis that shares the rate budget keeps the ledger too.
            ledger = from_environment(self._brand, "LEDGER") or redis
            self._shared.owns_ledger = ledger is not None
        else:
            self._shared.owns_ledger = isinstance(ledger, (str, os.PathLike))
        if ledger is not None:
            from ._engine import Engine
            from ._ledger import open_ledger

            self._shared.creates = Engine(
                open_ledger(ledger), self._account_id, settle_delay=self._settle_delay
            )
        self.smtp_users = SmtpUsers(self)

    # -- configuration -------------------------------------------------------------

    @property
    def base_url(self) -> httpx.URL:
        """The URL every call path is joined to, e.g. ``https://api.example.com/v1.0/``."""
        return self._base_url

    @property
    def owner_id(self) -> str:
        """The account this client acts for."""
        return self._owner_id

    @property
    def account_id(self) -> str:
        """The account's name in a ledger or Redis: a digest of the base URL and owner id."""
        return self._account_id

    @property
    def ledger(self) -> Ledger | None:
        """The ledger every create is recorded in, if the client has one."""
        creates = self._shared.creates
        return creates.ledger if creates is not None else None

    @property
    def settle_delay(self) -> float:
        """Seconds to wait after a create's answer was lost before listing to settle it."""
        return self._settle_delay

    @property
    def state(self) -> ClientState:
        """`ClientState.UNOPENED`, `OPENED` or `CLOSED`."""
        return self._shared.state

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeout of each attempt."""
        return self._options.timeout

    @property
    def attempt_timeout(self) -> float | None:
        """Seconds one attempt may take in all, from sending to the last byte of the answer."""
        return self._options.attempt_timeout

    @property
    def max_answer_bytes(self) -> int:
        """The most bytes an answer's body may hold, decoded; past them a call fails."""
        return self._options.max_answer_bytes

    @property
    def max_retries(self) -> int:
        """How many times a failed call is repeated, when repeating is safe."""
        return self._options.max_retries

    def with_options(
        self: Self,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        attempt_timeout: float | None = None,
        max_answer_bytes: int | None = None,
    ) -> Self:
        """A copy with other per-call options, sharing this client's pool, limiter and life.

        An ``attempt_timeout`` not given explicitly (here or to the client) follows
        ``timeout``.

        ```python
        users = await client.with_options(timeout=60, max_retries=5).smtp_users.list()
        ```
        """
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        if attempt_timeout is not None:
            copy._attempt_timeout = attempt_timeout
        copy._options = _call_options(
            timeout=self._options.timeout if timeout is None else timeout,
            max_retries=self._options.max_retries if max_retries is None else max_retries,
            backoff=self._options.backoff if backoff is None else backoff,
            max_retry_after=self._options.max_retry_after,
            attempt_timeout=copy._attempt_timeout,
            max_answer_bytes=(
                self._options.max_answer_bytes if max_answer_bytes is None else max_answer_bytes
            ),
        )
        copy.smtp_users = SmtpUsers(copy)
        return copy

    def __repr__(self) -> str:
        if "_shared" not in self.__dict__:  # seen from the frame of a failed __init__
            return f"<{type(self).__name__} (not made)>"
        return (
            f"<{type(self).__name__} base_url={str(self._base_url)!r} "
            f"owner_id={self._owner_id!r} state={self._shared.state.name}>"
        )

    # -- calls ---------------------------------------------------------------------

    async def send(self, request: SarvRequest[T]) -> T:
        """Send a request object (e.g. `CreateSmtpUserRequest`) and return its typed answer."""
        return await self._pipeline().send(request, self._options)

    async def _send_fenced(
        self, request: CreateSmtpUserRequest, fence: Fence | None
    ) -> SmtpCredentials:
        """`send` for the exactly-once engine: no attempt leaves once ``fence`` has lapsed."""
        return await self._pipeline().send(request, self._options, fence)

    async def _send_streaming(self, request: SarvRequest[T], reader: AnswerReader) -> T | None:
        """`send`, with the answer read in pieces by ``reader`` (`Pipeline.send_streaming`)."""
        return await self._pipeline().send_streaming(request, self._options, reader)

    def _pipeline(self) -> Pipeline:
        shared = self._shared
        if shared.state is ClientState.CLOSED:
            raise RuntimeError(
                f"this {type(self).__name__} is closed; create a new client to make calls"
            )
        shared.used = True
        return shared.pipeline

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self: Self) -> Self:
        shared = self._shared
        if shared.state is not ClientState.UNOPENED:
            raise RuntimeError(
                f"cannot open a {type(self).__name__} that is {shared.state.name.lower()}; "
                "a client is opened once"
            )
        async with AsyncExitStack() as stack:
            if shared.owned_limiter is not None:
                await stack.enter_async_context(shared.owned_limiter)
            ledger = self.ledger
            opening = getattr(ledger, "__aenter__", None)
            if shared.owns_ledger and ledger is not None and opening is not None:
                # A ledger the client opened keeps its connections while the client is open.
                await opening()
                stack.push_async_callback(ledger.aclose)
            if shared.owns_http:
                await shared.http.__aenter__()
            stack.pop_all()
        shared.state = ClientState.OPENED
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool, unless it was passed in. Calls after this fail."""
        shared = self._shared
        if shared.state is ClientState.CLOSED:
            return
        shared.state = ClientState.CLOSED
        try:
            if shared.owns_http:
                try:
                    await shared.http.aclose()
                finally:
                    await shared.pipeline.aclose()
        finally:
            try:
                if shared.owns_ledger and shared.creates is not None:
                    await shared.creates.ledger.aclose()
            finally:
                if shared.owned_limiter is not None:
                    await shared.owned_limiter.__aexit__(None, None, None)


class AsyncSendCleanClient(AsyncSarvClient):
    """The same client for the SendClean brand.

    Its base URL defaults to ``https://api.sendclean.net/v1.0/``; settings are read from
    ``SENDCLEAN_*`` variables first, then ``SARV_*``.
    """

    _brand: ClassVar[Brand] = SENDCLEAN


def _parse_rate_limit(rate_limit: str | None) -> tuple[RateWindow, ...]:
    if rate_limit is None:
        return ()
    try:
        return parse_rate_limit(rate_limit)
    except (TypeError, ValueError) as exc:
        raise ValidationError(str(exc), field="rate_limit") from None


def _call_options(
    *,
    timeout: float | httpx.Timeout,
    max_retries: int,
    backoff: Backoff,
    max_retry_after: float,
    attempt_timeout: float | None,
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
) -> CallOptions:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, httpx.Timeout)):
        raise ValidationError(
            f"timeout must be seconds or an httpx.Timeout, got {type(timeout).__name__}",
            field="timeout",
        )
    if not isinstance(timeout, httpx.Timeout):
        if not 0 < timeout < math.inf:
            raise ValidationError(
                f"timeout must be a positive finite number of seconds, got {timeout!r}",
                field="timeout",
            )
        timeout = httpx.Timeout(float(timeout))
    phases = (timeout.connect, timeout.read, timeout.write, timeout.pool)
    if any(phase is not None and not 0 < phase < math.inf for phase in phases):
        raise ValidationError(
            f"timeout phases must be positive finite seconds or None, got {timeout!r}",
            field="timeout",
        )
    _checks.non_negative_int(max_retries, "max_retries")
    if not isinstance(backoff, Backoff):
        raise ValidationError("backoff must be a sarv_async.Backoff", field="backoff")
    if (
        isinstance(max_retry_after, bool)
        or not isinstance(max_retry_after, (int, float))
        or not 0 <= max_retry_after < math.inf
    ):
        raise ValidationError(
            f"max_retry_after must be finite non-negative seconds, got {max_retry_after!r}",
            field="max_retry_after",
        )
    if attempt_timeout is None:
        attempt_timeout = _default_attempt_timeout(timeout)
    elif (
        isinstance(attempt_timeout, bool)
        or not isinstance(attempt_timeout, (int, float))
        or not 0 < attempt_timeout < math.inf
    ):
        raise ValidationError(
            f"attempt_timeout must be a positive finite number of seconds, got {attempt_timeout!r}",
            field="attempt_timeout",
        )
    _checks.positive_int(max_answer_bytes, "max_answer_bytes")
    return CallOptions(
        timeout=timeout,
        max_retries=max_retries,
        backoff=backoff,
        max_retry_after=max_retry_after,
        attempt_timeout=float(attempt_timeout) if attempt_timeout is not None else None,
        max_answer_bytes=max_answer_bytes,
    )


def _default_attempt_timeout(timeout: httpx.Timeout) -> float | None:
    """connect + write + read of ``timeout``: each phase once; None if one is unbounded."""
    phases = (timeout.connect, timeout.write, timeout.read)
    if any(phase is None for phase in phases):
        return None
    return sum(phase for phase in phases if phase is not None)
