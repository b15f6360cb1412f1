"""The account options: flags, environment, token sources, and one-line errors."""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path

import pytest

from sarv_async._cli import _options, build_parser
from sarv_async._version import __version__
from sarv_async.testing import Emulator

from ._support import OWNER_ID, TOKEN, create_users
from .conftest import Cli


def _token_file(tmp_path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> str:
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def _assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_environment_supplies_the_account(cli: Cli, account_env: Emulator) -> None:
    """SARV_OWNER_ID, SARV_TOKEN and SARV_BASE_URL are enough to list users."""
    create_users(account_env, 2)
    run = cli("smtp", "list", "--json")
    assert run.code == 0, run.err
    assert [user["smtp_user_name"] for user in json.loads(run.out)] == [
        user["smtp_user_name"] for user in account_env.users()
    ]


@pytest.mark.parametrize("before", [True, False], ids=["before-command", "after-command"])
def test_flags_supply_the_account(cli: Cli, emu: Emulator, tmp_path: Path, before: bool) -> None:
    """--owner-id, --base-url and --token-file work before or after the command."""
    options = ["--owner-id", OWNER_ID, "--base-url", emu.base_url]
    options += ["--token-file", _token_file(tmp_path)]
    argv = [*options, "smtp", "list", "--json"] if before else ["smtp", "list", "--json", *options]
    run = cli(*argv)
    assert run.code == 0, run.err
    assert json.loads(run.out) == []


def test_flags_win_over_the_environment(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flag given wins over its variable."""
    monkeypatch.setenv("SARV_OWNER_ID", "someone-else")
    assert cli("smtp", "list", "--owner-id", OWNER_ID).code == 0


def test_token_flag_works_and_its_help_says_why_to_avoid_it(cli: Cli, emu: Emulator) -> None:
    """--token works, and its help names shell history and ps as the reasons to prefer others."""
    argv = ["--owner-id", OWNER_ID, "--base-url", emu.base_url, "--token", TOKEN]
    assert cli(*argv, "smtp", "list").code == 0
    help_text = " ".join(build_parser().format_help().split())
    assert "shell history" in help_text
    assert "ps" in help_text


def test_token_file_readable_by_others_gives_a_warning(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token file others can read still works, with a one-line warning to chmod it."""
    monkeypatch.delenv("SARV_TOKEN")
    run = cli("smtp", "list", "--token-file", _token_file(tmp_path, mode=0o644))
    assert run.code == 0
    assert run.err.startswith("warning: the token file")
    assert "chmod 600" in run.err


def test_token_file_wins_over_the_environment(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--token-file is used even when SARV_TOKEN holds another token."""
    monkeypatch.setenv("SARV_TOKEN", "stale-token")
    assert cli("smtp", "list", "--token-file", _token_file(tmp_path)).code == 0


def test_missing_token_is_one_error_line(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token anywhere and no terminal: one error line naming the ways to give one."""
    monkeypatch.delenv("SARV_TOKEN")
    run = cli("smtp", "list")
    assert run.code == 2
    _assert_one_error_line(run.err, "missing token", "SARV_TOKEN", "--token-file")
    assert account_env.stats()["requests"] == {}


def test_token_is_prompted_for_on_a_terminal(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a terminal with no token given, a hidden prompt asks for it."""
    monkeypatch.delenv("SARV_TOKEN")
    prompts: list[str] = []

    def fake_getpass(prompt: str = "Password: ", stream: object = None) -> str:
        prompts.append(prompt)
        return TOKEN

    monkeypatch.setattr(_options, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    run = cli("smtp", "list")
    assert run.code == 0, run.err
    assert prompts == [f"Sarv API token for {OWNER_ID}: "]


def test_token_file_read_error_is_one_line(cli: Cli, account_env: Emulator) -> None:
    """A token file that does not exist gives one error line, no traceback."""
    run = cli("smtp", "list", "--token-file", "/nonexistent/token")
    assert run.code == 2
    _assert_one_error_line(run.err, "cannot read the token file /nonexistent/token")


def test_token_and_token_file_together_are_refused(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """--token and --token-file together are a usage error."""
    run = cli("--token", TOKEN, "smtp", "list", "--token-file", _token_file(tmp_path))
    assert run.code == 2
    _assert_one_error_line(run.err, "--token or --token-file")


@pytest.mark.parametrize(
    ("variable", "expected"),
    [("SARV_OWNER_ID", "missing owner id"), ("SARV_BASE_URL", "missing endpoint")],
)
def test_missing_account_settings_are_one_error_line(
    cli: Cli,
    account_env: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    expected: str,
) -> None:
    """A missing owner id or endpoint is named in one line, with its option and variable."""
    monkeypatch.delenv(variable)
    run = cli("smtp", "list")
    assert run.code == 2
    _assert_one_error_line(run.err, expected)


def test_sendclean_brand_reads_sendclean_variables(
    cli: Cli, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SARV_BRAND=sendclean the SENDCLEAN_* variables are read first."""
    monkeypatch.setenv("SARV_BRAND", "sendclean")
    monkeypatch.setenv("SENDCLEAN_OWNER_ID", OWNER_ID)
    monkeypatch.setenv("SENDCLEAN_TOKEN", TOKEN)
    monkeypatch.setenv("SARV_TOKEN", "the-sarv-token")
    monkeypatch.setenv("SENDCLEAN_BASE_URL", emu.base_url)
    assert cli("smtp", "list").code == 0
    assert cli("--brand", "sarv", "smtp", "list").code == 2  # no SARV_OWNER_ID


def test_unknown_brand_variable_is_one_error_line(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SARV_BRAND that names no brand is a usage error."""
    monkeypatch.setenv("SARV_BRAND", "acme")
    run = cli("smtp", "list")
    assert run.code == 2
    _assert_one_error_line(run.err, "SARV_BRAND")


def test_authentication_failure_is_one_line(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong token gives one error line without a traceback or the token."""
    monkeypatch.setenv("SARV_TOKEN", "wrong-token-XYZ")
    run = cli("smtp", "list")
    assert run.code == 2
    _assert_one_error_line(run.err, "authentication failed", "Token MissMatch")
    assert "wrong-token-XYZ" not in run.text


def test_connection_failure_is_one_line(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that refuses connections gives one error line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SARV_BASE_URL", f"http://127.0.0.1:{port}/v1.0/")
    run = cli("smtp", "list")
    assert run.code == 1
    _assert_one_error_line(run.err, "cannot reach the API")


def test_a_create_that_cannot_reach_the_api_says_what_was_run(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error names the create, says the account is listed first and nothing was created."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SARV_BASE_URL", f"http://127.0.0.1:{port}/v1.0/")
    run = cli("smtp", "create", "--total-limit", "1", "--hourly-limit", "1")
    assert run.code == 1
    _assert_one_error_line(
        run.err,
        "cannot reach the API",
        f"http://127.0.0.1:{port}/v1.0/",
        "smtp create",
        "lists the account first",
        "nothing was created",
    )


@pytest.mark.parametrize(
    ("path", "suggested"),
    [("/", "/v1.0/"), ("/v2.0/", "/v1.0/"), ("/api/v2/", "/api/v1.0/"), ("/api/", "/api/v1.0/")],
)
def test_a_base_url_without_v1_suggests_a_correct_one_once(
    cli: Cli, account_env: Emulator, path: str, suggested: str
) -> None:
    """A 404 from a base URL without /v1.0/ suggests one with it; each fact is said once."""
    run = cli("smtp", "list", "--base-url", account_env.url + path)
    assert run.code == 2
    _assert_one_error_line(run.err, f"try {account_env.url}{suggested}")
    # Not counted in the URLs: the emulator's port may hold "404" (40409).
    assert run.err.replace(account_env.url, "").count("404") == 1, run.err
    assert "v1.0/v1.0" not in run.err
    assert "/v2.0/v1.0" not in run.err


def test_plain_http_to_another_host_is_refused(cli: Cli, account_env: Emulator) -> None:
    """A plain http:// URL on another host is refused before anything is sent."""
    run = cli("smtp", "list", "--base-url", "http://api.example.com/v1.0/")
    assert run.code == 2
    _assert_one_error_line(run.err, "refusing plain http://", "--allow-insecure-http")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the installed version."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sarv-async {__version__}"


def test_environment_is_read_at_run_time() -> None:
    """The parser itself holds no environment value (they are read when a command runs)."""
    args = build_parser().parse_args(["smtp", "list"])
    assert args.owner_id is None
    assert args.token is None
