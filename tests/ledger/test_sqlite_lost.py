"""A SQLite ledger file deleted, replaced, damaged or made by an earlier version."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from sarv_async import LedgerError, LedgerLostError, SqliteLedger
from sarv_async._ledger import Decision, account_id

pytestmark = pytest.mark.anyio

ACCOUNT = account_id("https://api.example.com/v1.0/", "acme")


async def _begin(ledger: SqliteLedger, key: str = "k") -> Decision:
    begun = await ledger.begin(ACCOUNT, key, total_limit=1, hourly_limit=1, holder="h", lease=5)
    return begun.decision


async def test_a_file_deleted_while_in_use_is_lost_not_started_afresh(tmp_path: Path) -> None:
    """Once its file is deleted, every operation raises LedgerLostError naming the path."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    try:
        await ledger.record_baseline(ACCOUNT, [])
        assert await _begin(ledger) is Decision.SEND
        for name in ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        with pytest.raises(LedgerLostError, match=f"{path} was deleted"):
            await _begin(ledger, "k2")
        with pytest.raises(LedgerLostError):
            await ledger.identity(ACCOUNT)
    finally:
        await ledger.aclose()
    assert not path.exists()  # nothing was recreated in its place


async def test_a_deleted_file_is_not_recreated_by_a_thread_new_to_it(tmp_path: Path) -> None:
    """A thread that never had a connection (a new worker thread) finds it deleted too.

    Each thread connects on first use: connecting must not make a new, empty file where
    the deleted one was (it would read as "replaced", and a rerun would start afresh).
    """
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    try:
        await ledger.record_baseline(ACCOUNT, [])
        for name in ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        errors: list[BaseException] = []

        def in_a_new_thread() -> None:
            try:
                ledger._connection()
            except BaseException as exc:
                errors.append(exc)

        await anyio.to_thread.run_sync(_run_in_new_thread, in_a_new_thread)
        assert len(errors) == 1
        assert isinstance(errors[0], LedgerLostError)
        assert f"{path} was deleted" in str(errors[0])
    finally:
        await ledger.aclose()
    assert not path.exists()


def _run_in_new_thread(target: Callable[[], None]) -> None:
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()


async def test_a_file_replaced_while_in_use_is_lost(tmp_path: Path) -> None:
    """Another ledger file moved over it is not taken for it."""
    path, other = tmp_path / "ledger.sqlite3", tmp_path / "other.sqlite3"
    ledger, replacement = SqliteLedger(path), SqliteLedger(other)
    try:
        await ledger.record_baseline(ACCOUNT, [])
        await replacement.record_baseline(ACCOUNT, [])
        await replacement.aclose()
        os.replace(other, path)
        with pytest.raises(LedgerLostError, match="replaced by another file"):
            await _begin(ledger)
    finally:
        await ledger.aclose()


async def test_a_directory_replaced_by_a_file_is_lost_not_a_raw_os_error(tmp_path: Path) -> None:
    """The ledger's directory moved away and a file put at its name: the path now fails
    with ENOTDIR, which says the ledger is gone from it (LedgerLostError), for writes and
    reads alike, never a raw NotADirectoryError."""
    directory = tmp_path / "state"
    directory.mkdir()
    path = directory / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    try:
        await ledger.record_baseline(ACCOUNT, [])
        directory.rename(tmp_path / "moved")
        directory.write_bytes(b"")
        with pytest.raises(LedgerLostError, match=f"{path} was deleted"):
            await _begin(ledger)
        with pytest.raises(LedgerLostError, match=f"{path} was deleted"):
            await ledger.identity(ACCOUNT)
    finally:
        await ledger.aclose()


async def test_a_damaged_file_is_a_ledger_error_naming_it(tmp_path: Path) -> None:
    """A file that is not a SQLite database is refused with its path, and left as it is."""
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is no database" * 100)
    ledger = SqliteLedger(path)
    with pytest.raises(LedgerError, match=f"the ledger {path} is damaged"):
        await ledger.record_baseline(ACCOUNT, [])
    await ledger.aclose()
    assert path.read_bytes() == b"this is no database" * 100


async def test_a_file_of_an_earlier_version_gets_identities(tmp_path: Path) -> None:
    """A ledger made before identities existed keeps its baseline and gains an identity."""
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE accounts (account TEXT PRIMARY KEY, baseline_at REAL NOT NULL) WITHOUT ROWID"
    )
    db.execute("INSERT INTO accounts VALUES (?, 1.0)", (ACCOUNT,))
    db.commit()
    db.close()
    ledger = SqliteLedger(path)
    try:
        identity = await ledger.identity(ACCOUNT)
        assert identity
        assert await _begin(ledger) is Decision.SEND  # its baseline is still there
        assert await ledger.identity(ACCOUNT) == identity
    finally:
        await ledger.aclose()
