"""``sarv-async emulator``: start in a subprocess, serve, and exit 0 on SIGTERM or SIGINT."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

import sarv_async
from sarv_async._cli import main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

PROJECT_ROOT = Path(sarv_async.__file__).resolve().parents[1]

Launch = Callable[[Sequence[str]], "subprocess.Popen[bytes]"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SARV_", "SENDCLEAN_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def launch() -> Iterator[Launch]:
    """Start ``main(argv)`` in a subprocess; kill whatever is left at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: Sequence[str]) -> subprocess.Popen[bytes]:
        code = f"import sys; from sarv_async._cli import main; sys.exit(main({list(argv)!r}))"
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 15.0) -> str:
    """What the process prints up to ``marker``, read without blocking forever."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    text = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in text:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in time; got {text!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"the process ended early: {text!r}"
            text += chunk
    return text.decode()


def _base_url(banner: str) -> str:
    match = re.search(r"base URL:\s+(http://\S+/v1\.0/)", banner)
    assert match, banner
    return match.group(1)


def test_serves_given_accounts_and_exits_0_on_sigterm(
    launch: Launch,
) -> None:
    """The banner shows the base URL and owner ids but no given token; SIGTERM exits 0."""
    proc = launch(["emulator", "--port", "0", "--account", "acme:s3cret-Token", "--account", "b:t"])
    banner = _read_until(proc, "Ctrl+C")
    url = _base_url(banner)
    assert "acme" in banner
    assert "s3cret-Token" not in banner
    response = httpx.post(
        url + "settings/addSmtp",
        json={"owner_id": "acme", "token": "s3cret-Token", "total_limit": 5, "hourly_limit": 1},
    )
    assert response.json()["message"] == "SMTP User Created"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert b"s3cret-Token" not in out + err
    assert b"/v1.0/settings/addSmtp" in out + err  # the access log: a path, never a body


def test_demo_account_by_default_and_exits_0_on_sigint(
    launch: Launch,
) -> None:
    """With no --account the demo account and its token are shown; Ctrl-C exits 0."""
    proc = launch(["emulator", "--port", "0", "--rate-limit", "2/second", "--log-level", "warning"])
    banner = _read_until(proc, "Ctrl+C")
    assert "demo" in banner
    assert "demo-token" in banner
    assert "2/second" in banner
    response = httpx.post(
        _base_url(banner) + "settings/listSmtp", json={"owner_id": "demo", "token": "demo-token"}
    )
    assert response.json() == {"status": "success", "smtp_list": []}
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


def test_a_busy_port_exits_1_with_a_message(launch: Launch) -> None:
    """When the port is taken, the command says so and exits 1."""
    from sarv_async.testing import Emulator

    with Emulator() as emu:
        proc = launch(["emulator", "--port", str(emu.port)])
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 1
    assert b"error: cannot listen on 127.0.0.1:" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["emulator", "--account", "no-colon"],
        ["emulator", "--account", ":token"],
        ["emulator", "--rate-limit", "lots"],
        ["emulator", "--fault-rate", "2"],
        ["emulator", "--latency-ms", "-1"],
        ["emulator", "--port", "99999"],
        ["nonsense"],
    ],
)
def test_bad_arguments_are_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse rejects bad arguments with exit status 2 and a message."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_an_account_given_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """Two --account options for one owner id are refused before anything starts."""
    assert main(["emulator", "--account", "a:1", "--account", "a:2"]) == 2
    assert "error: --account given twice for a" in capsys.readouterr().err
