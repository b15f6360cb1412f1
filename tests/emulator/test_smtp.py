"""The emulator's SMTP server: the users the API created log in with their current
password and send, within their limits; faults, TLS, and no password anywhere."""

from __future__ import annotations

import base64
import json
import logging
import smtplib
import ssl
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
import pytest

from sarv_async import SmtpCredentials, SmtpUserStatus
from sarv_async.testing import Emulator

pytestmark = pytest.mark.anyio

T = TypeVar("T")
MESSAGE = b"Subject: hello\r\n\r\nhello from the test\r\n"


class FakeClock:
    """The emulator's clock, moved on by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CLOCK = FakeClock()


@pytest.fixture(scope="module")
def smtp_emulator() -> Iterator[Emulator]:
    """One SMTP-serving emulator with a fake clock for the module."""
    with Emulator(smtp=True, clock=CLOCK) as emulator:
        yield emulator


@pytest.fixture
def emu(smtp_emulator: Emulator) -> Emulator:
    """The module's emulator, reset."""
    smtp_emulator.reset()
    return smtp_emulator


async def create(
    emu: Emulator, *, total_limit: int = 100, hourly_limit: int = 10
) -> SmtpCredentials:
    """A user created through the SDK, as an app would."""
    async with emu.client(rate_limit=None) as client:
        return await client.smtp_users.create(total_limit=total_limit, hourly_limit=hourly_limit)


def connect(emu: Emulator, *, tls: bool = True) -> smtplib.SMTP:
    """An SMTP connection to the emulator, after STARTTLS unless ``tls`` is false."""
    smtp = smtplib.SMTP(*emu.smtp_address, timeout=10)
    if tls:
        smtp.starttls(context=emu.smtp_ssl_context())
    return smtp


def login(
    emu: Emulator, user: str, password: str, mechanism: str = "PLAIN"
) -> tuple[int, bytes | str]:
    """AUTH ``mechanism`` over STARTTLS: the server's code and text."""
    with connect(emu) as smtp:
        smtp.ehlo()
        smtp.user, smtp.password = user, password
        auth = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        try:
            return smtp.auth(mechanism, auth)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code, exc.smtp_error


def send(emu: Emulator, creds: SmtpCredentials, count: int = 1) -> list[int]:
    """Log in and try to send ``count`` messages: the code each one got."""
    codes = []
    with connect(emu) as smtp:
        smtp.login(creds.smtp_user_name, creds.smtp_password)
        for _ in range(count):
            try:
                smtp.sendmail("app@example.com", ["to@example.org"], MESSAGE)
                codes.append(250)
            except smtplib.SMTPSenderRefused as exc:
                codes.append(exc.smtp_code)
                smtp.rset()
    return codes


