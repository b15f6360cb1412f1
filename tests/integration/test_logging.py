"""The SDK's logging: silent unless asked, ``SARV_LOG`` turns it on, and it never carries secrets.

Each case runs a small program in a fresh interpreter, as a user's script would run,
against an emulator on loopback, and reads what reached standard error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from sarv_async.testing import Emulator

pytestmark = pytest.mark.slow  # each test runs a fresh interpreter

OWNER = "owner-log"
TOKEN = "tok-Log-Secret-0f1e2d3c4b5a"

# Creates (one answer lost, so provisioning reconciles it), a password reset, a list and a
# retried call; prints the passwords it saw to stdout, so the test knows what to look for.
PROGRAM = textwrap.dedent(
    """
    import sys
    import anyio
    from sarv_async import AsyncSarvClient, Backoff

    async def main() -> None:
        base_url, owner, token = sys.argv[1:4]
        async with AsyncSarvClient(
            owner, token, base_url=base_url, rate_limit=None,
            backoff=Backoff(initial=0.01, maximum=0.02, jitter=0.0),
        ) as client:
            specs = [{"total_limit": 10, "hourly_limit": 1} for _ in range(3)]
            async with client.smtp_users.provision(specs, settle_delay=0) as run:
                results = [result async for result in run]
            creds = await client.smtp_users.reset_password(results[0].credentials.smtp_user_name)
            users = await client.smtp_users.list()
        print(run.summary.created + run.summary.adopted)
        for secret in [creds.smtp_password, *(user.smtp_password for user in users)]:
            print(secret)

    anyio.run(main)
    """
)


def _run(emu: Emulator, **env: str) -> subprocess.CompletedProcess[str]:
    emu.inject_fault("drop_after_apply", "addSmtp")  # a create whose answer is lost
    emu.inject_fault("gateway_page", "resetSmtpPassword")  # a retried reset
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SARV_", "SENDCLEAN_"))}
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", PROGRAM, emu.base_url, OWNER, TOKEN],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(accounts={OWNER: TOKEN}) as emulator:
        yield emulator


def _secrets(result: subprocess.CompletedProcess[str]) -> list[str]:
    done, *passwords = result.stdout.split()
    assert done == "3"
    assert len(passwords) >= 4
    return [TOKEN, *passwords]


def test_unconfigured_logging_prints_nothing(emu: Emulator) -> None:
    """With logging not configured, a run that reconciles a lost create prints nothing.

    The SDK settles that create itself: it is not the user's warning to read.
    """
    result = _run(emu)
    _secrets(result)
    assert result.stderr == ""


@pytest.mark.parametrize("level", ["debug", "info", "DEBUG"])
def test_sarv_log_turns_on_logging_without_secrets(emu: Emulator, level: str) -> None:
    """SARV_LOG=debug|info logs to stderr: calls, retries, reconciliation; no secret or body."""
    result = _run(emu, SARV_LOG=level)
    lines = result.stderr.splitlines()
    assert lines, "SARV_LOG gave no log lines"
    assert all(" sarv_async " in line for line in lines), lines
    text = result.stderr
    assert "retrying POST settings/resetSmtpPassword" in text
    assert "POST settings/addSmtp may have taken effect" in text
    assert "to settle the creates whose answers were lost (1)" in text
    if level.lower() == "debug":
        assert "POST settings/listSmtp -> HTTP 200" in text
    else:
        assert "DEBUG" not in text
    for secret in _secrets(result):
        assert secret not in text
    assert "{" not in text  # no body, no JSON of any kind


def test_an_unknown_sarv_log_value_is_said_once(emu: Emulator) -> None:
    """A value that is no level is named on stderr, and logging stays off."""
    result = _run(emu, SARV_LOG="verbose")
    assert result.stderr.splitlines() == [
        "sarv_async: SARV_LOG='verbose' is not one of debug, info, warning; ignored"
    ]
