"""Pacing of bulk provisioning: N specs against an emulator limited to R requests a second.

::

    python bench/bench_provision.py --specs 200 --rate 20
    python bench/bench_provision.py --specs 200 --rate 20 --backend trio --repeat 3

The client is paced to the emulator's own limit. The limiter lets R calls go at once,
then each next call ``1 s + margin`` after the call R places before it (the default
margin is 5% of the window, 50 ms), so a run of ``calls`` takes about
``floor((calls - 1) / R) * 1.05`` seconds: ``ideal_s``. ``calls`` is N creates plus the
provisioning's list calls (2 when nothing fails), plus any call repeated after a 429.
The figures of every repeat go to bench/results.json (the site charts them).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
from _results import record

from sarv_async.testing import Emulator

_MARGIN = 0.05  # SlidingWindowLimiter's default for a one-second window: min(0.25, 1 / 20)


def _specs(count: int) -> list[dict[str, int]]:
    return [{"total_limit": 100 + i % 7, "hourly_limit": 10 + i % 3} for i in range(count)]


async def measure(specs: int, rate: int, concurrency: int) -> dict[str, Any]:
    """Provision ``specs`` users at ``rate``/second; return the figures."""
    limit = f"{rate}/second"
    async with Emulator(rate_limit=limit) as emu:
        async with emu.client(rate_limit=limit, max_concurrency=concurrency) as client:
            started = time.perf_counter()
            async with client.smtp_users.provision(_specs(specs)) as run:
                summary = await run.complete()
            elapsed = time.perf_counter() - started
        stats = emu.stats()
    calls = sum(stats["requests"].values())
    return {
        "N": specs,
        "R": rate,
        "elapsed_s": round(elapsed, 2),
        "N/R_s": round(specs / rate, 2),
        "calls": calls,
        "ideal_s": round((calls - 1) // rate * (1 + _MARGIN), 2),
        "calls_per_s": round(calls / elapsed, 2),
        "http_429": stats["responses"].get("429", 0),
        "users_on_server": stats["users"],
        "created": summary.created,
        "failed": summary.failed,
    }


def main() -> None:
    """Parse options, run, print one line of figures per repeat."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=200, help="N (default: %(default)s)")
    parser.add_argument("--rate", type=int, default=20, help="R per second (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=10, help="default: %(default)s")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--repeat", type=int, default=1, help="runs (default: %(default)s)")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        figures = anyio.run(measure, args.specs, args.rate, args.concurrency, backend=args.backend)
        print(f"backend={args.backend} " + " ".join(f"{k}={v}" for k, v in figures.items()))
        runs.append(figures)
    case = {"specs": args.specs, "rate": args.rate, "backend": args.backend}
    record("bench_provision", {**case, "concurrency": args.concurrency}, {"runs": runs})


if __name__ == "__main__":
    main()
