"""`Emulator`: the API emulator as a real uvicorn server on loopback.

The server runs in a daemon thread with its own asyncio event loop, so it serves
callers on asyncio, trio or plain threads alike. ``with`` starts and stops it
blocking; ``async with`` waits in an `anyio` worker thread, so the caller's event
loop keeps running. `Emulator.serve_forever` serves in the calling thread instead
(the command line).
"""

from __future__ import annotations

import enum
import importlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._rate_spec import RateWindow, parse_rate_limit
from ._app import BASE_PATH, EmulatorApp, ErrorKindField, ErrorStatus, ErrorStyle
from ._calls import call_name
from ._connections import ConnectionRegistry, protocol_class
from ._faults import FaultKind, FaultPlan, SmtpFaultKind
from ._state import DEMO_OWNER_ID, DEMO_TOKEN, EmulatorState, SmtpMessage

if TYPE_CHECKING:
    import ssl

    from .._client import AsyncSarvClient
    from .._sync import SarvClient
    from ._prompt_server import PromptServer
    from ._smtp import SmtpServer

__all__ = ["Emulator"]

_Self = TypeVar("_Self", bound="Emulator")

_INSTALL_HINT = "the emulator needs uvicorn: pip install 'sarv-async[emulator]'"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_GRACEFUL_SHUTDOWN = 2  # seconds uvicorn waits for answers in flight when stopping


