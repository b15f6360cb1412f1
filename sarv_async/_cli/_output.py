"""What the command line prints: results, tables, one-line errors and the progress display.

Results go to stdout; errors, warnings and the progress display to stderr. rich (the
``cli`` extra) is imported only when something is drawn, and is optional: without it
tables are plain columns and the progress display is a one-line counter.
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._exceptions import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    OutcomeUnknownError,
    SarvError,
    ValidationError,
)
from .._provision import ProgressCallback
from ._moving_rate import MovingRate

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OUTCOME_UNKNOWN",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CliError",
    "describe_error",
    "echo",
    "echo_json",
    "exit_status",
    "plural",
    "print_error",
    "print_table",
    "print_warning",
    "progress_display",
]

# The exit statuses of every command, one table (docs/cli.md shows it):
#: Something failed for certain: an API call, a file, a row left without credentials.
EXIT_FAILURE = 1
#: The command cannot run as given: bad options, missing credentials, a missing or bad
#: input file. Nothing was sent.
EXIT_USAGE = 2
#: A create or password reset may have taken effect and its outcome is not known yet
#: (takes precedence over `EXIT_FAILURE`): rerun, or list the account, to settle it.
EXIT_OUTCOME_UNKNOWN = 3
#: Ctrl-C (SIGINT).
EXIT_INTERRUPTED = 130
#: Standard output was closed by its reader (``sarv-async smtp list | head -1``): no error
#: line, and the status a program killed by SIGPIPE has, so a pipeline with ``pipefail``
#: still sees that the output was cut short.
EXIT_BROKEN_PIPE = 141
#: SIGTERM.
EXIT_TERMINATED = 143


class CliError(Exception):
    """A failure to report as ``error:`` lines (one per message), exiting with ``exit_code``."""

    def __init__(self, *messages: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(*messages)
        self.messages = messages
        self.exit_code = exit_code

    def __str__(self) -> str:
        return "; ".join(self.messages)


@functools.cache
def have_rich() -> bool:
    """Whether rich is installed (the ``cli`` extra)."""
    return importlib.util.find_spec("rich") is not None


def echo(text: str = "") -> None:
    """Print a line of results to stdout."""
    print(text, file=sys.stdout, flush=True)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON to stdout."""
    echo(json.dumps(data, indent=2))


def print_error(message: str) -> None:
    """Print one ``error:`` line to stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def print_warning(message: str) -> None:
    """Print one ``warning:`` line to stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``"1 row"``, ``"2 rows"``."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"


def exit_status(exc: SarvError) -> int:
    """The exit status for an SDK error that ends a command (see the table above)."""
    if isinstance(exc, OutcomeUnknownError):
        return EXIT_OUTCOME_UNKNOWN
    if isinstance(exc, AuthenticationError):
        return EXIT_USAGE  # the command's credentials are wrong; nothing was changed
    if isinstance(exc, APIError) and exc.status_code is None:
        return EXIT_USAGE  # refused locally, before anything was sent
    if isinstance(exc, ValidationError) and exc.field == "base_url":
        return EXIT_USAGE  # the API answered 404 to a base URL without /v1.0/
    return EXIT_FAILURE


