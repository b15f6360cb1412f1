"""``sarv-async smtp provision FILE --out OUT``: a user per CSV row, exactly once, resumable.

A run, in order (nothing is sent before step 5):

1. FILE is checked whole (a regular file only: it is read twice).
2. OUT is locked for the whole run (``_lock.py``): a second run on it exits 2.
3. OUT's rows and its job record (``_job.py``) are read: the job's id, the ledger it ran
   with, the account's users before its first create. An input that shares no row with
   OUT's rows is another job's, and is refused.
4. OUT is resumed (its rows with a user kept, replaced atomically).
5. With the client open: the ledger's identity is compared with the record's. If the
   ledger was lost or replaced, the first line on stderr says so, and OUT is the record:
   each of its users not known to the ledger is handed to `provision` with its row, so
   that it is entered in the ledger and never created again.
6. The rows are provisioned, each result written to OUT as it arrives; the record is
   brought up to date.

SIGINT and SIGTERM stop the run cleanly at every step (a second one at once, during 6).
A ledger that fails during the run ends it with the counts so far and one ``error:``
line naming the ledger; run again once it works, and the run resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeAlias

import anyio
import attrs

from .._client import AsyncSarvClient
from .._exceptions import LedgerError, SarvError
from .._ledger import Ledger
from .._provision import ProvisionResult, ProvisionSummary
from ._files import (
    CredentialsFile,
    check_output_path,
    read_credentials_file,
    resume_credentials_file,
)
from ._job import JobRecord, known_users, read_record, record_path, same_job, write_record
from ._lock import locked
from ._options import (
    ClientConfig,
    add_connection_options,
    add_ledger_option,
    add_settle_delay_option,
    client_config,
    client_options,
    positive_int,
    rate_limit,
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
    end_progress,
    plural,
    print_error,
    print_warning,
    progress_display,
)
from ._provision_csv import MAX_REPORTED, SpecRow, SpecsFile, provision_rows, read_specs
from ._state import ledger_location

__all__ = ["ProvisionRun", "register"]

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

_USER_COLUMN = "smtp_user_name"
_RERUN = "run the same command again to resume"


def register(commands: Subparsers) -> None:
    """Add ``provision`` to the ``smtp`` command's subcommands."""
    parser = commands.add_parser(
        "provision",
        help="create an SMTP user per row of a CSV file, exactly once",
        description=(
            "Create an SMTP user for each row of FILE (a CSV file with a header row holding "
            "total_limit and hourly_limit, and optionally key; other columns are carried "
            "through). The whole file is checked before anything is created. Each result is "
            "written to OUT as it arrives: the input columns plus smtp_user_name, "
            "smtp_password, outcome and error. Every create is recorded in a ledger first, "
            "so no row ever gets two users: run the same command again after any "
            "interruption and it resumes into OUT (OUT.job.json records the job; one run "
            "at a time per OUT). Exit status 0 when every row has credentials, 1 if some "
            "failed, 2 if nothing could be sent, 3 if some outcomes are still unknown or the "
            "ledger failed (run again), 130 on Ctrl-C, 143 on SIGTERM."
        ),
    )
    parser.set_defaults(run=run_provision)
    add_connection_options(parser, nested=True)
    parser.add_argument("file", metavar="FILE", help="the CSV file of specs (a regular file)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="the credentials CSV file (mode 0600); if it exists from an earlier run of "
        "the same job, the run resumes into it",
    )
    add_ledger_option(parser)
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
    add_settle_delay_option(parser)


def run_provision(args: argparse.Namespace) -> int:
    """Run the command; return its exit status."""
    with _stoppable():
        try:
            run = ProvisionRun.prepare(args)
        except KeyboardInterrupt as exc:
            print_warning("stopped before anything was sent; nothing was created")
            return EXIT_TERMINATED if isinstance(exc, _Terminated) else EXIT_INTERRUPTED
        with locked(run.out_path):
            return run.run()


