"""Work done once per test run, by whichever pytest-xdist worker asks for it first.

The docs' type-check and the site build take seconds each; every worker that runs one of
their tests would otherwise do them again (and again after each module switch, for a
module-scoped fixture). xdist's ``--dist loadgroup`` was meant to put such tests on one
worker, but on pytest 9.2 it silently groups nothing (pytest-dev/pytest-xdist#1386), so
the result is shared through the run's temporary directory under a file lock instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["once_per_run"]


def once_per_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """The directory ``make(directory)`` filled, once for the whole run.

    The first worker to ask runs ``make``; the others wait for it and reuse what it left.
    If ``make`` raises, the directory is not marked done, and the next to ask tries again.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") and sys.platform != "win32":
        base = base.parent  # the run's directory, which holds each worker's own
    directory = base / f"once-{name}"
    done = directory / ".done"
    with _locked(base / f"once-{name}.lock"):
        if not done.exists():
            if directory.exists():  # what an attempt that failed left
                shutil.rmtree(directory)
            directory.mkdir()
            make(directory)
            done.touch()
    return directory


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX; on Windows each worker works alone)."""
    if sys.platform == "win32":  # pragma: no cover - CI and development are POSIX
        yield
        return
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
