"""``sarv-async emulator``: start in a subprocess, serve, and exit 0 on SIGTERM or SIGINT."""

from __future__ import annotations

import os
import signal
import sys

import httpx
import pytest

from sarv_async._cli import main
from tests.processes import Launch, base_url_of, read_until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_smtp_port_0_serves_smtp_and_prints_the_port_and_ca(launch: Launch) -> None:
    """--smtp-port 0 picks a free port and prints it with the CA file to trust; a user made
    through the API logs in there over STARTTLS; the CA file goes at exit."""
    import re
    import smtplib
    import ssl

    proc = launch(["emulator", "--port", "0", "--smtp-port", "0", "--log-level", "warning"])
    banner = read_until(proc, "Ctrl+C")
    match = re.search(r"SMTP:\s+127\.0\.0\.1:(\d+) \(STARTTLS.*CA certificate: (\S+)\)", banner)
    assert match, banner
    port, ca_file = int(match[1]), match[2]
    created = httpx.post(
        base_url_of(banner) + "settings/addSmtp",
        json={"owner_id": "demo", "token": "demo-token", "total_limit": 5, "hourly_limit": 1},
    ).json()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=ca_file))
        assert smtp.login(created["smtp_user_name"], created["smtp_password"])[0] == 235
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert created["smtp_password"].encode() not in out + err
    assert not os.path.exists(ca_file)


@pytest.mark.slow
def test_error_readings_are_flags(launch: Launch) -> None:
    """--error-status http --error-kind-field type: a 401 whose kind is under "type"."""
    proc = launch(
        [
            *("emulator", "--port", "0", "--log-level", "warning"),
            *("--error-status", "http", "--error-kind-field", "type"),
        ]
    )
    banner = read_until(proc, "Ctrl+C")
    assert "errors:     HTTP status by kind, kind in 'type'" in banner
    response = httpx.post(
        base_url_of(banner) + "settings/listSmtp", json={"owner_id": "demo", "token": "wrong"}
    )
    assert (response.status_code, response.json()["type"]) == (401, "AuthenticationError")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


@pytest.mark.slow
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
        ["emulator", "--smtp-port", "70000"],
        ["emulator", "--error-status", "201"],
        ["emulator", "--error-kind-field", "kind"],
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
