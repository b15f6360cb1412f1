"""``smtp list|create|update|reset-password`` against the emulator."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from sarv_async import AsyncSarvClient
from sarv_async._cli import _options, _output
from sarv_async.testing import Emulator

from ._support import TOKEN, assert_no_secret, create_users, file_mode, passwords
from .conftest import Cli

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _read_credentials(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_list_table_hides_passwords(cli: Cli, account_env: Emulator) -> None:
    """The table names every user with limits and status, and no password."""
    create_users(account_env, 3, total_limit=250, hourly_limit=25)
    run = cli("smtp", "list")
    assert run.code == 0, run.err
    for name in passwords(account_env):
        assert name in run.out
    assert "250" in run.out
    assert "Enable" in run.out
    assert "passwords hidden" in run.out
    assert_no_secret(run.text, [*passwords(account_env).values(), TOKEN])


def test_list_shows_passwords_with_show_secrets(cli: Cli, account_env: Emulator) -> None:
    """--show-secrets adds a password column."""
    create_users(account_env, 2)
    run = cli("smtp", "list", "--show-secrets")
    assert run.code == 0
    for password in passwords(account_env).values():
        assert password in run.out
    assert TOKEN not in run.text


def test_list_json_parses_and_hides_passwords(cli: Cli, account_env: Emulator) -> None:
    """--json prints parseable users without passwords; --show-secrets adds them."""
    create_users(account_env, 2, total_limit=300, hourly_limit=30)
    hidden = json.loads(cli("smtp", "list", "--json").out)
    assert hidden == [
        {"smtp_user_name": name, "status": "Enable", "total_limit": 300, "hourly_limit": 30}
        for name in passwords(account_env)
    ]
    shown = json.loads(cli("smtp", "list", "--json", "--show-secrets").out)
    assert {u["smtp_user_name"]: u["smtp_password"] for u in shown} == passwords(account_env)


def test_list_without_rich_prints_a_plain_table(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without rich installed the table is plain text, and still complete."""
    monkeypatch.setitem(sys.modules, "rich", None)
    _output.have_rich.cache_clear()
    try:
        create_users(account_env, 2)
        run = cli("smtp", "list")
    finally:
        _output.have_rich.cache_clear()
    assert run.code == 0
    header, rule, *rows = run.out.splitlines()
    assert header.split() == ["NAME", "STATUS", "TOTAL", "LIMIT", "HOURLY", "LIMIT"]
    assert set(rule) <= {"-", " "}
    assert [row.split()[0] for row in rows[:2]] == list(passwords(account_env))


@pytest.mark.slow
def test_create_hides_the_password_and_says_how_to_get_it(cli: Cli, account_env: Emulator) -> None:
    """create prints the new user's name and a hint, not its password."""
    run = cli("smtp", "create", "--total-limit", "100", "--hourly-limit", "10")
    assert run.code == 0, run.err
    [(name, password)] = passwords(account_env).items()
    assert f"created SMTP user {name}" in run.out
    assert "--show-secrets" in run.out
    assert "--out FILE" in run.out
    assert_no_secret(run.text, [password, TOKEN])


def test_create_shows_the_password_with_show_secrets(cli: Cli, account_env: Emulator) -> None:
    """create --show-secrets prints the password the server holds."""
    run = cli("smtp", "create", "--total-limit", "5", "--hourly-limit", "1", "--show-secrets")
    assert run.code == 0
    [(name, password)] = passwords(account_env).items()
    assert f"password: {password}" in run.out
    assert name in run.out


@posix_only
def test_create_out_writes_a_private_file(cli: Cli, account_env: Emulator, tmp_path: Path) -> None:
    """create --out writes the credentials to a new 0600 CSV file and prints no password."""
    out = tmp_path / "new.csv"
    run = cli("smtp", "create", "--total-limit", "5", "--hourly-limit", "1", "--out", str(out))
    assert run.code == 0, run.err
    assert file_mode(out) == 0o600
    assert _read_credentials(out) == [
        {"smtp_user_name": name, "smtp_password": password}
        for name, password in passwords(account_env).items()
    ]
    assert_no_secret(run.text, passwords(account_env).values())


