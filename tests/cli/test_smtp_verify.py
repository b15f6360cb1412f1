"""``sarv-async smtp verify OUT``: every credential of a file logs in over SMTP, or a line
says which row does not (never a password)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from sarv_async import SmtpUserStatus
from sarv_async._cli._files import CredentialsFile
from sarv_async.testing import Emulator

from ._support import ACCOUNTS, CliRun, assert_no_secret, create_users, passwords
from .conftest import Cli

HEADER = ("total_limit", "hourly_limit", "smtp_user_name", "smtp_password", "outcome", "error")


@pytest.fixture(scope="module")
def smtp_emulator() -> Iterator[Emulator]:
    """An emulator serving SMTP, for the module."""
    with Emulator(accounts=ACCOUNTS, smtp=True) as emulator:
        yield emulator


@pytest.fixture
def emu(smtp_emulator: Emulator) -> Emulator:
    """The module's emulator, reset."""
    smtp_emulator.reset()
    return smtp_emulator


@pytest.fixture
def ca_file(emu: Emulator, tmp_path: Path) -> str:
    """The emulator's CA certificate in a file."""
    path = tmp_path / "ca.pem"
    path.write_text(emu.smtp_ca_pem)
    return str(path)


def write_out(path: Path, rows: list[tuple[str, str, str]]) -> str:
    """A provisioning output file with ``(user, password, outcome)`` rows."""
    with CredentialsFile(str(path), HEADER) as out:
        for user, password, outcome in rows:
            out.write_row(["10", "1", user, password, outcome, "" if user else "it failed"])
    return str(path)


def verify(cli: Cli, emu: Emulator, out: str, ca_file: str, *more: str) -> CliRun:
    """Run ``smtp verify OUT`` against the emulator's SMTP server, trusting its CA."""
    host, port = emu.smtp_address
    return cli(
        *("smtp", "verify", out, "--smtp-host", host, "--smtp-port", str(port)),
        *("--smtp-ca-file", ca_file, *more),
    )


def test_every_row_logs_in_exit_0(cli: Cli, emu: Emulator, tmp_path: Path, ca_file: str) -> None:
    """A fresh provisioning output logs in row by row; no message is sent."""
    users = create_users(emu, 3)
    out = write_out(
        tmp_path / "out.csv", [(u.smtp_user_name, u.smtp_password, "created") for u in users]
    )
    run = verify(cli, emu, out, ca_file)
    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        *(f"{u.smtp_user_name}: logs in" for u in users),
        f"3 of 3 credentials log in at {emu.smtp_address[0]}:{emu.smtp_address[1]}",
    ]
    assert emu.messages() == []
    assert_no_secret(run.text, passwords(emu).values())


def test_stale_rows_exit_1_with_a_line_each(
    cli: Cli, emu: Emulator, tmp_path: Path, ca_file: str
) -> None:
    """A reset password, a disabled user and a failed row each get one error line naming
    the row; the good row logs in; no password, old or new, is printed."""
    good, reset, disabled = create_users(emu, 3)

    async def make_stale() -> str:
        async with emu.client(rate_limit=None) as client:
            await client.smtp_users.update(disabled.smtp_user_name, status=SmtpUserStatus.DISABLE)
            return (await client.smtp_users.reset_password(reset.smtp_user_name)).smtp_password

    new_password = anyio.run(make_stale)
    out = write_out(
        tmp_path / "out.csv",
        [
            (good.smtp_user_name, good.smtp_password, "created"),
            (reset.smtp_user_name, reset.smtp_password, "created"),
            (disabled.smtp_user_name, disabled.smtp_password, "adopted"),
            ("", "", "failed"),
        ],
    )
    run = verify(cli, emu, out, ca_file, "--concurrency", "2")
    assert run.code == 1
    errors = run.err.splitlines()
    assert errors == [
        f"error: {out}:3: {reset.smtp_user_name}: login refused: 535 5.7.8 Authentication "
        "credentials invalid",
        f"error: {out}:4: {disabled.smtp_user_name}: login refused: 535 5.7.8 Authentication "
        "credentials invalid (SMTP user disabled)",
        f"error: {out}:5: (no user): no credentials in this row",
    ]
    assert f"{good.smtp_user_name}: logs in" in run.out
    assert "1 of 4 credentials log in" in run.out
    assert_no_secret(run.text, [*(u.smtp_password for u in (good, reset, disabled)), new_password])


def test_an_untrusted_certificate_fails_each_row(cli: Cli, emu: Emulator, tmp_path: Path) -> None:
    """Without the emulator's CA, the relay's certificate is refused: TLS failed, exit 1."""
    [user] = create_users(emu, 1)
    out = write_out(tmp_path / "out.csv", [(user.smtp_user_name, user.smtp_password, "created")])
    host, port = emu.smtp_address
    run = cli("smtp", "verify", out, "--smtp-host", host, "--smtp-port", str(port))
    assert run.code == 1
    assert "TLS failed: CERTIFICATE_VERIFY_FAILED" in run.err


def test_a_file_without_credentials_columns_is_a_usage_error(
    cli: Cli, emu: Emulator, tmp_path: Path, ca_file: str
) -> None:
    """A specs file given by mistake is refused before any connection."""
    specs = tmp_path / "specs.csv"
    specs.write_text("total_limit,hourly_limit\n10,1\n")
    run = verify(cli, emu, str(specs), ca_file)
    assert run.code == 2
    assert "has no smtp_user_name or smtp_password column" in run.err


@pytest.mark.slow
def test_a_login_past_its_timeout_fails_its_row(
    cli: Cli, emu: Emulator, tmp_path: Path, ca_file: str
) -> None:
    """A relay that never answers: each row fails with the timeout, exit 1, in bounded time."""
    import socket

    [user] = create_users(emu, 1)
    out = write_out(tmp_path / "out.csv", [(user.smtp_user_name, user.smtp_password, "created")])
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never greets
        port = silent.getsockname()[1]
        run = cli(
            *("smtp", "verify", out, "--smtp-host", "127.0.0.1", "--smtp-port", str(port)),
            *("--timeout", "0.3"),
        )
    assert run.code == 1
    assert "no answer within 0.3 s" in run.err


def test_ssl_logs_in_over_tls_from_the_start(cli: Cli, tmp_path: Path) -> None:
    """--ssl speaks TLS from the first byte (port 465 style), against an aiosmtpd relay that
    accepts one user: that row logs in, a wrong password's row does not."""
    import socket
    import ssl

    import trustme
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())

    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: Any
    ) -> AuthResult:
        return AuthResult(
            success=(data.login, data.password) == (b"smtp1", b"right"), handled=False
        )

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    relay = Controller(
        object(),
        hostname="127.0.0.1",
        port=port,
        ssl_context=tls,
        authenticator=authenticator,
        auth_require_tls=False,  # TLS is there from the start; aiosmtpd checks STARTTLS only
    )
    relay.start()
    try:
        out = write_out(
            tmp_path / "out.csv", [("smtp1", "right", "created"), ("smtp2", "wrong", "created")]
        )
        run = cli(
            *("smtp", "verify", out, "--ssl", "--smtp-host", "127.0.0.1", "--smtp-port", str(port)),
            *("--smtp-ca-file", str(tmp_path / "ca.pem")),
        )
    finally:
        relay.stop()
    assert run.code == 1
    assert "smtp1: logs in" in run.out
    assert f"{out}:3: smtp2: login refused: 535" in run.err
