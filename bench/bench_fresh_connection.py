"""What it costs that every create goes out on a connection of its own.

    python bench/bench_fresh_connection.py [--creates 1000] [--rounds 5] [--concurrency 1]
                                           [--backend asyncio|trio]

Against the emulator on loopback (a real socket: TCP handshakes are real, TLS is not),
each round runs, interleaved, ``--creates`` add-SMTP-user calls for each of:

- ``raw keep-alive``: raw ``httpx.AsyncClient.post`` + ``json.loads`` on one keep-alive
  pool, the floor;
- ``raw new conn``: the same with keep-alive off, the floor of a fresh connection per call;
- ``sdk create``: `AsyncSarvClient` as shipped, a fresh connection per create;
- ``sdk keep-alive``: the SDK on a borrowed keep-alive pool (``http_client=``), so creates
  reuse connections as before the guard.

Printed: median and spread (min-max) over the rounds of the time per call, in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Awaitable, Callable

import anyio
import httpx

from sarv_async import AsyncSarvClient
from sarv_async.testing import Emulator

OWNER, TOKEN = "bench-owner", "bench-token"


async def timed(calls: int, concurrency: int, call: Callable[[], Awaitable[object]]) -> float:
    """Seconds per call for ``calls`` calls made by ``concurrency`` tasks."""
    per_task = calls // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            await call()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return (time.perf_counter() - started) / (per_task * concurrency)


async def main(creates: int, rounds: int, concurrency: int) -> None:
    results: dict[str, list[float]] = {}
    async with Emulator(accounts={OWNER: TOKEN}, rate_limit=None) as emu:
        url = f"{emu.base_url}settings/addSmtp"
        body = {"owner_id": OWNER, "token": TOKEN, "total_limit": 100, "hourly_limit": 10}
        keep = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=concurrency))
        fresh = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))
        borrowed = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=concurrency))
        sdk = AsyncSarvClient(OWNER, TOKEN, base_url=emu.base_url, rate_limit=None)
        sdk_keep = AsyncSarvClient(
            OWNER, TOKEN, base_url=emu.base_url, rate_limit=None, http_client=borrowed
        )
        async with keep, fresh, borrowed, sdk, sdk_keep:

            async def raw_keep() -> object:
                return json.loads((await keep.post(url, json=body)).content)

            async def raw_fresh() -> object:
                return json.loads((await fresh.post(url, json=body)).content)

            cases: dict[str, Callable[[], Awaitable[object]]] = {
                "raw keep-alive": raw_keep,
                "raw new conn": raw_fresh,
                "sdk create": lambda: sdk.smtp_users.create(total_limit=100, hourly_limit=10),
                "sdk keep-alive": lambda: sdk_keep.smtp_users.create(
                    total_limit=100, hourly_limit=10
                ),
            }
            for call in cases.values():  # warm up
                await timed(min(50, creates), concurrency, call)
            for _ in range(rounds):
                for name, call in cases.items():
                    results.setdefault(name, []).append(await timed(creates, concurrency, call))
        users = len(emu.users())

    print(f"{creates} creates per case and round, {rounds} rounds, concurrency {concurrency}")
    for name, times in results.items():
        print(
            f"{name:15s} median {statistics.median(times) * 1e3:6.3f} ms/call   "
            f"spread {min(times) * 1e3:6.3f}-{max(times) * 1e3:6.3f}"
        )
    cost = statistics.median(results["sdk create"]) - statistics.median(results["sdk keep-alive"])
    print(f"fresh connection per create: {cost * 1e3:+.3f} ms/call (median sdk - sdk keep-alive)")
    print(f"users on the server: {users}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.creates, args.rounds, args.concurrency, backend=args.backend)
