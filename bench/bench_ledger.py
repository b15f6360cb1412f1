"""What the ledger costs: provisioning throughput with and without it, and its size on disk.

::

    python bench/bench_ledger.py --specs 5000 --rounds 5
    python bench/bench_ledger.py --size 100000

Throughput: N creates against the emulator (in its own process, as a server would be; no
rate limit, no faults),
with 10 calls in flight, in interleaved rounds of four shapes: the floor (raw httpx
posting ``addSmtp`` and ``json.loads``-ing the answers), plain concurrent ``create()``
calls of a client without a ledger, ``provision()`` without a ledger
(a `MemoryLedger` for the run), ``provision()`` with a `SqliteLedger` file (intents
synced to disk; a fresh file per round) and ``provision()`` with a `RedisLedger` on a
``redis-server`` the bench starts on a free loopback port (append-only file, fsync every
second: the persistence the ledger insists on; emptied before each round; left out,
with a note, when no ``redis-server`` is on the PATH or ``sarv-async[redis]`` is not
installed). Prints the median and the spread of creates a second,
the client process's CPU time per create (all its threads), and the ratios of the medians
(issue 17's targets: provisioning without a ledger at least 0.95x of plain creates, with
a SQLite ledger at least 0.85x, with a Redis ledger at least 0.8x) with the spread of the
per-round ratios, and the same ratios by CPU time per create. Each ledger has a floor
shape beside it: plain creates, each between two one-row writes made as the SQLite
ledger makes its writes (the first synced, as an intent is), or two no-op Lua calls made
as the Redis ledger makes them.

Size: the ledger file after ``--size`` creates recorded through the ledger's own
operations (one begin and one claim per create, keys like the CLI's), per 100,000.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx

from sarv_async import AsyncSarvClient, SqliteLedger
from sarv_async._ledger import account_id
from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN

CONCURRENCY = 10


def _specs(count: int) -> list[dict[str, int]]:
    return [{"total_limit": 100 + i % 7, "hourly_limit": 10 + i % 3} for i in range(count)]


@contextmanager
def emulator() -> Iterator[str]:
    """``sarv-async emulator`` in its own process; its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sarv_async", "emulator", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = ""
        while "Ctrl+C" not in banner:
            line = proc.stdout.readline()
            assert line, "the emulator did not start"
            banner += line
        match = re.search(r"(http://\S+/v1\.0/)", banner)
        assert match, banner
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def redis_server(directory: str) -> Iterator[str | None]:
    """A persistent ``redis-server`` on a free loopback port; its URL (None: not installed)."""
    binary = shutil.which("redis-server")
    try:
        import coredis  # noqa: F401  (the Redis ledger's client: sarv-async[redis])
    except ImportError:
        binary = None
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(  # noqa: S603 - the redis-server found on the PATH
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            directory,
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def flush(redis_url: str) -> None:
    """Empty Redis (a fresh ledger for the round)."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
        assert sock.recv(64).startswith(b"+OK"), "FLUSHALL failed"


def reset(url: str) -> None:
    httpx.post(url.removesuffix("v1.0/") + "_emulator/reset")


async def floor(base_url: str, count: int) -> float:
    """Raw httpx: ``count`` addSmtp posts, 10 at a time, answers read with json.loads."""
    url = base_url + "settings/addSmtp"
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    specs = iter(_specs(count))
    async with httpx.AsyncClient(limits=limits) as http:

        async def worker() -> None:
            for spec in specs:
                body = {"owner_id": DEMO_OWNER_ID, "token": DEMO_TOKEN, **spec}
                response = await http.post(url, content=json.dumps(body))
                json.loads(response.content)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(worker)
        return time.perf_counter() - started


async def creates(url: str, count: int) -> float:
    """Plain concurrent ``create()`` calls, 10 at a time, on a client without a ledger."""
    specs = iter(_specs(count))
    async with AsyncSarvClient(
        DEMO_OWNER_ID, DEMO_TOKEN, base_url=url, rate_limit=None, max_concurrency=CONCURRENCY
    ) as client:

        async def worker() -> None:
            for spec in specs:
                await client.smtp_users.create(
                    total_limit=spec["total_limit"], hourly_limit=spec["hourly_limit"]
                )

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(worker)
        return time.perf_counter() - started


async def creates_with_redis_calls(url: str, count: int, redis_url: str) -> float:
    """The Redis ledger's floor: plain creates, each between two calls of a Lua script
    that does nothing, made the way the ledger makes its calls (one kept connection,
    scripts called by digest: ``_redis_scripts.KeptScripts``): the least a ledger costs
    that records each create in Redis before sending it and after its answer, one call
    per step."""
    from sarv_async._redis import bounded_client
    from sarv_async._redis_scripts import KeptScripts

    specs = iter(_specs(count))
    redis = bounded_client(redis_url, 10.0)
    async with (
        redis,
        AsyncSarvClient(
            DEMO_OWNER_ID, DEMO_TOKEN, base_url=url, rate_limit=None, max_concurrency=CONCURRENCY
        ) as client,
    ):
        scripts = KeptScripts(redis, {"nothing": "return 1"})

        async def worker() -> None:
            for spec in specs:
                await scripts.call("nothing", ["bench:{floor}:a"], ["{}"])
                await client.smtp_users.create(
                    total_limit=spec["total_limit"], hourly_limit=spec["hourly_limit"]
                )
                await scripts.call("nothing", ["bench:{floor}:a"], ["{}"])

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(worker)
        return time.perf_counter() - started


INSERT_ROW = "INSERT INTO floor (at, k) VALUES (?, ?)"
UPDATE_ROW = "UPDATE floor SET at = ? WHERE k = ?"


def _floor_write(statement: str, row: int, db: sqlite3.Connection, now: float) -> None:
    db.execute(statement, (now, row))


async def creates_with_sqlite_writes(url: str, count: int, path: str) -> float:
    """The SQLite ledger's floor: plain creates, each between two one-row writes made as
    the ledger makes its writes (a worker thread, writes queued meanwhile committed
    together, WAL: ``SqliteLedger._write``), the first synced to disk before the create
    leaves, as an intent is: the least a ledger costs that durably records each create
    on this host before sending it, and its outcome after its answer."""
    ledger = SqliteLedger(path)

    def table(db: sqlite3.Connection, now: float) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS floor (k INTEGER PRIMARY KEY, at REAL)")

    await ledger._write(table)
    specs = iter(enumerate(_specs(count)))
    async with AsyncSarvClient(
        DEMO_OWNER_ID, DEMO_TOKEN, base_url=url, rate_limit=None, max_concurrency=CONCURRENCY
    ) as client:

        async def worker() -> None:
            for i, spec in specs:
                await ledger._write(functools.partial(_floor_write, INSERT_ROW, i), durable=True)
                await client.smtp_users.create(
                    total_limit=spec["total_limit"], hourly_limit=spec["hourly_limit"]
                )
                await ledger._write(functools.partial(_floor_write, UPDATE_ROW, i))

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(worker)
        elapsed = time.perf_counter() - started
    await ledger.aclose()
    return elapsed


async def provision(url: str, count: int, ledger: str | None) -> float:
    """``provision()`` of ``count`` specs, with the ledger at ``ledger`` (a path or a Redis
    URL) or none."""
    async with AsyncSarvClient(
        DEMO_OWNER_ID,
        DEMO_TOKEN,
        base_url=url,
        rate_limit=None,
        max_concurrency=CONCURRENCY,
        ledger=ledger,
        settle_delay=0,
    ) as client:
        started = time.perf_counter()
        async with client.smtp_users.provision(_specs(count)) as run:
            summary = await run.complete()
        elapsed = time.perf_counter() - started
    assert summary.created == count, summary
    return elapsed


async def throughput(count: int, rounds: int) -> None:
    shapes = [
        "floor",
        "creates",
        "no ledger",
        "sqlite ledger",
        "creates+2 sqlite",
        "redis ledger",
        "creates+2 redis",
    ]
    with tempfile.TemporaryDirectory() as tmp, emulator() as url, redis_server(tmp) as redis:
        if redis is None:
            print("(no redis-server on the PATH or no sarv-async[redis]: no Redis shape)")
            shapes.remove("redis ledger")
            shapes.remove("creates+2 redis")
        rates: dict[str, list[float]] = {shape: [] for shape in shapes}
        cpu: dict[str, list[float]] = {shape: [] for shape in shapes}
        await floor(url, 200)  # warm up
        for round_ in range(rounds):
            # Interleaved: every shape once per round, in an order rotated each round.
            for shape in shapes[round_ % len(shapes) :] + shapes[: round_ % len(shapes)]:
                reset(url)
                if redis is not None:
                    flush(redis)
                used = time.process_time()
                if shape == "floor":
                    elapsed = await floor(url, count)
                elif shape == "creates":
                    elapsed = await creates(url, count)
                elif shape == "no ledger":
                    elapsed = await provision(url, count, None)
                elif shape == "sqlite ledger":
                    path = os.path.join(tmp, f"ledger-{round_}.sqlite3")
                    elapsed = await provision(url, count, path)
                elif shape == "creates+2 sqlite":
                    path = os.path.join(tmp, f"floor-{round_}.sqlite3")
                    elapsed = await creates_with_sqlite_writes(url, count, path)
                elif shape == "redis ledger":
                    assert redis is not None
                    elapsed = await provision(url, count, redis)
                else:
                    assert redis is not None
                    elapsed = await creates_with_redis_calls(url, count, redis)
                rates[shape].append(count / elapsed)
                cpu[shape].append((time.process_time() - used) / count * 1e6)
    print(f"{count} creates per round, {rounds} interleaved rounds, {CONCURRENCY} in flight")
    for shape, values in rates.items():
        print(
            f"  {shape:15} median {statistics.median(values):7.1f} creates/s  "
            f"spread {min(values):7.1f}-{max(values):7.1f}  "
            f"client CPU {statistics.median(cpu[shape]):5.0f} us/create"
        )

    def ratio(shape: str, base: str) -> str:
        per_round = [a / b for a, b in zip(rates[shape], rates[base], strict=True)]
        medians = statistics.median(rates[shape]) / statistics.median(rates[base])
        # By CPU time, which other work on the machine disturbs least: creates a CPU
        # second, as a ratio (the client's CPU is what bounds these rates).
        by_cpu = statistics.median(cpu[base]) / statistics.median(cpu[shape])
        return (
            f"{medians:.2f}x (per round {min(per_round):.2f}-{max(per_round):.2f}; "
            f"by CPU {by_cpu:.2f}x)"
        )

    print(f"  no ledger / creates:       {ratio('no ledger', 'creates')} (target >= 0.95x)")
    print(f"  sqlite ledger / creates:   {ratio('sqlite ledger', 'creates')} (target >= 0.85x)")
    print(f"  its floor / creates:       {ratio('creates+2 sqlite', 'creates')}")
    print(f"  sqlite ledger / its floor: {ratio('sqlite ledger', 'creates+2 sqlite')}")
    if "redis ledger" in rates:
        print(f"  redis ledger / creates:    {ratio('redis ledger', 'creates')} (target >= 0.8x)")
        print(f"  its floor / creates:       {ratio('creates+2 redis', 'creates')}")
        print(f"  redis ledger / its floor:  {ratio('redis ledger', 'creates+2 redis')}")
    print(f"  sqlite ledger / no ledger: {ratio('sqlite ledger', 'no ledger')}")


def _sizes(directory: str) -> dict[str, int]:
    return {name: os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)}


async def size(count: int) -> None:
    account = account_id("https://api.example.com/v1.0/", "owner-42")
    run_id = "file:" + "0" * 24
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ledger.sqlite3")
        ledger = SqliteLedger(path)
        await ledger.record_baseline(account, [])
        started = time.perf_counter()
        keys = iter(range(count))

        async def worker() -> None:
            for i in keys:
                key = f"{run_id}:{i}"
                await ledger.begin(
                    account,
                    key,
                    total_limit=100 + i % 7,
                    hourly_limit=10,
                    holder=f"host:4242:{i:016x}",
                    lease=30,
                    fingerprint="f" * 32,
                )
                await ledger.claim(account, key, f"smtp{10000 + i}")

        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(worker)
        elapsed = time.perf_counter() - started
        await ledger.aclose()
        files = _sizes(tmp)
    total = sum(files.values())
    print(f"{count} creates recorded in {elapsed:.1f} s ({2 * count / elapsed:.0f} ops/s)")
    print(f"  files: {files}")
    print(f"  ledger size per 100,000 creates: {total * 100_000 / count / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=5000, help="N (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--size", type=int, default=0, help="measure the size after N creates")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    if args.size:
        anyio.run(size, args.size, backend=args.backend)
    else:
        anyio.run(throughput, args.specs, args.rounds, backend=args.backend)


if __name__ == "__main__":
    main()
