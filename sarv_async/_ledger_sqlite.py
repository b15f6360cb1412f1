"""`SqliteLedger`: the embedded default `Ledger`, one SQLite file shared by every process on a host.

Each write runs in a ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front,
so two processes never deadlock upgrading a read), in a worker thread so the event loop
never blocks on the disk or on another process's lock. Writes that arrive while one
batch is in the thread, or from tasks woken together, are committed together (group
commit: one thread trip and one sync for the batch; should one operation fail, the batch
is rolled back and each runs in a transaction of its own, so each stays atomic and one
failing spoils no other).
The file is in WAL mode (readers never wait for the writer) with a busy timeout, created
with mode 0600. Every commit survives a crash of the process. A commit that records an
intent to send (`begin`, `resend`) or a baseline is also synced to disk
(``synchronous=FULL``) before the create may leave, so it survives a power cut too; what
is recorded after a create (a claim, a failure, a lease) rides on the next synced commit
(``NORMAL``): a power cut that loses it leaves a key whose outcome is unknown, which the
next run settles from a list, as after a crash between a create and its claim. Each
thread has its own connection.

User names are unique per account across entries (a partial unique index) and are checked
against the baseline in the same transaction, which is what makes `claim` exclusive.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from ._exceptions import LedgerError, LedgerLostError
from ._ledger import Begin, Claim, Decision, EntryState, LedgerEntry

__all__ = ["DEFAULT_BUSY_TIMEOUT", "SqliteLedger"]

T = TypeVar("T")

#: Seconds an operation waits for another process's write to finish before failing.
DEFAULT_BUSY_TIMEOUT = 30.0
#: Turns of the event loop a batch waits at most for more writes (see `_gather`).
_GATHER_TURNS = 3
#: A commit synced to disk (an intent to send), or one that rides on the next synced one.
_SYNC_FULL = "PRAGMA synchronous = FULL"
_SYNC_NORMAL = "PRAGMA synchronous = NORMAL"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    baseline_at REAL NOT NULL,
    identity TEXT  -- random, made with the baseline: see `Ledger.identity`
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS baseline_takers (
    account TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    lease_until REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS baseline (
    account TEXT NOT NULL,
    user_name TEXT NOT NULL,
    PRIMARY KEY (account, user_name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    total_limit TEXT NOT NULL,  -- decimal text: limits may exceed 64 bits
    hourly_limit TEXT NOT NULL,
    fingerprint TEXT,
    state TEXT NOT NULL,
    user_name TEXT,
    holder TEXT,
    lease_until REAL,
    ended_at REAL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (account, key)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS entries_by_user
    ON entries (account, user_name) WHERE user_name IS NOT NULL;
"""

_COLUMNS = (
    "key, total_limit, hourly_limit, fingerprint, state, user_name, holder, lease_until, "
    "ended_at, attempts"
)

_Row = tuple[str, str, str, "str | None", str, "str | None", "str | None", "float | None",
             "float | None", int]  # fmt: skip


