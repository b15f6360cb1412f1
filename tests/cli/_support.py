"""Helpers for the command-line tests: accounts, CLI runs, users made through the SDK."""

from __future__ import annotations

import csv
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import attrs

from sarv_async import SmtpCredentials
from sarv_async.testing import Emulator

__all__ = [
    "ACCOUNTS",
    "COLUMNS",
    "OWNER_ID",
    "TOKEN",
    "CliRun",
    "assert_no_secret",
    "cli_command",
    "create_users",
    "data_rows",
    "file_mode",
    "passwords",
    "write_specs",
]

OWNER_ID = "acme"
TOKEN = "acme-SECRET-token-0001"
#: The accounts of the test emulators.
ACCOUNTS = {OWNER_ID: TOKEN}
#: The columns of the spec files the provisioning tests write.
COLUMNS = ["customer", "total_limit", "hourly_limit"]


def write_specs(path: Path, count: int, name: str = "cust", *, digits: int = 3) -> Path:
    """A spec file of ``count`` rows (customers ``name-000``...) at ``path``."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for i in range(count):
            writer.writerow([f"{name}-{i:0{digits}}", 100 + i % 3, 10])
    return path


def cli_command(argv: list[str]) -> list[str]:
    """The command that runs ``main(argv)`` in a process of its own (for signals, locks)."""
    return [
        sys.executable,
        "-c",
        f"import sys; from sarv_async._cli import main; sys.exit(main({argv!r}))",
    ]


def data_rows(path: Path) -> int:
    """Data rows in a credentials file so far (0 if there is none)."""
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


@attrs.frozen
class CliRun:
    """What a ``main([...])`` call returned and printed."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """Everything printed, stdout then stderr."""
        return self.out + self.err


def create_users(emu: Emulator, count: int, **limits: int) -> list[SmtpCredentials]:
    """Create ``count`` users on the emulator's first account through the SDK."""
    total_limit = limits.get("total_limit", 100)
    hourly_limit = limits.get("hourly_limit", 10)

    async def create() -> list[SmtpCredentials]:
        async with emu.client(rate_limit=None) as client:
            return [
                await client.smtp_users.create(total_limit=total_limit, hourly_limit=hourly_limit)
                for _ in range(count)
            ]

    return anyio.run(create)


def passwords(emu: Emulator) -> dict[str, str]:
    """User name to password, as the emulator holds them."""
    return {user["smtp_user_name"]: user["password"] for user in emu.users()}


def assert_no_secret(text: str, secrets: Iterable[str]) -> None:
    """Fail if any of ``secrets`` shows in ``text``."""
    shown = [secret for secret in secrets if secret in text]
    assert not shown, f"secrets printed: {len(shown)}"


def file_mode(path: str | os.PathLike[Any]) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(os.stat(path).st_mode)