async def blocking(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking SMTP client in a worker thread, so the test's loop (asyncio or trio)
    keeps running."""
    return await anyio.to_thread.run_sync(lambda: call(*args, **kwargs))


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_a_created_user_logs_in_and_its_message_is_kept(
    emu: Emulator, mechanism: str
) -> None:
    """AUTH PLAIN and LOGIN take a user the API created, with its password; the message
    it sends is kept with its user, envelope and content."""
    creds = await create(emu)
    code, _ = await blocking(login, emu, creds.smtp_user_name, creds.smtp_password, mechanism)
    assert code == 235

    def send_one() -> None:
        with connect(emu) as smtp:
            smtp.login(creds.smtp_user_name, creds.smtp_password)
            smtp.sendmail("app@example.com", ["a@example.org", "b@example.org"], MESSAGE)

    await blocking(send_one)
    [message] = emu.messages()
    assert message.smtp_user_name == creds.smtp_user_name
    assert message.mail_from == "app@example.com"
    assert message.rcpt_to == ["a@example.org", "b@example.org"]
    assert message.content.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_unknown_users_and_wrong_passwords_get_535(emu: Emulator, mechanism: str) -> None:
    """A name the API never made, or a wrong password, is refused with 535."""
    creds = await create(emu)
    for user, password in [("smtp99999", creds.smtp_password), (creds.smtp_user_name, "wrong")]:
        code, _ = await blocking(login, emu, user, password, mechanism)
        assert code == 535


async def test_a_reset_password_replaces_the_old_one(emu: Emulator) -> None:
    """After resetPassword, the old password gets 535 and the new one logs in."""
    old = await create(emu)
    async with emu.client(rate_limit=None) as client:
        new = await client.smtp_users.reset_password(old.smtp_user_name)
    assert (await blocking(login, emu, old.smtp_user_name, old.smtp_password))[0] == 535
    assert (await blocking(login, emu, new.smtp_user_name, new.smtp_password))[0] == 235


@pytest.mark.slow
async def test_a_disabled_user_is_refused_until_enabled_again(emu: Emulator) -> None:
    """A user whose status is Disable gets 535; enabled again, it logs in."""
    creds = await create(emu)
    async with emu.client(rate_limit=None) as client:
        await client.smtp_users.update(creds.smtp_user_name, status=SmtpUserStatus.DISABLE)
        code, text = await blocking(login, emu, creds.smtp_user_name, creds.smtp_password)
        assert code == 535
        assert isinstance(text, bytes)
        assert b"disabled" in text
        await client.smtp_users.update(creds.smtp_user_name, status=SmtpUserStatus.ENABLE)
    assert (await blocking(login, emu, creds.smtp_user_name, creds.smtp_password))[0] == 235


async def test_a_user_disabled_after_login_can_send_no_more(emu: Emulator) -> None:
    """Disabling a logged-in user stops its next message with a permanent 554."""
    creds = await create(emu)

    def send_across_disable() -> int:
        with connect(emu) as smtp:
            smtp.login(creds.smtp_user_name, creds.smtp_password)
            anyio.from_thread.run(disable)
            return smtp.mail("app@example.com")[0]

    async def disable() -> None:
        async with emu.client(rate_limit=None) as client:
            await client.smtp_users.update(creds.smtp_user_name, status=SmtpUserStatus.DISABLE)

    assert await blocking(send_across_disable) == 554
    assert emu.messages() == []


async def test_mail_before_auth_is_refused_with_530(emu: Emulator) -> None:
    """Nobody sends without logging in."""

    def mail() -> int:
        with connect(emu) as smtp:
            smtp.ehlo()
            return smtp.mail("app@example.com")[0]

    assert await blocking(mail) == 530


async def test_auth_before_starttls_is_refused_by_default(emu: Emulator) -> None:
    """As on a real relay's port 587, AUTH waits for STARTTLS: 538, and AUTH is not offered."""
    creds = await create(emu)

    def auth_in_clear() -> tuple[bool, int]:
        with connect(emu, tls=False) as smtp:
            smtp.ehlo()
            offered = smtp.has_extn("auth")
            plain = base64.b64encode(f"\0{creds.smtp_user_name}\0{creds.smtp_password}".encode())
            return offered, smtp.docmd("AUTH", "PLAIN " + plain.decode())[0]

    assert await blocking(auth_in_clear) == (False, 538)


async def test_auth_in_clear_can_be_allowed() -> None:
    """smtp_require_tls=False lets a client log in without STARTTLS (a local relay)."""
    async with Emulator(smtp=True, smtp_require_tls=False) as emu:
        creds = await create(emu)

        def login_in_clear() -> int:
            with connect(emu, tls=False) as smtp:
                return smtp.login(creds.smtp_user_name, creds.smtp_password)[0]

        assert await blocking(login_in_clear) == 235


async def test_starttls_verifies_against_the_emulators_ca_only(emu: Emulator) -> None:
    """The server's certificate is for 127.0.0.1, signed by the CA in smtp_ca_pem; a client
    trusting only the system's CAs refuses it."""
    assert emu.smtp_ca_pem.startswith("-----BEGIN CERTIFICATE-----")

    def starttls(context: ssl.SSLContext) -> int:
        with connect(emu, tls=False) as smtp:
            return smtp.starttls(context=context)[0]

    assert await blocking(starttls, ssl.create_default_context(cadata=emu.smtp_ca_pem)) == 220
    with pytest.raises(ssl.SSLCertVerificationError):
        await blocking(starttls, ssl.create_default_context())


@pytest.mark.slow
async def test_the_hourly_limit_is_a_rolling_hour_answered_with_451(emu: Emulator) -> None:
    """Past hourly_limit in the last hour of the emulator's clock, MAIL gets a transient 451;
    once the oldest message is an hour old, one more goes."""
    creds = await create(emu, hourly_limit=2)
    assert await blocking(send, emu, creds) == [250]
    CLOCK.advance(1800)
    assert await blocking(send, emu, creds, 2) == [250, 451]
    CLOCK.advance(1799.5)  # the first message is 3,599.5 s old: still inside the hour
    assert await blocking(send, emu, creds) == [451]
    CLOCK.advance(0.5)  # now exactly an hour old: out of the window
    assert await blocking(send, emu, creds, 2) == [250, 451]
    assert len(emu.messages()) == 3


async def test_the_total_limit_is_permanent_and_answered_with_554(emu: Emulator) -> None:
    """Past total_limit, MAIL gets a permanent 554, however much time passes."""
    creds = await create(emu, total_limit=3, hourly_limit=100)
    assert await blocking(send, emu, creds, 4) == [250, 250, 250, 554]
    CLOCK.advance(10 * 3600)
    assert await blocking(send, emu, creds) == [554]
    assert len(emu.messages()) == 3


async def test_the_limit_is_checked_again_at_data(emu: Emulator) -> None:
    """Two connections pass MAIL with one message left; the second DATA is refused (451)."""
    creds = await create(emu, hourly_limit=1)

    def race() -> tuple[int, int]:
        with connect(emu) as first, connect(emu) as second:
            for smtp in (first, second):
                smtp.login(creds.smtp_user_name, creds.smtp_password)
                assert smtp.mail("app@example.com")[0] == 250
                assert smtp.rcpt("to@example.org")[0] == 250
            return first.data(MESSAGE)[0], second.data(MESSAGE)[0]

    assert await blocking(race) == (250, 451)
    assert len(emu.messages()) == 1


async def test_fault_smtp_unavailable_answers_421_on_connecting(emu: Emulator) -> None:
    """inject_fault("smtp_unavailable") makes the next connection meet a 421 greeting."""
    emu.inject_fault("smtp_unavailable")
    with pytest.raises(smtplib.SMTPConnectError) as info:
        await blocking(connect, emu)
    assert info.value.smtp_code == 421
    (await blocking(connect, emu)).close()  # the next one is served


async def test_fault_smtp_auth_transient_answers_454_once(emu: Emulator) -> None:
    """inject_fault("smtp_auth_transient") refuses the next AUTH with 454, then logins work."""
    creds = await create(emu)
    emu.inject_fault("smtp_auth_transient")
    assert (await blocking(login, emu, creds.smtp_user_name, creds.smtp_password))[0] == 454
    assert (await blocking(login, emu, creds.smtp_user_name, creds.smtp_password))[0] == 235


async def test_fault_smtp_drop_after_data_keeps_the_message(emu: Emulator) -> None:
    """inject_fault("smtp_drop_after_data"): the message is kept, the answer never comes."""
    creds = await create(emu)
    emu.inject_fault("smtp_drop_after_data")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        await blocking(send, emu, creds)
    assert len(emu.messages()) == 1
    assert await blocking(send, emu, creds) == [250]


async def test_smtp_faults_never_meet_api_calls(emu: Emulator) -> None:
    """A queued SMTP fault waits for its SMTP step; API calls go through untouched."""
    emu.inject_fault("smtp_unavailable")
    creds = await create(emu)
    assert emu.stats()["faults"] == 0
    with pytest.raises(smtplib.SMTPConnectError):
        await blocking(send, emu, creds)


def test_an_smtp_fault_takes_no_path(emu: Emulator) -> None:
    """SMTP faults are not tied to an API call."""
    with pytest.raises(ValueError, match="takes no path"):
        emu.inject_fault("smtp_unavailable", path="addSmtp")


async def test_reset_forgets_the_messages(emu: Emulator) -> None:
    """emu.reset() clears the kept messages, and the stats count them."""
    creds = await create(emu)
    await blocking(send, emu, creds, 2)
    assert emu.stats()["messages"] == 2
    emu.reset()
    assert (emu.messages(), emu.stats()["messages"]) == ([], 0)


@pytest.mark.slow
async def test_no_password_in_any_record_log_or_state_dump(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Logins (PLAIN and LOGIN, good and bad) leave no password, plain or base64, in a log
    line at DEBUG, a message record, its repr, or the stats."""
    creds = await create(emu)
    with caplog.at_level(logging.DEBUG):
        for mechanism in ("PLAIN", "LOGIN"):
            await blocking(login, emu, creds.smtp_user_name, creds.smtp_password, mechanism)
            await blocking(login, emu, creds.smtp_user_name, creds.smtp_password + "x", mechanism)
        await blocking(send, emu, creds)
    assert caplog.records  # the server did log (aiosmtpd, at DEBUG and INFO)
    plain = f"\0{creds.smtp_user_name}\0{creds.smtp_password}".encode()
    secrets = [
        creds.smtp_password,
        base64.b64encode(creds.smtp_password.encode()).decode(),
        base64.b64encode(plain).decode(),
    ]
    dumped = [
        *(record.getMessage() for record in caplog.records),
        repr(emu.messages()),
        *(json.dumps([m.smtp_user_name, m.mail_from, m.rcpt_to]) for m in emu.messages()),
        json.dumps(emu.stats()),
    ]
    for text in dumped:
        for secret in secrets:
            assert secret not in text


async def test_an_emulator_without_smtp_says_so(emu: Emulator) -> None:
    """smtp_address on an emulator started without smtp=True is a clear error."""
    async with Emulator() as plain:
        with pytest.raises(RuntimeError, match="smtp=True"):
            plain.smtp_address  # noqa: B018 - the property raises


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # aiosmtplib runs on asyncio only
async def test_an_async_smtp_client_sends_too(emu: Emulator) -> None:
    """aiosmtplib logs in over STARTTLS and sends."""
    import aiosmtplib

    creds = await create(emu)
    host, port = emu.smtp_address
    async with aiosmtplib.SMTP(
        hostname=host, port=port, start_tls=True, tls_context=emu.smtp_ssl_context()
    ) as smtp:
        await smtp.login(creds.smtp_user_name, creds.smtp_password)
        await smtp.sendmail("app@example.com", ["to@example.org"], MESSAGE)
    assert [m.smtp_user_name for m in emu.messages()] == [creds.smtp_user_name]
