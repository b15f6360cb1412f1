"""What `SqliteLedger` promises beyond the contract: its file, its threads and loops."""

from __future__ import annotations

import stat
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from sarv_async import LedgerError, SqliteLedger
from sarv_async._ledger import Decision, account_id

ACCOUNT = account_id("https://api.example.com/v1.0/", "acme")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
@pytest.mark.anyio
async def test_the_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    """The ledger file is created with mode 0600 and runs in WAL mode."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    try:
        await ledger.record_baseline(ACCOUNT, [])
    finally:
        await ledger.aclose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes()[18:20] == b"\x02\x02"  # file format versions 2: WAL


@pytest.mark.anyio
async def test_a_missing_directory_is_a_ledger_error(tmp_path: Path) -> None:
    """A ledger that cannot be created raises LedgerError naming its path."""
    ledger = SqliteLedger(tmp_path / "missing" / "ledger.sqlite3")
    with pytest.raises(LedgerError, match="missing"):
        await ledger.record_baseline(ACCOUNT, [])
    await ledger.aclose()


def test_one_handle_serves_two_event_loops_at_once(tmp_path: Path) -> None:
    """Threads running their own event loops share one handle: each key is sent once."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    anyio.run(ledger.record_baseline, ACCOUNT, [])
    sends: list[str] = []

    def loop(name: str, backend: str) -> None:
        async def main() -> None:
            async def one(i: int) -> None:
                begun = await ledger.begin(
                    ACCOUNT, f"k{i}", total_limit=1, hourly_limit=1, holder=name, lease=60
                )
                if begun.decision is Decision.SEND:
                    sends.append(f"k{i}")

            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(one, i)

        anyio.run(main, backend=backend)

    threads = [
        threading.Thread(target=loop, args=("a", "asyncio")),
        threading.Thread(target=loop, args=("b", "trio")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    anyio.run(ledger.aclose)
    assert sorted(sends) == sorted(f"k{i}" for i in range(40))


@pytest.mark.anyio
async def test_a_failing_write_spoils_no_other_in_its_batch(tmp_path: Path) -> None:
    """Writes committed together: one that fails is undone alone; the others hold."""
    import sqlite3

    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    await ledger.record_baseline(ACCOUNT, [])
    decisions: list[Decision] = []

    def failing(db: sqlite3.Connection, now: float) -> None:
        db.execute("INSERT INTO accounts (account, baseline_at) VALUES ('half-done', 1)")
        raise ValueError("boom")

    async def begin(i: int) -> None:
        begun = await ledger.begin(
            ACCOUNT, f"k{i}", total_limit=1, hourly_limit=1, holder="h", lease=60
        )
        decisions.append(begun.decision)

    async def fail() -> None:
        with pytest.raises(ValueError, match="boom"):
            await ledger._write(failing)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(begin, i)
            tg.start_soon(fail)
            for i in range(10, 20):
                tg.start_soon(begin, i)
        assert decisions == [Decision.SEND] * 20
        # The failing write's own change was undone: that account has no baseline.
        assert await ledger.record_baseline("half-done", [])
    finally:
        await ledger.aclose()


@pytest.mark.anyio
async def test_writes_ready_together_are_committed_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks that become ready together share one commit (one trip to the disk), whoever
    of them writes first: ten creates begun at once, then claimed at once, cost two."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    await ledger.record_baseline(ACCOUNT, [])
    batches: list[int] = []
    run_batch = ledger._run_batch

    def counted(batch: list[Any]) -> None:
        batches.append(len(batch))
        run_batch(batch)

    monkeypatch.setattr(ledger, "_run_batch", counted)

    async def create(i: int) -> None:
        await ledger.begin(ACCOUNT, f"k{i}", total_limit=1, hourly_limit=1, holder="h", lease=60)
        await ledger.claim(ACCOUNT, f"k{i}", f"user{i}")

    try:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(create, i)
        assert batches == [10, 10]
        assert (await ledger.get(ACCOUNT, "k9")).user_name == "user9"  # type: ignore[union-attr]
    finally:
        await ledger.aclose()


@pytest.mark.anyio
async def test_only_a_commit_that_records_an_intent_waits_for_the_disk(tmp_path: Path) -> None:
    """An intent to send (``begin``, ``resend``) is synced before its create may leave;
    what is recorded after a create (a claim, a failure) rides on the next synced
    commit: a power cut that loses it leaves a key the next run settles from a list."""
    import sqlite3

    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    await ledger.record_baseline(ACCOUNT, [])

    def mode(db: sqlite3.Connection, now: float) -> int:
        return int(db.execute("PRAGMA synchronous").fetchone()[0])  # 2 FULL, 1 NORMAL

    async def batched_with(step: Any) -> int:
        """The sync mode of the commit that carries ``step``."""
        found: list[int] = []

        async def probe() -> None:
            found.append(await ledger._write(mode))

        async with anyio.create_task_group() as tg:
            tg.start_soon(step)
            tg.start_soon(probe)
        return found[0]

    async def begin() -> None:
        await ledger.begin(ACCOUNT, "k", total_limit=1, hourly_limit=1, holder="h", lease=60)

    async def claim() -> None:
        await ledger.claim(ACCOUNT, "k", "user")

    try:
        assert await batched_with(begin) == 2
        assert await batched_with(claim) == 1
        assert await ledger._write(mode) == 1
    finally:
        await ledger.aclose()
    relaxed = SqliteLedger(tmp_path / "relaxed.sqlite3", synchronous=False)
    try:
        await relaxed.record_baseline(ACCOUNT, [])
        ledger = relaxed
        assert await batched_with(begin) == 1  # synchronous=False: never waits
    finally:
        await relaxed.aclose()


@pytest.mark.anyio
async def test_a_cancelled_writer_leaves_only_once_its_write_is_committed(
    tmp_path: Path,
) -> None:
    """Cancelling callers whose writes are queued behind a batch in the thread lets them
    leave (returning or cancelled) only once their writes are committed: a caller never
    leaves a write of its own behind it, still to run."""
    import sqlite3

    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    await ledger.record_baseline(ACCOUNT, [])
    in_thread = threading.Event()
    release = threading.Event()
    committed: list[int] = []
    seen_on_leaving: list[int] = []

    def slow(db: sqlite3.Connection, now: float) -> None:
        in_thread.set()
        release.wait(10)

    def counted(db: sqlite3.Connection, now: float) -> None:
        committed.append(1)

    async def writer() -> None:
        try:
            await ledger._write(counted)
        finally:
            seen_on_leaving.append(len(committed))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ledger._write, slow)  # its batch holds the thread
            await anyio.to_thread.run_sync(in_thread.wait, 10)
            for _ in range(5):
                tg.start_soon(writer)  # queued behind it
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
            release.set()
        assert seen_on_leaving == [5] * 5
    finally:
        release.set()
        await ledger.aclose()


@pytest.mark.anyio
async def test_a_file_busy_past_the_timeout_fails_a_batch_after_one_wait(
    tmp_path: Path,
) -> None:
    """Writes committed together that find the file locked by another process fail once
    the busy timeout has passed, all of them: the batch is not run again write by
    write, each waiting out the timeout anew (a batch of a hundred would wait a hundred
    times as long as the timeout says)."""
    import sqlite3

    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path, busy_timeout=0.25)
    await ledger.record_baseline(ACCOUNT, [])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    waited: list[float] = []

    async def renew(i: int) -> None:
        started = anyio.current_time()
        with pytest.raises(LedgerError, match="locked"):
            await ledger.renew(ACCOUNT, f"k{i}", holder="h", lease=60)
        waited.append(anyio.current_time() - started)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(renew, i)
        assert len(waited) == 10
        assert max(waited) < 1.25  # once the timeout (and slack), not eleven times
    finally:
        other.execute("ROLLBACK")
        other.close()
        await ledger.aclose()


