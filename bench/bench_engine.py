"""The exactly-once engine against an earlier tree: keyed creates and provisioning, interleaved.

::

    python bench/bench_engine.py --before 20eeffd --specs 2000 --rounds 6

Checks ``--before`` out into a temporary git worktree, then runs each shape once per round
with each tree, in a fresh interpreter each time (``PYTHONPATH`` picks the tree), against
one emulator in its own process (no rate limit, no faults, 10 calls in flight); which tree
goes first alternates between rounds. Shapes:

- ``keyed``: ``create(idempotency_key=...)`` from 10 tasks, a SQLite ledger;
- ``provision``: ``provision()`` without a ledger (one in memory for the run);
- ``provision-sqlite``: ``provision()`` with a SQLite ledger file;
- ``provision-redis``: ``provision()`` with the ledger on a local ``redis-server`` (AOF on),
  when one is on the ``PATH``.

Prints, per shape and tree, the median creates a second with the min-max over rounds and
the client CPU per create, and the ratio of the medians (after / before) with the spread
of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONCURRENCY = 10
SHAPES = ("keyed", "provision", "provision-sqlite", "provision-redis")


def _specs(count: int) -> list[dict[str, int]]:
    return [{"total_limit": 100 + i % 7, "hourly_limit": 10 + i % 3} for i in range(count)]


async def _worker(shape: str, url: str, count: int, ledger: str | None) -> dict[str, float]:
    """One shape, in this interpreter (whichever tree it imports); creates a second, CPU."""
    from sarv_async import AsyncSarvClient
    from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN

    async with AsyncSarvClient(
        DEMO_OWNER_ID,
        DEMO_TOKEN,
        base_url=url,
        rate_limit=None,
        max_concurrency=CONCURRENCY,
        ledger=ledger,
        settle_delay=0,
    ) as client:
        cpu, started = time.process_time(), time.perf_counter()
        if shape == "keyed":
            keys = iter(range(count))

            async def worker() -> None:
                for key in keys:
                    await client.smtp_users.create(
                        total_limit=100, hourly_limit=10, idempotency_key=f"k{key}"
                    )

            async with anyio.create_task_group() as tg:
                for _ in range(CONCURRENCY):
                    tg.start_soon(worker)
        else:
            async with client.smtp_users.provision(_specs(count)) as run:
                summary = await run.complete()
            assert summary.created == count, summary
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"rate": count / elapsed, "cpu_us": cpu / count * 1e6}


@contextmanager
def _before_tree(ref: str) -> Iterator[Path]:
    """``ref`` checked out in a temporary worktree."""
    where = Path(tempfile.mkdtemp(prefix="sarv-before-")) / "tree"
    git = shutil.which("git") or "git"
    worktree = [git, "-C", str(ROOT), "worktree"]
    subprocess.run([*worktree, "add", "-q", "--detach", str(where), ref], check=True)  # noqa: S603 - our own git
    try:
        yield where
    finally:
        subprocess.run([*worktree, "remove", "--force", str(where)], check=False)  # noqa: S603 - our own git


def _run(tree: Path, shape: str, url: str, count: int, ledger: str | None) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [sys.executable, str(HERE / "bench_engine.py"), "--worker", shape, "--url", url,
            "--specs", str(count)] + (["--ledger", ledger] if ledger else [])  # fmt: skip
    # This script again, as a worker: fixed arguments, run by this interpreter.
    out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout  # noqa: S603
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def _ledger_for(shape: str, directory: str, redis: str | None, tree: str, n: int) -> str | None:
    if shape in ("keyed", "provision-sqlite"):
        return os.path.join(directory, f"{tree}-{n}.sqlite3")
    if shape == "provision-redis":
        return redis  # flushed before each run
    return None


def main() -> None:
    """Parse options, run the interleaved rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="HEAD~1", help="the tree to compare with")
    parser.add_argument("--specs", type=int, default=2000, help="N (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=6, help="default: %(default)s")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="default: all")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ledger", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(anyio.run(_worker, args.worker, args.url, args.specs, args.ledger)))
        return

    # The emulator in its own process, as a server is; a persistent redis-server.
    from bench_ledger import emulator, flush, redis_server, reset

    shapes = args.shapes.split(",")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with (
        _before_tree(args.before) as before,
        tempfile.TemporaryDirectory(prefix="sarv-bench-redis-") as redis_dir,
        redis_server(redis_dir) as redis,
        emulator() as url,
    ):
        if redis is None:
            shapes = [shape for shape in shapes if shape != "provision-redis"]
        trees = {"before": before, "after": ROOT}
        directory = tempfile.mkdtemp(prefix="sarv-bench-engine-")
        run = 0
        for round_ in range(args.rounds):
            order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
            for shape in shapes:
                for name in order:
                    run += 1
                    reset(url)
                    if redis is not None:
                        flush(redis)
                    ledger = _ledger_for(shape, directory, redis, name, run)
                    figures = _run(trees[name], shape, url, args.specs, ledger)
                    results.setdefault((shape, name), []).append(figures)
        shutil.rmtree(directory, ignore_errors=True)

    print(f"{args.specs} creates x {args.rounds} rounds, before = {args.before}")
    print("| shape | before | after | after / before |")
    print("|---|---|---|---|")
    for shape in shapes:
        cells: list[str] = []
        for name in ("before", "after"):
            rates = [r["rate"] for r in results[(shape, name)]]
            cpu = statistics.median(r["cpu_us"] for r in results[(shape, name)])
            cells.append(
                f"{statistics.median(rates):.0f} /s ({min(rates):.0f}-{max(rates):.0f}), "
                f"{cpu:.0f} µs"
            )
        pairs = zip(results[(shape, "after")], results[(shape, "before")], strict=True)
        ratios = [a["rate"] / b["rate"] for a, b in pairs]
        medians = [
            statistics.median(r["rate"] for r in results[(shape, name)])
            for name in ("after", "before")
        ]
        ratio = medians[0] / medians[1]
        cells.append(f"{ratio:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
        print(f"| {shape} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
