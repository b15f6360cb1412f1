"""One table of exit statuses, followed by every command (docs/cli.md shows the table).

0 done · 1 failed for certain · 2 usage (nothing sent) · 3 outcome unknown (wins over 1) ·
130 SIGINT · 141 standard output closed (SIGPIPE) · 143 SIGTERM.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sarv_async import SqliteLedger
from sarv_async._cli import _emulator, _output
from sarv_async.testing import Emulator, _calls

from ._support import OWNER_ID, TOKEN, create_users, passwords
from .conftest import Cli


def test_the_constants_are_the_documented_table() -> None:
    """The constants and the table in docs/cli.md say the same."""
    table = Path(__file__).resolve().parents[2].joinpath("docs", "cli.md").read_text()
    documented = dict(re.findall(r"^\| (\d+) \| `(EXIT_\w+)`", table, re.MULTILINE))
    assert documented == {
        "1": "EXIT_FAILURE",
        "2": "EXIT_USAGE",
        "3": "EXIT_OUTCOME_UNKNOWN",
        "130": "EXIT_INTERRUPTED",
        "141": "EXIT_BROKEN_PIPE",
        "143": "EXIT_TERMINATED",
    }
    for code, name in documented.items():
        assert getattr(_output, name) == int(code)


def test_a_missing_input_csv_is_a_usage_error(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """A specs file that does not exist: 2, as a bad one is; nothing sent."""
    run = cli("smtp", "provision", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.csv"))
    assert (run.code, run.err) == (
        2,
        f"error: cannot read {tmp_path / 'nope.csv'}: No such file or directory\n",
    )
    assert account_env.stats()["requests"] == {}


def test_an_unreadable_token_file_is_a_usage_error(cli: Cli, account_env: Emulator) -> None:
    """A token file that cannot be read: 2, nothing sent."""
    run = cli("smtp", "list", "--token-file", "/nonexistent/token")
    assert run.code == 2
    assert account_env.stats()["requests"] == {}


def test_a_wrong_token_is_a_usage_error(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials the server refuses: 2 (fix the command's credentials), nothing changed."""
    monkeypatch.setenv("SARV_TOKEN", "wrong-token")
    assert cli("smtp", "list").code == 2
    assert cli("smtp", "create", "--total-limit", "1", "--hourly-limit", "1").code == 2
    assert account_env.users() == []


def test_a_refused_base_url_is_a_usage_error(cli: Cli, account_env: Emulator) -> None:
    """A base URL the SDK refuses before sending (plain http to another host): 2."""
    assert cli("smtp", "list", "--base-url", "http://api.example.com/v1.0/").code == 2


def test_a_base_url_without_the_api_version_is_a_usage_error(
    cli: Cli, account_env: Emulator
) -> None:
    """The API's 404 for a base URL without /v1.0/: 2, with the URL to try."""
    run = cli("smtp", "list", "--base-url", account_env.url + "/")
    assert run.code == 2
    assert f"try {account_env.url}/v1.0/" in run.err


@pytest.mark.slow
def test_a_create_whose_outcome_is_unknown_exits_3(cli: Cli, account_env: Emulator) -> None:
    """A create whose answer was lost and could not be settled: 3, not the 1 of a failure."""
    # A first create, so the ledger has met the account (its baseline is recorded).
    assert cli("smtp", "create", "--total-limit", "1", "--hourly-limit", "1").code == 0
    account_env.inject_fault("drop_after_apply", "addSmtp")
    account_env.inject_fault("drop_before", "listSmtp", count=3)
    run = cli("smtp", "create", "--total-limit", "5", "--hourly-limit", "1", "--settle-delay", "0")
    assert run.code == 3
    assert "sarv-async smtp list" in run.err


def test_a_reset_whose_answer_was_lost_exits_3(cli: Cli, account_env: Emulator) -> None:
    """A password reset that may have happened, retries spent: 3, with what to do."""
    [creds] = create_users(account_env, 1)
    account_env.inject_fault("drop_after_apply", "resetSmtpPassword", count=5)
    run = cli("smtp", "reset-password", creds.smtp_user_name, "--show-secrets")
    assert run.code == 3
    assert "reset-password" in run.err
    assert creds.smtp_user_name in run.err


def test_a_connection_failure_exits_1(cli: Cli, account_env: Emulator) -> None:
    """Nothing listens: a failure for certain (1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert cli("smtp", "list", "--base-url", f"http://127.0.0.1:{port}/v1.0/").code == 1


@pytest.mark.slow
def test_provision_with_unknown_rows_exits_3_even_with_failed_rows(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown outcomes win over failures: 3 tells the script to settle before rerunning."""
    specs = tmp_path / "specs.csv"
    monkeypatch.setattr(_calls, "_MAX_LIMIT", 10**6)  # a server with a lower bound (a plan's)
    specs.write_text("total_limit,hourly_limit\n10,1\n20,2\n9999999,1\n")
    # Rows 1 and 2 lose their answers; row 3 is refused by the server (a certain failure).
    account_env.inject_fault("drop_after_apply", "addSmtp")
    account_env.inject_fault("general_error", "addSmtp")
    record_baseline = SqliteLedger.record_baseline

    async def record_baseline_then_break_listing(self: SqliteLedger, *args: Any) -> bool:
        # The snapshot list is done; every later list fails, retries included: rows 1 and
        # 2 stay unknown.
        account_env.inject_fault("gateway_page", "listSmtp", count=100)
        return await record_baseline(self, *args)

    monkeypatch.setattr(SqliteLedger, "record_baseline", record_baseline_then_break_listing)
    argv = ["--concurrency", "1", "--settle-delay", "0", str(specs), "--out", str(tmp_path / "o")]
    run = cli("smtp", "provision", *argv)
    assert "1 failed, 2 unknown" in run.out, run.out + run.err
    assert run.code == 3


