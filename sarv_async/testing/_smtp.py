"""The emulator's SMTP server: the users the API created log in and send (aiosmtpd).

It runs in a daemon thread with its own asyncio event loop, like the HTTP server,
so callers on asyncio, trio or plain threads reach it alike. STARTTLS uses a
certificate for ``127.0.0.1``, ``::1`` and ``localhost`` signed by a test CA made at
start-up (trustme); `SmtpServer.ca_pem` is that CA, for clients to trust.

Answers (see docs/emulator.md):

=========  ==============================================================================
code       when
=========  ==============================================================================
``235``    AUTH PLAIN or LOGIN with a user's current password, the user enabled
``535``    AUTH with an unknown user, a wrong (or replaced) password, or a disabled user
``538``    AUTH before STARTTLS while TLS is required (``require_tls``, the default)
``454``    AUTH meets the ``smtp_auth_transient`` fault
``530``    MAIL before a successful AUTH
``451``    MAIL or DATA past the user's ``hourly_limit`` (a rolling hour): try later
``554``    MAIL or DATA past the user's ``total_limit``, or by a user disabled since it
           logged in: permanent
``421``    on connecting, when the server meets the ``smtp_unavailable`` fault
=========  ==============================================================================

Passwords are compared and dropped: never kept in a message, a log line or a repr
(aiosmtpd masks AUTH arguments in its own log lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import ssl
import threading
import weakref
from typing import Any

from ._accepting import stop_accepting
from ._faults import FaultPlan
from ._state import EmulatorState, SmtpMessage, SmtpRefusal

__all__ = ["REPLIES", "SmtpServer"]

_INSTALL_HINT = "the emulator's SMTP server needs aiosmtpd and trustme: " + (
    "pip install 'sarv-async[emulator]'"
)
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_HOSTNAME = "sarv-emulator"

#: The emulator's SMTP replies by reason, as real relays answer.
REPLIES: dict[str, str] = {
    "unknown": "535 5.7.8 Authentication credentials invalid",
    "disabled": "535 5.7.8 Authentication credentials invalid (SMTP user disabled)",
    "auth_transient": "454 4.7.0 Temporary authentication failure, try again later",
    "auth_required": "530 5.7.0 Authentication required",
    "hourly_limit": "451 4.7.1 Hourly sending limit reached for this SMTP user, try again later",
    "total_limit": "554 5.7.1 Total sending limit reached for this SMTP user",
    "may_not_send": "554 5.7.1 This SMTP user may not send (disabled or removed)",
    "unavailable": "421 4.3.2 Service not available, closing transmission channel",
}


def _require(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ModuleNotFoundError(_INSTALL_HINT, name=name) from exc


class _QuietLoginData(logging.Filter):
    """Drops aiosmtpd's warning that its own AUTH code sets a deprecated attribute."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


def _quiet_aiosmtpd_log() -> None:
    log = logging.getLogger("mail.log")
    if not any(isinstance(existing, _QuietLoginData) for existing in log.filters):
        log.addFilter(_QuietLoginData())


class _Handler:
    """aiosmtpd's hooks: check the limits at MAIL, count and keep the message at DATA."""

    def __init__(self, state: EmulatorState, faults: FaultPlan) -> None:
        self._state = state
        self._faults = faults

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        user = session.auth_data if session.authenticated else None
        if not isinstance(user, str):
            return REPLIES["auth_required"]
        refusal = self._state.smtp_may_send(user)
        if refusal is not None:
            return _refused(refusal)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = SmtpMessage(
            smtp_user_name=session.auth_data,
            mail_from=envelope.mail_from,
            rcpt_to=list(envelope.rcpt_tos),
            content=bytes(envelope.original_content),
        )
        refusal = self._state.smtp_accept(message)
        if refusal is not None:
            return _refused(refusal)
        if self._faults.draw_smtp("smtp_drop_after_data") and server.transport is not None:
            server.transport.abort()
        return "250 2.0.0 OK: queued"


def _refused(refusal: SmtpRefusal) -> str:
    # A user disabled or gone since it logged in can send nothing more: permanent.
    return REPLIES["may_not_send" if refusal in ("unknown", "disabled") else refusal]


class _Unavailable(asyncio.Protocol):
    """A connection met by ``smtp_unavailable``: a 421 greeting, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REPLIES["unavailable"].encode() + b"\r\n")
        transport.close()


class SmtpServer:
    """An SMTP server on loopback for the emulator's users; ``start`` and ``stop`` block."""

    def __init__(
        self,
        state: EmulatorState,
        faults: FaultPlan,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        require_tls: bool = True,
    ) -> None:
        self._state = state
        self._faults = faults
        self.host = host
        self.port = port
        self.require_tls = require_tls
        #: The test CA's certificate (PEM), set by `start`.
        self.ca_pem: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on."""
        return self.host, self.port

    def start(self) -> None:
        """Make the certificates, bind, and serve in a thread; return once it accepts."""
        smtp = _require("aiosmtpd.smtp")
        trustme = _require("trustme")
        _quiet_aiosmtpd_log()
        ca = trustme.CA()
        self.ca_pem = ca.cert_pem.bytes().decode()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "::1", "localhost").configure_cert(tls)
        sock = socket.create_server((self.host, self.port), family=_family(self.host))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, args=(smtp, tls, sock), name=f"sarv-emulator-smtp:{self.port}"
        )
        self._thread.daemon = True
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT) or self._error is not None:
            self.stop()
            raise RuntimeError("the emulator's SMTP server failed to start") from self._error

    def request_stop(self) -> None:
        """Ask the server to close it and every connection, without waiting; idempotent."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(stop.set)

    def stop(self) -> None:
        """Close the server and every connection; wait for the thread; idempotent."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT)

    def _run(self, smtp: Any, tls: ssl.SSLContext, sock: socket.socket) -> None:
        try:
            asyncio.run(self._serve(smtp, tls, sock))
        except BaseException as exc:
            self._error = exc
        finally:
            sock.close()
            self._ready.set()

    async def _serve(self, smtp: Any, tls: ssl.SSLContext, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        handler = _Handler(self._state, self._faults)
        sessions: weakref.WeakSet[Any] = weakref.WeakSet()

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> Any:
            if self._faults.draw_smtp("smtp_auth_transient"):
                return smtp.AuthResult(
                    success=False, handled=False, message=REPLIES["auth_transient"]
                )
            try:
                name = auth_data.login.decode()
                refusal = self._state.smtp_login(name, auth_data.password.decode())
            except UnicodeDecodeError:
                refusal = "unknown"
            finally:
                del auth_data  # the password goes no further
            if refusal is not None:
                return smtp.AuthResult(success=False, handled=False, message=REPLIES[refusal])
            return smtp.AuthResult(success=True, auth_data=name)

        def connection() -> asyncio.Protocol:
            if self._faults.draw_smtp("smtp_unavailable"):
                return _Unavailable()
            session = smtp.SMTP(
                handler,
                hostname=_HOSTNAME,
                tls_context=tls,
                auth_require_tls=self.require_tls,
                authenticator=authenticate,
                loop=loop,
            )
            sessions.add(session)
            return session  # type: ignore[no-any-return]

        server = await loop.create_server(connection, sock=sock)
        self._loop = loop
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await stop_accepting([server])  # every accepted connection has its session now
            server.close()
            for session in list(sessions):
                if session.transport is not None:
                    session.transport.abort()
            await asyncio.sleep(0)  # the aborted transports close their sockets
            await server.wait_closed()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
