"""``smtp provision`` when its store fails or is lost: OUT is the record, nothing twice.

- The ledger deleted, truncated or emptied between runs: a rerun creates nothing for the
  rows in OUT, says so first, and names the users that neither OUT nor a ledger explains.
- A store failing mid-run (disk full, Redis emptied): the counts and one ``error:`` line
  naming the store, never a traceback; a rerun resumes.
- The same OUT is the same job: a copied or moved input creates nothing again.
"""

from __future__ import annotations

import csv
import json
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sarv_async import LedgerError
from sarv_async._cli._files import CredentialsFile
from sarv_async.testing import Emulator
from tests.processes import Launch, child_env
from tests.redis_server import RedisServer

from ._support import (
    ACCOUNTS,
    OWNER_ID,
    TOKEN,
    cli_command,
    create_users,
    data_rows,
    file_mode,
    passwords,
    write_specs,
)
from .conftest import Cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX files and signals")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _provision(specs: Path, out: Path, ledger: str | Path) -> tuple[str, ...]:
    return (
        "smtp",
        "provision",
        "--settle-delay",
        "0",
        str(specs),
        "--out",
        str(out),
        "--ledger",
        str(ledger),
    )


def _one_user_per_row(out: Path, emu: Emulator, count: int) -> set[str]:
    rows = _rows(out)
    assert len(rows) == count
    names = {row["smtp_user_name"] for row in rows}
    assert len(names) == count, "a user is in two rows"
    server = passwords(emu)
    assert all(server[row["smtp_user_name"]] == row["smtp_password"] for row in rows)
    return names


# -- the ledger lost between runs -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["deleted", "truncated"])
def test_a_lost_ledger_creates_nothing_for_the_rows_in_out(
    cli: Cli, account_env: Emulator, tmp_path: Path, loss: str
) -> None:
    """Ledger gone, emptied or swapped: 0 creates, the first stderr line says so, OUT intact."""
    ledger = tmp_path / "ledger.sqlite3"
    specs = write_specs(tmp_path / "specs.csv", 5)
    out = tmp_path / "creds.csv"
    assert cli(*_provision(specs, out, ledger)).code == 0
    before = out.read_bytes()
    record = json.loads(Path(f"{out}.job.json").read_text())
    assert record["ledger"] == str(ledger)
    assert record["ledger_identity"]
    for path in tmp_path.glob("ledger.sqlite3*"):
        path.unlink()
    if loss == "truncated":
        ledger.write_bytes(b"")
    creates = len(account_env.users())

    run = cli(*_provision(specs, out, ledger))
    assert run.code == 0, run.err
    lines = run.err.splitlines()
    assert "was lost or replaced" in lines[0], run.err
    assert "5 users of it entered in the ledger as their rows' (none created again)" in lines[0]
    assert "0 created, 0 adopted, 5 done earlier, 0 failed" in run.out
    assert len(account_env.users()) == creates
    assert out.read_bytes() == before

    again = cli(*_provision(specs, out, ledger))
    assert again.code == 0, again.err
    assert again.err == ""  # the record now names the new ledger
    assert "nothing to do" in again.out


