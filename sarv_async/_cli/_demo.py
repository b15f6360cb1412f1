"""``sarv-async demo``: bulk provisioning through injected faults, on an in-process emulator.

Starts `sarv_async.testing.Emulator` with a rate limit and a fault rate, provisions a few
dozen SMTP users with a client paced to the same limit, lists them, and checks the
account: one user per spec, no duplicates, every credential as the server has it. Then
every credential logs in to the emulator's SMTP server over STARTTLS and sends one
message, and the check sees each arrive. No password is printed.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._provision import ProvisionResult, ProvisionSummary
from .._retry import Backoff
from ._options import positive_int, probability, rate_limit, rate_limit_setting
from ._output import (
    EXIT_FAILURE,
    CliError,
    echo,
    print_table,
    progress_display,
)
from ._smtp_login import SmtpRelay, check_credentials

if TYPE_CHECKING:
    from ..testing import Emulator

__all__ = ["register", "run"]

_DEFAULT_SEED = 7
_SHOWN_USERS = 8
# The demo is about faults, so its client insists: lists are safe to repeat.
_MAX_RETRIES = 6
_BACKOFF = Backoff(initial=0.05, maximum=0.5)
_SMTP_LOGINS_AT_ONCE = 8
_CHECK_RECIPIENT = "check@example.org"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="provision SMTP users through injected faults on a local emulator",
        description=(
            "Start the API emulator in this process with a rate limit and random faults "
            "(dropped connections, lost answers, gateway pages), provision SMTP users through "
            "them with a client paced to the same limit, and check that every spec got "
            "exactly one user with the right credentials. Needs no account; prints no "
            "password. Exit status 0 when the check passes."
        ),
    )
    parser.add_argument(
        "--users", type=positive_int, default=40, metavar="N", help="specs (default: 40)"
    )
    parser.add_argument(
        "--fault-rate",
        type=functools.partial(probability, below_one=True),
        default=0.25,
        metavar="P",
        help="probability that a call meets a fault (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=_DEFAULT_SEED,
        help="seed of the emulator's fault draws (default: %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=rate_limit,
        default="20/second",
        metavar="SPEC",
        help="the emulator's limit, and the client's pacing (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=10,
        metavar="N",
        help="calls in flight at once (default: %(default)s)",
    )
    parser.set_defaults(run=run)


@attrs.frozen
class _Outcome:
    """What the run produced, for the report and the check."""

    summary: ProvisionSummary
    results: dict[int, ProvisionResult]
    listed: list[Any]
    server_users: list[dict[str, Any]]
    stats: dict[str, Any]
    elapsed: float
    #: Each credential's SMTP login and send: ``None`` when it worked, else why not.
    logins: dict[str, str | None] = attrs.field(factory=dict)
    #: The SMTP user of each message the emulator received, in arrival order.
    senders: list[str] = attrs.field(factory=list)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every check passes."""
    try:
        from ..testing import Emulator
    except ImportError as exc:  # pragma: no cover - the package ships with it
        raise CliError(f"the demo needs the emulator: {exc}") from None
    specs = [
        {"total_limit": 500 * (1 + i % 4), "hourly_limit": 50 * (1 + i % 3)}
        for i in range(args.users)
    ]
    emulator = Emulator(
        fault_rate=args.fault_rate,
        seed=args.seed,
        rate_limit=rate_limit_setting(args.rate_limit),
        smtp=True,
    )
    echo(f"sarv-async demo: {len(specs)} SMTP users on an in-process emulator")
    try:
        outcome = anyio.run(functools.partial(_provision, emulator, specs, args))
    except ModuleNotFoundError as exc:
        raise CliError(str(exc)) from None
    return _report(args, specs, outcome)


async def _provision(
    emulator: Emulator, specs: list[dict[str, int]], args: argparse.Namespace
) -> _Outcome:
    concurrency: int = args.concurrency
    async with emulator as emu:
        faults = f"{emu.fault_rate:.0%} of calls meet a fault (seed {args.seed})"
        echo(f"  emulator: {emu.base_url}  limit {emu.rate_limit or 'none'}; {faults}")
        echo(f"  client:   paced to {emu.rate_limit or 'nothing'}, {concurrency} calls in flight")
        host, port = emu.smtp_address
        echo(f"  SMTP:     {host}:{port} (STARTTLS): each credential logs in and sends at the end")
        results: dict[int, ProvisionResult] = {}
        started = time.monotonic()
        async with emu.client(
            max_retries=_MAX_RETRIES, backoff=_BACKOFF, max_concurrency=concurrency
        ) as client:
            with progress_display("provisioning", len(specs)) as progress:
                # The emulator commits a create before it drops the answer: nothing to wait for.
                async with client.smtp_users.provision(
                    specs, progress=progress, settle_delay=0.05
                ) as provision:
                    async for result in provision:
                        results[result.index] = result
            elapsed = time.monotonic() - started
            listed = await client.smtp_users.list()
        server_users = emu.users()
        stats = emu.stats()
        logins = await _log_in_and_send(emu, results)
        return _Outcome(
            summary=provision.summary,
            results=results,
            listed=listed,
            server_users=server_users,
            stats=stats,
            elapsed=elapsed,
            logins=logins,
            senders=[message.smtp_user_name for message in emu.messages()],
        )


