"""``smtp provision``'s checks before anything is sent: input kinds, limits, one run per OUT.

The cases that hang or race in real life run in real processes: a FIFO as FILE, two runs
on one OUT, SIGTERM while the command still reads what it needs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sarv_async._requests import MAX_LIMIT
from sarv_async.testing import Emulator
from tests.processes import Launch, child_env

from ._support import ACCOUNTS, OWNER_ID, TOKEN, cli_command, data_rows, write_specs
from .conftest import Cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX files and signals")


def _argv(emu: Emulator, specs: Path | str, out: Path, *extra: str) -> list[str]:
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
        "--settle-delay",
        "0",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**child_env(), "SARV_TOKEN": TOKEN}


# -- input the command cannot read twice --------------------------------------------------


@pytest.mark.slow
def test_a_fifo_as_file_is_refused_at_once_and_nothing_is_sent(tmp_path: Path) -> None:
    """A FIFO with no writer is refused (exit 2) without waiting for one; nothing is sent."""
    fifo = tmp_path / "specs.csv"
    os.mkfifo(fifo)
    with Emulator(accounts=ACCOUNTS) as emu:
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            cli_command(_argv(emu, fifo, tmp_path / "creds.csv")),
            capture_output=True,
            env=_env(),
            timeout=30,
        )
        assert emu.stats()["requests"] == {}
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.splitlines() == [
        f"error: {fifo} is a pipe; it must be a regular file, as it is read more than once"
    ]
    assert not (tmp_path / "creds.csv").exists()


@pytest.mark.slow
def test_process_substitution_is_refused(tmp_path: Path) -> None:
    """``<(cat specs.csv)`` (a pipe at /dev/fd/N) is refused before reading it."""
    specs = write_specs(tmp_path / "specs.csv", 2)
    read, write = os.pipe()
    try:
        os.write(write, specs.read_bytes())
        os.close(write)
        with Emulator(accounts=ACCOUNTS) as emu:
            done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
                cli_command(_argv(emu, f"/dev/fd/{read}", tmp_path / "creds.csv")),
                capture_output=True,
                env=_env(),
                timeout=30,
                pass_fds=(read,),
            )
            assert emu.stats()["requests"] == {}
    finally:
        os.close(read)
    assert done.returncode == 2, done.stderr.decode()
    assert b"is a pipe; it must be a regular file" in done.stderr


@pytest.mark.parametrize("kind", ["directory", "device", "socket"])
def test_a_directory_device_or_socket_as_file_is_refused(
    cli: Cli, account_env: Emulator, tmp_path: Path, kind: str
) -> None:
    """Anything but a regular file is a usage error naming what it is; nothing is sent."""
    if kind == "directory":
        path, said = str(tmp_path), "a directory"
    elif kind == "device":
        path, said = os.devnull, "a device"
    else:
        path, said = str(tmp_path / "s.sock"), "a socket"
    with socket.socket(socket.AF_UNIX) as sock:
        if kind == "socket":
            sock.bind(path)
        run = cli("smtp", "provision", path, "--out", str(tmp_path / "creds.csv"))
    assert run.code == 2
    assert (
        run.err
        == f"error: {path} is {said}; it must be a regular file, as it is read more than once\n"
    )
    assert account_env.stats()["requests"] == {}


@pytest.mark.slow
def test_an_out_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    """OUT is read to resume: a FIFO there is refused, not opened and waited on."""
    specs = write_specs(tmp_path / "specs.csv", 2)
    out = tmp_path / "creds.csv"
    os.mkfifo(out)
    with Emulator(accounts=ACCOUNTS) as emu:
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            cli_command(_argv(emu, specs, out)), capture_output=True, env=_env(), timeout=30
        )
        assert emu.stats()["requests"] == {}
    assert done.returncode == 2, done.stderr.decode()
    assert f"{out} is a pipe".encode() in done.stderr


# -- limits the API accepts ----------------------------------------------------------------


def test_the_largest_limit_passes_and_one_more_is_refused_up_front(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """The CSV check takes what the request and the API take: up to 2**63 - 1."""
    assert MAX_LIMIT == 2**63 - 1
    specs = tmp_path / "specs.csv"
    specs.write_text(f"total_limit,hourly_limit\n{MAX_LIMIT},1\n{MAX_LIMIT + 1},1\n{'1' * 30},1\n")
    run = cli("smtp", "provision", str(specs), "--out", str(tmp_path / "creds.csv"))
    assert run.code == 2
    assert run.err.splitlines() == [
        f"error: {specs}:3: total_limit is too large: the API takes at most {MAX_LIMIT}",
        f"error: {specs}:4: total_limit is too large: the API takes at most {MAX_LIMIT}",
        f"error: 2 bad rows in {specs}; nothing was created",
    ]
    assert account_env.stats()["requests"] == {}

    specs.write_text(f"total_limit,hourly_limit\n{MAX_LIMIT},{MAX_LIMIT}\n0{MAX_LIMIT},1\n")
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(tmp_path / "c"))
    assert run.code == 0, run.err
    assert sorted(user["total_limit"] for user in account_env.users()) == [MAX_LIMIT] * 2


def test_create_refuses_a_limit_the_api_would_refuse(cli: Cli, account_env: Emulator) -> None:
    """``smtp create`` checks the same bound as a usage error; nothing is sent."""
    with pytest.raises(SystemExit) as info:
        cli("smtp", "create", "--total-limit", str(MAX_LIMIT + 1), "--hourly-limit", "1")
    assert info.value.code == 2
    assert account_env.stats()["requests"] == {}


# -- one run per OUT -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_run_on_the_same_out_exits_2_naming_the_first(
    launch: Launch, tmp_path: Path
) -> None:
    """While a run writes OUT, another on it exits 2 at once, sends nothing, names the PID.

    Once the first is killed (SIGKILL: its lock file stays behind), a rerun is not blocked.
    """
    specs = write_specs(tmp_path / "specs.csv", 30)
    out = tmp_path / "creds.csv"
    with (
        Emulator(accounts=ACCOUNTS, latency_ms=30) as emu,
        Emulator(accounts=ACCOUNTS) as other,
    ):
        env = _env()
        # 4 calls a minute: after its list and 3 creates the first run waits (till killed),
        # however long the second takes to start.
        rate = "20/second;4/minute"
        first = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            cli_command(_argv(emu, specs, out, "--rate-limit", rate, "--concurrency", "2")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while data_rows(out) < 2 and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            assert first.poll() is None, first.communicate()[1].decode()
            # The second run talks to another emulator: whatever it sent would show there.
            second = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
                cli_command(_argv(other, specs, out)), capture_output=True, env=env, timeout=30
            )
            assert first.poll() is None, "the first run ended before the second was refused"
            first.kill()
            first.communicate()
        finally:
            if first.poll() is None:
                first.kill()
            first.communicate()  # its pipes closed, whatever failed
        assert second.returncode == 2, second.stderr.decode()
        assert second.stderr.decode().splitlines() == [
            f"error: another run is writing to {out} (PID {first.pid}); nothing was sent: "
            "let it finish (or stop it), then run the command again"
        ]
        assert other.stats()["requests"] == {}
        assert (tmp_path / "creds.csv.lock").exists()  # left by the killed run

        rerun = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            cli_command(_argv(emu, specs, out, "--rate-limit", "none")),
            capture_output=True,
            env=env,
            timeout=60,
        )
        assert rerun.returncode == 0, rerun.stderr.decode()
        assert len(emu.users()) == 30
    assert not (tmp_path / "creds.csv.lock").exists()


# -- SIGTERM before anything is sent -------------------------------------------------------


def _blocked_reading_a_pipe(pid: int) -> bool:
    try:
        return "pipe" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(("stop", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_reading_the_token_stops_the_command(
    tmp_path: Path, stop: signal.Signals, code: int
) -> None:
    """Waiting on ``--token-file -`` (stdin), SIGTERM stops the command as Ctrl-C does."""
    specs = write_specs(tmp_path / "specs.csv", 2)
    with Emulator(accounts=ACCOUNTS) as emu:
        argv = _argv(emu, specs, tmp_path / "creds.csv", "--token-file", "-")
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            cli_command(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        try:
            deadline = time.monotonic() + 30
            while not _blocked_reading_a_pipe(proc.pid) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()[1].decode()
                time.sleep(0.005)
            proc.send_signal(stop)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert emu.stats()["requests"] == {}
    assert proc.returncode == code, err.decode()
    assert err.decode().splitlines() == [
        "warning: stopped before anything was sent; nothing was created"
    ]
    assert not (tmp_path / "creds.csv").exists()


# -- another job's input ---------------------------------------------------------------


def test_another_jobs_input_into_an_out_is_refused(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """An input sharing no row with OUT's rows is another job's: exit 2, nothing sent."""
    out = tmp_path / "creds.csv"
    first = write_specs(tmp_path / "a.csv", 3, "a")
    assert cli("smtp", "provision", "--settle-delay", "0", str(first), "--out", str(out)).code == 0
    before = out.read_bytes()
    requests = account_env.stats()["requests"]
    other = write_specs(tmp_path / "b.csv", 3, "b")
    run = cli("smtp", "provision", "--settle-delay", "0", str(other), "--out", str(out))
    assert run.code == 2
    assert run.err.splitlines() == [
        f"error: {out} holds the credentials of another job: none of its 3 rows is a row of "
        f"{other}; nothing was sent: give another --out for this input"
    ]
    assert account_env.stats()["requests"] == requests
    assert out.read_bytes() == before


@pytest.mark.slow
def test_another_jobs_keys_into_an_out_are_refused(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """With a key column, an input with none of OUT's keys is another job's."""
    out = tmp_path / "creds.csv"
    specs = tmp_path / "keys.csv"
    specs.write_text("key,total_limit,hourly_limit\nk1,5,1\nk2,5,1\n")
    assert cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out)).code == 0
    specs.write_text("key,total_limit,hourly_limit\nk3,5,1\n")
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert run.code == 2
    assert "holds the credentials of another job" in run.err
    specs.write_text("key,total_limit,hourly_limit\nk3,5,1\nk2,5,1\n")  # shares k2: same job
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert run.code == 0, run.err
    assert "1 created, 0 adopted, 1 done earlier" in run.out
