"""`SarvClient` and `SendCleanClient`: the async clients' blocking twins.

A sync client owns an `AsyncSarvClient` and an event loop in a thread of its own
(`LoopThread`), and runs every call of the async client there: the same code, the
same exactly-once creates, pacing and errors, and one pool, limiter and ledger for
every call and every thread using the client. Nothing here decides anything a call
does; it only carries calls to the loop and their results back.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar

import httpx

from ._client import (
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
    AsyncSarvClient,
    AsyncSendCleanClient,
    ClientState,
)
from ._config import Secret
from ._ledger import Ledger
from ._limiter import RateLimiter
from ._models import SmtpCredentials, SmtpUser, SmtpUserStatus, UpdateSmtpUserResponse
from ._provision import (
    DEFAULT_MAX_ROUNDS,
    DEFAULT_SETTLE_DELAY,
    AnyProvisionResult,
    ProgressCallback,
    Provisioning,
    ProvisionSpec,
    ProvisionSummary,
)
from ._requests import SarvRequest
from ._retry import Backoff
from ._sync_loop import LoopThread, running_loop

__all__ = ["SarvClient", "SendCleanClient", "SyncProvisioning", "SyncSmtpUsers"]

T = TypeVar("T")
Self = TypeVar("Self", bound="SarvClient")


class _Runner:
    """The loop a client and its `with_options` copies share, and the open async client."""

    __slots__ = (
        "__weakref__",
        "closed",
        "closing",
        "description",
        "done",
        "idle",
        "in_flight",
        "loop",
        "opened",
        "runs",
    )

    def __init__(self, loop: LoopThread, description: str) -> None:
        self.loop = loop
        self.description = description
        #: Notified when the last call in flight ends (`close` waits for it).
        self.idle = threading.Condition()
        self.in_flight = 0
        #: New calls are refused (`close` began).
        self.closed = False
        #: `close` finished: the async client is closed and the loop stopped.
        self.done = False
        #: One `close` at a time; another waits for it, one interrupted leaves it to the next.
        self.closing = threading.Lock()
        self.opened: AbstractContextManager[Any] | None = None
        #: Provisioning runs open on the loop: `close` ends those left open.
        self.runs: set[AbstractContextManager[Any]] = set()

    @contextlib.contextmanager
    def in_flight_call(self) -> Iterator[None]:
        """A call that `close` waits for; refused if the client cannot take it (`check`)."""
        with self.idle:
            self.check()
            self.in_flight += 1
        try:
            yield
        finally:
            self._ended()

    def _ended(self) -> None:
        """A call in flight ended: `close` may go on once none is left."""
        with self.idle:
            self.in_flight -= 1
            self.idle.notify_all()

    def call(self, func: Callable[[], Awaitable[T]]) -> T:
        with self.in_flight_call():
            return self.loop.call(func)

    def call_sync(self, func: Callable[[], T]) -> T:
        """Run the plain function ``func`` in the loop's thread, as a call in flight."""
        with self.in_flight_call():
            return self.loop.call_sync(func)

    def open_run(self, run: Provisioning) -> AbstractContextManager[Any]:
        """Open ``run`` on the loop (as a call in flight); `close_run` or `close` ends it."""
        with self.in_flight_call():
            opened = self.loop.enter(run)
            opened.__enter__()
            with self.idle:
                self.runs.add(opened)
        return opened

    def close_run(
        self,
        opened: AbstractContextManager[Any],
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """End a run `open_run` opened, unless closing the client ended it already."""
        with self.idle:
            # Once the client is closing, the run is left to `close` to end.
            ours = opened in self.runs and not self.closed
            if ours:
                self.runs.discard(opened)
                self.in_flight += 1
        if not ours:
            if exc is None:
                self.check()  # raises: the client is closed, and the run ended with it
            return None
        try:
            return opened.__exit__(exc_type, exc, tb)
        finally:
            self._ended()

    def check(self) -> None:
        """Refuse a call from a running event loop, on a closed client, or after a fork."""
        if self.loop.forked:
            raise RuntimeError(
                f"this {self.description} was made before this process was forked, and its "
                "event loop thread is in the parent: make a new client in this process"
            )
        library = running_loop()
        if library is not None:
            raise RuntimeError(
                f"{self.description} blocks, so it cannot be called from a running {library} "
                "event loop: in async code use AsyncSarvClient (or AsyncSendCleanClient) and "
                "await its calls"
            )
        if self.closed:
            raise RuntimeError(f"this {self.description} is closed; create a new client")

    def close(self) -> None:
        """Refuse new calls, let those in flight end, close the async client, stop the loop.

        Idempotent and thread-safe. In a forked child it only refuses new calls: the
        loop, the pool and what else the client opened are the parent's.
        """
        if self.loop.forked:
            self.closed = True  # not under `idle`: the fork may have copied it held
            return
        with self.closing:
            if self.done:
                return
            with self.idle:
                self.closed = True
                # A Ctrl-C here leaves the rest to the next close().
                self.idle.wait_for(lambda: self.in_flight == 0)
                runs, self.runs = self.runs, set()
            try:
                for run in runs:
                    # Left open with results unread: ended as leaving its block early ends
                    # it (its loop task would otherwise wait for that forever). Its errors
                    # are the run's, and nobody reads them any more.
                    with contextlib.suppress(Exception):
                        run.__exit__(None, None, None)
                if self.opened is not None:
                    self.opened.__exit__(None, None, None)
            finally:
                self.loop.stop()
                self.done = True


def _close_unclosed(runner: _Runner) -> None:
    """A client collected (or left at exit) unclosed: warn, and close it if we can."""
    if runner.done or runner.loop.in_this_thread or runner.loop.forked:
        return
    warnings.warn(
        f"unclosed {runner.description}: use 'with' or call close()",
        ResourceWarning,
        stacklevel=2,
    )
    runner.close()


class SarvClient:
    """The Sarv SMTP-user API for one account, with blocking calls.

    ```python
    with SarvClient(owner_id="...", token="...", app_domain="tes.example.com") as client:
        creds = client.smtp_users.create(total_limit=100, hourly_limit=10)
    ```

    The twin of `AsyncSarvClient`: the same arguments (but ``http_client``), the same
    ``SARV_*`` variables, calls, models and errors. It runs the async client on an event
    loop in a thread of its own, so its connection pool, rate limiter and ledger serve
    every call, and any number of threads may share one client (a web app's views, a
    Celery worker's tasks). It opens when made; ``with`` it, or call `close`. Calling it
    from a running event loop raises `RuntimeError`: await `AsyncSarvClient` there.
    """

    _async_class: ClassVar[type[AsyncSarvClient]] = AsyncSarvClient

    smtp_users: SyncSmtpUsers
    _client: AsyncSarvClient
    _runner: _Runner
    _origin: SarvClient | None = None

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
        allow_insecure_http: bool = False,
        redis_url: str | None = None,
        on_redis_error: Literal["fallback", "raise"] = "fallback",
        ledger: Ledger | str | os.PathLike[str] | None = None,
        settle_delay: float = DEFAULT_SETTLE_DELAY,
    ) -> None:
        # The token lives in a Secret from here on: no frame of a raised error holds it.
        secret = None if token is None else Secret(token)
        del token
        description = type(self).__name__
        library = running_loop()
        if library is not None:
            raise RuntimeError(
                f"{description} blocks, so it cannot be made in a running {library} event "
                f"loop: in async code use {self._async_class.__name__}"
            )
        options: dict[str, Any] = {
            "app_domain": app_domain,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
            "rate_limit": rate_limit,
            "max_concurrency": max_concurrency,
            "backoff": backoff,
            "max_retry_after": max_retry_after,
            "attempt_timeout": attempt_timeout,
            "max_answer_bytes": max_answer_bytes,
            "limiter": limiter,
            "allow_insecure_http": allow_insecure_http,
            "redis_url": redis_url,
            "on_redis_error": on_redis_error,
            "ledger": ledger,
            "settle_delay": settle_delay,
        }
        async_class = self._async_class

        def make() -> AsyncSarvClient:
            return async_class(owner_id, None if secret is None else secret.reveal(), **options)

        loop = LoopThread(f"sarv-async {description}")
        try:
            # Made and opened on the loop: what it holds (locks, Redis) belongs there.
            client = loop.call_sync(make)
            runner = _Runner(loop, f"{description} for {client.owner_id!r}")
            runner.opened = loop.enter(client)
            runner.opened.__enter__()
        except BaseException:
            loop.stop()
            raise
        self._client = client
        self._runner = runner
        self.smtp_users = SyncSmtpUsers(self)
        self._finalizer = weakref.finalize(self, _close_unclosed, runner)

    # -- configuration -------------------------------------------------------------

    @property
    def base_url(self) -> httpx.URL:
        """The URL every call path is joined to, e.g. ``https://api.example.com/v1.0/``."""
        return self._client.base_url

    @property
    def owner_id(self) -> str:
        """The account this client acts for."""
        return self._client.owner_id

    @property
    def account_id(self) -> str:
        """The account's name in a ledger or Redis: a digest of the base URL and owner id."""
        return self._client.account_id

    @property
    def ledger(self) -> Ledger | None:
        """The ledger every create is recorded in, if the client has one."""
        return self._client.ledger

    @property
    def settle_delay(self) -> float:
        """Seconds to wait after a create's answer was lost before listing to settle it."""
        return self._client.settle_delay

    @property
    def state(self) -> ClientState:
        """`ClientState.OPENED` from its making, `CLOSED` after `close`."""
        return ClientState.CLOSED if self._runner.closed else self._client.state

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeout of each attempt."""
        return self._client.timeout

    @property
    def attempt_timeout(self) -> float | None:
        """Seconds one attempt may take in all, from sending to the last byte of the answer."""
        return self._client.attempt_timeout

    @property
    def max_answer_bytes(self) -> int:
        """The most bytes an answer's body may hold, decoded; past them a call fails."""
        return self._client.max_answer_bytes

    @property
    def max_retries(self) -> int:
        """How many times a failed call is repeated, when repeating is safe."""
        return self._client.max_retries

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

        See `AsyncSarvClient.with_options`. Closing either closes both.
        """
        copy = object.__new__(type(self))
        copy._runner = self._runner
        copy._origin = self  # the first client's finalizer closes the loop: keep it alive
        copy._client = self._client.with_options(
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            attempt_timeout=attempt_timeout,
            max_answer_bytes=max_answer_bytes,
        )
        copy.smtp_users = SyncSmtpUsers(copy)
        return copy

    def __repr__(self) -> str:
        if "_client" not in self.__dict__:  # seen from the frame of a failed __init__
            return f"<{type(self).__name__} (not made)>"
        return (
            f"<{type(self).__name__} base_url={str(self.base_url)!r} "
            f"owner_id={self.owner_id!r} state={self.state.name}>"
        )

    # -- calls ---------------------------------------------------------------------

    def send(self, request: SarvRequest[T]) -> T:
        """Send a request object (e.g. `CreateSmtpUserRequest`) and return its typed answer."""
        client = self._client
        return self._runner.call(lambda: client.send(request))

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self: Self) -> Self:
        if self._runner.closed:
            raise RuntimeError(f"cannot open a {type(self).__name__} that is closed")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (and what else the client opened); stop its thread.

        Calls in flight from other threads end first; calls after this fail.
        """
        if self._runner.loop.in_this_thread:
            raise RuntimeError(
                f"{type(self).__name__}.close() cannot be called from one of its own callbacks"
            )
        self._runner.close()


