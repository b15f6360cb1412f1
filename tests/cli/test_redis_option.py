"""``--redis-url`` and ``SARV_REDIS_URL``: API commands share the rate budget through Redis."""

from __future__ import annotations

import pytest

from sarv_async._ledger import account_id
from sarv_async.testing import Emulator
from tests.redis_server import RedisServer

from ._support import OWNER_ID
from .conftest import Cli


def _window_keys(redis_server: RedisServer, emu: Emulator) -> list[str]:
    tag = "{" + account_id(emu.base_url, OWNER_ID) + "}"
    keys = redis_server.command("KEYS", f"sarv:{tag}:window:*").decode()
    return [line for line in keys.split("\r\n") if line.startswith("sarv:")]


@pytest.mark.parametrize("where", ["before", "after", "environment"])
def test_smtp_commands_pace_through_redis(
    cli: Cli,
    account_env: Emulator,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """``--redis-url`` (before or after the command) or SARV_REDIS_URL: sends go on record."""
    if where == "environment":
        monkeypatch.setenv("SARV_REDIS_URL", redis_server.url)
        argv = ["smtp", "list"]
    elif where == "before":
        argv = ["--redis-url", redis_server.url, "smtp", "list"]
    else:
        argv = ["smtp", "list", "--redis-url", redis_server.url]
    assert cli(*argv).code == 0
    assert cli(*argv).code == 0
    keys = _window_keys(redis_server, account_env)
    assert keys, "nothing was recorded in Redis"
    for key in keys:
        assert redis_server.command("ZCARD", key) == b":2\r\n"


def test_an_unreachable_redis_does_not_stop_a_command(
    cli: Cli, account_env: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down, the command still runs, paced in-process, with one warning."""
    run = cli("smtp", "list", "--redis-url", "redis://:pw@127.0.0.1:9/0")
    assert run.code == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "pacing this process alone" in warnings[0]
    assert "pw@" not in run.text + warnings[0]


def test_help_names_the_variable(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    """The option's help says where else it can come from."""
    with pytest.raises(SystemExit):
        cli("smtp", "list", "--help")
    assert "SARV_REDIS_URL" in " ".join(capsys.readouterr().out.split())
