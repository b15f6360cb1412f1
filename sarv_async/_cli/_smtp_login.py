"""Logging in to an SMTP relay with a credential (and sending one message), for the CLI.

Uses the standard library's `smtplib` in worker threads, so it runs under any event
loop with bounded concurrency. A failure is one line naming what happened, the server's
reply included; the password is never part of it.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from typing import Literal

import anyio
import attrs

__all__ = ["Security", "SmtpRelay", "check_credentials", "login_and_send"]

#: How the connection is secured: STARTTLS after connecting, TLS from the start, or not.
Security = Literal["starttls", "ssl", "none"]


@attrs.frozen
class SmtpRelay:
    """Where and how to log in."""

    host: str
    port: int
    security: Security = "starttls"
    #: Trusted CAs for the relay's certificate (default: the system's).
    context: ssl.SSLContext = attrs.field(factory=ssl.create_default_context, repr=False)
    #: Seconds each login (with its message) may take.
    timeout: float = 10.0


def login_and_send(
    relay: SmtpRelay, user: str, password: str, *, send_to: str | None = None
) -> str | None:
    """Log in as ``user`` (and send one short message to ``send_to``): ``None`` when it
    worked, else why not, in one line without the password."""
    try:
        _session(relay, user, password, send_to)
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        what = "login refused" if isinstance(exc, smtplib.SMTPAuthenticationError) else "refused"
        return _masked(f"{what}: {exc.smtp_code} {reply}".strip(), password)
    except smtplib.SMTPNotSupportedError:
        return "the server offers no AUTH here (try --starttls or --ssl)"
    except smtplib.SMTPServerDisconnected as exc:
        if "timed out" in str(exc):  # smtplib reports a read timeout this way
            return f"no answer within {relay.timeout:g} s"
        return "the server closed the connection"
    except smtplib.SMTPRecipientsRefused as exc:
        return _masked(f"recipient refused: {exc.recipients}", password)
    except smtplib.SMTPException as exc:
        return _masked(f"SMTP error: {exc}", password)
    except ssl.SSLError as exc:
        return f"TLS failed: {exc.reason or exc}"
    except TimeoutError:
        return f"no answer within {relay.timeout:g} s"
    except OSError as exc:
        return f"cannot connect to {relay.host}:{relay.port}: {exc.strerror or exc}"
    return None


def _session(relay: SmtpRelay, user: str, password: str, send_to: str | None) -> None:
    smtp: smtplib.SMTP
    if relay.security == "ssl":
        smtp = smtplib.SMTP_SSL(
            relay.host, relay.port, timeout=relay.timeout, context=relay.context
        )
    else:
        smtp = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout)
    with smtp:
        if relay.security == "starttls":
            smtp.starttls(context=relay.context)
        smtp.login(user, password)
        if send_to is not None:
            message = EmailMessage()
            message["From"] = f"{user}@sarv-async.invalid"
            message["To"] = send_to
            message["Subject"] = f"sarv-async check of {user}"
            message.set_content("This message checks that the SMTP credential sends.\n")
            smtp.send_message(message)


def _masked(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text


async def check_credentials(
    relay: SmtpRelay,
    credentials: Sequence[tuple[str, str]],
    *,
    concurrency: int = 5,
    send_to: str | None = None,
    done: Callable[[int, str | None], None] | None = None,
) -> list[str | None]:
    """`login_and_send` for each ``(user, password)``, ``concurrency`` at once.

    Returns each one's failure (``None``: it worked), in order; ``done(index, failure)``
    is called as each ends. A login still going after ``relay.timeout`` (plus a second
    of grace) is given up as timed out.
    """
    limiter = anyio.CapacityLimiter(concurrency)
    results: list[str | None] = [None] * len(credentials)

    async def check(index: int, user: str, password: str) -> None:
        failure: str | None = f"no answer within {relay.timeout:g} s"
        async with limiter:
            with anyio.move_on_after(relay.timeout + 1):
                failure = await anyio.to_thread.run_sync(
                    lambda: login_and_send(relay, user, password, send_to=send_to),
                    abandon_on_cancel=True,
                )
        results[index] = failure
        if done is not None:
            done(index, failure)

    async with anyio.create_task_group() as tg:
        for index, (user, password) in enumerate(credentials):
            tg.start_soon(check, index, user, password)
    return results
