"""One run per credentials file: an OS lock on ``OUT.lock``, held by the process for the run.

The lock is `fcntl.flock` on a file beside OUT (never on OUT itself: a resumed OUT is
replaced by a new file, and a lock on the old one would guard nothing). The kernel drops
it when the process ends, however it ends, so a run killed with SIGKILL never blocks the
next one. The holder's PID is written into the lock file, so a second run can name it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from ._output import EXIT_USAGE, CliError

__all__ = ["LOCK_SUFFIX", "lock_path", "locked"]

#: The lock file is OUT's path with this suffix.
LOCK_SUFFIX = ".lock"


def lock_path(out: str) -> str:
    """The lock file of the credentials file ``out``."""
    return out + LOCK_SUFFIX


@contextlib.contextmanager
def locked(out: str) -> Iterator[None]:
    """Hold the lock of ``out`` for the block; `CliError` (exit 2) if another run holds it.

    Without `fcntl` (Windows) there is no lock: runs on one OUT must not overlap there.
    """
    if sys.platform == "win32":  # pragma: no cover - no flock
        yield
        return
    path = lock_path(out)
    fd = _acquire(path, out)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        # Removed while still held, so no run can lock a file that is about to go; a run
        # that opened it before is told to retry by `_acquire`'s inode check.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _acquire(path: str, out: str) -> int:
    import fcntl

    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise CliError(
                f"cannot create the lock file {path}: {exc.strerror}", exit_code=EXIT_USAGE
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise CliError(
                f"another run is writing to {out}{holder}; nothing was sent: let it "
                "finish (or stop it), then run the command again",
                exit_code=EXIT_USAGE,
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed it as we opened it: lock the one there now


def _holder(fd: int) -> str:
    """`` (PID n)`` as the lock file says, or nothing if it says nothing readable."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (PID {text})" if text.isdigit() else ""