class SqliteLedger:
    """A `Ledger` in a SQLite file: safe for every task, thread and process of one host.

    ```python
    ledger = SqliteLedger("~/.local/state/sarv-async/ledger.sqlite3")
    async with AsyncSarvClient(..., ledger=ledger) as client: ...
    ```

    The file (and its ``-wal`` and ``-shm`` companions) is created with mode 0600 if it
    does not exist; its directory must exist. It holds idempotency keys, limits and user
    names, never a password or a token. Not for network file systems (SQLite's locks do
    not hold there): use the Redis ledger to share one between hosts.

    An intent to send is synced to disk before its create leaves (see the module);
    ``synchronous=False`` never waits for the disk, and a power cut may then lose an
    intent whose create was sent (a crash of the process loses nothing either way).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: bool = True,
    ) -> None:
        self.path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self._busy_timeout = busy_timeout
        #: Whether intents are synced to disk before their creates leave.
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._connections: dict[tuple[int, int], sqlite3.Connection] = {}
        self._closed = False
        # Group commit: per event loop (by the id of its native token), the writes queued
        # meanwhile; an entry lives while writes are queued or running.
        self._queues: dict[int, _LoopQueue] = {}
        #: The file's (device, inode) when first opened: another file there later means
        #: the ledger was deleted or replaced while in use.
        self._file_id: tuple[int, int] | None = None

    #: Operations wait for a worker thread and the disk.
    instant = False

    def __repr__(self) -> str:
        return f"<SqliteLedger {self.path!r}>"

    # -- the protocol --------------------------------------------------------------

    async def record_baseline(self, account: str, user_names: Collection[str]) -> bool:
        names = sorted(set(user_names))

        def op(db: sqlite3.Connection, now: float) -> bool:
            if db.execute("SELECT 1 FROM accounts WHERE account = ?", (account,)).fetchone():
                return False
            db.execute(
                "INSERT INTO accounts (account, baseline_at, identity) VALUES (?, ?, ?)",
                (account, now, os.urandom(8).hex()),
            )
            db.executemany(
                "INSERT OR IGNORE INTO baseline (account, user_name) VALUES (?, ?)",
                [(account, name) for name in names],
            )
            return True

        # Synced: the account's identity may be handed on (a job record names it).
        return await self._write(op, durable=True)

    async def take_baseline(self, account: str, *, holder: str, lease: float) -> float | None:
        def op(db: sqlite3.Connection, now: float) -> float | None:
            row = db.execute(
                "SELECT holder, lease_until FROM baseline_takers WHERE account = ?", (account,)
            ).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return float(row[1] - now)
            db.execute(
                "INSERT INTO baseline_takers (account, holder, lease_until) VALUES (?, ?, ?) "
                "ON CONFLICT (account) DO UPDATE SET holder = excluded.holder, "
                "lease_until = excluded.lease_until",
                (account, holder, now + lease),
            )
            return None

        return await self._write(op)

    async def begin(
        self,
        account: str,
        key: str,
        *,
        total_limit: int,
        hourly_limit: int,
        holder: str,
        lease: float,
        fingerprint: str | None = None,
    ) -> Begin:
        def op(db: sqlite3.Connection, now: float) -> Begin:
            row, identity = _select_with_identity(db, account, key)
            if row is None or row[4] == EntryState.FAILED:
                if identity is None:
                    return Begin(Decision.NEED_BASELINE, _entry(row, now))
                db.execute(
                    "INSERT INTO entries (account, key, total_limit, hourly_limit, fingerprint, "
                    "state, user_name, holder, lease_until, ended_at, attempts, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (account, key) DO UPDATE SET total_limit = excluded.total_limit, "
                    "hourly_limit = excluded.hourly_limit, fingerprint = excluded.fingerprint, "
                    "state = excluded.state, user_name = NULL, holder = excluded.holder, "
                    "lease_until = excluded.lease_until, attempts = attempts + 1, "
                    "updated_at = excluded.updated_at",
                    (
                        account,
                        key,
                        str(total_limit),
                        str(hourly_limit),
                        fingerprint,
                        EntryState.PENDING.value,
                        holder,
                        now + lease,
                        None,
                        1,
                        now,
                        now,
                    ),
                )
                entry = LedgerEntry(
                    key=key,
                    total_limit=total_limit,
                    hourly_limit=hourly_limit,
                    state=EntryState.PENDING,
                    fingerprint=fingerprint,
                    holder=holder,
                    lease_left=lease,
                    ended_ago=None if row is None or row[8] is None else max(0.0, now - row[8]),
                    attempts=1 if row is None else row[9] + 1,
                )
                return Begin(Decision.SEND, entry, identity)
            _, total, hourly, stored_fingerprint, state, _, held_by, lease_until, ended, _ = row
            if (int(total), int(hourly), stored_fingerprint) != (
                total_limit,
                hourly_limit,
                fingerprint,
            ):
                return Begin(Decision.MISMATCH, _entry(row, now), identity)
            if state == EntryState.CREATED:
                return Begin(Decision.DONE, _entry(row, now), identity)
            held = held_by is not None and lease_until is not None and lease_until > now
            if held and (held_by != holder or state == EntryState.PENDING):
                return Begin(Decision.BUSY, _entry(row, now), identity)
            if state == EntryState.PENDING:
                # Its holder's lease ran out: take its attempt as ended then.
                assert lease_until is not None
                ended = lease_until if ended is None else max(ended, lease_until)
            db.execute(
                "UPDATE entries SET state = ?, holder = ?, lease_until = ?, ended_at = ?, "
                "updated_at = ? WHERE account = ? AND key = ?",
                (EntryState.UNKNOWN.value, holder, now + lease, ended, now, account, key),
            )
            return Begin(Decision.RECONCILE, _entry(_select(db, account, key), now), identity)

        return await self._write(op, durable=True)

    async def renew(self, account: str, key: str, *, holder: str, lease: float) -> bool:
        def op(db: sqlite3.Connection, now: float) -> bool:
            cursor = db.execute(
                "UPDATE entries SET lease_until = ?, updated_at = ? "
                "WHERE account = ? AND key = ? AND holder = ? AND state IN (?, ?)",
                (now + lease, now, account, key, holder, EntryState.PENDING, EntryState.UNKNOWN),
            )
            return cursor.rowcount > 0

        return await self._write(op)

    async def expire(self, account: str, key: str, *, holder: str) -> bool:
        def op(db: sqlite3.Connection, now: float) -> bool:
            cursor = db.execute(
                "UPDATE entries SET state = ?, holder = NULL, lease_until = NULL, "
                "ended_at = max(coalesce(ended_at, 0), ?), updated_at = ? "
                "WHERE account = ? AND key = ? AND holder = ? AND state IN (?, ?)",
                (
                    EntryState.UNKNOWN,
                    now,
                    now,
                    account,
                    key,
                    holder,
                    EntryState.PENDING,
                    EntryState.UNKNOWN,
                ),
            )
            return cursor.rowcount > 0

        return await self._write(op)

    async def release(self, account: str, key: str, *, holder: str) -> None:
        def op(db: sqlite3.Connection, now: float) -> None:
            db.execute(
                "UPDATE entries SET holder = NULL, lease_until = NULL, updated_at = ? "
                "WHERE account = ? AND key = ? AND holder = ? AND state != ?",
                (now, account, key, holder, EntryState.PENDING),
            )

        await self._write(op)

    async def claim(self, account: str, key: str, user_name: str, *, known: bool = False) -> Claim:
        def op(db: sqlite3.Connection, now: float) -> Claim:
            # The key's state and user, and whether the user is taken (owned by a key, or
            # in the baseline unless ``known``), in one statement.
            row = db.execute(
                "SELECT state, user_name, "
                "EXISTS (SELECT 1 FROM entries WHERE account = ? AND user_name = ?) "
                "OR (NOT ? AND EXISTS "
                "(SELECT 1 FROM baseline WHERE account = ? AND user_name = ?)) "
                "FROM entries WHERE account = ? AND key = ?",
                (account, user_name, known, account, user_name, account, key),
            ).fetchone()
            if row is None:
                return Claim.NO_ENTRY
            state, owner, taken = row
            if state == EntryState.CREATED:
                return Claim.CLAIMED if owner == user_name else Claim.SETTLED
            if taken:
                if state == EntryState.PENDING:
                    db.execute(
                        "UPDATE entries SET state = ?, holder = NULL, lease_until = NULL, "
                        "ended_at = ?, updated_at = ? WHERE account = ? AND key = ?",
                        (EntryState.UNKNOWN, now, now, account, key),
                    )
                return Claim.TAKEN
            db.execute(
                "UPDATE entries SET state = ?, user_name = ?, holder = NULL, lease_until = NULL, "
                "ended_at = ?, updated_at = ? WHERE account = ? AND key = ?",
                (EntryState.CREATED, user_name, now, now, account, key),
            )
            return Claim.CLAIMED

        return await self._write(op)

    async def mark_unknown(self, account: str, key: str, *, holder: str) -> None:
        def op(db: sqlite3.Connection, now: float) -> None:
            db.execute(
                "UPDATE entries SET state = ?, ended_at = max(coalesce(ended_at, 0), ?), "
                "holder = CASE WHEN holder = ? THEN NULL ELSE holder END, "
                "lease_until = CASE WHEN holder = ? THEN NULL ELSE lease_until END, "
                "updated_at = ? WHERE account = ? AND key = ? AND state != ?",
                (EntryState.UNKNOWN, now, holder, holder, now, account, key, EntryState.CREATED),
            )

        await self._write(op)

    async def mark_failed(self, account: str, key: str, *, holder: str) -> None:
        def op(db: sqlite3.Connection, now: float) -> None:
            db.execute(
                "UPDATE entries SET state = ?, holder = NULL, lease_until = NULL, ended_at = ?, "
                "updated_at = ? WHERE account = ? AND key = ? AND holder = ? AND state IN (?, ?)",
                (
                    EntryState.FAILED,
                    now,
                    now,
                    account,
                    key,
                    holder,
                    EntryState.PENDING,
                    EntryState.UNKNOWN,
                ),
            )

        await self._write(op)

    async def resend(self, account: str, key: str, *, holder: str, lease: float) -> bool:
        def op(db: sqlite3.Connection, now: float) -> bool:
            cursor = db.execute(
                "UPDATE entries SET state = ?, lease_until = ?, attempts = attempts + 1, "
                "updated_at = ? WHERE account = ? AND key = ? AND holder = ? AND state = ?",
                (EntryState.PENDING, now + lease, now, account, key, holder, EntryState.UNKNOWN),
            )
            return cursor.rowcount > 0

        return await self._write(op, durable=True)

    async def owned(self, account: str, user_names: Collection[str]) -> set[str]:
        names = json.dumps(sorted(set(user_names)))

        def op(db: sqlite3.Connection, now: float) -> set[str]:
            rows = db.execute(
                "SELECT names.value FROM json_each(?) AS names WHERE EXISTS ("
                "SELECT 1 FROM entries WHERE account = ? AND user_name = names.value"
                ") OR EXISTS ("
                "SELECT 1 FROM baseline WHERE account = ? AND user_name = names.value)",
                (names, account, account),
            )
            return {name for (name,) in rows}

        return await self._read(op)

    async def get(self, account: str, key: str) -> LedgerEntry | None:
        def op(db: sqlite3.Connection, now: float) -> LedgerEntry | None:
            return _entry(_select(db, account, key), now)

        return await self._read(op)

    async def identity(self, account: str) -> str | None:
        def op(db: sqlite3.Connection, now: float) -> str | None:
            return _identity(db, account)

        return await self._read(op)

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()

    # -- plumbing ------------------------------------------------------------------

    async def _write(
        self, op: Callable[[sqlite3.Connection, float], T], *, durable: bool = False
    ) -> T:
        """Run ``op`` in a write transaction, committed with the writes queued meanwhile.

        ``durable``: the write records an intent to send (or a baseline), and its commit is
        synced to disk before this returns (see the module docstring).

        Writes of one event loop queue up while a batch is in the worker thread; the task
        that finds no batch running lets the tasks ready to run queue theirs (`_gather`),
        then carries every queued write to the thread in one transaction (group commit:
        one trip to the thread and one sync to disk for the batch), then wakes their
        tasks. Like a plain thread call, no caller returns (nor is cancelled) before its
        write is committed or has failed.
        """
        slot: _Slot[T] = _Slot(op, durable)
        loop = anyio.lowlevel.current_token().native_token
        queue = self._queues.get(id(loop))
        if queue is None or queue.loop is not loop:
            queue = self._queues[id(loop)] = _LoopQueue(loop)
        queue.slots.append(slot)
        if queue.flushing:
            await _committed(slot)
        else:
            # Shielded; but a native asyncio cancellation (``task.cancel()``, as in
            # ``asyncio.wait_for``) goes through anyio's shield: one that comes meanwhile
            # is raised once no write is left queued (see `_carry`).
            interrupted: BaseException | None = None
            with anyio.CancelScope(shield=True):
                queue.flushing = True
                try:
                    while queue.slots:
                        interrupted = await _gather(queue) or interrupted
                        batch, queue.slots = queue.slots, []
                        interrupted = await self._carry(batch) or interrupted
                        for done in batch:
                            done.event.set()
                finally:
                    queue.flushing = False
                    if not queue.slots:  # idle: forget it (and its loop)
                        self._queues.pop(id(loop), None)
            if interrupted is not None:
                raise interrupted
        if isinstance(slot.error, sqlite3.Error):
            raise self._failed(slot.error) from slot.error
        return slot.outcome()

    async def _read(self, op: Callable[[sqlite3.Connection, float], T]) -> T:
        return await anyio.to_thread.run_sync(functools.partial(self._transaction, op, False))

    def _transaction(self, op: Callable[[sqlite3.Connection, float], T], write: bool) -> T:
        try:
            db = self._connection()
            self._when_not_busy(lambda: db.execute("BEGIN IMMEDIATE" if write else "BEGIN"))
            try:
                result = op(db, time.time())
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        return result

    async def _carry(self, batch: list[_Slot[Any]]) -> BaseException | None:
        """Run ``batch`` in a worker thread; return an interruption that came meanwhile.

        A native asyncio cancellation goes through the flusher's shield: the thread call
        it interrupts may still run the batch, or never (a call cancelled before a
        worker picked it up is dropped). Either way the batch is run once, and done
        before this returns: its writers are woken by nobody else.
        """
        trip = _Trip(batch)
        interrupted: BaseException | None = None
        while not trip.finished.is_set():
            try:
                if trip.claimed:  # running in a thread: wait for it there
                    await anyio.to_thread.run_sync(trip.finished.wait)
                else:
                    await anyio.to_thread.run_sync(self._run_trip, trip)
            except (anyio.get_cancelled_exc_class(), KeyboardInterrupt) as exc:
                interrupted = exc
        return interrupted

    def _run_trip(self, trip: _Trip) -> None:
        """`_run_batch` for ``trip``, unless another thread call took it first."""
        with trip.lock:
            if trip.claimed:
                return
            trip.claimed = True
        try:
            self._run_batch(trip.slots)
        finally:
            trip.finished.set()

    def _run_batch(self, batch: list[_Slot[Any]]) -> None:
        """Run ``batch`` in one transaction; if an operation fails, each in its own.

        A failure of the transaction itself (the file locked past the busy timeout, say)
        is every operation's: each run alone would meet it again, after a wait of its
        own, and the last caller would wait the timeout once per write of the batch.
        """
        try:
            try:
                self._run_together(batch)
            except _OpFailed as failed:
                if len(batch) == 1:
                    batch[0].error = failed.error
                    return
                for i, slot in enumerate(batch):  # rolled back: isolate the failure
                    try:
                        self._run_together([slot])
                    except _OpFailed as exc:
                        slot.error = exc.error
                    except Exception as exc:  # the transaction's: the rest's too
                        for rest in batch[i:]:
                            rest.error = exc
                        break
        except BaseException as exc:
            for slot in batch:
                slot.error = exc
        finally:
            for slot in batch:
                slot.done = True

    def _run_together(self, batch: list[_Slot[Any]]) -> None:
        """Run ``batch`` in one transaction: `_OpFailed` if an operation raised."""
        db = self._connection()
        durable = self._synchronous and any(slot.durable for slot in batch)
        db.execute(_SYNC_FULL if durable else _SYNC_NORMAL)  # for the next commit
        self._when_not_busy(lambda: db.execute("BEGIN IMMEDIATE"))
        try:
            for slot in batch:
                try:
                    slot.value = slot.op(db, time.time())
                except Exception as exc:
                    raise _OpFailed(exc) from None
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _when_not_busy(self, step: Callable[[], object]) -> None:
        """Run ``step``, which changes nothing if it fails, until the database lets it.

        SQLite answers "database is locked" at once, without its busy handler, in a few
        cases (another process converting the file to WAL, or recovering it): such a
        step is tried again until the busy timeout has passed.
        """
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.005
        while True:
            try:
                step()
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
            else:
                return

    def _failed(self, error: sqlite3.Error) -> LedgerError:
        """The `LedgerError` for an error of SQLite's, naming the file."""
        if isinstance(error, sqlite3.DatabaseError) and not isinstance(
            error, sqlite3.OperationalError
        ):
            return LedgerError(
                f"the ledger {self.path} is damaged ({error}); it was left as it is: move it "
                "aside and see docs/idempotency.md on recovering from a lost ledger"
            )
        return LedgerError(f"the ledger {self.path} failed: {error}")

    def _connection(self) -> sqlite3.Connection:
        ident = (os.getpid(), threading.get_ident())
        with self._lock:
            if self._closed:
                raise RuntimeError("this SqliteLedger is closed")
            connection = self._connections.get(ident)
        if connection is None:
            # A thread new to the ledger: look before connecting, which would make a deleted
            # file anew (and it would then read as replaced).
            self._check_file()
            connection = self._connect()
            with self._lock:
                self._connections[ident] = connection
        self._check_file()
        return connection

    def _check_file(self) -> None:
        """Raise `LedgerLostError` if the file is no longer the one first opened."""
        try:
            info = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):  # a directory on the way is gone too
            info = None
        except OSError as exc:
            raise LedgerError(f"cannot check the ledger {self.path}: {exc.strerror}") from None
        found = None if info is None else (info.st_dev, info.st_ino)
        with self._lock:
            if self._file_id is None and found is not None:
                self._file_id = found
                return
            if found == self._file_id:
                return
        what = "deleted" if found is None else "replaced by another file"
        raise LedgerLostError(
            f"the ledger {self.path} was {what} while in use; nothing more is created "
            "through it (see docs/idempotency.md on recovering from a lost ledger)"
        )

    def _connect(self) -> sqlite3.Connection:
        seen = self._file_id is not None
        if not seen and not os.path.exists(self.path):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            except OSError as exc:
                raise LedgerError(f"cannot create the ledger {self.path}: {exc.strerror}") from None
            os.close(fd)
        # Once the file was seen, it is opened, never created: one deleted meanwhile is lost.
        target = f"{pathlib.Path(self.path).as_uri()}?mode=rw" if seen else self.path
        try:
            connection = sqlite3.connect(
                target,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=seen,
            )
        except sqlite3.OperationalError:
            self._check_file()  # gone: LedgerLostError
            raise
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            self._when_not_busy(lambda: connection.execute("PRAGMA journal_mode = WAL"))
            self._when_not_busy(lambda: connection.executescript(_SCHEMA))
            self._when_not_busy(lambda: _migrate(connection))
        except BaseException:
            connection.close()
            raise
        return connection


