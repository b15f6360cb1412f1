"""The job record beside a credentials file: which job OUT belongs to, and with which ledger.

``smtp provision FILE --out OUT`` keeps ``OUT.job.json`` (mode 0600, replaced atomically)
beside OUT. It says:

- ``job``: the job's id, the key prefix of rows without a ``key`` column. It is made
  when OUT is first written (from the input's resolved path, so a new OUT for the same
  file is the same job, as before records existed) and kept from then on: the input may
  be copied, moved or renamed, and the same OUT is still the same job.
- ``account``: the account's namespace in a ledger (`AsyncSarvClient.account_id`).
- ``ledger``: where the ledger was (a path, or a Redis URL without its password) and its
  ``ledger_identity`` for the account, made by the store with its baseline. A rerun that
  finds another identity (or none) knows the ledger was lost or replaced, and takes OUT
  as the record of what was done (see ``_provision_cmd.py``).
- ``baseline``: the users the account had before the job's first create, so that a
  rerun on a new ledger can tell them from users that nothing explains.

An OUT without a record (written by an older version) keeps the path-based id; the record
is written from then on.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import attrs

from .._ledger import Ledger
from ._files import PRIVATE_MODE, open_regular_file
from ._output import EXIT_USAGE, CliError
from ._provision_csv import SpecsFile

__all__ = [
    "RECORD_SUFFIX",
    "JobRecord",
    "known_users",
    "read_record",
    "record_path",
    "same_job",
    "write_record",
]

#: The record is OUT's path with this suffix.
RECORD_SUFFIX = ".job.json"
_FORMAT = "sarv-async provision job"
_VERSION = 1


@attrs.frozen
class JobRecord:
    """What ``OUT.job.json`` holds (see the module's docstring)."""

    job: str
    account: str
    ledger: str
    ledger_identity: str | None
    #: Sorted user names; None if not known (a record made without listing the account).
    baseline: tuple[str, ...] | None

    def to_json(self) -> dict[str, Any]:
        """The record as written."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "job": self.job,
            "account": self.account,
            "ledger": self.ledger,
            "ledger_identity": self.ledger_identity,
            "baseline": list(self.baseline) if self.baseline is not None else None,
        }


def record_path(out: str) -> str:
    """The job record of the credentials file ``out``."""
    return out + RECORD_SUFFIX


def read_record(out: str) -> JobRecord | None:
    """OUT's job record; None if there is none; `CliError` (exit 2) if it is unreadable."""
    path = record_path(out)
    if not os.path.lexists(path):
        return None
    damaged = (
        f"the job record {path} is damaged ({{}}); nothing was sent: remove it to go on "
        f"as for a {os.path.basename(out)} written before records existed"
    )
    try:
        with open_regular_file(path) as file:
            data = json.load(file)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", exit_code=EXIT_USAGE) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(damaged.format(f"not JSON: {exc}"), exit_code=EXIT_USAGE) from None
    try:
        return _parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CliError(damaged.format(exc), exit_code=EXIT_USAGE) from None


def _parse(data: Any) -> JobRecord:
    if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
        raise ValueError("not a job record")
    if data.get("version") != _VERSION:
        raise ValueError(f"version {data.get('version')!r}, expected {_VERSION}")
    texts = {name: data[name] for name in ("job", "account", "ledger")}
    if not all(isinstance(value, str) and value for value in texts.values()):
        raise ValueError("job, account and ledger must be non-empty strings")
    identity = data.get("ledger_identity")
    if identity is not None and not isinstance(identity, str):
        raise ValueError("ledger_identity must be a string")
    baseline = data.get("baseline")
    if baseline is not None and (
        not isinstance(baseline, list) or not all(isinstance(name, str) for name in baseline)
    ):
        raise ValueError("baseline must be a list of user names")
    return JobRecord(
        job=texts["job"],
        account=texts["account"],
        ledger=texts["ledger"],
        ledger_identity=identity,
        baseline=tuple(baseline) if baseline is not None else None,
    )


def write_record(out: str, record: JobRecord) -> None:
    """Write OUT's job record: a new 0600 file, flushed to disk, then renamed over the old."""
    path = record_path(out)
    partial = f"{path}.partial"
    data = json.dumps(record.to_json(), indent=1).encode() + b"\n"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(partial, flags, PRIVATE_MODE)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, path)
    except OSError as exc:
        raise CliError(f"cannot write the job record {path}: {exc.strerror or exc}") from None


def same_job(specs: SpecsFile, kept: Iterable[list[str]], key_at: int | None) -> bool:
    """Whether the input is the job OUT's rows (``kept``, each with a user) came from.

    It is when at least one of OUT's rows is one of the input's: the same key (with a
    ``key`` column, at ``key_at`` in OUT's rows), or else the same cells. An OUT with no
    row is any job's. Rows may be added, reordered (with keys) or edited (each such row
    fails on its own): only an input sharing nothing with OUT is another job.
    """
    width = len(specs.columns)
    if key_at is not None:
        wanted = {row[key_at].strip() for row in kept}
        if not wanted:
            return True
        return any(row.key in wanted for row in specs.rows())
    cells = {tuple(row[:width]) for row in kept}
    if not cells:
        return True
    return any(row.cells in cells for row in specs.rows())


async def known_users(
    specs: SpecsFile,
    kept: Collection[list[str]],
    user_at: int,
    *,
    ledger: Ledger,
    account: str,
    trusted: bool,
) -> dict[int, str]:
    """The users OUT holds that the ledger does not explain, by the index of their row.

    With ``trusted`` false (the ledger was lost or replaced), every user of OUT is taken;
    otherwise those the ledger does not own. A keyed row gets the user of its key; rows
    without a key get the users of OUT rows with the same cells, in order, skipping rows
    whose key already has a user in the ledger. Such a row is never created again: the
    ledger takes its user as the key's, or fails it if it knows another.
    """
    width = len(specs.columns)
    users = [row[user_at] for row in kept]
    if trusted:
        owned = await ledger.owned(account, users) if users else set()
        unexplained = {user for user in users if user not in owned}
    else:
        unexplained = set(users)
    if not unexplained:
        return {}
    key_at = specs.columns.index("key") if "key" in specs.columns else None
    by_key: dict[str, str] = {}
    by_cells: dict[tuple[str, ...], list[str]] = {}
    for line in kept:
        if line[user_at] not in unexplained:
            continue
        if key_at is not None:
            by_key[line[key_at].strip()] = line[user_at]
        else:
            by_cells.setdefault(tuple(line[:width]), []).append(line[user_at])
    known: dict[int, str] = {}
    open_rows: list[tuple[int, tuple[str, ...]]] = []  # rows without a key: no user yet
    for index, row in enumerate(specs.rows()):
        if row.key is not None:
            if row.key in by_key:
                known[index] = by_key[row.key]
            continue
        waiting = by_cells.get(row.cells)
        if waiting is None:
            continue
        entry = await ledger.get(account, specs.key(index, row))
        if entry is not None and entry.user_name is not None:
            if entry.user_name in waiting:  # the ledger has this row's user already
                waiting.remove(entry.user_name)
        else:
            open_rows.append((index, row.cells))
    for index, cells in open_rows:
        waiting = by_cells[cells]
        if waiting:
            known[index] = waiting.pop(0)
    return known
