"""``smtp provision`` on several hosts with ``--redis-url``: one ledger, in that Redis.

Each host has its own default ledger file (its own ``XDG_STATE_HOME``). Runs on two hosts
that kept their ledgers there would each take the other's new users for their own lost
creates (a user in two files, another in none); with a Redis URL the ledger is the
Redis every host shares, as the many-workers page says.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sarv_async.testing import Emulator
from tests.processes import Launch
from tests.redis_server import RedisServer

from ._support import OWNER_ID
from .conftest import Cli
from .test_crash_resume import (
    _argv,
    _assert_one_user_per_row,
    _run_to_success,
    _serve,
    _server_users,
    _specs,
    _token_file,
)

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes"),
    pytest.mark.slow,  # real processes and a real redis-server
]


def test_runs_on_two_hosts_with_a_redis_url_never_share_a_user(
    launch: Launch, tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hosts provision two files at once through 20% faults: no user in both files."""
    url = _serve(launch, 7)
    token = _token_file(tmp_path)
    shared = ["--redis-url", redis_server.url]
    a = [*_argv(url, _specs(tmp_path / "a.csv", "a"), tmp_path / "a-out.csv", token), *shared]
    b = [*_argv(url, _specs(tmp_path / "b.csv", "b"), tmp_path / "b-out.csv", token), *shared]
    runs = []
    for host, argv in (("host-a", a), ("host-b", b)):
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / host))  # its own default ledger
        runs.append(launch(argv))
    for proc in runs:
        proc.communicate(timeout=120)
    for host, argv in (("host-a", a), ("host-b", b)):
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / host))
        _run_to_success(launch, argv)
    server = _server_users(url)
    in_a = _assert_one_user_per_row(tmp_path / "a-out.csv", "a", server)
    in_b = _assert_one_user_per_row(tmp_path / "b-out.csv", "b", server)
    assert not in_a & in_b, "a user was given to rows of both files"
    assert in_a | in_b == set(server), "a user exists that no row has"


@pytest.mark.parametrize("how", ["--redis-url", "--ledger", "SARV_LEDGER"])
def test_a_create_keeps_its_key_in_redis(
    cli: Cli,
    account_env: Emulator,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    how: str,
) -> None:
    """A Redis URL as the ledger: the key is in Redis, and a host with another state
    directory gets the same user for it, nothing created."""
    if how == "SARV_LEDGER":
        monkeypatch.setenv("SARV_LEDGER", redis_server.url)
        where: list[str] = []
    else:
        where = [how, redis_server.url]
    argv = ["smtp", "create", "--total-limit", "9", "--hourly-limit", "3", "--json", *where]
    names = []
    for host in ("host-a", "host-b"):
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / host))
        run = cli(*argv, "--idempotency-key", "tenant-42")
        assert run.code == 0, run.text
        names.append(json.loads(run.out)["smtp_user_name"])
    assert names[0] == names[1]
    assert [u["smtp_user_name"] for u in account_env.users(OWNER_ID)] == names[:1]
    assert redis_server.command("DBSIZE") != b":0\r\n"
    assert not list(tmp_path.glob("host-*/sarv-async/*.sqlite3")), "a ledger file was made"
