"""``smtp provision``'s files: the specs CSV, checked whole up front, and the credentials CSV.

The specs file is read twice and never held whole: once to check every row (nothing is
created from a file with a bad row anywhere), then row by row as provisioning takes them
(each row checked again: a file changed in between stops the run with an error). Only
the rows whose result has not arrived yet are kept, so memory stays flat however long
the file is.

The input has a header row with ``total_limit`` and ``hourly_limit``; other columns are
carried through. The output has the input's columns plus `RESULT_COLUMNS`, one row per
input row, in the order results arrive.

Each row has an idempotency key in the ledger: its ``key`` column when the file has one
(then the file is an "ensure these exist" list), else the job's id (see ``_job.py``: the
credentials file keeps it) and the row's position, with a digest of the row's cells as
its fingerprint, so a row edited after it was provisioned is an error, never a second user.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from .._client import AsyncSarvClient
from .._idempotency import MAX_KEY_LENGTH
from .._provision import (
    DEFAULT_SETTLE_DELAY,
    ProgressCallback,
    ProvisionResult,
    ProvisionSummary,
)
from .._requests import MAX_LIMIT
from ._files import CredentialsFile, open_regular_file
from ._output import EXIT_USAGE, CliError, plural

__all__ = [
    "KEY_COLUMN",
    "LIMIT_COLUMNS",
    "RESULT_COLUMNS",
    "SpecRow",
    "SpecsFile",
    "provision_rows",
    "read_specs",
    "result_row",
]

#: The columns every specs file must have.
LIMIT_COLUMNS = ("total_limit", "hourly_limit")
#: The optional column of idempotency keys.
KEY_COLUMN = "key"
#: The columns the credentials file adds to the input's.
RESULT_COLUMNS = ("smtp_user_name", "smtp_password", "outcome", "error")
#: Bad rows reported one by one before the rest are only counted.
MAX_REPORTED = 20

_DIGITS = re.compile(r"[0-9]+")
_MAX_DIGITS = len(str(MAX_LIMIT))
_READ_TWICE = ", as it is read more than once"


@attrs.frozen
class SpecRow:
    """One data row: where it is, its cells, and its limits as integers."""

    line: int
    cells: tuple[str, ...]
    total_limit: int
    hourly_limit: int
    #: The row's ``key`` cell, when the file has that column.
    key: str | None = None


@attrs.frozen
class SpecsFile:
    """A specs CSV file that passed every check; its rows are read again when needed."""

    path: str
    columns: tuple[str, ...]
    #: How many data rows it has.
    count: int
    #: The key prefix of rows without a key (the job's id); `path_run_id` if not set.
    job_id: str | None = None

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The credentials file's header."""
        return (*self.columns, *RESULT_COLUMNS)

    @property
    def path_run_id(self) -> str:
        """A job id made from the file's resolved path: the same for every run on this file."""
        digest = hashlib.sha256(os.path.realpath(self.path).encode()).hexdigest()
        return f"file:{digest[:24]}"

    @property
    def run_id(self) -> str:
        """The key prefix of rows without a key."""
        return self.job_id or self.path_run_id

    def rows(self) -> Iterator[SpecRow]:
        """The data rows, read from the file again one at a time.

        Raises `CliError` if the file no longer reads as it did when it was checked
        (a row now bad, more or fewer rows).
        """
        changed = f"{self.path} changed after it was checked"
        try:
            with open_regular_file(self.path, encoding="utf-8-sig", why=_READ_TWICE) as file:
                reader = csv.reader(file)
                header: tuple[str, ...] | None = None
                limit_at: list[int] = []
                count = 0
                for record in reader:
                    if not any(cell.strip() for cell in record):
                        continue
                    if header is None:
                        header = tuple(cell.strip() for cell in record)
                        if header != self.columns:
                            raise CliError(f"{changed} (its header differs)")
                        limit_at = [header.index(name) for name in LIMIT_COLUMNS]
                        continue
                    row, problem = _check_row(header, limit_at, reader.line_num, record)
                    if row is not None and row.key is not None and problem is None:
                        problem = _check_key(row.key, reader.line_num, {})
                    if row is None or problem is not None:
                        raise CliError(f"{changed}: line {reader.line_num}: {problem}")
                    count += 1
                    if count > self.count:
                        raise CliError(f"{changed} (it has more rows)")
                    yield row
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CliError(f"cannot read {self.path} again: {exc}") from None
        if count != self.count:
            raise CliError(f"{changed} (it has fewer rows)")

    def key(self, index: int, row: SpecRow) -> str:
        """The idempotency key of the row at ``index``."""
        return row.key if row.key is not None else f"{self.run_id}:{index}"

    def spec(self, index: int, row: SpecRow, user: str | None = None) -> dict[str, Any]:
        """The provisioning spec of the row at ``index``, with its key (and fingerprint).

        ``user``: the row's user as the credentials file records it, for the ledger to
        take as the key's if it knows none (it is never created again).
        """
        spec: dict[str, Any] = {"total_limit": row.total_limit, "hourly_limit": row.hourly_limit}
        spec["key"] = self.key(index, row)
        if row.key is None:
            cells = json.dumps(row.cells, ensure_ascii=False).encode()
            spec["fingerprint"] = hashlib.sha256(cells).hexdigest()[:32]
        if user is not None:
            spec["smtp_user_name"] = user
        return spec

    def specs(self) -> list[dict[str, Any]]:
        """Every row's provisioning spec (a list: for tests and small files)."""
        return [self.spec(index, row) for index, row in enumerate(self.rows())]


