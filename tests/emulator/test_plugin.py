"""The pytest plugin: light to import, and its ``sarv_emulator`` fixture serves a test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sarv_async

# Each test runs pytest in another process.
pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(sarv_async.__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SARV_", "SENDCLEAN_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # load the plugin by -p only, once
    return env


def test_importing_the_plugin_loads_neither_uvicorn_nor_the_emulator() -> None:
    """The plugin loads in every pytest run, so it must not import the server."""
    code = (
        "import sys, sarv_async.testing.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.startswith(('uvicorn', 'sarv_async.testing.'))))"
    )
    out = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['sarv_async.testing.pytest_plugin']"


def test_a_pytest_run_with_the_plugin_imports_no_dependency(tmp_path: Path) -> None:
    """In an unrelated project's test run, the plugin loads only itself and the package root."""
    (tmp_path / "test_other.py").write_text(
        textwrap.dedent(
            """
            import sys

            def test_nothing_heavy_was_imported():
                loaded = {m for m in sys.modules if m.split(".")[0] in (
                    "sarv_async", "httpx", "attr", "attrs", "cattrs", "anyio", "uvicorn"
                )}
                assert "sarv_async.testing.pytest_plugin" in loaded
                assert loaded <= {
                    "sarv_async", "sarv_async._exceptions", "sarv_async._version",
                    "sarv_async.testing", "sarv_async.testing.pytest_plugin",
                }, sorted(loaded)
            """
        )
    )
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            *(sys.executable, "-m", "pytest", "-q", str(tmp_path)),
            *("-p", "sarv_async.testing.pytest_plugin", "-p", "no:cacheprovider"),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_fixture_serves_a_test_configured_by_the_marker(tmp_path: Path) -> None:
    """A test using ``sarv_emulator`` and its marker passes under a plain pytest run."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import httpx
            import pytest

            @pytest.mark.sarv_emulator(accounts={"me": "my-token"}, rate_limit="1/minute")
            def test_marker(sarv_emulator):
                assert sarv_emulator.accounts == {"me": "my-token"}
                url = sarv_emulator.base_url + "settings/listSmtp"
                body = {"owner_id": "me", "token": "my-token"}
                assert httpx.post(url, json=body).json()["status"] == "success"
                assert httpx.post(url, json=body).status_code == 429

            def test_default(sarv_emulator):
                assert sarv_emulator.accounts == {"demo": "demo-token"}
            """
        )
    )
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "sarv_async.testing.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "--strict-markers",
            "-W",
            "error",
            "-q",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_fixture_serves_smtp_and_takes_indirect_parameters(tmp_path: Path) -> None:
    """``@pytest.mark.sarv_emulator(smtp=True)`` exposes the SMTP side; an indirect parameter
    (a dict of options) adds to the marker's, one emulator per set; no warning escapes."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import smtplib

            import httpx
            import pytest

            @pytest.mark.sarv_emulator(smtp=True)
            def test_smtp(sarv_emulator):
                url = sarv_emulator.base_url + "settings/addSmtp"
                body = {"owner_id": "demo", "token": "demo-token",
                        "total_limit": 5, "hourly_limit": 5}
                creds = httpx.post(url, json=body).json()
                with smtplib.SMTP(*sarv_emulator.smtp_address) as smtp:
                    smtp.starttls(context=sarv_emulator.smtp_ssl_context())
                    smtp.login(creds["smtp_user_name"], creds["smtp_password"])
                    smtp.sendmail("a@example.com", ["b@example.org"], b"Subject: x\\r\\n\\r\\nx")
                [message] = sarv_emulator.messages()
                assert message.smtp_user_name == creds["smtp_user_name"]

            @pytest.mark.sarv_emulator(accounts={"me": "my-token"})
            @pytest.mark.parametrize(
                "sarv_emulator",
                [{"error_status": "http"}, {"error_kind_field": "type"}],
                indirect=True,
            )
            def test_readings(sarv_emulator):
                assert sarv_emulator.accounts == {"me": "my-token"}
                url = sarv_emulator.base_url + "settings/listSmtp"
                answer = httpx.post(url, json={"owner_id": "me", "token": "wrong"})
                http = sarv_emulator.error_status == "http"
                key = "name" if http else "type"
                assert answer.status_code == (401 if http else 200)
                assert answer.json()[key] == "AuthenticationError"
            """
        )
    )
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            *(sys.executable, "-m", "pytest", "-p", "sarv_async.testing.pytest_plugin"),
            *("-p", "no:cacheprovider", "--strict-markers", "-W", "error", "-q", str(tmp_path)),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_plugin_is_disabled_by_the_name_of_its_fixture(tmp_path: Path) -> None:
    """``-p no:sarv_emulator`` (the name users see) turns the installed plugin off."""
    (tmp_path / "test_user.py").write_text("def test_uses(sarv_emulator):\n    pass\n")
    env = {k: v for k, v in _env().items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}

    def run(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    assert run().returncode == 0  # installed and on by default
    off = run("-p", "no:sarv_emulator")
    assert off.returncode != 0
    assert "fixture 'sarv_emulator' not found" in off.stdout
