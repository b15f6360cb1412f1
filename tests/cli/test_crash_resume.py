"""``smtp provision`` killed at random points and run again, in real processes.

The emulator runs in its own process with 20% faults; the command runs in another, is
killed (SIGKILL, SIGINT or SIGTERM) at a random moment, and the same command is run
again until it exits 0. Then every row has exactly one user, every password in OUT is the
server's, and no user is in two rows. The default ledger (under the per-test
``XDG_STATE_HOME``) is what the runs share.
"""

from __future__ import annotations

import csv
import os
import pty
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import Launch, base_url_of, child_env, read_until

from ._support import COLUMNS, OWNER_ID, TOKEN, data_rows, file_mode, write_specs

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.slow,  # real processes, killed and rerun
]

ROWS = 40


def _serve(launch: Launch, seed: int, *, fault_rate: float = 0.2, latency_ms: int = 20) -> str:
    """Start the emulator in its own process with 20% faults; return its base URL."""
    proc = launch(
        [
            "emulator",
            "--port",
            "0",
            "--account",
            f"{OWNER_ID}:{TOKEN}",
            "--fault-rate",
            str(fault_rate),
            "--seed",
            str(seed),
            "--latency-ms",
            str(latency_ms),
            "--log-level",
            "warning",
        ]
    )
    return base_url_of(read_until(proc, "Ctrl+C"))


def _server_users(url: str) -> dict[str, dict[str, Any]]:
    """The account's users, listed through the faults (a list is safe to repeat)."""
    for _ in range(100):
        try:
            answer = httpx.post(
                url + "settings/listSmtp", json={"owner_id": OWNER_ID, "token": TOKEN}, timeout=10
            ).json()
        except (httpx.HTTPError, ValueError):
            continue
        if answer.get("status") == "success":
            return {user["smtp_user_name"]: user for user in answer["smtp_list"]}
    raise AssertionError("the emulator never answered a list")


def _specs(path: Path, name: str) -> Path:
    return write_specs(path, ROWS, name, digits=2)


def _argv(url: str, specs: Path, out: Path, token_file: Path) -> list[str]:
    return [
        "smtp",
        "provision",
        str(specs),
        "--out",
        str(out),
        "--owner-id",
        OWNER_ID,
        "--base-url",
        url,
        "--token-file",
        str(token_file),
        "--settle-delay",
        "0.2",
        "--rate-limit",
        "none",
        "--concurrency",
        "4",
    ]


def _token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def _wait_for_lines(proc: subprocess.Popen[bytes], path: Path, lines: int) -> None:
    deadline = time.monotonic() + 30
    while proc.poll() is None and data_rows(path) < lines and time.monotonic() < deadline:
        time.sleep(0.005)