def test_create_json(cli: Cli, account_env: Emulator) -> None:
    """create --json prints the name, and the password only with --show-secrets."""
    argv = ["smtp", "create", "--total-limit", "5", "--hourly-limit", "1", "--json"]
    hidden = json.loads(cli(*argv).out)
    shown = json.loads(cli(*argv, "--show-secrets").out)
    by_name = passwords(account_env)
    assert hidden == {"smtp_user_name": next(iter(by_name))}
    assert shown["smtp_password"] == by_name[shown["smtp_user_name"]]


def test_create_refuses_an_existing_out_file_before_any_call(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """An existing --out file is refused before the user is created, and left as it was."""
    out = tmp_path / "taken.csv"
    out.write_text("keep me\n")
    run = cli("smtp", "create", "--total-limit", "5", "--hourly-limit", "1", "--out", str(out))
    assert run.code == 2
    assert run.err.startswith("error: ")
    assert "--force" in run.err
    assert out.read_text() == "keep me\n"
    assert account_env.stats()["requests"] == {}


def test_create_with_a_lost_answer_settles_it_through_the_ledger(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """A create whose answer is lost is settled by listing: one user, its password saved."""
    account_env.inject_fault("drop_after_apply", "addSmtp")
    out = tmp_path / "new.csv"
    run = cli(
        "smtp",
        "create",
        "--total-limit",
        "5",
        "--hourly-limit",
        "1",
        "--out",
        str(out),
        "--settle-delay",
        "0.05",
    )
    assert run.code == 0, run.err
    [user] = account_env.users()
    assert f"{user['smtp_user_name']},{user['password']}" in out.read_text()


def test_create_passes_its_settle_delay_to_the_client(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``smtp create --settle-delay S``: the client settles a lost answer after S, not 5 s."""
    seen: list[float] = []
    make = _options.ClientConfig.client

    def client(config: _options.ClientConfig, **options: Any) -> AsyncSarvClient:
        made = make(config, **options)
        seen.append(made.settle_delay)
        return made

    monkeypatch.setattr(_options.ClientConfig, "client", client)
    run = cli(
        "smtp", "create", "--total-limit", "1", "--hourly-limit", "1", "--settle-delay", "0.25"
    )
    assert run.code == 0, run.err
    assert seen == [0.25]


@pytest.mark.slow
def test_create_whose_outcome_stays_unknown_says_to_check_and_leaves_no_file(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """A lost answer that no list can settle is one error line; no empty file."""
    # A first create, so the ledger has met the account (its baseline is recorded).
    assert cli("smtp", "create", "--total-limit", "1", "--hourly-limit", "1").code == 0
    account_env.inject_fault("general_error", "addSmtp")
    account_env.inject_fault("drop_before", "listSmtp", count=3)
    out = tmp_path / "new.csv"
    run = cli(
        "smtp",
        "create",
        "--total-limit",
        "5",
        "--hourly-limit",
        "1",
        "--out",
        str(out),
        "--settle-delay",
        "0",
    )
    assert run.code == 3  # outcome unknown: wins over failed
    [line] = run.err.splitlines()
    assert line.startswith("error: the call may or may not have taken effect")
    assert "sarv-async smtp list" in line
    assert not out.exists()


def test_update_changes_limits_and_status(cli: Cli, account_env: Emulator) -> None:
    """update sends only what is given; the server holds the new values."""
    [creds] = create_users(account_env, 1, total_limit=100, hourly_limit=10)
    name = creds.smtp_user_name
    run = cli("smtp", "update", name, "--hourly-limit", "20", "--status", "disable")
    assert run.code == 0, run.err
    assert f"updated SMTP user {name}" in run.out
    [user] = account_env.users()
    assert (user["total_limit"], user["hourly_limit"], user["status"]) == (100, 20, "Disable")
    answer = json.loads(cli("smtp", "update", name, "--status", "Enable", "--json").out)
    assert answer["smtp_user_name"] == name
    assert account_env.users()[0]["status"] == "Enable"


def test_update_without_changes_is_a_usage_error(cli: Cli, account_env: Emulator) -> None:
    """update with nothing to change is refused before anything is sent."""
    run = cli("smtp", "update", "smtp10001")
    assert run.code == 2
    assert run.err == "error: give at least one of --total-limit, --hourly-limit, --status\n"
    assert account_env.stats()["requests"] == {}


def test_update_of_an_unknown_user_is_one_error_line(cli: Cli, account_env: Emulator) -> None:
    """The server's refusal is one error line."""
    run = cli("smtp", "update", "smtp99999", "--total-limit", "5")
    assert run.code == 1
    assert len(run.err.splitlines()) == 1
    assert run.err.startswith("error: ValidationError")


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_reset_password_that_would_hide_the_password_sends_nothing(
    cli: Cli, account_env: Emulator, json_output: bool
) -> None:
    """Without --out or --show-secrets the new password would be lost: exit 2, nothing sent."""
    [creds] = create_users(account_env, 1)
    run = cli("smtp", "reset-password", creds.smtp_user_name, *(["--json"] if json_output else []))
    assert run.code == 2
    assert "--out" in run.err
    assert "--show-secrets" in run.err
    assert run.out == ""
    assert account_env.stats()["requests"] == {"/v1.0/settings/addSmtp": 1}  # the user's
    assert passwords(account_env)[creds.smtp_user_name] == creds.smtp_password


def test_reset_password_shows_the_new_password_when_asked(cli: Cli, account_env: Emulator) -> None:
    """reset-password --show-secrets prints the new password, and only it."""
    [creds] = create_users(account_env, 1)
    name = creds.smtp_user_name
    shown = cli("smtp", "reset-password", name, "--show-secrets")
    assert shown.code == 0
    assert f"new password for SMTP user {name}" in shown.out
    assert f"password: {passwords(account_env)[name]}" in shown.out
    assert_no_secret(shown.text, [creds.smtp_password, TOKEN])


def test_reset_password_json_with_out_names_the_file(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """--json --out: the JSON names the file, which holds the new password; stderr is quiet."""
    [creds] = create_users(account_env, 1)
    out = tmp_path / "reset.csv"
    run = cli("smtp", "reset-password", creds.smtp_user_name, "--json", "--out", str(out))
    assert (run.code, run.err) == (0, "")
    assert json.loads(run.out) == {
        "smtp_user_name": creds.smtp_user_name,
        "credentials_file": str(out),
    }
    new = passwords(account_env)[creds.smtp_user_name]
    assert out.read_text().splitlines()[1] == f"{creds.smtp_user_name},{new}"


@posix_only
def test_reset_password_out_replaces_a_file_with_force(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """reset-password --out --force replaces an existing file with a new 0600 one."""
    [creds] = create_users(account_env, 1)
    out = tmp_path / "creds.csv"
    out.write_text("old\n")
    out.chmod(0o644)
    argv = ["smtp", "reset-password", creds.smtp_user_name, "--out", str(out)]
    assert cli(*argv).code == 2
    assert cli(*argv, "--force").code == 0
    assert file_mode(out) == 0o600
    assert _read_credentials(out) == [
        {
            "smtp_user_name": creds.smtp_user_name,
            "smtp_password": passwords(account_env)[creds.smtp_user_name],
        }
    ]


def test_create_with_an_idempotency_key_twice_makes_one_user(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """smtp create --idempotency-key: the second run prints the same user; one exists."""
    argv = ("smtp", "create", "--total-limit", "5", "--hourly-limit", "1", "--json")
    first = cli(*argv, "--idempotency-key", "tenant-1")
    second = cli(*argv, "--idempotency-key", "tenant-1")
    assert first.code == second.code == 0, first.err + second.err
    assert json.loads(first.out) == json.loads(second.out)
    assert len(account_env.users()) == 1
    other = cli(
        "smtp",
        "create",
        "--total-limit",
        "6",
        "--hourly-limit",
        "1",
        "--idempotency-key",
        "tenant-1",
    )
    assert other.code == 2
    assert "'tenant-1' was already used with total_limit=5" in other.err