def test_provision_with_failed_rows_only_exits_1(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows that failed for certain, none unknown: 1."""
    monkeypatch.setattr(_calls, "_MAX_LIMIT", 10**6)  # a server with a lower bound (a plan's)
    specs = tmp_path / "specs.csv"
    specs.write_text("total_limit,hourly_limit\n10,1\n9999999,1\n")
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(tmp_path / "o"))
    assert run.code == 1


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_a_closed_stdout_exits_141_without_an_error_line() -> None:
    """``smtp list | head -1``: no 'error: Broken pipe', no traceback; the status says SIGPIPE.

    The reader here is ``true``, which exits at once: with ``head -1`` the pipe breaks only
    when the output outgrows the pipe's buffer before head is gone, which is a race.
    """
    with Emulator(accounts={OWNER_ID: TOKEN}) as emu:
        create_users(emu, 3)
        code = (
            "import sys; from sarv_async._cli import main; "
            f"sys.exit(main(['--owner-id', {OWNER_ID!r}, '--base-url', {emu.base_url!r}, "
            "'smtp', 'list', '--show-secrets']))"
        )
        proc = subprocess.run(  # noqa: S602 - a fixed pipeline of this interpreter
            f'{sys.executable} -c "{code}" | true; echo "status=${{PIPESTATUS[0]}}"',
            shell=True,
            executable="/bin/bash",
            capture_output=True,
            text=True,
            env={"SARV_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
            timeout=60,
            check=False,
        )
        shown = passwords(emu)
    assert proc.stdout.splitlines()[-1] == "status=141", proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert len(proc.stdout.splitlines()) == 1
    assert signal.SIGPIPE + 128 == 141
    assert not any(password in proc.stderr for password in shown.values())


@pytest.mark.slow
@pytest.mark.parametrize("command", ["create"])
def test_json_says_on_stderr_when_the_password_is_withheld(
    cli: Cli, account_env: Emulator, command: str, tmp_path: Path
) -> None:
    """--json without --show-secrets or --out: the JSON has no password, and stderr says so.

    (reset-password refuses to run so: ``test_smtp.py``.)
    """
    [creds] = create_users(account_env, 1)
    argv = (
        ["create", "--total-limit", "5", "--hourly-limit", "1"]
        if command == "create"
        else ["reset-password", creds.smtp_user_name]
    )
    run = cli("smtp", *argv, "--json")
    assert run.code == 0
    assert "smtp_password" not in json.loads(run.out)
    assert run.err.startswith("warning: the password is not in the JSON")
    assert "--show-secrets" in run.err
    assert "--out" in run.err
    # --out takes the credentials in JSON mode too, and then nothing is withheld.
    out = tmp_path / f"{command}.csv"
    saved = cli("smtp", *argv, "--json", "--out", str(out))
    assert saved.code == 0
    assert saved.err == ""
    assert json.loads(saved.out)["credentials_file"] == str(out)
    name = json.loads(saved.out)["smtp_user_name"]
    assert out.read_text().splitlines()[1] == f"{name},{passwords(account_env)[name]}"


EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - a string under test; nothing binds to it here


def test_emulator_on_every_interface_warns_and_gives_usable_urls() -> None:
    """--host 0.0.0.0: the banner gives a URL for this machine and for others, and warns.

    Only what is printed is tested: tests bind to loopback only.
    """
    lines = _emulator.banner_warnings(EVERY_INTERFACE, demo_token=True)
    assert any("every interface" in line and "demo-token" in line for line in lines)
    assert _emulator.banner_warnings("127.0.0.1", demo_token=True) == []
    assert "demo-token" not in " ".join(_emulator.banner_warnings("::", demo_token=False))
    urls = _emulator.reachable_urls(EVERY_INTERFACE, "http://127.0.0.1:8025/v1.0/", 8025)
    assert urls[0] == "http://127.0.0.1:8025/v1.0/"
    assert urls[1] == f"http://{socket.gethostname()}:8025/v1.0/"


def test_the_emulator_banner_carries_the_warning(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sarv-async emulator --host 0.0.0.0`` prints both URLs and the warning.

    The server is replaced by its announcement (nothing binds beyond loopback in tests).
    """
    from collections.abc import Callable

    from sarv_async.testing._server import Emulator as ServerEmulator

    def announce_only(
        self: ServerEmulator, ready: Callable[[ServerEmulator], None] | None = None, **_: Any
    ) -> None:
        self._url = "http://127.0.0.1:8025"
        self.port = 8025
        assert ready is not None
        ready(self)

    monkeypatch.setattr(ServerEmulator, "serve_forever", announce_only)
    run = cli("emulator", "--host", EVERY_INTERFACE, "--port", "8025")
    assert run.code == 0
    assert "base URL:   http://127.0.0.1:8025/v1.0/" in run.out
    assert f"from other machines: http://{socket.gethostname()}:8025/v1.0/" in run.out
    [warning] = run.err.splitlines()
    assert warning.startswith("warning: listening on every interface (0.0.0.0)")
    assert "'demo-token'" in warning
    quiet = cli("emulator", "--host", "127.0.0.1", "--port", "8025")
    assert quiet.err == ""
    assert "from other machines" not in quiet.out


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_give_their_statuses(sig: signal.Signals, status: int) -> None:
    """Ctrl-C exits 130; SIGTERM ends the process as SIGTERM does (a shell shows 143)."""
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1.0/"
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "sarv_async", "--base-url", url, "smtp", "list"],
            env={"SARV_OWNER_ID": OWNER_ID, "SARV_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        connection, _ = silent.accept()  # the call is in flight
        with connection:
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    assert code == status, err
    assert TOKEN not in err