@attrs.define
class _RowSpecs:
    """The specs of a file's rows, made as provisioning takes them; ``len`` is the count.

    Each row is kept in ``waiting`` (by index) until its result arrives.
    """

    specs: SpecsFile
    waiting: dict[int, SpecRow]
    #: The user the credentials file has for a row, by index (see `SpecsFile.spec`).
    known: Mapping[int, str]

    def __len__(self) -> int:
        return self.specs.count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index, row in enumerate(self.specs.rows()):
            self.waiting[index] = row
            yield self.specs.spec(index, row, self.known.get(index))


def read_specs(path: str) -> SpecsFile:
    """Read and check a whole specs file; raise `CliError` with a line per problem.

    Blank lines are skipped. Every problem is reported with its line number, so
    nothing is created from a file with a bad row anywhere in it.
    """
    try:
        with open_regular_file(path, encoding="utf-8-sig", why=_READ_TWICE) as file:
            return _parse(path, file)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", exit_code=EXIT_USAGE) from None
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{path} is not UTF-8 text (byte {exc.start})", exit_code=EXIT_USAGE
        ) from None


def _parse(path: str, lines: Iterable[str]) -> SpecsFile:
    reader = csv.reader(lines)
    problems: list[str] = []
    columns: tuple[str, ...] | None = None
    rows = 0
    limit_at: list[int] = []
    keys: dict[str, int] = {}
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            line = reader.line_num
            if columns is None:
                columns = _check_header(path, line, record)
                limit_at = [columns.index(name) for name in LIMIT_COLUMNS]
                continue
            row, problem = _check_row(columns, limit_at, line, record)
            if row is not None and row.key is not None:
                problem = _check_key(row.key, line, keys)
            if problem is not None:
                problems.append(f"{path}:{line}: {problem}")
            elif row is not None:
                rows += 1
    except csv.Error as exc:
        problems.append(f"{path}:{reader.line_num}: unreadable CSV ({exc})")
    if columns is None and not problems:
        raise CliError(
            f"{path} is empty; expected a header row with {', '.join(LIMIT_COLUMNS)}",
            exit_code=EXIT_USAGE,
        )
    if problems:
        shown = problems[:MAX_REPORTED]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more bad rows")
        count = plural(len(problems), "bad row")
        raise CliError(*shown, f"{count} in {path}; nothing was created", exit_code=EXIT_USAGE)
    assert columns is not None
    if not rows:
        raise CliError(f"{path} has a header but no rows", exit_code=EXIT_USAGE)
    return SpecsFile(path, columns, rows)


def _check_header(path: str, line: int, record: list[str]) -> tuple[str, ...]:
    columns = tuple(cell.strip() for cell in record)
    where = f"{path}:{line}: header"
    missing = [name for name in LIMIT_COLUMNS if name not in columns]
    if missing:
        raise CliError(
            f"{where} lacks {' and '.join(missing)} (it has: {', '.join(columns)})",
            exit_code=EXIT_USAGE,
        )
    if "" in columns:
        raise CliError(f"{where}: column {columns.index('') + 1} has no name", exit_code=EXIT_USAGE)
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise CliError(f"{where} repeats {', '.join(duplicates)}", exit_code=EXIT_USAGE)
    reserved = [name for name in RESULT_COLUMNS if name in columns]
    if reserved:
        raise CliError(
            f"{where} has {', '.join(reserved)}, which the credentials file adds; "
            "rename or drop it",
            exit_code=EXIT_USAGE,
        )
    return columns


