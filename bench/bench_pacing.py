"""Pacing accuracy against a server that enforces exactly the client's limit.

    python bench/bench_pacing.py [--calls 100] [--rate 20/second] [--concurrency 10]

Starts the emulator limited to ``--rate`` (per account, counted by arrival, answering
429 beyond it), points a client with the same ``rate_limit`` at it, fires ``--calls``
list calls from as many tasks, and reports the elapsed time against N/R and N/R plus
one window, and how many 429s the server gave (the goal: none). The figures, with the
instant each answer arrived, go to bench/results.json (the site charts them).
"""

from __future__ import annotations

import argparse
import time

import anyio
from _results import record

from sarv_async import parse_rate_limit
from sarv_async.testing import Emulator


async def main(calls: int, rate: str, concurrency: int, backend: str) -> None:
    windows = parse_rate_limit(rate)
    strictest = min(windows, key=lambda w: w.limit / w.period)
    per_second = strictest.limit / strictest.period
    async with (
        Emulator(rate_limit=rate) as emu,
        emu.client(rate_limit=rate, max_concurrency=concurrency, max_retries=0) as client,
    ):
        answered: list[float] = []

        async def call() -> None:
            await client.smtp_users.list()
            answered.append(time.perf_counter() - started)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(call)
        elapsed = time.perf_counter() - started
        responses = emu.stats()["responses"]
    ideal = calls / per_second
    print(f"backend={backend} calls={calls} rate={rate} concurrency={concurrency}")
    print(f"elapsed          {elapsed:8.2f} s")
    print(f"N/R              {ideal:8.2f} s")
    print(f"N/R + 1 window   {ideal + strictest.period:8.2f} s   (the bound)")
    print(f"within bound     {elapsed <= ideal + strictest.period}")
    print(f"HTTP 200 / 429   {responses.get('200', 0)} / {responses.get('429', 0)}")
    record(
        "bench_pacing",
        {"calls": calls, "rate": rate, "backend": backend, "concurrency": concurrency},
        {
            "elapsed_s": round(elapsed, 3),
            "ideal_s": round(ideal, 3),
            "bound_s": round(ideal + strictest.period, 3),
            "windows": [[w.limit, w.period] for w in windows],
            "http_200": responses.get("200", 0),
            "http_429": responses.get("429", 0),
            "answered_s": [round(moment, 4) for moment in sorted(answered)],
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rate", default="20/second")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.rate, args.concurrency, args.backend, backend=args.backend)
