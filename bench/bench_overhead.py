"""Per-call cost of the SDK versus raw httpx on the same in-memory transport.

    python bench/bench_overhead.py [--calls 5000] [--repeat 7] [--backend asyncio|trio]

Both sides POST a JSON body to ``httpx.MockTransport`` and decode the JSON answer; the
SDK also validates the request, paces it (with a limiter that never has to wait),
bounds concurrency, checks the envelope and structures a typed answer. The ratio is
SDK time / raw time per call (best of ``--repeat`` rounds).
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

BASE = "https://api.bench.example/v1.0/"
USERS = [
    {
        "smtp_user_name": f"smtp{i}",
        "password": f"pw{i}",
        "status": "Enable",
        "total_limit": 100,
        "hourly_limit": 10,
    }
    for i in range(3)
]
LIST_BODY = json.dumps({"status": "success", "smtp_list": USERS}).encode()
EDIT_BODY = json.dumps({"status": "success", "message": "SMTP User Updated"}).encode()
HEADERS = {"content-type": "application/json"}


def handler(request: httpx.Request) -> httpx.Response:
    body = LIST_BODY if request.url.path.endswith("listSmtp") else EDIT_BODY
    return httpx.Response(200, content=body, headers=HEADERS)


async def timed(calls: int, call: Callable[[], Awaitable[object]]) -> float:
    for _ in range(200):  # warm up pools and caches
        await call()
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls


async def main(calls: int, repeat: int) -> None:
    transport = httpx.MockTransport(handler)
    auth = {"owner_id": "owner", "token": "token"}
    results: dict[str, list[float]] = {}

    async with httpx.AsyncClient(transport=transport) as raw:

        async def raw_list() -> object:
            response = await raw.post(f"{BASE}settings/listSmtp", json=auth)
            return response.json()

        async def raw_edit() -> object:
            body = {"smtp_user_name": "smtp1", "hourly_limit": 5, **auth}
            response = await raw.post(f"{BASE}settings/editSmtp", json=body)
            return response.json()

        sdk_http = httpx.AsyncClient(transport=transport)
        sdk = AsyncSarvClient(
            "owner", "token", base_url=BASE, http_client=sdk_http, rate_limit="1000000/second"
        )
        async with sdk_http, sdk:
            cases: dict[str, Callable[[], Awaitable[object]]] = {
                "raw list": raw_list,
                "sdk list": sdk.smtp_users.list,
                "raw edit": raw_edit,
                "sdk edit": lambda: sdk.smtp_users.update("smtp1", hourly_limit=5),
            }
            for _ in range(repeat):
                for name, call in cases.items():
                    results.setdefault(name, []).append(await timed(calls, call))

    best = {name: min(times) for name, times in results.items()}
    for name, times in results.items():
        print(
            f"{name:9s} best {best[name] * 1e6:7.1f} us/call   "
            f"median {statistics.median(times) * 1e6:7.1f} us/call"
        )
    for kind in ("list", "edit"):
        print(f"ratio {kind}: {best[f'sdk {kind}'] / best[f'raw {kind}']:.3f}x (sdk / raw httpx)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.repeat, backend=args.backend)
