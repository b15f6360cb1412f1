"""The ``sarv-async`` command line: a small dispatcher over subcommands.

Each subcommand lives in its own module with a ``register(subparsers)`` function
that adds its parser and sets ``run``, a function of the parsed arguments that
returns the exit status. Failures the user can act on (`SarvError`, `CliError`,
`OSError`, Ctrl-C) become one ``error:`` line each here, never a traceback.

Exit status (one table for every command, in docs/cli.md and `._output`): 0 done,
1 failed for certain, 2 usage (nothing sent), 3 some outcome unknown, 130 SIGINT,
141 standard output closed, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from .. import _logging
from .._config import InsecureHTTPWarning
from .._exceptions import SarvError
from .._version import __version__
from . import _demo, _emulator, _smtp
from ._options import add_connection_options
from ._output import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    CliError,
    describe_error,
    exit_status,
    print_error,
    print_warning,
)

__all__ = ["build_parser", "main"]

_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _smtp.register,
    _demo.register,
    _emulator.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``sarv-async`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sarv-async",
        description="Tools for the Sarv / SendClean SMTP-user API.",
        epilog="Try it without an account: sarv-async demo",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log retries and calls whose outcome is unknown to stderr",
    )
    add_connection_options(parser)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for register in _SUBCOMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sarv-async`` with ``argv`` (default: the process's); return the exit status."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        with _warnings_as_lines(), _sdk_logging(verbose=args.verbose):
            return run(args)
    except BaseException as exc:
        status = _report(exc)
        if status is None:
            raise
        return status


def _report(exc: BaseException) -> int | None:
    """Print ``exc`` as ``error:`` lines and return the exit status; None if not ours."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # a task group's wrapping of one failure
    if isinstance(exc, BrokenPipeError):
        # The reader went away (``| head``): nothing to say, and nobody to say it to.
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    if isinstance(exc, KeyboardInterrupt):
        print_error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, CliError):
        for message in exc.messages:
            print_error(message)
        return exc.exit_code
    if isinstance(exc, SarvError):
        print_error(describe_error(exc))
        return exit_status(exc)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        print_error(f"{exc.strerror or exc}{where}")
        return EXIT_FAILURE
    return None


def _discard_stdout() -> None:
    """Point stdout at the null device, so the interpreter's last flush cannot fail loudly."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return  # not a real file (tests): nothing will be flushed to a closed pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


@contextmanager
def _sdk_logging(*, verbose: bool) -> Iterator[None]:
    """Send the SDK's log to stderr with ``--verbose`` (unless ``SARV_LOG`` already does).

    Otherwise it stays quiet: the SDK's own `logging.NullHandler` keeps Python from
    printing its records bare, and the error lines say what matters.
    """
    if not verbose or _logging.env_handler is not None:
        yield
        return
    logger = _logging.logger
    level = logger.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("log: %(message)s"))
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show the SDK's `InsecureHTTPWarning` as one ``warning:`` line, not Python's two."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", InsecureHTTPWarning)
        show = warnings.showwarning

        def showwarning(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, InsecureHTTPWarning):
                print_warning(str(message))
            else:
                show(message, category, filename, lineno, None, line)

        warnings.showwarning = showwarning
        yield