def _check_row(
    columns: tuple[str, ...], limit_at: list[int], line: int, record: list[str]
) -> tuple[SpecRow | None, str | None]:
    if len(record) != len(columns):
        return None, f"{plural(len(record), 'field')}, but the header has {len(columns)}"
    limits: list[int] = []
    for name, at in zip(LIMIT_COLUMNS, limit_at, strict=True):
        text = record[at].strip()
        if not _DIGITS.fullmatch(text) or not text.strip("0"):
            shown = repr(text) if text else "nothing"
            return None, f"{name} must be a positive whole number, got {shown}"
        digits = text.lstrip("0")
        # Counted first: int() of a very long number is slow, or refused.
        if len(digits) > _MAX_DIGITS or int(digits) > MAX_LIMIT:
            return None, f"{name} is too large: the API takes at most {MAX_LIMIT}"
        limits.append(int(digits))
    key = record[columns.index(KEY_COLUMN)].strip() if KEY_COLUMN in columns else None
    return SpecRow(line, tuple(record), limits[0], limits[1], key), None


def _check_key(key: str, line: int, seen: dict[str, int]) -> str | None:
    """What is wrong with a row's key, if anything; remember it as seen."""
    if not key:
        return "key is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"key is longer than {MAX_KEY_LENGTH} characters"
    if key in seen:
        return f"key {key!r} repeats line {seen[key]}"
    seen[key] = line
    return None


def result_row(row: SpecRow, result: ProvisionResult) -> list[str]:
    """The credentials file's row for an input row and its result."""
    creds = result.credentials
    return [
        *row.cells,
        creds.smtp_user_name if creds is not None else "",
        creds.smtp_password if creds is not None else "",
        result.outcome.value,
        str(result.error) if result.error is not None else "",
    ]


async def provision_rows(
    client: AsyncSarvClient,
    specs: SpecsFile,
    out: CredentialsFile,
    *,
    concurrency: int | None = None,
    progress: ProgressCallback | None = None,
    failures: list[tuple[SpecRow, ProvisionResult]] | None = None,
    settle_delay: float = DEFAULT_SETTLE_DELAY,
    in_out: frozenset[str] = frozenset(),
    known: Mapping[int, str] | None = None,
    **options: Any,
) -> ProvisionSummary:
    """Provision a user per row, writing each result to ``out`` as it arrives.

    Rows whose user ``out`` holds already (``in_out``, from an earlier run) are not
    written again; ``known`` gives such rows' users by index, for the ledger (see
    `SpecsFile.spec`). Failed rows are also appended to ``failures`` when given.
    ``options`` go to `provision` as they are (``baseline``).
    """
    waiting: dict[int, SpecRow] = {}
    async with client.smtp_users.provision(
        _RowSpecs(specs, waiting, known or {}),
        concurrency=concurrency,
        progress=progress,
        settle_delay=settle_delay,
        run_id=specs.run_id,
        **options,
    ) as run:
        async for result in run:
            row = waiting.pop(result.index)
            creds = result.credentials
            if creds is None and (known or {}).get(result.index) in in_out:
                pass  # OUT holds this row's user: a failure to enter it is not written
            elif creds is None or creds.smtp_user_name not in in_out:
                try:
                    out.write_row(result_row(row, result))
                except OSError as exc:
                    raise CliError(_unwritten(out.path, exc, result)) from None
            if failures is not None and not result.ok:
                failures.append((row, result))
    return run.summary


def _unwritten(path: str, exc: OSError, result: ProvisionResult) -> str:
    """Say that a result could not be saved, and how to recover the user it names."""
    message = f"cannot write to {path}: {exc.strerror or exc}"
    if result.credentials is None:
        return message
    name = result.credentials.smtp_user_name
    return (
        f"{message}; SMTP user {name} was created but its password is not saved: "
        f"give it a new one with 'sarv-async smtp reset-password {name} --out FILE'"
    )