class _Phase(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


def _require_uvicorn() -> Any:
    try:
        return importlib.import_module("uvicorn")
    except ImportError as exc:
        raise ModuleNotFoundError(_INSTALL_HINT, name="uvicorn") from exc


def _parse_rate_limit(spec: str | None) -> tuple[RateWindow, ...]:
    if spec is None or spec.strip().lower() in ("none", "off", ""):
        return ()
    return parse_rate_limit(spec)


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


class Emulator:
    """A local emulator of the SMTP-user API, served over HTTP on loopback.

    ```python
    with Emulator(rate_limit="3/second") as emu:
        async with emu.client() as client: ...
    ```

    ``accounts`` maps owner ids to tokens (default: ``{"demo": "demo-token"}``); each
    account has its own SMTP users. ``rate_limit`` holds every account to windows such
    as ``"60/minute;3600/hour"`` (``None`` or ``"none"``: no limit). With probability
    ``fault_rate`` an authenticated call meets a random fault (repeatable with
    ``seed``); `inject_fault` queues faults for the next calls. ``latency_ms`` delays
    every API answer. ``port=0`` picks a free port.

    ``smtp=True`` also serves SMTP on loopback (``smtp_port``, 0: a free one): the users
    the API created log in with their current password and send; ``smtp_require_tls``
    (default ``True``, as a real relay on port 587) refuses AUTH before STARTTLS.
    ``clock`` (default `time.monotonic`) times the rate windows and the SMTP users'
    rolling hour; a test may pass its own to move time on.

    The documents read two ways, and deployments differ: ``error_status="200"`` (the
    default) answers every error envelope with HTTP 200, ``"http"`` with a status by kind
    (ValidationError 400, AuthenticationError 401, GeneralError 500);
    ``error_kind_field`` puts the error's kind under ``"name"`` (default), ``"type"`` or
    ``"both"``.
    """

    def __init__(
        self,
        *,
        accounts: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: str | None = None,
        fault_rate: float = 0.0,
        seed: int | None = None,
        latency_ms: float = 0,
        smtp: bool = False,
        smtp_port: int = 0,
        smtp_require_tls: bool = True,
        clock: Callable[[], float] = time.monotonic,
        error_status: ErrorStatus = "200",
        error_kind_field: ErrorKindField = "name",
    ) -> None:
        accounts = dict(accounts) if accounts is not None else {DEMO_OWNER_ID: DEMO_TOKEN}
        if not accounts:
            raise ValueError("accounts must hold at least one owner_id: token pair")
        for owner_id, token in accounts.items():
            if not isinstance(owner_id, str) or not owner_id or not isinstance(token, str):
                raise ValueError("accounts must map non-empty owner_id strings to token strings")
            if not token:
                raise ValueError(f"account {owner_id!r} has an empty token")
        for name, number in (("port", port), ("smtp_port", smtp_port)):
            if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 65535:
                raise ValueError(f"{name} must be an integer between 0 and 65535, got {number!r}")
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, int | float):
            raise TypeError(f"latency_ms must be a number, got {latency_ms!r}")
        if not 0 <= latency_ms < float("inf"):
            raise ValueError(f"latency_ms must be zero or more, got {latency_ms!r}")
        errors = ErrorStyle(error_status, error_kind_field)
        self._accounts = accounts
        self.host = host
        self.port = port
        windows = _parse_rate_limit(rate_limit)
        #: The rate limit in the client's notation, or ``None`` for no limit.
        self.rate_limit: str | None = rate_limit if windows else None
        self._state = EmulatorState(accounts, windows, clock=clock)
        self._faults = FaultPlan(fault_rate, seed)
        self._smtp: SmtpServer | None = None
        if smtp:
            from ._smtp import SmtpServer

            self._smtp = SmtpServer(
                self._state, self._faults, host=host, port=smtp_port, require_tls=smtp_require_tls
            )
        self._connections = ConnectionRegistry()
        self._app = EmulatorApp(
            self._state,
            self._faults,
            latency=latency_ms / 1000,
            drop_connection=self._connections.abort,
            errors=errors,
        )
        self._phase = _Phase.NEW
        self._server: PromptServer | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._url: str | None = None

    def __repr__(self) -> str:
        where = self._url or f"{self.host}:{self.port}"
        return f"<Emulator {where} {self._phase.value}, accounts={list(self._accounts)}>"

    # Where it is and who may use it.

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``"http://127.0.0.1:54321"``."""
        if self._url is None:
            raise RuntimeError("the emulator has not been started")
        return self._url

    @property
    def base_url(self) -> str:
        """The API's base URL, e.g. ``"http://127.0.0.1:54321/v1.0/"``."""
        return self.url + BASE_PATH

    @property
    def accounts(self) -> dict[str, str]:
        """The accounts, owner id to token (a copy)."""
        return dict(self._accounts)

    @property
    def error_status(self) -> ErrorStatus:
        """``"200"``: errors come with HTTP 200; ``"http"``: with a status by kind."""
        return self._app.errors.status

    @property
    def error_kind_field(self) -> ErrorKindField:
        """The key of an error envelope's kind: ``"name"``, ``"type"`` or ``"both"``."""
        return self._app.errors.kind_field

    @property
    def smtp_address(self) -> tuple[str, int]:
        """The SMTP server's ``(host, port)``; needs ``Emulator(smtp=True)``, started."""
        return self._running_smtp().address

    @property
    def smtp_ca_pem(self) -> str:
        """The PEM certificate of the test CA that signed the SMTP server's certificate."""
        ca = self._running_smtp().ca_pem
        assert ca is not None
        return ca

    def smtp_ssl_context(self) -> ssl.SSLContext:
        """A client `ssl.SSLContext` that trusts the SMTP server's certificate (and no other)."""
        import ssl

        return ssl.create_default_context(cadata=self.smtp_ca_pem)

    def messages(self) -> list[SmtpMessage]:
        """The messages the SMTP server accepted, in arrival order (cleared by `reset`)."""
        return self._state.messages()

    def _running_smtp(self) -> SmtpServer:
        if self._smtp is None:
            raise RuntimeError("this emulator serves no SMTP; start it with Emulator(smtp=True)")
        if self._smtp.ca_pem is None:
            raise RuntimeError("the emulator has not been started")
        return self._smtp

    @property
    def fault_rate(self) -> float:
        """The probability that an authenticated call meets a random fault."""
        return self._faults.rate

    # Lifecycle.

    def _launch(
        self, *, in_thread: bool, log_level: str | None = None
    ) -> tuple[PromptServer, socket.socket]:
        if self._phase is not _Phase.NEW:
            raise RuntimeError(f"an emulator runs only once; this one is {self._phase.value}")
        uv = _require_uvicorn()
        sock = _bind(self.host, self.port)
        host, self.port = sock.getsockname()[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - mapping only
        self._url = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"
        options: dict[str, Any] = {}
        if in_thread:
            # Leave the host program's logging alone; errors still reach "uvicorn.error".
            options["log_config"] = None
        else:
            options["log_level"] = log_level
        config = uv.Config(
            self._app,
            http=protocol_class(self._connections, access_log=not in_thread),
            loop="asyncio",
            ws="none",
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
            **options,
        )
        from ._prompt_server import PromptServer  # imports uvicorn: with it, when first served

        server = PromptServer(config)
        self._server = server
        self._phase = _Phase.RUNNING
        if in_thread:
            self._thread = threading.Thread(
                target=self._serve, args=(server, sock), name=f"sarv-emulator:{self.port}"
            )
            self._thread.daemon = True
            self._thread.start()
        return server, sock

    def _serve(self, server: PromptServer, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # uvicorn exits with SystemExit on start-up failure
            self._error = exc
        finally:
            sock.close()

    def _wait_started(self) -> None:
        """Block until the server thread serves; stop it and raise if it cannot."""
        assert self._server is not None
        assert self._thread is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator's server failed to start") from self._error
            time.sleep(0.002)
        self._start_smtp()

    def _start_smtp(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.start()
        except BaseException:
            self.stop()
            raise

    def start(self: _Self) -> _Self:
        """Start serving in a background thread; return once it answers."""
        self._launch(in_thread=True)
        self._wait_started()
        return self

    def stop(self) -> None:
        """Stop serving and wait for the server thread to end; idempotent."""
        if self._phase is not _Phase.RUNNING:
            self._phase = _Phase.STOPPED
            return
        self._phase = _Phase.STOPPED
        assert self._server is not None
        self._server.request_exit()
        if self._smtp is not None:
            self._smtp.stop()
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT)

    def __enter__(self: _Self) -> _Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self: _Self) -> _Self:
        self._launch(in_thread=True)
        try:
            await anyio.to_thread.run_sync(self._wait_started)
        except BaseException:
            await self._astop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._astop()

    async def _astop(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)

    def serve_forever(
        self,
        ready: Callable[[Emulator], None] | None = None,
        *,
        log_level: str = "info",
    ) -> None:
        """Serve in the calling thread until SIGINT or SIGTERM (or `stop` from another thread).

        ``ready(self)`` runs once the port is bound and `base_url` is known. The server
        logs through uvicorn's default logging configuration, access lines included
        (method, path and status: never bodies).
        """
        server, sock = self._launch(in_thread=False, log_level=log_level)
        try:
            if self._smtp is not None:
                self._smtp.start()
            if ready is not None:
                ready(self)
        except BaseException:
            self._phase = _Phase.STOPPED
            if self._smtp is not None:
                self._smtp.stop()
            sock.close()
            raise

        def on_signal(signum: int, frame: FrameType | None) -> None:
            server.request_exit()

        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            # uvicorn installs its own handlers while serving and, once done, re-raises
            # the signal it caught to the handlers it found: these, so the process
            # ends normally instead of dying of the signal.
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()
            if self._smtp is not None:
                self._smtp.stop()
            self._phase = _Phase.STOPPED
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # Looking at and steering the server.

    def _owner(self, owner_id: str | None) -> str:
        if owner_id is None:
            return next(iter(self._accounts))
        if owner_id not in self._accounts:
            raise ValueError(f"no account {owner_id!r}; the emulator has {list(self._accounts)}")
        return owner_id

    def stats(self) -> dict[str, Any]:
        """Counters, as ``GET /_emulator/stats`` shows them.

        ``{"requests": {path: n}, "responses": {"200": n, ...}, "faults": n,
        "faults_by_kind": {...}, "dropped": n, "users": n, "users_by_account": {...}}``
        """
        return self._state.stats()

    def reset(self) -> None:
        """Forget users, messages, counters, rate windows and queued faults.

        ``POST /_emulator/reset`` does the same. Random faults start over from the seed;
        user names are never reused.
        """
        self._app.reset()

    def users(self, owner_id: str | None = None) -> list[dict[str, Any]]:
        """A snapshot of an account's users as list entries (default: the first account)."""
        return self._state.list_users(self._owner(owner_id))

    def inject_fault(
        self, kind: FaultKind | SmtpFaultKind, path: str | None = None, count: int = 1
    ) -> None:
        """Make the next ``count`` authenticated calls (to ``path`` only, if given) fail.

        ``kind`` is one of ``drop_before``, ``drop_after_apply``, ``gateway_page``,
        ``general_error``, ``truncated_json``; ``path`` names a call: ``"addSmtp"``
        or ``"settings/addSmtp"``. Queued faults come before random ones, in order.
        The SMTP server's kinds (no ``path``) meet its next connections, logins or
        messages: ``smtp_unavailable``, ``smtp_auth_transient``, ``smtp_drop_after_data``.
        """
        if path is not None:
            call_name(path)  # fail early on a typo
        self._faults.inject(kind, path, count)

    def client(self, owner_id: str | None = None, **kwargs: Any) -> AsyncSarvClient:
        """An `AsyncSarvClient` for an account here (default: the first account).

        Unless given, its ``rate_limit`` is the emulator's, as it would be configured
        for a real account's published limits.
        """
        from .. import AsyncSarvClient

        owner = self._owner(owner_id)
        kwargs.setdefault("rate_limit", self.rate_limit)
        return AsyncSarvClient(owner, self._accounts[owner], base_url=self.base_url, **kwargs)

    def sync_client(self, owner_id: str | None = None, **kwargs: Any) -> SarvClient:
        """A blocking `SarvClient` for an account here, as `client` makes the async one."""
        from .. import SarvClient

        owner = self._owner(owner_id)
        kwargs.setdefault("rate_limit", self.rate_limit)
        return SarvClient(owner, self._accounts[owner], base_url=self.base_url, **kwargs)
