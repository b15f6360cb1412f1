"""Output helpers: error lines, and the progress display with and without rich."""

from __future__ import annotations

import io
import re
import sys

import pytest

from sarv_async import (
    APIConnectionError,
    AuthenticationError,
    CreateSmtpUserRequest,
    OutcomeUnknownError,
    SarvError,
    ValidationError,
)
from sarv_async._cli import _output


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            AuthenticationError("Token MissMatch", status_code=200),
            "authentication failed (Token MissMatch): check the owner id and the token",
        ),
        (APIConnectionError("POST x: could not connect"), "cannot reach the API: POST x"),
        (ValidationError("total_limit must be positive"), "total_limit must be positive"),
        (
            ValidationError("bad", name="ValidationError", status_code=200),
            "ValidationError: bad (HTTP 200)",
        ),
    ],
)
def test_describe_error(error: SarvError, expected: str) -> None:
    """Each error kind reads as one plain sentence."""
    assert _output.describe_error(error).startswith(expected)


def test_describe_unknown_outcome_points_at_smtp_list() -> None:
    """An unknown outcome names its cause and says how to check."""
    error = OutcomeUnknownError(
        "lost", request=CreateSmtpUserRequest(total_limit=1, hourly_limit=1)
    )
    error.__cause__ = APIConnectionError("connection dropped")
    text = _output.describe_error(error)
    assert "(connection dropped)" in text
    assert "sarv-async smtp list" in text


def test_progress_shows_nothing_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """Off a terminal the progress callback prints nothing."""
    with _output.progress_display("provisioning", 3) as progress:
        for done in range(1, 4):
            progress(done, 0, 3)
    assert capsys.readouterr() == ("", "")


def test_rich_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal with rich, a bar shows the count and the failures."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with _output.progress_display("provisioning", 3) as progress:
        for done in range(1, 4):
            progress(done, 1, 3)
    text = terminal.getvalue()
    assert "provisioning" in text
    assert "3/3" in text
    assert "1 failed" in text


def test_plain_progress_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal without rich, a one-line counter is redrawn and ended with a newline."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(_output, "have_rich", lambda: False)
    with _output.progress_display("provisioning", 3) as progress:
        for done in range(1, 4):
            progress(done, 0, 3)
    text = terminal.getvalue()
    assert "\rprovisioning: 3/3 (0 failed)" in text
    assert text.endswith("\n")


def test_rich_table_on_a_terminal_folds_instead_of_cutting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a narrow terminal every character of a cell is still printed."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "30")
    _output.print_table(
        ["NAME", "STATUS", "TOTAL LIMIT", "HOURLY LIMIT", "PASSWORD"],
        [["smtp10001", "Enable", "1000", "100", "abcdefghij"]],
        right=("TOTAL LIMIT", "HOURLY LIMIT"),
    )
    text = terminal.getvalue()
    assert "…" not in text
    assert "abcd" in text
    assert "efgh" in text


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_ignores_the_first_burst() -> None:
    """60 results in the first moment, then one a second: no rate at first, then the pace."""
    from sarv_async._cli._moving_rate import MovingRate

    clock = _Clock()
    rate = MovingRate(window=60, min_span=3, clock=clock)
    clock.now += 0.005
    rate.add(60)  # the burst the limiter lets through at once
    assert rate.per_second() is None  # not 12,000/s
    assert rate.seconds_left(940) is None
    done = 60
    for _ in range(120):  # then the account's pace: one a second
        clock.now += 1
        done += 1
        rate.add(done)
    assert rate.per_second() == pytest.approx(1.0)
    assert rate.seconds_left(800) == pytest.approx(800)


def test_progress_lines_show_the_moving_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain counter's first rate during a burst is '-', not the burst's."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(_output, "have_rich", lambda: False)
    with _output.progress_display("provisioning", 1000) as progress:
        progress(10, 0, 1000)
        progress(1000, 0, 1000)  # the last line is always drawn
    first, last = terminal.getvalue().split("\r")[1:3]
    assert "-/s" in first
    assert "ETA ?" in first
    assert "-/s" in last


def test_the_rich_bar_shows_the_moving_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bar's rate and ETA during a burst are unknown ('-'), not the burst's."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with _output.progress_display("provisioning", 1000) as progress:
        for done in range(1, 11):  # ten results at once
            progress(done, 0, 1000)
    text = terminal.getvalue()
    assert "10/1000" in text
    assert "-/s" in text
    assert re.findall(r"[\d.]+/s", text) == []  # no frame shows the burst's rate
    assert "-:--:--" in text