@attrs.define
class ProvisionRun:
    """One run of the command: what it was given, and what has happened so far."""

    specs: SpecsFile
    out_path: str
    config: ClientConfig
    #: The client's options (`client_options`): ``ledger`` always.
    options: dict[str, Any]
    settle_delay: float
    concurrency: int | None
    #: The rows of OUT that hold a user (None while OUT does not exist).
    kept: list[list[str]] | None = None
    #: OUT's job record, as read at the start, then as written.
    record: JobRecord | None = None
    out: CredentialsFile | None = None
    failures: list[tuple[SpecRow, ProvisionResult]] = attrs.Factory(list)
    #: The signal that stopped the run, if one did.
    stopped: signal.Signals | None = None
    summary: ProvisionSummary | None = None
    #: Whether provisioning began (creates may have been sent).
    began: bool = False
    #: Whether the ledger was found lost or replaced at the start.
    lost: bool = False
    #: Whether provisioning read its last result.
    finished: bool = False

    @classmethod
    def prepare(cls, args: argparse.Namespace) -> ProvisionRun:
        """Check everything that needs no lock and no network: FILE, OUT's path, options."""
        specs = read_specs(args.file)
        check_output_path(args.out, force=True, not_same_as=args.file)
        config = client_config(args)
        return cls(
            specs=specs,
            out_path=args.out,
            config=config,
            options=client_options(args, config),
            settle_delay=args.settle_delay,
            concurrency=args.concurrency,
        )

    @property
    def ledger(self) -> str:
        """The ledger, fit to print (a Redis URL without its password)."""
        return ledger_location(self.options["ledger"])

    @property
    def done(self) -> int:
        """Rows with credentials in OUT so far."""
        if self.out is None:
            return 0
        return self.out.kept + self.out.rows_written - len(self.failures)

    def run(self) -> int:
        """Read OUT and its record, resume OUT and provision the rows (OUT locked)."""
        previous = signal.getsignal(signal.SIGINT)
        reporting = False
        try:
            try:
                self._read_out()
                self.out, in_out = resume_credentials_file(
                    self.out_path, self.specs.output_columns, _USER_COLUMN, kept=self.kept
                )
                try:
                    with self.out:
                        self.summary = anyio.run(self._main, frozenset(in_out))
                finally:
                    if not os.path.lexists(self.out_path):  # removed: it got no row
                        with contextlib.suppress(OSError):
                            os.unlink(record_path(self.out_path))
            finally:
                if previous is not None:  # None: set outside Python, so not ours to touch
                    signal.signal(signal.SIGINT, previous)  # a stop set SIG_DFL for a while
            reporting = True
            if self.stopped is not None or self.summary is None:
                self._stopped_note()
                return EXIT_TERMINATED if self.stopped == signal.SIGTERM else EXIT_INTERRUPTED
            return self._report(self.summary)
        except KeyboardInterrupt as exc:
            # Also once the rows are done (Ctrl-C as the counts are printed): say so.
            return self._ended_by(exc)
        except BaseException as exc:
            if reporting:
                raise  # the run ended; reporting it failed (a closed standard output)
            return self._ended_by(exc)

    # -- before anything is sent -----------------------------------------------------

    def _read_out(self) -> None:
        """OUT's rows and record; refuse another job's input; name the job."""
        self.kept = read_credentials_file(self.out_path, self.specs.output_columns, _USER_COLUMN)
        self.record = read_record(self.out_path)
        job = self.record.job if self.record is not None else self.specs.path_run_id
        self.specs = attrs.evolve(self.specs, job_id=job)
        columns = self.specs.output_columns
        key_at = columns.index("key") if "key" in self.specs.columns else None
        if self.kept and not same_job(self.specs, self.kept, key_at):
            raise CliError(
                f"{self.out_path} holds the credentials of another job: none of its "
                f"{plural(len(self.kept), 'row')} is a row of {self.specs.path}; nothing "
                "was sent: give another --out for this input",
                exit_code=EXIT_USAGE,
            )

    # -- the run -----------------------------------------------------------------------

    async def _main(self, in_out: frozenset[str]) -> ProvisionSummary | None:
        """Provision the rows; on SIGINT or SIGTERM stop cleanly and return None.

        A second signal while stopping ends the process at once, as that signal ends it:
        rows are flushed as they are written and the ledger is crash-safe, so a rerun
        resumes from there as it does after SIGKILL.
        """
        async with anyio.create_task_group() as tg:
            work = anyio.CancelScope()
            if sys.platform != "win32":
                tg.start_soon(self._stop_on_signal, work)
            summary: ProvisionSummary | None = None
            with work:
                async with self.config.client(**self.options) as client:
                    summary = await self._provision(client, in_out)
            tg.cancel_scope.cancel()
        return None if self.stopped is not None else summary

    async def _provision(self, client: AsyncSarvClient, in_out: frozenset[str]) -> ProvisionSummary:
        ledger = client.ledger
        assert ledger is not None  # the command always gives one
        account = client.account_id
        record = self.record
        if record is not None and record.account != account:
            raise CliError(
                f"{self.out_path} holds the credentials of another account; nothing was "
                "sent: give another --out for this account",
                exit_code=EXIT_USAGE,
            )
        identity = await ledger.identity(account)
        recorded = record.ledger_identity if record is not None else None
        # Lost or replaced: another ledger than the one the record names, or none where
        # OUT has users (so some ledger made them).
        self.lost = (recorded is not None and identity != recorded) or (
            identity is None and bool(in_out)
        )
        baseline = record.baseline if record is not None else None
        if baseline is None:
            if self.lost or not in_out:
                # Not begun: exact, and in the record before the first create is sent, so
                # a run killed at any point leaves it (a new ledger takes it as its own).
                # Or begun and lost with no baseline: a guess (users made by creates in
                # flight when the ledger was lost count as before).
                before = {user.smtp_user_name for user in await client.smtp_users.list()}
                baseline = tuple(sorted(before - in_out))
            else:
                baseline = await self._job_baseline(client, ledger, account, in_out)
        known = await known_users(
            self.specs,
            self.kept or [],
            self.specs.output_columns.index(_USER_COLUMN),
            ledger=ledger,
            account=account,
            trusted=not self.lost,
        )
        if self.lost:
            self._say_ledger_lost(record, identity, len(known))
        elif known:
            print_warning(
                f"the ledger {self.ledger} does not know {plural(len(known), 'user')} of "
                f"{self.out_path}: each is entered in it as its row's, not created again"
            )
        self.record = JobRecord(
            job=self.specs.run_id,
            account=account,
            ledger=self.ledger,
            # After a loss, the successor is recorded once every user of OUT is in it.
            ledger_identity=recorded if self.lost else identity,
            baseline=baseline,
        )
        write_record(self.out_path, self.record)
        options: dict[str, Any] = {}
        if identity is None and baseline is not None:
            options["baseline"] = baseline  # the ledger has none: the job's is the truth
        assert self.out is not None
        self.began = True
        try:
            with progress_display("provisioning", self.specs.count) as show:
                summary = await provision_rows(
                    client,
                    self.specs,
                    self.out,
                    concurrency=self.concurrency,
                    progress=show,
                    failures=self.failures,
                    settle_delay=self.settle_delay,
                    in_out=in_out,
                    known=known,
                    **options,
                )
            self.finished = True
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._update_record(ledger, account)
        return summary

    async def _job_baseline(
        self, client: AsyncSarvClient, ledger: Ledger, account: str, in_out: frozenset[str]
    ) -> tuple[str, ...]:
        """The users before the job, from an intact ledger: those it explains, but the
        job's own (OUT's, and its keys' in the ledger)."""
        listed = [user.smtp_user_name for user in await client.smtp_users.list()]
        explained = await ledger.owned(account, listed)
        ours = set(in_out)
        for index, row in enumerate(self.specs.rows()):
            entry = await ledger.get(account, self.specs.key(index, row))
            if entry is not None and entry.user_name is not None:
                ours.add(entry.user_name)
        return tuple(sorted(explained - ours))

    async def _update_record(self, ledger: Ledger, account: str) -> None:
        """Record the ledger's identity, once this job has one that it used all through."""
        record = self.record
        assert record is not None
        try:
            identity = await ledger.identity(account)
        except SarvError:
            return  # the ledger failed: the record keeps what it said
        if identity is None or identity == record.ledger_identity:
            return
        if self.lost and not self.finished:
            return  # not every user of OUT may be in the successor yet
        self.record = attrs.evolve(record, ledger_identity=identity)
        with contextlib.suppress(CliError):
            write_record(self.out_path, self.record)

    def _say_ledger_lost(
        self, record: JobRecord | None, identity: str | None, entered: int
    ) -> None:
        if record is not None and record.ledger_identity is not None:
            was = f"the ledger {self.out_path} was made with ({record.ledger}) was lost or replaced"
        else:
            was = f"{self.out_path} has users the ledger does not know: it was lost or replaced"
        now = "is empty or new" if identity is None else "is another one"
        print_warning(
            f"the ledger {self.ledger} {now}: {was}; {self.out_path} is taken as the "
            f"record: {plural(entered, 'user')} of it entered in the ledger as their rows' "
            "(none created again), and users on the account that neither explains are named"
        )

    async def _stop_on_signal(self, work: anyio.CancelScope) -> None:
        """Cancel ``work`` on the first SIGINT or SIGTERM; on the next, end the process."""
        try:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    if self.stopped is None:
                        self.stopped = signum
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
            if self.stopped is not None:
                # Until the event loop has ended, a second Ctrl-C ends the process as SIGINT
                # does, not as a KeyboardInterrupt raised wherever its shutdown is.
                signal.signal(signal.SIGINT, signal.SIG_DFL)

    # -- the end ---------------------------------------------------------------------

    def _ended_by(self, exc: BaseException) -> int:
        """The run ended by ``exc``: say so (counts, one error line); the exit status."""
        if isinstance(exc, BaseExceptionGroup):
            # Task groups' wrapping: one failure reported, the ledger's if it failed.
            leaves = _leaves(exc)
            exc = next((e for e in leaves if isinstance(e, LedgerError)), leaves[0])
        ledger_error = exc if isinstance(exc, LedgerError) else None
        if ledger_error is not None:
            if not self.began:  # nothing was sent: it failed for certain
                print_error(self._describe_ledger_error(ledger_error))
                return EXIT_FAILURE
            self._stopped_note()
            print_error(self._describe_ledger_error(ledger_error))
            return EXIT_OUTCOME_UNKNOWN
        if not self.began:
            if isinstance(exc, KeyboardInterrupt):
                print_warning("stopped before anything was sent; nothing was created")
                return EXIT_TERMINATED if isinstance(exc, _Terminated) else EXIT_INTERRUPTED
            raise exc
        if isinstance(exc, (KeyboardInterrupt, CliError)) or (
            self.out is not None and self.out.rows_written
        ):
            self._stopped_note()
        if isinstance(exc, _Terminated):
            return EXIT_TERMINATED
        raise exc

    def _describe_ledger_error(self, error: LedgerError) -> str:
        message = str(error)
        secret = _password(self.options["ledger"])
        if secret:
            message = message.replace(secret, "***")
        if self.ledger not in message:
            message = f"the ledger {self.ledger} failed: {message}"
        return f"{message}; run the same command again once the ledger works: it resumes"

    def _stopped_note(self) -> None:
        print_warning(
            f"stopped: {self.done} of {plural(self.specs.count, 'row')} done "
            f"(in {self.out_path}); {_RERUN}"
        )

    def _report(self, summary: ProvisionSummary) -> int:
        """Print the failed rows, warnings and counts; the exit status."""
        total, out = self.specs.count, self.out_path
        failures = self.failures
        for row, result in failures[:MAX_REPORTED]:
            error = describe_error(result.error) if result.error is not None else "no credentials"
            print_error(f"{self.specs.path}:{row.line}: {error}")
        if len(failures) > MAX_REPORTED:
            print_error(f"... and {len(failures) - MAX_REPORTED} more failed rows (see {out})")
        if summary.unknown:
            print_warning(
                f"{plural(summary.unknown, 'row')} may or may not have a user (the account "
                "could not be listed to find out): run the same command again to settle them"
            )
        if not summary.orphans_checked:
            print_warning("the account could not be listed at the end: orphans were not looked for")
        if summary.orphans:
            names = ", ".join(user.smtp_user_name for user in summary.orphans)
            print_warning(
                f"{plural(len(summary.orphans), 'new SMTP user')} match no row and no ledger "
                f"entry (orphans, not in {out}): {names}"
            )
        unexplained = summary.unexplained
        if unexplained:
            names = ", ".join(user.smtp_user_name for user in unexplained)
            print_warning(
                f"{plural(len(unexplained), 'SMTP user')} on the account that neither "
                f"{out} nor the ledger explains (made by a run whose ledger was lost, or "
                f"outside any ledger; not in {out}): {names}"
            )
        echo(
            f"{plural(total, 'row')}: {summary.created} created, {summary.adopted} adopted, "
            f"{summary.existing} done earlier, {summary.failed} failed, {summary.unknown} "
            f"unknown, {plural(len(summary.orphans), 'orphan')}; credentials in {out} "
            "(mode 0600)"
        )
        if summary.existing == total:
            echo("nothing to do: every row was provisioned by an earlier run; nothing was created")
        if summary.unknown:
            return EXIT_OUTCOME_UNKNOWN
        complete = summary.created + summary.adopted + summary.existing == total
        return 0 if complete and not failures else EXIT_FAILURE


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """The exceptions in a (nested) group; cancellations left out unless nothing else."""
    found: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found += _leaves(error)
        elif not isinstance(error, asyncio.CancelledError):  # the command's loop is asyncio's
            found.append(error)
    return found or list(group.exceptions)


def _password(url: str) -> str | None:
    import urllib.parse

    if "://" not in url:
        return None
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the command is, as SIGINT raises `KeyboardInterrupt`."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextlib.contextmanager
def _stoppable() -> Iterator[None]:
    """Let SIGTERM stop the command at any point, as Ctrl-C does, until the block ends.

    While the rows are provisioned, the event loop's own handlers take over (a first
    signal stops the run cleanly); both handlers are put back as found at the end.
    """
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers: dict[signal.Signals, Callable[..., Any] | int | None] = {
        signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
