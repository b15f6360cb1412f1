"""N processes, one account, one Redis: how much of the account's budget they use together.

    python bench/bench_shared_budget.py [--processes 1 2 4 8] [--rates 20/second "10/second;50/10s"]
        [--calls 100] [--rounds 3] [--acquires 2000] [--backend asyncio|trio]

Starts a real ``redis-server`` and the emulator (in its own process) enforcing R per
account, by arrival, 429 beyond it. Each round, for each R and N (interleaved), N worker
processes share ``--calls`` list calls, each client paced to R through Redis
(``redis_url``) with ``max_retries=0``. Reported per (R, N), median and spread of the
rounds:

- the aggregate rate, as the fraction of the best any client could do: the time an ideal
  client (sending at the earliest instant the server's windows allow, no margin, no
  latency) needs for the same calls, over the time the N processes took (first send to
  last send, read at the sender);
- the server's 429 count (target: 0).

Then the cost of one ``acquire()`` with a window that never has to wait, on loopback
Redis, p50 and p99 over ``--acquires`` sequential calls, beside the floor (a bare Redis
``PING`` on the same client library) and the in-process `SlidingWindowLimiter`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx

from sarv_async import (
    AsyncSarvClient,
    RedisRateLimiter,
    SlidingWindowLimiter,
    parse_rate_limit,
)
from sarv_async._rate_spec import RateWindow
from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN

# -- one worker process ----------------------------------------------------------------


async def work(settings: dict[str, Any]) -> dict[str, Any]:
    sent: list[float] = []

    async def on_request(request: httpx.Request) -> None:
        sent.append(time.time())

    statuses: dict[int, int] = {}
    async with (
        httpx.AsyncClient(event_hooks={"request": [on_request]}) as http,
        AsyncSarvClient(
            DEMO_OWNER_ID,
            DEMO_TOKEN,
            base_url=settings["base_url"],
            redis_url=settings["redis_url"],
            rate_limit=settings["rate"],
            max_retries=0,
            max_concurrency=4,
            http_client=http,
        ) as client,
    ):
        calls = list(range(settings["calls"]))

        async def worker() -> None:
            while calls:
                calls.pop()
                try:
                    await client.smtp_users.list()
                except Exception as exc:
                    code = getattr(exc, "status_code", None) or 0
                    statuses[code] = statuses.get(code, 0) + 1

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(worker)
    return {"sent": sent, "failed": statuses}


def worker_main(config: str) -> None:
    settings = json.loads(config)
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(anyio.run(work, settings, backend=settings["backend"])), flush=True)


# -- the orchestra -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found on PATH (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(  # noqa: S603 - the found binary, fixed arguments
            [
                binary,
                *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(500):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


@contextmanager
def emulator(rate: str) -> Iterator[str]:
    proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "sarv_async",
            "emulator",
            "--port",
            "0",
            "--rate-limit",
            rate,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            text = line.decode()
            if "base URL:" in text:
                yield text.split("base URL:")[1].strip()
                break
    finally:
        proc.terminate()
        proc.wait()


def flush(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
        assert sock.recv(64).startswith(b"+OK")


def ideal_duration(windows: tuple[RateWindow, ...], calls: int) -> float:
    """First to last send of ``calls`` sends at the earliest instants the windows allow."""
    times: list[float] = []
    for i in range(calls):
        when = 0.0
        for window in windows:
            if i >= window.limit:
                when = max(when, times[i - window.limit] + window.period)
        times.append(when)
    return times[-1] - times[0]


def run_round(
    base_url: str, redis_url: str, rate: str, processes: int, calls: int, backend: str
) -> tuple[float, int, int]:
    """(fraction of the ideal rate, server 429s, failed calls) of one round."""
    httpx.post(str(httpx.URL(base_url).join("/_emulator/reset")))
    flush(redis_url)
    procs = []
    for i in range(processes):
        share = calls // processes + (1 if i < calls % processes else 0)
        config = {
            "base_url": base_url,
            "redis_url": redis_url,
            "rate": rate,
            "calls": share,
            "backend": backend,
        }
        procs.append(
            subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                [sys.executable, __file__, "--worker", json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ},
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    sent: list[float] = []
    failed = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        result = json.loads(out.decode().splitlines()[-1])
        sent += result["sent"]
        failed += sum(result["failed"].values())
    stats = httpx.get(str(httpx.URL(base_url).join("/_emulator/stats"))).json()
    throttled = int(stats["responses"].get("429", 0))
    took = max(sent) - min(sent)
    return ideal_duration(parse_rate_limit(rate), len(sent)) / took, throttled, failed


async def acquire_costs(redis_url: str, count: int) -> dict[str, list[float]]:
    """Seconds per call: Redis PING, RedisRateLimiter.acquire, SlidingWindowLimiter.acquire."""
    import coredis

    wide = parse_rate_limit("1000000/second;100000000/day")
    costs: dict[str, list[float]] = {"ping": [], "redis": [], "local": []}
    local = SlidingWindowLimiter(wide)
    async with (
        coredis.Redis.from_url(redis_url) as redis,
        RedisRateLimiter(redis_url, wide, account="bench") as shared,
    ):
        for _ in range(count):  # interleaved, call by call
            started = time.perf_counter()
            await redis.ping()
            costs["ping"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await shared.acquire()
            costs["redis"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await local.acquire()
            costs["local"].append(time.perf_counter() - started)
    return costs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rates", nargs="+", default=["20/second", "10/second;50/10s"])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--acquires", type=int, default=2000)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return

    print(f"backend={args.backend} calls={args.calls} rounds={args.rounds}")
    with redis_server() as redis_url:
        for rate in args.rates:
            with emulator(rate) as base_url:
                rounds: dict[int, list[tuple[float, int, int]]] = {n: [] for n in args.processes}
                for _ in range(args.rounds):
                    for n in args.processes:  # interleaved: every N once per round
                        rounds[n].append(
                            run_round(base_url, redis_url, rate, n, args.calls, args.backend)
                        )
                print(f"\nR = {rate}")
                print("| N | fraction of ideal rate: median (min-max) | 429s | failed |")
                print("|---|---|---|---|")
                for n, results in rounds.items():
                    fractions = [f for f, _, _ in results]
                    print(
                        f"| {n} | {statistics.median(fractions):.3f} "
                        f"({min(fractions):.3f}-{max(fractions):.3f}) "
                        f"| {sum(t for _, t, _ in results)} | {sum(x for _, _, x in results)} |"
                    )
        costs = anyio.run(acquire_costs, redis_url, args.acquires, backend=args.backend)
    print(f"\nOne call, {args.acquires} sequential, interleaved (µs)")
    print("| what | p50 | p99 |")
    print("|---|---|---|")
    for name, label in (
        ("ping", "Redis PING (floor)"),
        ("redis", "RedisRateLimiter.acquire()"),
        ("local", "SlidingWindowLimiter.acquire()"),
    ):
        p50, p99 = (percentile(costs[name], q) * 1e6 for q in (0.5, 0.99))
        print(f"| {label} | {p50:.0f} | {p99:.0f} |")


if __name__ == "__main__":
    main()