async def _log_in_and_send(
    emu: Emulator, results: dict[int, ProvisionResult]
) -> dict[str, str | None]:
    """Log in over SMTP with each credential the run gave, and send one message each."""
    host, port = emu.smtp_address
    relay = SmtpRelay(host, port, "starttls", emu.smtp_ssl_context())
    credentials = [
        (creds.smtp_user_name, creds.smtp_password)
        for _, result in sorted(results.items())
        if (creds := result.credentials) is not None
    ]
    failures = await check_credentials(
        relay, credentials, concurrency=_SMTP_LOGINS_AT_ONCE, send_to=_CHECK_RECIPIENT
    )
    return {user: failure for (user, _), failure in zip(credentials, failures, strict=True)}


def _report(args: argparse.Namespace, specs: list[dict[str, int]], outcome: _Outcome) -> int:
    summary, stats = outcome.summary, outcome.stats
    listed = outcome.listed
    echo()
    echo(
        f"SMTP users on the account ({min(len(listed), _SHOWN_USERS)} of {len(listed)}; "
        "passwords hidden):"
    )
    print_table(
        ["NAME", "STATUS", "TOTAL LIMIT", "HOURLY LIMIT"],
        [
            [u.smtp_user_name, u.status.value, str(u.total_limit), str(u.hourly_limit)]
            for u in listed[:_SHOWN_USERS]
        ],
        right=("TOTAL LIMIT", "HOURLY LIMIT"),
    )
    requests: dict[str, int] = {
        path.rsplit("/", 1)[-1]: n for path, n in sorted(stats["requests"].items())
    }
    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(stats["faults_by_kind"].items()))
    responses: dict[str, int] = stats["responses"]
    creates = requests.get("addSmtp", 0)
    resent = creates - len(specs)
    lines = [
        ("created", f"{summary.created}"),
        ("adopted", f"{summary.adopted} (create answer lost; user found by listing)"),
        ("failed", f"{summary.failed}"),
        ("unknown", f"{summary.unknown}"),
        ("orphans", f"{len(summary.orphans)}"),
        ("rounds", f"{summary.rounds} reconciliation rounds"),
        ("faults", f"{stats['faults']} injected" + (f" ({by_kind})" if by_kind else "")),
        (
            "creates",
            f"{creates} addSmtp calls for {len(specs)} specs ({resent} re-sent, provably lost)",
        ),
        ("lists", f"{requests.get('listSmtp', 0)} listSmtp calls (retries included)"),
        ("HTTP 429", _throttled(responses.get("429", 0))),
        ("elapsed", f"{outcome.elapsed:.1f} s"),
    ]
    echo()
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        echo(f"  {name + ':':<{width + 1}} {value}")
    echo()
    problems = _check(specs, outcome)
    if problems:
        for problem in problems:
            echo(f"check FAILED: {problem}")
        return EXIT_FAILURE
    echo(
        f"check OK: {len(outcome.server_users)} users on the emulator for {len(specs)} specs, "
        "no duplicates, every credential matches the server"
    )
    smtp_problems = _smtp_problems(outcome)
    for problem in smtp_problems:
        echo(f"check FAILED: {problem}")
    if smtp_problems or not outcome.logins:
        return EXIT_FAILURE
    echo(
        f"check OK: {len(outcome.logins)} of {len(outcome.logins)} credentials log in and send "
        "(SMTP over STARTTLS, one message each)"
    )
    return 0


def _throttled(count: int) -> str:
    if not count:
        return "0 (the client paces itself to the limit)"
    return (
        f"{count} (requests reached the emulator late: it shares this machine's CPU; "
        "each was repeated after the pause the server asked for)"
    )


def _smtp_problems(outcome: _Outcome) -> list[str]:
    """Credentials that did not log in and send, and messages that did not arrive once."""
    problems = [
        f"{user} cannot log in and send: {failure}"
        for user, failure in outcome.logins.items()
        if failure is not None
    ]
    sent = Counter(outcome.senders)
    problems.extend(
        f"{sent[user]} messages arrived from {user} (expected one)"
        for user, failure in outcome.logins.items()
        if failure is None and sent[user] != 1
    )
    return problems


def _check(specs: list[dict[str, int]], outcome: _Outcome) -> list[str]:
    """What is wrong with the account after the run (nothing, one hopes)."""
    problems: list[str] = []
    server = {user["smtp_user_name"]: user for user in outcome.server_users}
    names = Counter(user["smtp_user_name"] for user in outcome.server_users)
    duplicated = sorted(name for name, n in names.items() if n > 1)
    if duplicated:
        problems.append(f"user names listed twice: {', '.join(duplicated)}")
    if len(outcome.server_users) != len(specs):
        problems.append(f"{len(outcome.server_users)} users on the emulator for {len(specs)} specs")
    given = Counter[str]()
    for index, spec in enumerate(specs):
        result = outcome.results.get(index)
        if result is None or result.credentials is None:
            outcome_text = "no result" if result is None else result.outcome.value
            problems.append(f"spec {index} has no credentials ({outcome_text})")
            continue
        creds = result.credentials
        given[creds.smtp_user_name] += 1
        user = server.get(creds.smtp_user_name)
        if user is None:
            problems.append(f"spec {index}: {creds.smtp_user_name} is not on the emulator")
        elif user.get("smtp_password", user.get("password")) != creds.smtp_password:
            problems.append(f"spec {index}: the password of {creds.smtp_user_name} differs")
        elif (user["total_limit"], user["hourly_limit"]) != (
            spec["total_limit"],
            spec["hourly_limit"],
        ):
            problems.append(f"spec {index}: {creds.smtp_user_name} has other limits")
    shared = sorted(name for name, n in given.items() if n > 1)
    if shared:
        problems.append(f"users given to two specs: {', '.join(shared)}")
    if {user.smtp_user_name for user in outcome.listed} != set(server):
        problems.append("the client's list differs from the emulator's users")
    return problems