class SendCleanClient(SarvClient):
    """The same blocking client for the SendClean brand (see `AsyncSendCleanClient`).

    Its base URL defaults to ``https://api.sendclean.net/v1.0/``; settings are read from
    ``SENDCLEAN_*`` variables first, then ``SARV_*``.
    """

    _async_class: ClassVar[type[AsyncSarvClient]] = AsyncSendCleanClient


class SyncSmtpUsers:
    """``client.smtp_users`` of a `SarvClient`: the calls of `SmtpUsers`, blocking."""

    __slots__ = ("_client",)

    def __init__(self, client: SarvClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<SyncSmtpUsers of {self._client!r}>"

    def create(
        self, *, total_limit: int, hourly_limit: int, idempotency_key: str | None = None
    ) -> SmtpCredentials:
        """Add an SMTP user with these quotas; return its name and password.

        Exactly as `SmtpUsers.create`: never repeated once it may have reached the
        server (`OutcomeUnknownError`), and with a ledger, once per ``idempotency_key``.
        """
        users = self._client._client.smtp_users
        return self._client._runner.call(
            lambda: users.create(
                total_limit=total_limit, hourly_limit=hourly_limit, idempotency_key=idempotency_key
            )
        )

    def update(
        self,
        smtp_user_name: str,
        *,
        total_limit: int | None = None,
        hourly_limit: int | None = None,
        status: SmtpUserStatus | str | None = None,
    ) -> UpdateSmtpUserResponse:
        """Change an SMTP user's quotas or status; what is not given stays as it is."""
        users = self._client._client.smtp_users
        return self._client._runner.call(
            lambda: users.update(
                smtp_user_name, total_limit=total_limit, hourly_limit=hourly_limit, status=status
            )
        )

    def reset_password(self, smtp_user_name: str) -> SmtpCredentials:
        """Give an SMTP user a new password; return it."""
        users = self._client._client.smtp_users
        return self._client._runner.call(lambda: users.reset_password(smtp_user_name))

    def list(self) -> builtins.list[SmtpUser]:
        """Every SMTP user of the account, with its password."""
        users = self._client._client.smtp_users
        return self._client._runner.call(users.list)

    def provision(
        self,
        specs: Iterable[ProvisionSpec],
        *,
        concurrency: int | None = None,
        progress: ProgressCallback | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        settle_delay: float | None = None,
        run_id: str | None = None,
        baseline: Collection[str] | None = None,
    ) -> SyncProvisioning:
        """Create many SMTP users concurrently, exactly once; iterate over what became of each.

        The arguments and results of `SmtpUsers.provision`. ``specs`` are read, and
        ``progress`` is called, in the client's loop thread.

        ```python
        run = client.smtp_users.provision(specs)
        for result in run:
            print(result.index, result.outcome, result.credentials)
        print(run.summary)
        ```
        """
        client = self._client._client
        run = self._client._runner.call_sync(
            lambda: client.smtp_users.provision(
                specs,
                concurrency=concurrency,
                progress=progress,
                max_rounds=max_rounds,
                settle_delay=settle_delay,
                run_id=run_id,
                baseline=baseline,
            )
        )
        return SyncProvisioning(self._client._runner, run)


class SyncProvisioning:
    """A bulk provisioning of a `SarvClient`: iterate over it for its results.

    ``for result in run`` starts the run and ends it with the loop (leaving the loop
    early cancels it, as leaving `Provisioning`'s block does); ``with run:`` holds it
    open across several loops. `summary` is there once every result was read.
    """

    __slots__ = ("_ended", "_opened", "_run", "_runner")

    def __init__(self, runner: _Runner, run: Provisioning) -> None:
        self._runner = runner
        self._run = run
        self._opened: AbstractContextManager[Provisioning] | None = None
        self._ended = False

    @property
    def run_id(self) -> str:
        """The prefix of the keys of specs that have no ``key`` of their own."""
        return self._run.run_id

    @property
    def summary(self) -> ProvisionSummary:
        """The run's counts and orphans, once every result has been read."""
        return self._run.summary

    def __enter__(self) -> SyncProvisioning:
        if self._opened is not None:
            raise RuntimeError("this provisioning run was started already")
        self._opened = self._runner.open_run(self._run)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._opened is not None
        self._ended = True
        return self._runner.close_run(self._opened, exc_type, exc, tb)

    def __iter__(self) -> Iterator[AnyProvisionResult]:
        self._check_not_ended()
        if self._opened is None:
            with self:
                yield from self._results()
        else:
            yield from self._results()

    def complete(self) -> ProvisionSummary:
        """Read every result, dropping them, and return the summary (`Provisioning.complete`,
        in one trip to the client's loop)."""
        self._check_not_ended()
        if self._opened is None:
            with self:
                return self._runner.call(self._run.complete)
        return self._runner.call(self._run.complete)

    def _check_not_ended(self) -> None:
        if self._ended:
            raise RuntimeError("this provisioning run is over: start another with provision()")

    def _results(self) -> Iterator[AnyProvisionResult]:
        results = aiter(self._run)

        async def next_result() -> AnyProvisionResult | None:
            return await anext(results, None)

        while (result := self._runner.call(next_result)) is not None:
            yield result