def describe_error(exc: SarvError) -> str:
    """One line saying what went wrong, for a person at a terminal (never a secret)."""
    if isinstance(exc, AuthenticationError):
        return f"authentication failed ({exc.message}): check the owner id and the token"
    if isinstance(exc, OutcomeUnknownError):
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        return (
            f"the call may or may not have taken effect{cause}; it was not repeated, as a "
            "repeat could apply it twice: check with 'sarv-async smtp list'"
        )
    if isinstance(exc, APIConnectionError):
        return f"cannot reach the API: {exc}"
    if isinstance(exc, APIError) and exc.status_code is None:
        return exc.message  # raised locally, before anything was sent
    if isinstance(exc, ValidationError) and exc.field == "base_url":
        return f"{exc.message} (HTTP {exc.status_code})"  # a wrong URL, not a wrong argument
    return str(exc)


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[str] = ()
) -> None:
    """Print a table to stdout; columns named in ``right`` are right-aligned (numbers).

    rich draws it on a terminal, folding a cell that does not fit rather than cutting it
    (a cut password is a wrong password). Elsewhere the table is plain text.
    """
    if have_rich() and _is_terminal(sys.stdout):
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(
                column, justify="right" if column in right else "left", overflow="fold"
            )
        for row in rows:
            table.add_row(*row)
        Console(file=sys.stdout).print(table)
        return
    widths = [
        max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if column in right else cell.ljust(width)
            for cell, width, column in zip(cells, widths, columns, strict=True)
        ).rstrip()

    echo(line(columns))
    echo(line(["-" * width for width in widths]))
    for row in rows:
        echo(line(row))


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


#: How to end the progress display on screen, if one is: see `end_progress`.
_on_screen: list[Callable[[], None]] = []


def end_progress() -> None:
    """End the progress display now, cursor shown, as leaving its block would.

    For a process about to end at once, which never leaves the block.
    """
    while _on_screen:
        _on_screen.pop()()


@contextmanager
def progress_display(label: str, total: int) -> Iterator[ProgressCallback]:
    """A provisioning ``progress(done, failed, total)`` callback that draws on stderr.

    A bar with rate and ETA when stderr is a terminal (rich), a one-line counter when it
    is a terminal but rich is missing, nothing at all otherwise.
    """
    if not _is_terminal(sys.stderr):
        yield _ignore_progress
    elif have_rich():
        with _rich_progress(label, total) as progress:
            yield progress
    else:
        with _plain_progress(label, total) as progress:
            yield progress


def _ignore_progress(done: int, failed: int, total: int | None) -> None:
    """A progress callback that shows nothing."""


@contextmanager
def _rich_progress(label: str, total: int) -> Iterator[ProgressCallback]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    rate = MovingRate()

    class RateColumn(ProgressColumn):
        """Results per second, over the last minute."""

        def render(self, task: Task) -> Text:
            return Text(_per_second(rate), style="progress.data.speed")

    class EtaColumn(ProgressColumn):
        """Time left at that rate."""

        def render(self, task: Task) -> Text:
            left = rate.seconds_left(int(task.remaining or 0))
            text = "-:--:--" if left is None else str(datetime.timedelta(seconds=round(left)))
            return Text(text, style="progress.remaining")

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        EtaColumn(),
        console=Console(file=sys.stderr),
    )
    task = progress.add_task(label, total=total, failed=0)

    def update(done: int, failed: int, total: int | None) -> None:
        rate.add(done)
        progress.update(task, completed=done, failed=failed)

    progress.start()
    with _on_screen_until_ended(progress.stop):
        yield update


@contextmanager
def _plain_progress(label: str, total: int) -> Iterator[ProgressCallback]:
    rate = MovingRate()
    drawn = [0.0]

    def update(done: int, failed: int, total_: int | None) -> None:
        rate.add(done)
        now = time.monotonic()
        if done < total and now - drawn[0] < 0.1:
            return
        drawn[0] = now
        left = rate.seconds_left(total - done)
        eta = "?" if left is None else f"{left:.0f}s"
        sys.stderr.write(
            f"\r{label}: {done}/{total} ({failed} failed)  {_per_second(rate)}  ETA {eta}   "
        )
        sys.stderr.flush()

    def end() -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()

    with _on_screen_until_ended(end):
        yield update


def _per_second(rate: MovingRate) -> str:
    value = rate.per_second()
    return "-/s" if value is None else f"{value:.1f}/s"


@contextmanager
def _on_screen_until_ended(end: Callable[[], None]) -> Iterator[None]:
    """A display on screen: ``end`` ends it on leaving, unless `end_progress` did first."""
    _on_screen.append(end)
    try:
        yield
    finally:
        if end in _on_screen:
            _on_screen.remove(end)
            end()
