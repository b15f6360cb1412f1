"""The ``sarv-async`` command line: a small dispatcher over subcommands.

Each subcommand lives in its own module with a ``register(subparsers)`` function
that adds its parser and sets ``run``, a function of the parsed arguments that
returns the exit status. Failures the user can act on (`SarvError`, `CliError`,
`OSError`, Ctrl-C) become one ``error:`` line each here, never a traceback.

Exit status: 0 done, 1 failed, 2 usage (bad options, missing credentials, bad CSV),
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from .._config import InsecureHTTPWarning
from .._exceptions import SarvError, ValidationError
from .._version import __version__
from . import _demo, _emulator, _smtp
from ._options import add_connection_options
from ._output import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    describe_error,
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
    if isinstance(exc, KeyboardInterrupt):
        print_error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, CliError):
        for message in exc.messages:
            print_error(message)
        return exc.exit_code
    if isinstance(exc, SarvError):
        print_error(describe_error(exc))
        if isinstance(exc, ValidationError) and exc.status_code is None:
            return EXIT_USAGE  # refused locally: nothing was sent
        return EXIT_FAILURE
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        print_error(f"{exc.strerror or exc}{where}")
        return EXIT_FAILURE
    return None


@contextmanager
def _sdk_logging(*, verbose: bool) -> Iterator[None]:
    """Send the SDK's log to stderr with ``--verbose``; otherwise keep it quiet.

    Without a handler of its own, Python would print the SDK's warnings bare; the
    error lines say what matters.
    """
    logger = logging.getLogger("sarv_async")
    level = logger.level
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("log: %(message)s"))
        logger.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
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
