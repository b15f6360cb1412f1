"""``sarv-async emulator``: serve the local API emulator until Ctrl-C or SIGTERM.

Prints the base URL and the accounts' owner ids at start-up; a token is printed
only for the built-in demo account (given with no ``--account``), never for
accounts given on the command line. With ``--smtp-port`` it also serves SMTP and
prints its port and the file of the test CA to trust (removed at exit).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import socket
import tempfile
from typing import TYPE_CHECKING

from .._config import is_loopback
from ._options import probability, rate_limit, seconds
from ._output import EXIT_USAGE, CliError, echo, print_warning

if TYPE_CHECKING:
    from ..testing import Emulator

__all__ = ["banner_warnings", "reachable_urls", "register", "run"]

_REAL_LIMITS = "60/minute;3600/hour;50000/day"
_EVERY_INTERFACE = ("0.0.0.0", "::", "")  # noqa: S104 - named to warn about them


def reachable_urls(host: str, base_url: str, port: int) -> list[str]:
    """Base URLs that reach an emulator bound to ``host``: this machine's first.

    Bound to every interface, ``base_url`` is the loopback one; other machines use the
    host name.
    """
    from ..testing._app import BASE_PATH

    if host.strip("[]") in _EVERY_INTERFACE:
        return [base_url, f"http://{socket.gethostname()}:{port}{BASE_PATH}"]
    return [base_url]


def banner_warnings(host: str, *, demo_token: bool) -> list[str]:
    """What to warn about when the emulator can be reached from other machines."""
    from ..testing import DEMO_TOKEN

    bare = host.strip("[]")
    if is_loopback(bare):
        return []
    where = f"every interface ({bare or 'all'})" if bare in _EVERY_INTERFACE else bare
    token = f" with the well-known demo token {DEMO_TOKEN!r}" if demo_token else ""
    return [
        f"listening on {where}: anyone who can reach this machine can use the emulator"
        f"{token}, over plain HTTP; clients on other machines need --allow-insecure-http "
        "(allow_insecure_http=True). Use --host 127.0.0.1 to keep it local."
    ]


def _account(text: str) -> tuple[str, str]:
    owner_id, sep, token = text.partition(":")
    if not sep or not owner_id or not token:
        raise argparse.ArgumentTypeError("expected OWNER:TOKEN, both non-empty")
    return owner_id, token


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port number (0 picks a free one), got {text!r}"
        )
    return int(text)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``emulator`` subcommand."""
    parser = subparsers.add_parser(
        "emulator",
        help="serve a local emulator of the SMTP-user API",
        description=(
            "Serve a local emulator of the SMTP-user API over plain HTTP until Ctrl-C or "
            "SIGTERM. State lives in memory. GET /_emulator/stats shows counters; "
            "POST /_emulator/reset forgets everything."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=_port, default=8025, help="port to bind, 0 for any (default: %(default)s)"
    )
    parser.add_argument(
        "--account",
        dest="accounts",
        action="append",
        type=_account,
        default=[],
        metavar="OWNER:TOKEN",
        help="an account to serve (repeatable; default: the demo account demo:demo-token)",
    )
    parser.add_argument(
        "--rate-limit",
        type=rate_limit,
        default="none",
        metavar="SPEC",
        help=f"per-account limit, e.g. '{_REAL_LIMITS}' like the real API, or 'none' (default)",
    )
    parser.add_argument(
        "--fault-rate",
        type=probability,
        default=0.0,
        metavar="P",
        help="probability that a call meets a random fault (default: 0)",
    )
    parser.add_argument("--seed", type=int, help="seed for repeatable faults")
    parser.add_argument(
        "--latency-ms",
        type=functools.partial(seconds, unit="milliseconds"),
        default=0.0,
        metavar="MS",
        help="delay every answer",
    )
    parser.add_argument(
        "--smtp-port",
        type=_port,
        metavar="PORT",
        help="also serve SMTP on PORT (0: a free one, printed): the API's users log in with "
        "their current password and send; STARTTLS with a test CA whose file is printed",
    )
    parser.add_argument(
        "--smtp-allow-auth-without-tls",
        action="store_true",
        help="accept AUTH before STARTTLS (a real relay on port 587 refuses it)",
    )
    parser.add_argument(
        "--error-status",
        choices=("200", "http"),
        default="200",
        help="HTTP status of error envelopes: 200 always (default), or by kind "
        "(ValidationError 400, AuthenticationError 401, GeneralError 500)",
    )
    parser.add_argument(
        "--error-kind-field",
        choices=("name", "type", "both"),
        default="name",
        help="the error envelope's key for its kind (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="server log level (default: %(default)s)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; 0 on a clean shutdown."""
    from ..testing import Emulator

    given: list[tuple[str, str]] = args.accounts
    owners = [owner_id for owner_id, _ in given]
    duplicates = sorted({owner_id for owner_id in owners if owners.count(owner_id) > 1})
    if duplicates:
        raise CliError(f"--account given twice for {', '.join(duplicates)}", exit_code=EXIT_USAGE)
    emulator = Emulator(
        accounts=dict(given) if given else None,
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        fault_rate=args.fault_rate,
        seed=args.seed,
        latency_ms=args.latency_ms,
        smtp=args.smtp_port is not None,
        smtp_port=args.smtp_port or 0,
        smtp_require_tls=not args.smtp_allow_auth_without_tls,
        error_status=args.error_status,
        error_kind_field=args.error_kind_field,
    )
    ca_dir = (
        tempfile.TemporaryDirectory(prefix="sarv-emulator-") if args.smtp_port is not None else None
    )

    def announce(emu: Emulator) -> None:
        echo("sarv-async emulator")
        this_machine, *others = reachable_urls(args.host, emu.base_url, emu.port)
        echo(f"  base URL:   {this_machine}")
        for url in others:
            echo(f"  from other machines: {url}")
        for owner_id, token in emu.accounts.items():
            # Only the built-in demo token is shown: tokens given on the command line never are.
            shown = f"  (token: {token})" if not given else ""
            echo(f"  account:    {owner_id}{shown}")
        echo(f"  rate limit: {emu.rate_limit or 'none'}")
        if emu.fault_rate:
            seed = f", seed {args.seed}" if args.seed is not None else ""
            echo(f"  faults:     {emu.fault_rate:.0%} of calls{seed}")
        if args.latency_ms:
            echo(f"  latency:    {args.latency_ms:g} ms")
        if emu.error_status != "200" or emu.error_kind_field != "name":
            status = "HTTP status by kind" if emu.error_status == "http" else "HTTP 200"
            echo(f"  errors:     {status}, kind in {_kind_keys(emu.error_kind_field)}")
        if ca_dir is not None:
            ca_file = os.path.join(ca_dir.name, "smtp-ca.pem")
            with open(ca_file, "w", encoding="ascii") as file:
                file.write(emu.smtp_ca_pem)
            host, port = emu.smtp_address
            auth = (
                "AUTH after STARTTLS" if not args.smtp_allow_auth_without_tls else "AUTH any time"
            )
            echo(f"  SMTP:       {host}:{port} (STARTTLS, {auth}; CA certificate: {ca_file})")
        echo("Press Ctrl+C to stop.")
        for warning in banner_warnings(args.host, demo_token=not given):
            print_warning(warning)

    try:
        with ca_dir if ca_dir is not None else contextlib.nullcontext():
            emulator.serve_forever(announce, log_level=args.log_level)
    except ModuleNotFoundError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


def _kind_keys(field: str) -> str:
    return "'name' and 'type'" if field == "both" else repr(field)