async def _committed(slot: _Slot[Any]) -> None:
    """Wait for ``slot``'s batch to be done; a cancellation meanwhile is raised after it.

    (Cheaper than a shielded scope around every wait: that costs each write a few µs.)
    """
    try:
        await slot.event.wait()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await slot.event.wait()
        raise


async def _gather(queue: _LoopQueue) -> BaseException | None:
    """Let the tasks ready to run queue their writes before a batch leaves.

    Tasks woken together (by the batch before, or by answers that came in together) write
    one after another: without this, the first would commit alone and the rest after it,
    two trips to the disk where one does. It waits a turn of the event loop, and more
    while each brings writes; no longer, or the creates' answers coming in meanwhile add
    their claims to a batch of intents (every batch that holds an intent is synced).
    trio may run this task before the others it woke with it: its first turn is blind.
    Returns what interrupted it, if anything did (see `_carry`).
    """
    queued = len(queue.slots)
    for turn in range(_GATHER_TURNS):
        try:
            await anyio.lowlevel.checkpoint()  # shielded: a native cancellation, or Ctrl-C
        except (anyio.get_cancelled_exc_class(), KeyboardInterrupt) as exc:
            return exc
        if len(queue.slots) == queued and turn >= queue.blind_turns:
            return None
        queued = len(queue.slots)
    return None


