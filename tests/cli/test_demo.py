"""``sarv-async demo``: provisioning through faults on an in-process emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sarv_async
import sarv_async.testing
from sarv_async._cli import _demo
from sarv_async.testing import Emulator

from ._support import assert_no_secret
from .conftest import Cli

PROJECT_ROOT = Path(sarv_async.__file__).resolve().parents[1]


def test_demo_exits_0_and_prints_no_password(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's demo passes its own check and reports 429s, with no password printed."""
    started: list[Emulator] = []

    class RecordingEmulator(Emulator):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            started.append(self)

    monkeypatch.setattr(sarv_async.testing, "Emulator", RecordingEmulator)
    run = cli("demo")
    assert run.code == 0, run.text
    assert "check OK: 40 users on the emulator for 40 specs" in run.out
    assert "check OK: 40 of 40 credentials log in and send" in run.out
    # Usually 0; a loaded machine can delay the in-process emulator past the pacing margin.
    assert f"HTTP 429: {started[0].stats()['responses'].get('429', 0)} (" in run.out
    [emu] = started
    assert emu.stats()["faults"] > 0
    senders = sorted(message.smtp_user_name for message in emu.messages())
    assert senders == sorted(user["smtp_user_name"] for user in emu.users())
    assert_no_secret(run.text, [user["password"] for user in emu.users()])
    assert_no_secret(run.text, emu.accounts.values())


def test_python_m_sarv_async_demo_runs_in_a_fresh_process() -> None:
    """``python -m sarv_async demo`` exits 0 without a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SARV_", "SENDCLEAN_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "sarv_async", "demo", "--users", "12"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check OK: 12 users" in proc.stdout
    assert "check OK: 12 of 12 credentials log in and send" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_check_reports_a_spec_without_credentials() -> None:
    """The demo's check fails, naming the spec, when a spec got no user."""
    outcome = _demo._Outcome(
        summary=sarv_async.ProvisionSummary(
            total=1,
            created=0,
            adopted=0,
            failed=1,
            unknown=0,
            orphans=(),
            orphans_checked=True,
            rounds=0,
        ),
        results={},
        listed=[],
        server_users=[],
        stats={},
        elapsed=0.0,
    )
    problems = _demo._check([{"total_limit": 1, "hourly_limit": 1}], outcome)
    assert problems == [
        "0 users on the emulator for 1 specs",
        "spec 0 has no credentials (no result)",
    ]


def test_check_reports_a_credential_that_does_not_log_in() -> None:
    """The demo's SMTP check fails, naming the user and the server's answer, and names a
    user that logged in but whose message did not arrive once."""
    outcome = _demo._Outcome(
        summary=sarv_async.ProvisionSummary(
            total=1,
            created=1,
            adopted=0,
            failed=0,
            unknown=0,
            orphans=(),
            orphans_checked=True,
            rounds=0,
        ),
        results={},
        listed=[],
        server_users=[],
        stats={},
        elapsed=0.0,
        logins={"smtp10001": "login refused: 535 5.7.8 Authentication credentials invalid"}
        | {"smtp10002": None},
        senders=[],
    )
    assert _demo._smtp_problems(outcome) == [
        "smtp10001 cannot log in and send: login refused: 535 5.7.8 Authentication credentials "
        "invalid",
        "0 messages arrived from smtp10002 (expected one)",
    ]
