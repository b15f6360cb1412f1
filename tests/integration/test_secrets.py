"""Secrets stay secret: no token, body or password in logs, reprs or error messages.

Real calls go to the emulator over loopback while DEBUG logging of ``sarv_async``,
``httpx`` and ``httpcore`` is captured, and every captured line is searched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sarv_async import (
    AsyncSarvClient,
    AuthenticationError,
    Backoff,
    CreateSmtpUserRequest,
    OutcomeUnknownError,
    SarvError,
    UpdateSmtpUserRequest,
)
from sarv_async.testing import Emulator

pytestmark = pytest.mark.anyio

OWNER = "owner-secrets"
TOKEN = "tok-Very-Secret-d41d8cd98f00b204"
LOGGERS = ("sarv_async", "httpx", "httpcore")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()} {record.args!r}")


@pytest.fixture
def captured() -> Iterator[_Collect]:
    """Every record of the SDK's and httpx's loggers at DEBUG, formatted."""
    handler = _Collect()
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    yield handler
    for logger, level in saved:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_no_secret_reaches_logs_reprs_or_errors(captured: _Collect) -> None:
    """Across every call, a retry, an auth failure and an unknown outcome, no secret leaks."""
    seen: list[str] = []
    passwords: list[str] = []
    async with Emulator(accounts={OWNER: TOKEN}) as emu:
        fast = Backoff(initial=0.01, maximum=0.02, jitter=0.0)
        async with emu.client(rate_limit=None, backoff=fast) as client:
            creds = await client.smtp_users.create(total_limit=100, hourly_limit=10)
            passwords.append(creds.smtp_password)
            await client.smtp_users.update(creds.smtp_user_name, hourly_limit=5, status="Disable")
            reset = await client.smtp_users.reset_password(creds.smtp_user_name)
            passwords.append(reset.smtp_password)
            emu.inject_fault("gateway_page", path="settings/listSmtp")
            users = await client.smtp_users.list()
            seen += [repr(client), str(client), repr(client.smtp_users), repr(creds), str(creds)]
            seen += [repr(reset), repr(users), str(users)]
            seen += [repr(CreateSmtpUserRequest(total_limit=1, hourly_limit=1))]
            seen += [repr(UpdateSmtpUserRequest(creds.smtp_user_name, hourly_limit=2))]

            emu.inject_fault("drop_after_apply", path="settings/addSmtp")
            with pytest.raises(OutcomeUnknownError) as unknown:
                await client.smtp_users.create(total_limit=7, hourly_limit=7)
            seen += _describe_error(unknown.value)
            passwords += [user.smtp_password for user in await client.smtp_users.list()]

        bad = AsyncSarvClient(OWNER, "wrong-" + TOKEN, base_url=emu.base_url, rate_limit=None)
        async with bad:
            with pytest.raises(AuthenticationError) as auth:
                await bad.smtp_users.list()
        seen += [*_describe_error(auth.value), repr(bad)]

    assert captured.lines, "the capture saw no log line: the test would prove nothing"
    assert any("settings/addSmtp" in line for line in captured.lines)
    haystack = "\n".join(captured.lines + seen)
    assert TOKEN not in haystack
    assert len(passwords) >= 3
    for password in passwords:
        assert password not in haystack
    assert '"token"' not in haystack
    assert "owner_id" not in "\n".join(captured.lines)


def _describe_error(error: SarvError) -> list[str]:
    chain: list[str] = []
    current: BaseException | None = error
    while current is not None:
        chain += [str(current), repr(current)]
        if isinstance(current, OutcomeUnknownError):
            chain.append(repr(current.request))
        current = current.__cause__ or current.__context__
    return chain
