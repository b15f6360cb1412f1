"""``sarv-async emulator``: start in a subprocess, serve, and exit 0 on SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys

import httpx
import pytest

from sarv_async._cli import main
from tests.processes import Launch, base_url_of, read_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_serves_given_accounts_and_exits_0_on_sigterm(
    launch: Launch,
) -> None:
    """The banner shows the base URL and owner ids but no given token; SIGTERM exits 0."""
    proc = launch(["emulator", "--port", "0", "--account", "acme:s3cret-Token", "--account", "b:t"])
    banner = read_until(proc, "Ctrl+C")
    url = base_url_of(banner)
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
    banner = read_until(proc, "Ctrl+C")
    assert "demo" in banner
    assert "demo-token" in banner
    assert "2/second" in banner
    response = httpx.post(
        base_url_of(banner) + "settings/listSmtp", json={"owner_id": "demo", "token": "demo-token"}
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
