"""``sarv-async smtp list|create|update|reset-password|provision|verify``.

Passwords reach the terminal only with ``--show-secrets``; ``--out FILE`` writes them to a
new file created with mode 0600 before the call is made.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any, TypeAlias, TypeVar

import anyio

from .._client import AsyncSarvClient
from .._exceptions import (
    APIConnectionError,
    GeneralError,
    OutcomeUnknownError,
    SarvError,
    UnexpectedResponseError,
)
from .._models import SmtpCredentials, SmtpUser
from .._requests import ListSmtpUsersRequest
from ._files import CredentialsFile, check_output_path
from ._options import (
    ClientConfig,
    add_connection_options,
    add_ledger_option,
    add_settle_delay_option,
    client_config,
    limit,
)
from ._output import (
    EXIT_OUTCOME_UNKNOWN,
    EXIT_USAGE,
    CliError,
    describe_error,
    echo,
    echo_json,
    exit_status,
    print_table,
    print_warning,
)
from ._provision_cmd import register as register_provision
from ._smtp_verify import register as register_verify
from ._state import ledger_path

__all__ = ["register"]

T = TypeVar("T")

_CREDENTIAL_COLUMNS = ("smtp_user_name", "smtp_password")
_HIDDEN_HINT = (
    "password hidden: pass --show-secrets to print it, or --out FILE to write it to a new "
    "file only you can read"
)
_WITHHELD_FROM_JSON = (
    "the password is not in the JSON: pass --show-secrets to include it, or --out FILE to "
    "write it to a new file only you can read"
)

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(subparsers: Subparsers) -> None:
    """Add the ``smtp`` command and its subcommands."""
    smtp = subparsers.add_parser(
        "smtp",
        help="list, create and change the account's SMTP users",
        description="Manage the SMTP users of an account.",
    )
    commands = smtp.add_subparsers(title="commands", metavar="COMMAND", required=True)

    parser = _command(commands, "list", "list the SMTP users", _run_list)
    _output_options(parser, what="passwords")

    parser = _command(commands, "create", "create an SMTP user", _run_create)
    _limit_options(parser, required=True)
    _output_options(parser, what="the new password", out=True)
    parser.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="create at most one user for KEY: run again with it, and the same user is "
        "returned (its password read back with list) and nothing is created",
    )
    add_ledger_option(parser)
    add_settle_delay_option(parser)

    parser = _command(commands, "update", "change an SMTP user's limits or status", _run_update)
    parser.add_argument("name", metavar="NAME", help="the SMTP user name, e.g. smtp10001")
    _limit_options(parser, required=False)
    parser.add_argument(
        "--status", type=str.lower, choices=("enable", "disable"), help="enable or disable sending"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")

    parser = _command(
        commands, "reset-password", "give an SMTP user a new password", _run_reset_password
    )
    parser.add_argument("name", metavar="NAME", help="the SMTP user name, e.g. smtp10001")
    _output_options(parser, what="the new password", out=True)

    register_provision(commands)

    register_verify(commands)


def _command(
    commands: Subparsers,
    name: str,
    summary: str,
    run: Callable[[argparse.Namespace], int],
    *,
    description: str | None = None,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=description or summary)
    parser.set_defaults(run=run)
    add_connection_options(parser, nested=True)
    return parser


def _limit_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    for option, what in (("--total-limit", "total"), ("--hourly-limit", "hourly")):
        parser.add_argument(
            option,
            type=limit,
            required=required,
            metavar="N",
            help=f"the user's {what} sending limit",
        )


def _output_options(parser: argparse.ArgumentParser, *, what: str, out: bool = False) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument(
        "--show-secrets", action="store_true", help=f"print {what} (hidden otherwise)"
    )
    if out:
        parser.add_argument(
            "--out",
            metavar="FILE",
            help="write the name and password to FILE, a new CSV file created with mode 0600",
        )
        parser.add_argument("--force", action="store_true", help="replace FILE if it exists")


def _call(
    config: ClientConfig,
    call: Callable[[AsyncSarvClient], Awaitable[T]],
    *,
    command: str | None = None,
    **options: Any,
) -> T:
    """Open a client, make ``call`` with it, close it; all in a fresh event loop.

    An SDK error becomes a `CliError` that says where the API was and, for ``command``
    ``"create"``, that nothing was created when the list before it failed.
    """

    async def main() -> T:
        async with config.client(**options) as client:
            try:
                return await call(client)
            except SarvError as exc:
                error = _explained(exc, client.base_url, command)
        raise error

    return anyio.run(main)


def _explained(exc: SarvError, base_url: object, command: str | None) -> CliError:
    """``exc`` as one line for the terminal, each fact once, with its exit status."""
    message = (
        f"cannot reach the API at {base_url}: {exc}"
        if isinstance(exc, APIConnectionError)
        else describe_error(exc)
    )
    if (
        command == "create"
        and not isinstance(exc, OutcomeUnknownError)
        and f"POST {ListSmtpUsersRequest.path}" in str(exc)
    ):
        message += (
            "; nothing was created: 'smtp create' lists the account first, to record "
            "the create in the ledger, and that list failed"
        )
    return CliError(message, exit_code=exit_status(exc))


# -- list ------------------------------------------------------------------------------


def _run_list(args: argparse.Namespace) -> int:
    users: list[SmtpUser] = _call(client_config(args), lambda c: c.smtp_users.list())
    if args.json:
        echo_json([_user_json(user, secrets=args.show_secrets) for user in users])
        return 0
    columns = ["NAME", "STATUS", "TOTAL LIMIT", "HOURLY LIMIT"]
    if args.show_secrets:
        columns.append("PASSWORD")
    rows = [
        [
            user.smtp_user_name,
            user.status.value,
            str(user.total_limit),
            str(user.hourly_limit),
            *([user.smtp_password] if args.show_secrets else []),
        ]
        for user in users
    ]
    if rows:
        print_table(columns, rows, right=("TOTAL LIMIT", "HOURLY LIMIT"))
    count = f"{len(users)} SMTP user{'s' if len(users) != 1 else ''}"
    echo(count if args.show_secrets or not users else f"{count}; passwords hidden (--show-secrets)")
    return 0


def _user_json(user: SmtpUser, *, secrets: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "smtp_user_name": user.smtp_user_name,
        "status": user.status.value,
        "total_limit": user.total_limit,
        "hourly_limit": user.hourly_limit,
    }
    if secrets:
        data["smtp_password"] = user.smtp_password
    return data


# -- create, reset-password --------------------------------------------------------------


def _run_create(args: argparse.Namespace) -> int:
    def create(client: AsyncSarvClient) -> Awaitable[SmtpCredentials]:
        return client.smtp_users.create(
            total_limit=args.total_limit,
            hourly_limit=args.hourly_limit,
            idempotency_key=args.idempotency_key,
        )

    # Recorded in the ledger like every create, so that no run's reconciliation adopts it.
    return _credentials_command(
        args, create, "created SMTP user", with_ledger=True, command="create"
    )


def _run_reset_password(args: argparse.Namespace) -> int:
    if args.out is None and not args.show_secrets:
        # The old password stops working: a new one nobody sees would lock the user out.
        raise _usage(
            "reset-password replaces the password: pass --out FILE to write the new one "
            "to a new file only you can read, or --show-secrets to print it; nothing was sent"
        )

    async def reset(client: AsyncSarvClient) -> SmtpCredentials:
        try:
            return await client.smtp_users.reset_password(args.name)
        except (APIConnectionError, GeneralError, UnexpectedResponseError) as exc:
            # Retries spent on a failure that may have reached the server: the password
            # may have changed without us learning the new one.
            raise CliError(
                f"the password of {args.name} may or may not have changed ({exc}): run "
                f"'sarv-async smtp reset-password {args.name}' again to get a known one",
                exit_code=EXIT_OUTCOME_UNKNOWN,
            ) from None

    return _credentials_command(args, reset, "new password for SMTP user")


def _credentials_command(
    args: argparse.Namespace,
    call: Callable[[AsyncSarvClient], Awaitable[SmtpCredentials]],
    done: str,
    *,
    with_ledger: bool = False,
    command: str | None = None,
) -> int:
    """Make a call that answers a password; show or save it as the options say."""
    if args.out is not None:
        check_output_path(args.out, force=args.force)
    config = client_config(args)
    options: dict[str, Any] = {}
    if with_ledger:
        options["ledger"] = ledger_path(args.ledger, redis_url=config.redis_url)
        options["settle_delay"] = args.settle_delay
    # The file exists before the call, so a file error cannot lose a password; it is
    # removed again if the call fails.
    out = (
        CredentialsFile(args.out, _CREDENTIAL_COLUMNS, force=args.force)
        if args.out is not None
        else None
    )
    with out if out is not None else nullcontext():
        creds = _call(config, call, command=command, **options)
        if out is not None:
            out.write_row([creds.smtp_user_name, creds.smtp_password])
    if args.json:
        data: dict[str, Any] = {"smtp_user_name": creds.smtp_user_name}
        if args.show_secrets:
            data["smtp_password"] = creds.smtp_password
        if args.out is not None:
            data["credentials_file"] = args.out
        elif not args.show_secrets:
            print_warning(_WITHHELD_FROM_JSON)
        echo_json(data)
        return 0
    echo(f"{done} {creds.smtp_user_name}")
    if args.show_secrets:
        echo(f"password: {creds.smtp_password}")
    if args.out is not None:
        echo(f"credentials written to {args.out} (mode 0600)")
    elif not args.show_secrets:
        echo(_HIDDEN_HINT)
    return 0


# -- update ----------------------------------------------------------------------------


def _run_update(args: argparse.Namespace) -> int:
    if args.total_limit is None and args.hourly_limit is None and args.status is None:
        raise _usage("give at least one of --total-limit, --hourly-limit, --status")
    answer = _call(
        client_config(args),
        lambda c: c.smtp_users.update(
            args.name,
            total_limit=args.total_limit,
            hourly_limit=args.hourly_limit,
            status=args.status,
        ),
    )
    if args.json:
        echo_json({"smtp_user_name": args.name, "message": answer.message})
    else:
        echo(f"updated SMTP user {args.name}" + (f": {answer.message}" if answer.message else ""))
    return 0


def _usage(message: str) -> CliError:
    return CliError(message, exit_code=EXIT_USAGE)