def _run_to_success(launch: Launch, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run the command until it exits 0, as its messages say to.

    Through 20% faults a run may end with outcomes unknown (3), or fail for certain (1)
    when even the retried list calls fail; running it again settles both.
    """
    for _ in range(6):
        proc = launch(argv)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            return subprocess.CompletedProcess(argv, 0, out, err)
        assert proc.returncode in (1, 3), err.decode()
    raise AssertionError("the command never finished")


def _read_out(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == [
            *COLUMNS,
            "smtp_user_name",
            "smtp_password",
            "outcome",
            "error",
        ]
        return list(reader)


def _assert_one_user_per_row(out: Path, name: str, server: dict[str, dict[str, Any]]) -> set[str]:
    """Each input row once in OUT, with a user of its limits and the server's password."""
    rows = _read_out(out)
    assert file_mode(out) == 0o600
    assert sorted(row["customer"] for row in rows) == [f"{name}-{i:02}" for i in range(ROWS)]
    names = Counter(row["smtp_user_name"] for row in rows)
    assert len(names) == ROWS, "a user is in two rows"
    for row in rows:
        user = server[row["smtp_user_name"]]
        assert user["password"] == row["smtp_password"]
        assert (user["total_limit"], user["hourly_limit"]) == (
            int(row["total_limit"]),
            int(row["hourly_limit"]),
        )
    return set(names)


@pytest.mark.parametrize(
    ("kill", "seed"), [(signal.SIGKILL, 1), (signal.SIGINT, 2), (signal.SIGTERM, 3)]
)
def test_killed_at_random_points_then_rerun_gives_one_user_per_row(
    launch: Launch, tmp_path: Path, kill: signal.Signals, seed: int
) -> None:
    """Killed three times mid-run through 20% faults, then run again: one user per row."""
    url = _serve(launch, seed)
    specs = _specs(tmp_path / "specs.csv", "cust")
    out = tmp_path / "creds.csv"
    argv = _argv(url, specs, out, _token_file(tmp_path))
    pick = random.Random(seed)
    killed_mid_run = 0
    partial: list[int] = []  # users on the server after each kill
    for _ in range(3):
        before = data_rows(out)
        proc = launch(argv)
        # A random point of the run: once a random number of rows more are in OUT.
        _wait_for_lines(proc, out, before + pick.randint(1, max(1, ROWS - before - 2)))
        time.sleep(pick.uniform(0, 0.05))
        if proc.poll() is None:
            proc.send_signal(kill)
        _, err = proc.communicate(timeout=60)
        if proc.returncode in (-kill, 130, 143):
            killed_mid_run += 1
        partial.append(len(_server_users(url)))
        if kill != signal.SIGKILL and proc.returncode in (130, 143):
            assert proc.returncode == (130 if kill == signal.SIGINT else 143)
            assert b"rows done (in " in err
            assert b"run the same command again to resume" in err
    assert killed_mid_run, "no kill landed while the command ran"
    assert any(0 < count < ROWS for count in partial), partial

    final = _run_to_success(launch, argv)
    server = _server_users(url)
    names = _assert_one_user_per_row(out, "cust", server)
    assert names == set(server), "a user exists that no row has"
    assert TOKEN.encode() not in final.stdout + final.stderr

    again = _run_to_success(launch, argv)
    assert b"nothing was created" in again.stdout
    assert len(_server_users(url)) == ROWS


def test_two_concurrent_runs_sharing_the_default_ledger_never_share_a_user(
    launch: Launch, tmp_path: Path
) -> None:
    """Two files provisioned at once on one account, one killed and rerun: no user twice."""
    url = _serve(launch, 4)
    token = _token_file(tmp_path)
    a = _argv(url, _specs(tmp_path / "a.csv", "a"), tmp_path / "a-out.csv", token)
    b = _argv(url, _specs(tmp_path / "b.csv", "b"), tmp_path / "b-out.csv", token)
    first, second = launch(a), launch(b)
    time.sleep(0.8)
    if first.poll() is None:
        first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    _, err = second.communicate(timeout=120)
    assert second.returncode in (0, 1, 3), err.decode()
    both = [launch(a), launch(b)]
    for proc in both:
        proc.communicate(timeout=120)
    _run_to_success(launch, a)
    _run_to_success(launch, b)
    server = _server_users(url)
    in_a = _assert_one_user_per_row(tmp_path / "a-out.csv", "a", server)
    in_b = _assert_one_user_per_row(tmp_path / "b-out.csv", "b", server)
    assert not in_a & in_b, "a user was given to rows of both files"
    assert in_a | in_b == set(server)
    assert os.path.getsize(tmp_path / "a-out.csv") > 0


@pytest.mark.parametrize("second", ["after the warning", "at once"])
def test_a_second_interrupt_stops_at_once_without_a_traceback(
    launch: Launch, tmp_path: Path, second: str
) -> None:
    """Ctrl-C says the run is stopping; Ctrl-C again stops it at once, never with a traceback.

    Stopped either way, the same command run again gives one user per row.
    """
    url = _serve(launch, 6)
    specs = _specs(tmp_path / "specs.csv", "cust")
    out = tmp_path / "creds.csv"
    argv = _argv(url, specs, out, _token_file(tmp_path))
    proc = launch(argv)
    _wait_for_lines(proc, out, 5)
    proc.send_signal(signal.SIGINT)
    said = ""
    if second == "after the warning":
        said = read_until(proc, "interrupt again to stop at once", stderr=True)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    err = said + rest.decode()
    # Stopped at once, the process ends as SIGINT ends it (a shell shows 130 either way).
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err
    assert TOKEN not in err
    _run_to_success(launch, argv)
    _assert_one_user_per_row(out, "cust", _server_users(url))


def test_main_called_in_process_leaves_the_sigint_handler_as_it_found_it(
    tmp_path: Path, launch: Launch
) -> None:
    """After a run stopped by a signal, ``main`` returns; a later Ctrl-C still interrupts."""
    url = _serve(launch, 8)
    specs = _specs(tmp_path / "specs.csv", "cust")
    out = tmp_path / "creds.csv"
    argv = _argv(url, specs, out, _token_file(tmp_path))
    code = f"""
import os, signal, sys, threading, time
from sarv_async._cli import main

def stop():
    while not os.path.exists({str(out)!r}) or os.path.getsize({str(out)!r}) < 300:
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=stop, daemon=True).start()
status = main({argv!r})
print(status, signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", code], capture_output=True, env=child_env(), timeout=120
    )
    assert done.stdout.decode().split() == ["143", "True"], done.stderr.decode()


def test_a_stop_at_once_on_a_terminal_gives_the_cursor_back(launch: Launch, tmp_path: Path) -> None:
    """The progress bar hides the cursor; a second Ctrl-C ends the bar before the process."""
    pytest.importorskip("rich")
    # No faults (a run they end early never asks for a second Ctrl-C); answers slow enough
    # that the run is still going when the first one comes.
    url = _serve(launch, 7, fault_rate=0, latency_ms=200)
    specs = _specs(tmp_path / "specs.csv", "cust")
    out = tmp_path / "creds.csv"
    main, terminal = pty.openpty()
    code = "import sys; from sarv_async._cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", code, *_argv(url, specs, out, _token_file(tmp_path))],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**child_env(), "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(terminal)
    shown = b""
    try:
        _wait_for_lines(proc, out, 5)
        proc.send_signal(signal.SIGINT)
        shown += _read_terminal_until(main, b"interrupt again")
        proc.send_signal(signal.SIGINT)
        shown += _read_terminal_until(main, None)
        proc.wait(30)
    finally:
        os.close(main)
    assert HIDE_CURSOR in shown, shown[-2000:]
    # The last word on the cursor gives it back.
    assert shown.rfind(SHOW_CURSOR) > shown.rfind(HIDE_CURSOR), shown[-2000:]
    assert proc.returncode in (130, -signal.SIGINT)
    assert b"Traceback" not in shown


HIDE_CURSOR, SHOW_CURSOR = b"\x1b[?25l", b"\x1b[?25h"


def _read_terminal_until(fd: int, marker: bytes | None, timeout: float = 30) -> bytes:
    """What the terminal shows up to ``marker``, or (None) until the process closes it."""
    text = b""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in text:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {marker!r} in time; got {text[-2000:]!r}"
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every process holding the terminal has ended
            chunk = b""
        if not chunk:
            assert marker is None, f"the process ended before {marker!r}: {text[-2000:]!r}"
            return text
        text += chunk
    return text


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_cleanly_with_a_summary(
    launch: Launch, tmp_path: Path, stop: signal.Signals, code: int
) -> None:
    """Stopped mid-run: its exit status, the rows so far in OUT, a line saying to rerun."""
    url = _serve(launch, 5)
    specs = _specs(tmp_path / "specs.csv", "cust")
    out = tmp_path / "creds.csv"
    argv = _argv(url, specs, out, _token_file(tmp_path))
    proc = launch(argv)
    _wait_for_lines(proc, out, 5)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err.decode()
    [line] = [line for line in err.decode().splitlines() if "rows done" in line]
    done = int(line.split("stopped: ")[1].split(" of ")[0])
    assert 5 <= done < ROWS
    assert line.endswith("run the same command again to resume")
    rows = [row for row in _read_out(out) if row["smtp_password"]]
    assert len(rows) == done
    server = _server_users(url)
    assert all(server[row["smtp_user_name"]]["password"] == row["smtp_password"] for row in rows)
    _run_to_success(launch, argv)
    _assert_one_user_per_row(out, "cust", _server_users(url))