class _Trip:
    """A batch on its way to a worker thread, run by the first thread call to claim it."""

    __slots__ = ("claimed", "finished", "lock", "slots")

    def __init__(self, slots: list[_Slot[Any]]) -> None:
        self.slots = slots
        self.lock = threading.Lock()
        self.claimed = False
        self.finished = threading.Event()


class _OpFailed(Exception):
    """An operation of a batch raised ``error`` (the transaction itself did not fail)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class _Slot(Generic[T]):
    """One write operation waiting for, or done by, a group commit."""

    __slots__ = ("done", "durable", "error", "event", "op", "value")

    def __init__(self, op: Callable[[sqlite3.Connection, float], T], durable: bool) -> None:
        self.op = op
        #: Whether its commit must be synced to disk (an intent to send, a baseline).
        self.durable = durable
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None
        self.event = anyio.Event()

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # set when no error


class _LoopQueue:
    """The writes one event loop has queued, and whether a batch of them is running."""

    __slots__ = ("blind_turns", "flushing", "loop", "slots")

    def __init__(self, loop: object) -> None:
        self.loop = loop
        self.slots: list[_Slot[Any]] = []
        self.flushing = False
        #: Turns `_gather` waits whatever they bring: asyncio runs the tasks a batch woke
        #: before the one that yields after them; trio's order within a turn is random.
        self.blind_turns = 0 if isinstance(loop, asyncio.AbstractEventLoop) else 1


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a file made by an earlier version up to this schema (accounts' identities)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(accounts)")}
    if "identity" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(accounts)")}
        if "identity" not in columns:  # another process may have migrated it meanwhile
            db.execute("ALTER TABLE accounts ADD COLUMN identity TEXT")
            db.execute("UPDATE accounts SET identity = lower(hex(randomblob(8)))")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _identity(db: sqlite3.Connection, account: str) -> str | None:
    row = db.execute("SELECT identity FROM accounts WHERE account = ?", (account,)).fetchone()
    return None if row is None else str(row[0])


def _select_with_identity(
    db: sqlite3.Connection, account: str, key: str
) -> tuple[_Row | None, str | None]:
    """The entry for ``key`` (if any) and the account's identity, in one statement."""
    found = db.execute(
        f"SELECT (SELECT identity FROM accounts WHERE account = ?), {_COLUMNS} "  # noqa: S608
        "FROM (SELECT 1) LEFT JOIN entries ON account = ? AND key = ?",
        (account, account, key),
    ).fetchone()
    identity = None if found[0] is None else str(found[0])
    row: _Row | None = None if found[1] is None else found[1:]
    return row, identity


def _select(db: sqlite3.Connection, account: str, key: str) -> _Row | None:
    row: _Row | None = db.execute(
        f"SELECT {_COLUMNS} FROM entries WHERE account = ? AND key = ?",  # noqa: S608 - constant
        (account, key),
    ).fetchone()
    return row


def _entry(row: _Row | None, now: float) -> LedgerEntry | None:
    if row is None:
        return None
    key, total, hourly, fingerprint, state, user, holder, lease_until, ended, attempts = row
    return LedgerEntry(
        key=key,
        total_limit=int(total),
        hourly_limit=int(hourly),
        state=EntryState(state),
        user_name=user,
        fingerprint=fingerprint,
        holder=holder,
        lease_left=None if holder is None or lease_until is None else lease_until - now,
        ended_ago=None if ended is None else max(0.0, now - ended),
        attempts=attempts,
    )