@pytest.mark.slow
def test_a_ledger_replaced_by_another_jobs_run_takes_the_rows_in_out_as_its_record(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """Another job ran first on the new ledger (its baseline took this job's users): the
    rows in OUT are not created again, and their users are entered as theirs (exit 0)."""
    ledger = tmp_path / "ledger.sqlite3"
    specs = write_specs(tmp_path / "specs.csv", 3)
    out = tmp_path / "creds.csv"
    assert cli(*_provision(specs, out, ledger)).code == 0
    for path in tmp_path.glob("ledger.sqlite3*"):
        path.unlink()
    other = write_specs(tmp_path / "other.csv", 1, "x")
    assert cli(*_provision(other, tmp_path / "x.csv", ledger)).code == 0
    creates = len(account_env.users())
    run = cli(*_provision(specs, out, ledger))
    assert run.code == 0, run.err
    lines = run.err.splitlines()
    assert "is another one" in lines[0]
    assert "was lost or replaced" in lines[0]
    assert "0 created, 0 adopted, 3 done earlier, 0 failed" in run.out
    assert len(account_env.users()) == creates
    assert len(_rows(out)) == 3  # OUT keeps every credential
    again = cli(*_provision(specs, out, ledger))  # the ledger knows them now
    assert again.code == 0, again.err
    assert "lost or replaced" not in again.err
    assert len(account_env.users()) == creates


@pytest.mark.slow
def test_users_neither_out_nor_the_ledger_explains_are_named_not_absorbed(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """Users there before the job are not named; users made since, outside it, are."""
    [older] = create_users(account_env, 1)
    ledger = tmp_path / "ledger.sqlite3"
    specs = write_specs(tmp_path / "specs.csv", 3)
    out = tmp_path / "creds.csv"
    assert cli(*_provision(specs, out, ledger)).code == 0
    [stray] = create_users(account_env, 1)  # made outside any ledger, after the job began
    for path in tmp_path.glob("ledger.sqlite3*"):
        path.unlink()
    run = cli(*_provision(specs, out, ledger))
    assert run.code == 0, run.err
    assert "was lost or replaced" in run.err.splitlines()[0]
    [named] = [line for line in run.err.splitlines() if "nor the ledger explains" in line]
    assert named.endswith(f": {stray.smtp_user_name}")
    assert older.smtp_user_name not in run.err
    assert len(account_env.users()) == 5


@pytest.mark.slow
@pytest.mark.parametrize("written", [1, 3], ids=["after-one-row", "after-three-rows"])
def test_a_ledger_lost_after_a_killed_run_names_what_the_killed_run_left(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: int
) -> None:
    """Stopped with users made but not in OUT, then the ledger lost: those are named."""
    ledger = tmp_path / "ledger.sqlite3"
    specs = write_specs(tmp_path / "specs.csv", 6)
    out = tmp_path / "creds.csv"
    write_row = CredentialsFile.write_row

    def stopped_at_a_row(self: Any, row: list[str]) -> None:
        if self.rows_written == written:
            raise KeyboardInterrupt  # as if killed: the next user is made, not written
        write_row(self, row)

    argv = (*_provision(specs, out, ledger), "--concurrency", "1")
    with monkeypatch.context() as patch:
        patch.setattr(CredentialsFile, "write_row", stopped_at_a_row)
        assert cli(*argv).code == 130
    made = {user["smtp_user_name"] for user in account_env.users()}
    in_out = {row["smtp_user_name"] for row in _rows(out)}
    assert len(in_out) == written
    left = made - in_out  # made, not in OUT: the next (and more, if they were sent)
    assert left
    for path in tmp_path.glob("ledger.sqlite3*"):
        path.unlink()

    run = cli(*argv)
    assert run.code == 0, run.err
    assert "was lost or replaced" in run.err.splitlines()[0]
    named_lines = [line for line in run.err.splitlines() if "nor the ledger explains" in line]
    assert len(named_lines) == 1, run.err + run.out
    [named] = named_lines
    assert named.endswith(": " + ", ".join(sorted(left)))
    assert f"{6 - len(in_out)} created" in run.out
    assert _one_user_per_row(out, account_env, 6).isdisjoint(left)
    assert len(account_env.users()) == 6 + len(left)  # those left at the loss, no other


@pytest.mark.slow
def test_a_run_killed_before_its_first_result_then_a_lost_ledger_names_what_it_made(
    cli: Cli, account_env: Emulator, launch: Launch, tmp_path: Path
) -> None:
    """SIGKILL before any result (every answer lost, the run waiting to settle), then the
    ledger lost: the record already names the users from before the job, so the killed
    run's users are named on the rerun, never taken for users that were there before."""
    emu = account_env
    before = {user.smtp_user_name for user in create_users(emu, 2)}
    ledger = tmp_path / "ledger.sqlite3"
    specs = write_specs(tmp_path / "specs.csv", 3)
    out = tmp_path / "creds.csv"
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    emu.inject_fault("drop_after_apply", "addSmtp", count=3)
    proc = launch(
        [
            *_provision(specs, out, ledger),
            "--owner-id",
            OWNER_ID,
            "--base-url",
            emu.base_url,
            "--token-file",
            str(token),
            "--rate-limit",
            "none",
            "--concurrency",
            "1",
            "--settle-delay",
            "60",  # after the last: the run waits to settle, no result yet
        ]
    )
    deadline = time.monotonic() + 30
    while len(emu.users()) < len(before) + 3:  # every create applied, its answer lost
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "the creates never reached the emulator"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert data_rows(out) == 0
    made = {user["smtp_user_name"] for user in account_env.users()} - before
    for path in tmp_path.glob("ledger.sqlite3*"):
        path.unlink()

    run = cli(*_provision(specs, out, ledger))
    assert run.code == 0, run.err
    named_lines = [line for line in run.err.splitlines() if "nor the ledger explains" in line]
    assert len(named_lines) == 1, run.err + run.out
    assert named_lines[0].endswith(": " + ", ".join(sorted(made)))
    assert _one_user_per_row(out, emu, 3).isdisjoint(made | before)
    assert len(emu.users()) == len(before) + 3 + 3  # what the killed run left, no other


# -- the same OUT is the same job --------------------------------------------------------


@pytest.mark.parametrize("how", ["copied", "moved"])
def test_the_same_out_with_a_copied_or_moved_input_creates_nothing(
    cli: Cli, account_env: Emulator, tmp_path: Path, how: str
) -> None:
    """The job belongs to OUT: its input copied or moved, a rerun into OUT makes 0 users."""
    specs = write_specs(tmp_path / "specs.csv", 5)
    out = tmp_path / "creds.csv"
    argv = ("smtp", "provision", "--settle-delay", "0")
    assert cli(*argv, str(specs), "--out", str(out)).code == 0
    assert file_mode(f"{out}.job.json") == 0o600
    other = tmp_path / "elsewhere" / "renamed.csv"
    other.parent.mkdir()
    (shutil.copy if how == "copied" else shutil.move)(str(specs), str(other))
    run = cli(*argv, str(other), "--out", str(out))
    assert run.code == 0, run.err
    assert "0 created, 0 adopted, 5 done earlier" in run.out
    assert len(account_env.users()) == 5


def test_an_out_from_before_job_records_keeps_its_path_based_job(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """An OUT without a record (an older version's) resumes by the input's path, then has one."""
    specs = write_specs(tmp_path / "specs.csv", 4)
    out = tmp_path / "creds.csv"
    argv = ("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert cli(*argv).code == 0
    record = Path(f"{out}.job.json")
    job = json.loads(record.read_text())["job"]
    record.unlink()
    run = cli(*argv)
    assert run.code == 0, run.err
    assert "0 created, 0 adopted, 4 done earlier" in run.out
    assert json.loads(record.read_text())["job"] == job
    assert len(account_env.users()) == 4


def test_a_damaged_record_is_refused_naming_it(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """A record that is not one stops the run before anything is sent, saying what to do."""
    specs = write_specs(tmp_path / "specs.csv", 2)
    out = tmp_path / "creds.csv"
    argv = ("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert cli(*argv).code == 0
    Path(f"{out}.job.json").write_text("{not json")
    requests = account_env.stats()["requests"]
    run = cli(*argv)
    assert run.code == 2
    [line] = run.err.splitlines()
    assert line.startswith(f"error: the job record {out}.job.json is damaged (not JSON")
    assert "remove it to go on" in line
    assert account_env.stats()["requests"] == requests


# -- a store failing mid-run -------------------------------------------------------------


def test_a_group_of_ledger_errors_is_one_error_line(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many workers failing on the ledger at once: the counts and one line naming it."""
    ledger = tmp_path / "ledger.sqlite3"

    async def failing(*args: Any, **kwargs: Any) -> None:
        raise ExceptionGroup(
            "workers", [LedgerError(f"the ledger {ledger} failed: disk I/O error")] * 3
        )

    monkeypatch.setattr("sarv_async._cli._provision_cmd.provision_rows", failing)
    run = cli(*_provision(write_specs(tmp_path / "specs.csv", 2), tmp_path / "o.csv", ledger))
    assert run.code == 3
    lines = run.err.splitlines()
    assert [line for line in lines if line.startswith("error:")] == [
        f"error: the ledger {ledger} failed: disk I/O error; run the same command again "
        "once the ledger works: it resumes"
    ]
    assert lines[0].startswith("warning: stopped: 0 of 2 rows done")


def _argv(emu: Emulator, specs: Path, out: Path, ledger: str) -> list[str]:
    return [
        "smtp",
        "provision",
        str(specs),
        "--out",
        str(out),
        "--owner-id",
        OWNER_ID,
        "--base-url",
        emu.base_url,
        "--ledger",
        ledger,
        "--settle-delay",
        "0",
        "--rate-limit",
        "none",
        "--concurrency",
        "4",
    ]


def _small_files(limit: int) -> None:
    """In the child: files may not grow past ``limit`` bytes (EFBIG, not SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_a_full_disk_under_the_ledger_ends_with_one_error_line_and_a_rerun_resumes(
    tmp_path: Path,
) -> None:
    """The ledger's file cannot grow mid-run: counts, one line naming it, exit 3; rerun: 0."""
    ledger = tmp_path / "ledger.sqlite3"
    specs = write_specs(tmp_path / "specs.csv", 60)
    out = tmp_path / "creds.csv"
    env = {**child_env(), "SARV_TOKEN": TOKEN}
    with Emulator(accounts=ACCOUNTS) as emu:
        argv = _argv(emu, specs, out, str(ledger))
        full = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            cli_command(argv),
            capture_output=True,
            env=env,
            timeout=120,
            preexec_fn=lambda: _small_files(64 * 1024),
        )
        err = full.stderr.decode()
        assert full.returncode == 3, err
        assert "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, err
        assert f"the ledger {ledger} failed" in errors[0]
        assert "run the same command again once the ledger works: it resumes" in errors[0]
        assert "warning: stopped: " in err
        assert 0 < len(_rows(out)) < 60

        rerun = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            cli_command(argv), capture_output=True, env=env, timeout=120
        )
        assert rerun.returncode == 0, rerun.stderr.decode()
        assert _one_user_per_row(out, emu, 60) == {u["smtp_user_name"] for u in emu.users()}


@pytest.mark.slow
def test_redis_emptied_mid_run_stops_the_run_and_the_rerun_creates_nothing_twice(
    volatile_redis_server: RedisServer, tmp_path: Path
) -> None:
    """FLUSHALL while the run goes on: one error line naming the Redis (no password), exit 3.

    The rerun takes OUT as the record: no row of OUT is created again, and the users made
    by the creates in flight at the loss are named, not absorbed.
    """
    redis = volatile_redis_server
    url = f"redis://:{'s3cret-pw'}@127.0.0.1:{redis.port}/0?allow_volatile=1"
    redis.command("CONFIG", "SET", "requirepass", "s3cret-pw")
    specs = write_specs(tmp_path / "specs.csv", 40)
    out = tmp_path / "creds.csv"
    env = {**child_env(), "SARV_TOKEN": TOKEN}
    with Emulator(accounts=ACCOUNTS, latency_ms=20) as emu:
        argv = _argv(emu, specs, out, url)
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            cli_command(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        try:
            deadline = time.monotonic() + 60
            while data_rows(out) < 5 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            assert proc.poll() is None, proc.communicate()[1].decode()
            flushed = _flush(redis)
            _, raw = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        err = raw.decode()
        assert flushed
        assert proc.returncode == 3, err
        assert "Traceback" not in err
        assert "s3cret-pw" not in err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, err
        assert f"127.0.0.1:{redis.port}" in errors[0]
        in_out = {row["smtp_user_name"] for row in _rows(out) if row["smtp_user_name"]}
        made = {user["smtp_user_name"] for user in emu.users()}
        assert in_out <= made

        rerun = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            cli_command(argv), capture_output=True, env=env, timeout=120
        )
        err = rerun.stderr.decode()
        assert rerun.returncode == 0, err
        assert "was lost or replaced" in err.splitlines()[0]
        assert "s3cret-pw" not in err
        names = _one_user_per_row(out, emu, 40)
        assert in_out <= names
        extra = {user["smtp_user_name"] for user in emu.users()} - names
        assert extra == made - in_out  # only the creates in flight at the loss
        assert len(extra) <= 4  # at most --concurrency
        for name in extra:
            assert name in err.splitlines()[-1]


def _flush(redis: RedisServer) -> bool:
    """Empty the Redis (its password set), as a restart without persistence would."""
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
        sock.sendall(b"AUTH s3cret-pw\r\nFLUSHALL\r\n")
        reply = b""
        while reply.count(b"\r\n") < 2:
            chunk = sock.recv(64)
            if not chunk:
                break
            reply += chunk
    return reply == b"+OK\r\n+OK\r\n"


def test_a_ledger_that_cannot_be_opened_is_one_error_line_and_nothing_is_created(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """A ledger path the store cannot use (a directory here): one line naming it, exit 1."""
    ledger = tmp_path / "ledger.d"
    ledger.mkdir()
    run = cli(*_provision(write_specs(tmp_path / "specs.csv", 2), tmp_path / "o.csv", ledger))
    assert run.code == 1
    [line] = run.err.splitlines()
    assert line.startswith("error: ")
    assert str(ledger) in line
    assert "Traceback" not in run.err
    assert account_env.users() == []


@pytest.mark.slow
def test_identical_rows_get_their_users_back_one_each_after_a_loss(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """Rows with equal cells are paired with OUT's users one to one: none twice, 0 creates."""
    ledger = tmp_path / "ledger.sqlite3"
    specs = tmp_path / "specs.csv"
    specs.write_text("total_limit,hourly_limit\n" + "100,10\n" * 4 + "5,1\n")
    out = tmp_path / "creds.csv"
    assert cli(*_provision(specs, out, ledger)).code == 0
    for path in tmp_path.glob("ledger.sqlite3*"):
        path.unlink()
    run = cli(*_provision(specs, out, ledger))
    assert run.code == 0, run.err
    assert "0 created, 0 adopted, 5 done earlier, 0 failed" in run.out
    assert len(account_env.users()) == 5
    assert cli(*_provision(specs, out, ledger)).err == ""


def test_a_redis_url_is_printed_without_its_password() -> None:
    """The ledger's place, as messages and the record show it, never holds a password."""
    from sarv_async._cli._state import ledger_location

    assert ledger_location("redis://u:pw@h:6379/0") == "redis://u:***@h:6379/0"
    assert ledger_location("rediss://:pw@h/1?allow_volatile=1") == (
        "rediss://:***@h/1?allow_volatile=1"
    )
    assert ledger_location("redis://h:6379/0") == "redis://h:6379/0"
    assert ledger_location("/var/ledger.sqlite3") == "/var/ledger.sqlite3"
