"""``-v`` shows the SDK's log lines; without it, and with SARV_LOG already on, no extra lines."""

from __future__ import annotations

import logging

import pytest

from sarv_async import _logging
from sarv_async.testing import Emulator

from ._support import TOKEN
from .conftest import Cli


@pytest.mark.slow
def test_verbose_shows_retries_and_unknown_outcomes(cli: Cli, account_env: Emulator) -> None:
    """-v: a retried list and a create that was not repeated show as 'log:' lines."""
    account_env.inject_fault("gateway_page", "listSmtp")
    run = cli("-v", "smtp", "list")
    assert run.code == 0
    assert "log: retrying POST settings/listSmtp after UnexpectedResponseError" in run.err
    # A first create, so the ledger has met the account (its baseline is recorded); then a
    # lost answer that no list can settle.
    assert cli("smtp", "create", "--total-limit", "1", "--hourly-limit", "1").code == 0
    account_env.inject_fault("drop_after_apply", "addSmtp")
    account_env.inject_fault("drop_before", "listSmtp", count=3)
    run = cli(
        "-v", "smtp", "create", "--total-limit", "1", "--hourly-limit", "1", "--settle-delay", "0"
    )
    assert run.code == 3
    assert "log: POST settings/addSmtp may have taken effect" in run.err
    assert TOKEN not in run.err


@pytest.mark.slow
def test_without_verbose_only_the_error_line(cli: Cli, account_env: Emulator) -> None:
    """No -v: the lost create is one error line, no log line."""
    assert cli("smtp", "create", "--total-limit", "1", "--hourly-limit", "1").code == 0
    account_env.inject_fault("drop_after_apply", "addSmtp")
    account_env.inject_fault("drop_before", "listSmtp", count=3)
    run = cli("smtp", "create", "--total-limit", "1", "--hourly-limit", "1", "--settle-delay", "0")
    assert [line.split(":")[0] for line in run.err.splitlines()] == ["error"]


def test_verbose_adds_no_second_handler_when_sarv_log_is_on(
    cli: Cli, account_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SARV_LOG's handler installed, -v does not print every line twice."""
    monkeypatch.setattr(_logging, "env_handler", logging.NullHandler())
    account_env.inject_fault("gateway_page", "listSmtp")
    run = cli("-v", "smtp", "list")
    assert run.code == 0
    assert "log:" not in run.err