def test_a_native_asyncio_cancellation_of_the_flusher_strands_no_write(tmp_path: Path) -> None:
    """On asyncio, ``task.cancel()`` (``asyncio.wait_for``, ``asyncio.timeout``, Ctrl-C
    under ``asyncio.run``) goes through anyio's shielded scopes. Cancelled so while its
    batch is in the thread, the task carrying the batch still leaves only once its write
    is committed, and the writes queued behind it are committed and their tasks woken
    (they used to wait for ever, their writes never run)."""
    import asyncio
    import sqlite3

    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    in_thread = threading.Event()
    release = threading.Event()
    committed: list[str] = []
    outcomes: dict[str, str] = {}

    def slow(db: sqlite3.Connection, now: float) -> None:
        in_thread.set()
        release.wait(10)
        committed.append("flusher")

    def counted(name: str) -> Any:
        def op(db: sqlite3.Connection, now: float) -> None:
            committed.append(name)

        return op

    async def main() -> None:
        await ledger.record_baseline(ACCOUNT, [])

        async def write(name: str, op: Any) -> None:
            try:
                await ledger._write(op)
            except asyncio.CancelledError:
                outcomes[name] = f"cancelled after {len(committed)}"
                raise
            outcomes[name] = f"returned after {len(committed)}"

        flusher = asyncio.ensure_future(write("flusher", slow))
        await asyncio.to_thread(in_thread.wait, 10)
        queued = [asyncio.ensure_future(write(f"w{i}", counted(f"w{i}"))) for i in range(3)]
        await asyncio.sleep(0.01)  # they queue behind the batch in the thread
        flusher.cancel()  # natively, as asyncio.wait_for does
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.wait([flusher, *queued], timeout=5)
        await ledger.aclose()

    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    runner.join(15)
    release.set()
    assert not runner.is_alive(), f"writers stranded: {outcomes}, committed {committed}"
    assert sorted(committed) == ["flusher", "w0", "w1", "w2"]
    assert outcomes["flusher"].startswith("cancelled after")
    assert outcomes["flusher"] != "cancelled after 0"  # not before its write was committed
    assert {outcomes[f"w{i}"] for i in range(3)} == {"returned after 4"}
