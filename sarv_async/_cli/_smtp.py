"""``sarv-async smtp list|create|update|reset-password|provision|verify``.

Passwords reach the terminal only with ``--show-secrets``; ``--out FILE`` writes them to a
new file created with mode 0600 before the call is made.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
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
from .._provision import DEFAULT_SETTLE_DELAY, ProgressCallback, ProvisionResult, ProvisionSummary
from .._requests import ListSmtpUsersRequest
from ._files import CredentialsFile, check_output_path, resume_credentials_file
from ._options import (
    ClientConfig,
    add_connection_options,
    client_config,
    positive_int,
    rate_limit,
    rate_limit_setting,
    seconds,
)
from ._output import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OUTCOME_UNKNOWN,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CliError,
    describe_error,
    echo,
    echo_json,
    end_progress,
    exit_status,
    plural,
    print_error,
    print_table,
    print_warning,
    progress_display,
)
from ._provision_csv import MAX_REPORTED, SpecRow, SpecsFile, provision_rows, read_specs
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
    _ledger_option(parser)
    _settle_option(parser)

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

    parser = _command(
        commands,
        "provision",
        "create an SMTP user per row of a CSV file, exactly once",
        _run_provision,
        description=(
            "Create an SMTP user for each row of FILE (a CSV file with a header row holding "
            "total_limit and hourly_limit, and optionally key; other columns are carried "
            "through). The whole file is checked before anything is created. Each result is "
            "written to OUT as it arrives: the input columns plus smtp_user_name, "
            "smtp_password, outcome and error. Every create is recorded in a ledger first, "
            "so no row ever gets two users: run the same command again after any "
            "interruption and it resumes into OUT. Exit status 0 when every row has "
            "credentials, 1 if some failed, 3 if some outcomes are still unknown (run again), "
            "130 on Ctrl-C, 143 on SIGTERM."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="the CSV file of specs")
    parser.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="the credentials CSV file (mode 0600); if it exists from an earlier run of "
        "the same command, the run resumes into it",
    )
    _ledger_option(parser)
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="calls in flight at once (default: 10)",
    )
    parser.add_argument(
        "--rate-limit",
        type=rate_limit,
        metavar="SPEC",
        help="the account's limits, e.g. '20/second' or '60/minute;3600/hour' "
        "(default: the API's published 60/minute;3600/hour;50000/day; 'none': no pacing)",
    )
    _settle_option(parser)

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


def _settle_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settle-delay",
        type=seconds,
        default=DEFAULT_SETTLE_DELAY,
        metavar="SECONDS",
        help="wait this long before listing the account to settle calls whose answer was "
        "lost, so a create the server was still processing has landed (default: %(default)s)",
    )


def _ledger_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger",
        metavar="PATH",
        help="the ledger recording every create, a file or a redis:// URL (SARV_LEDGER; "
        "default: the --redis-url Redis if given, else "
        "$XDG_STATE_HOME/sarv-async/ledger.sqlite3, one per user)",
    )


def _limit_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    for option, what in (("--total-limit", "total"), ("--hourly-limit", "hourly")):
        parser.add_argument(
            option,
            type=positive_int,
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


# -- provision -------------------------------------------------------------------------


def _run_provision(args: argparse.Namespace) -> int:
    specs = read_specs(args.file)
    check_output_path(args.out, force=True, not_same_as=args.file)
    config = client_config(args)
    options: dict[str, Any] = {"ledger": ledger_path(args.ledger, redis_url=config.redis_url)}
    if args.rate_limit is not None:
        options["rate_limit"] = rate_limit_setting(args.rate_limit)
    if args.concurrency is not None:
        options["max_concurrency"] = args.concurrency
    total = specs.count
    failures: list[tuple[SpecRow, ProvisionResult]] = []
    stopped: list[signal.Signals] = []

    out, in_out = resume_credentials_file(args.out, specs.output_columns, "smtp_user_name")
    summary: ProvisionSummary | None = None
    try:
        with out, progress_display("provisioning", total) as progress:
            run = functools.partial(
                _provision,
                config,
                options,
                specs,
                out,
                args.concurrency,
                progress,
                failures,
                args.settle_delay,
                frozenset(in_out),
                stopped,
            )
            previous = signal.getsignal(signal.SIGINT)
            try:
                summary = anyio.run(run)
            finally:
                if previous is not None:  # None: set outside Python, so not ours to touch
                    signal.signal(signal.SIGINT, previous)  # a stop set SIG_DFL for a while
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, CliError)) or out.rows_written:
            _stopped_note(args.out, out.kept + out.rows_written - len(failures), total)
        raise
    done = out.kept + out.rows_written - len(failures)
    if summary is None:  # stopped by a signal
        _stopped_note(args.out, done, total)
        [signum] = stopped[:1] or [signal.SIGINT]
        return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED

    for row, result in failures[:MAX_REPORTED]:
        error = describe_error(result.error) if result.error is not None else "no credentials"
        print_error(f"{specs.path}:{row.line}: {error}")
    if len(failures) > MAX_REPORTED:
        print_error(f"... and {len(failures) - MAX_REPORTED} more failed rows (see {args.out})")
    if summary.unknown:
        print_warning(
            f"{plural(summary.unknown, 'row')} may or may not have a user (the account could "
            "not be listed to find out): run the same command again to settle them"
        )
    if not summary.orphans_checked:
        print_warning("the account could not be listed at the end: orphans were not looked for")
    if summary.orphans:
        names = ", ".join(user.smtp_user_name for user in summary.orphans)
        print_warning(
            f"{plural(len(summary.orphans), 'new SMTP user')} match no row and no ledger "
            f"entry (orphans, not in {args.out}): {names}"
        )
    echo(
        f"{plural(total, 'row')}: {summary.created} created, {summary.adopted} adopted, "
        f"{summary.existing} done earlier, {summary.failed} failed, {summary.unknown} unknown, "
        f"{plural(len(summary.orphans), 'orphan')}; credentials in {args.out} (mode 0600)"
    )
    if summary.existing == total:
        echo("nothing to do: every row was provisioned by an earlier run; nothing was created")
    if summary.unknown:
        return EXIT_OUTCOME_UNKNOWN
    complete = summary.created + summary.adopted + summary.existing == total
    return 0 if complete and not failures else EXIT_FAILURE


def _stopped_note(out: str, done: int, total: int) -> None:
    print_warning(
        f"stopped: {done} of {plural(total, 'row')} done (in {out}); "
        "run the same command again to resume"
    )


async def _provision(
    config: ClientConfig,
    options: dict[str, Any],
    specs: SpecsFile,
    out: CredentialsFile,
    concurrency: int | None,
    progress: ProgressCallback,
    failures: list[tuple[SpecRow, ProvisionResult]],
    settle_delay: float,
    in_out: frozenset[str],
    stopped: list[signal.Signals],
) -> ProvisionSummary | None:
    """Provision the rows; on SIGINT or SIGTERM stop cleanly and return None.

    A second signal while stopping ends the process at once, as that signal ends it:
    rows are flushed as they are written and the ledger is crash-safe, so a rerun
    resumes from there as it does after SIGKILL.
    """
    async with anyio.create_task_group() as tg:
        work = anyio.CancelScope()
        if sys.platform != "win32":
            tg.start_soon(_stop_on_signal, work, stopped)
        summary: ProvisionSummary | None = None
        with work:
            async with config.client(**options) as client:
                summary = await provision_rows(
                    client,
                    specs,
                    out,
                    concurrency=concurrency,
                    progress=progress,
                    failures=failures,
                    settle_delay=settle_delay,
                    in_out=in_out,
                )
        tg.cancel_scope.cancel()
    return None if stopped else summary


async def _stop_on_signal(work: anyio.CancelScope, stopped: list[signal.Signals]) -> None:
    """Cancel ``work`` on the first SIGINT or SIGTERM; on the next, end the process."""
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not stopped:
                    stopped.append(signum)
                    work.cancel()
                    print_warning("stopping; interrupt again to stop at once")
                    continue
                end_progress()  # the bar hides the cursor until it ends
                print_warning("stopped at once; run the same command again to resume")
                # Die of the signal itself, as the shell expects (status 128 + signal),
                # with no traceback and nothing left to flush: each row is written.
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
    finally:
        if stopped:
            # Until the event loop has ended, a second Ctrl-C ends the process as SIGINT
            # does, not as a KeyboardInterrupt raised wherever its shutdown is.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
