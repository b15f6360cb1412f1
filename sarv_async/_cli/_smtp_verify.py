"""``sarv-async smtp verify OUT``: log in over SMTP with every credential of a file.

OUT is a credentials file this tool wrote (``smtp provision``'s output, or ``smtp
create --out``'s): its ``smtp_user_name`` and ``smtp_password`` columns are read with
the same reader that resumes provisioning. Each credential logs in (AUTH only: no mail
is sent), a few at once, each within a timeout. A line per row, never a password; exit
status 0 when every row logs in, 1 otherwise (an ``error:`` line per failing row).
"""

from __future__ import annotations

import argparse
import functools
import ssl

import anyio

from ._files import read_credentials_rows
from ._options import positive_int, seconds
from ._output import EXIT_FAILURE, EXIT_USAGE, CliError, echo, plural, print_error
from ._smtp_login import Security, SmtpRelay, check_credentials

__all__ = ["register"]

_COLUMNS = ("smtp_user_name", "smtp_password")
_DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "ssl": 465, "none": 25}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``smtp verify``."""
    parser = commands.add_parser(
        "verify",
        help="log in over SMTP with every credential of a credentials file",
        description=(
            "Log in to an SMTP relay (AUTH only, no mail sent) with every credential in OUT, "
            "a credentials file written by 'smtp provision' or 'smtp create --out'. Prints a "
            "line per row (never a password). Exit status 0 when every row logs in, 1 "
            "otherwise, with an error line per failing row."
        ),
    )
    parser.add_argument("file", metavar="OUT", help="the credentials CSV file")
    parser.add_argument("--smtp-host", required=True, metavar="HOST", help="the SMTP relay")
    parser.add_argument(
        "--smtp-port",
        type=_port,
        metavar="PORT",
        help="its port (default: 587 with --starttls, 465 with --ssl)",
    )
    security = parser.add_mutually_exclusive_group()
    security.add_argument(
        "--starttls",
        dest="security",
        action="store_const",
        const="starttls",
        help="upgrade to TLS with STARTTLS before AUTH (the default)",
    )
    security.add_argument(
        "--ssl", dest="security", action="store_const", const="ssl", help="TLS from the start"
    )
    security.add_argument(
        "--no-tls",
        dest="security",
        action="store_const",
        const="none",
        help="no TLS at all (a local test relay only: the password travels in clear)",
    )
    parser.set_defaults(security="starttls")
    parser.add_argument(
        "--smtp-ca-file",
        metavar="PEM",
        help="trust the CAs in PEM (e.g. the emulator's) instead of the system's",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=5,
        metavar="N",
        help="logins at once (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="each login's time limit (default: %(default)s)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Log in with each row's credential; 0 when all do."""
    rows = _credential_rows(args.file)
    security: Security = args.security
    try:
        context = ssl.create_default_context(cafile=args.smtp_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(
            f"cannot read the CA file {args.smtp_ca_file}: {exc}", exit_code=EXIT_USAGE
        ) from None
    relay = SmtpRelay(
        args.smtp_host,
        args.smtp_port or _DEFAULT_PORTS[security],
        security,
        context,
        timeout=args.timeout,
    )
    usable = [(index, row) for index, row in enumerate(rows) if row[1] and row[2]]
    results = anyio.run(
        functools.partial(
            check_credentials,
            relay,
            [(user, password) for _, (_, user, password) in usable],
            concurrency=args.concurrency,
        )
    )
    failures: dict[int, str] = {
        index: "no credentials in this row"
        for index, row in enumerate(rows)
        if not (row[1] and row[2])
    }
    for (index, _), failure in zip(usable, results, strict=True):
        if failure is not None:
            failures[index] = failure
    for index, (line, user, _) in enumerate(rows):
        if index in failures:
            print_error(f"{args.file}:{line}: {user or '(no user)'}: {failures[index]}")
        else:
            echo(f"{user}: logs in")
    echo(
        f"{len(rows) - len(failures)} of {plural(len(rows), 'credential')} log in "
        f"at {relay.host}:{relay.port}"
    )
    return EXIT_FAILURE if failures else 0


def _port(text: str) -> int:
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}")
    return port


def _credential_rows(path: str) -> list[tuple[int, str, str]]:
    """``(line, user, password)`` of each data row; a usage error if it is no such file."""
    records = read_credentials_rows(path)
    if not records:
        raise CliError(f"{path} is empty", exit_code=EXIT_USAGE)
    _, header = records[0]
    missing = [name for name in _COLUMNS if name not in header]
    if missing:
        raise CliError(
            f"{path} is not a credentials file: it has no {' or '.join(missing)} column",
            exit_code=EXIT_USAGE,
        )
    user_at, password_at = (header.index(name) for name in _COLUMNS)
    rows = []
    for line, record in records[1:]:
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            raise CliError(
                f"{path}:{line}: {plural(len(record), 'field')}, but the header has {len(header)}",
                exit_code=EXIT_USAGE,
            )
        rows.append((line, record[user_at].strip(), record[password_at]))
    if not rows:
        raise CliError(f"{path} has no credentials", exit_code=EXIT_USAGE)
    return rows
