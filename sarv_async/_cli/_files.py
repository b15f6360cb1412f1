"""Credentials files: CSV created with mode 0600 before a byte is written, flushed row by row."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import stat
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import TextIO

from ._output import EXIT_USAGE, CliError

__all__ = [
    "PRIVATE_MODE",
    "CredentialsFile",
    "check_output_path",
    "create_private_file",
    "is_private",
    "read_credentials_rows",
    "resume_credentials_file",
]

#: Owner may read and write; nobody else may do anything.
PRIVATE_MODE = 0o600


def check_output_path(path: str, *, force: bool, not_same_as: str | None = None) -> None:
    """Refuse an output path that exists (unless ``force``) or is the input file itself."""
    if not os.path.lexists(path):
        return
    if not_same_as is not None and os.path.exists(path) and os.path.samefile(path, not_same_as):
        raise CliError(
            f"{path} is the input file; write the credentials elsewhere", exit_code=EXIT_USAGE
        )
    if not force:
        raise CliError(
            f"{path} already exists; refusing to overwrite a credentials file "
            "(pass --force to replace it)",
            exit_code=EXIT_USAGE,
        )
    if os.path.isdir(path):
        raise CliError(f"{path} is a directory", exit_code=EXIT_USAGE)


def create_private_file(path: str, *, force: bool = False) -> TextIO:
    """Create ``path`` for writing with mode 0600, atomically and exclusively.

    The file is made by ``os.open(O_CREAT | O_EXCL)`` with mode 0600, so it is never
    readable by others, not even empty; a symbolic link at ``path`` is never followed.
    An existing file is refused, or with ``force`` removed first (its successor is a new
    file, so an old file's wider mode or hard links carry nothing over).
    """
    check_output_path(path, force=force)
    if force and os.path.lexists(path):
        try:
            os.unlink(path)
        except OSError as exc:
            raise CliError(f"cannot replace {path}: {exc.strerror}", exit_code=EXIT_USAGE) from None
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, PRIVATE_MODE)
    except FileExistsError:
        raise CliError(
            f"{path} appeared while starting; refusing to overwrite it", exit_code=EXIT_USAGE
        ) from None
    except OSError as exc:
        # Output files are created before anything is sent: nothing happened yet.
        raise CliError(f"cannot create {path}: {exc.strerror}", exit_code=EXIT_USAGE) from None
    try:
        if sys.platform != "win32":
            os.fchmod(fd, PRIVATE_MODE)  # a umask can only narrow the mode; say it exactly
        return open(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise


class CredentialsFile:
    """A CSV file of credentials: header first, each row flushed as soon as it is written.

    Leaving the ``with`` block closes the file; a file that got no row (only its header)
    is removed, so a run that failed before creating anything leaves nothing behind.
    """

    def __init__(
        self,
        path: str,
        header: Sequence[str],
        *,
        force: bool = False,
        kept: Sequence[Sequence[str]] = (),
    ) -> None:
        self.path = path
        #: Data rows written so far (``kept`` rows not counted).
        self.rows_written = 0
        #: Rows carried over from an earlier run of the same command.
        self.kept = len(kept)
        self._file = create_private_file(path, force=force)
        self._writer = csv.writer(self._file)
        try:
            self._write(header)
            for row in kept:
                self._writer.writerow(row)
            self._file.flush()
            os.fsync(self._file.fileno())
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> CredentialsFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def write_row(self, row: Sequence[str]) -> None:
        """Write one data row and flush it to the operating system."""
        self._write(row)
        self.rows_written += 1

    def close(self) -> None:
        """Close the file; remove it if it holds no data row."""
        if self._file.closed:
            return
        self._file.close()
        if not self.rows_written and not self.kept:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def _write(self, row: Sequence[str]) -> None:
        self._writer.writerow(row)
        self._file.flush()


def resume_credentials_file(
    path: str, header: Sequence[str], user_column: str
) -> tuple[CredentialsFile, set[str]]:
    """Open ``path`` to go on writing credentials where an earlier run stopped.

    A new file is created as `CredentialsFile` does. An existing one must have exactly
    ``header`` (it is this command's output); its rows holding a user (``user_column``
    not empty) are kept, the others (failed, unknown: they are retried) dropped. The kept
    rows go to a new 0600 file that replaces the old one atomically, so no credential is
    ever lost, even if this is interrupted. Returns the file and the users it holds.
    """
    if not os.path.lexists(path):
        return CredentialsFile(path, header), set()
    if os.path.isdir(path) or os.path.islink(path):
        raise CliError(f"{path} is not a regular file", exit_code=EXIT_USAGE)
    rows = [row for _, row in read_credentials_rows(path, "to resume")]
    if not rows or tuple(rows[0]) != tuple(header):
        raise CliError(
            f"{path} exists but is not this command's credentials file (its columns differ); "
            "it was left as it is: give another --out",
            exit_code=EXIT_USAGE,
        )
    at = list(header).index(user_column)
    kept = [row for row in rows[1:] if len(row) == len(header) and row[at].strip()]
    partial = f"{path}.partial"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)  # left by an interrupted resume; the original is intact
    out = CredentialsFile(partial, header, kept=kept)
    try:
        os.replace(partial, path)
    except OSError as exc:
        out.close()
        raise CliError(f"cannot replace {path}: {exc.strerror}") from None
    out.path = path
    return out, {row[at] for row in kept}


def read_credentials_rows(path: str, purpose: str = "") -> list[tuple[int, list[str]]]:
    """The rows of a credentials file this tool wrote, each with its line number.

    A process killed while writing may leave its last row cut short: each row is
    complete only with its line end, so whatever follows the last one is dropped.
    Raises `CliError` (``"cannot read PATH PURPOSE: ..."``) if it cannot be read.
    """
    try:
        with open(path, encoding="utf-8", newline="") as file:
            text = file.read()
        reader = csv.reader(io.StringIO(text[: text.rfind("\n") + 1]))
        return [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        where = f"{path} {purpose}".rstrip()
        raise CliError(f"cannot read {where}: {exc}", exit_code=EXIT_USAGE) from None


def is_private(path: str) -> bool:
    """Whether only the owner may read or write ``path`` (always true on Windows)."""
    if sys.platform == "win32":
        return True
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
