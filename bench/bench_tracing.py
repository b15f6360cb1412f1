"""Per-call cost of the SDK's OpenTelemetry spans, beside raw httpx, on an in-memory transport.

    python bench/bench_tracing.py [--calls 5000] [--repeat 7] [--backend asyncio|trio]

Cases, interleaved round by round: raw httpx (the floor); the SDK with tracing off (as
without opentelemetry-api); the SDK with opentelemetry-api but no tracer provider (the
no-op spans most installs have); the SDK recording its spans into a batch processor that
drops them. Prints the median and spread (min-max) of the rounds, in microseconds per call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio
import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from sarv_async import AsyncSarvClient, _tracing

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
HEADERS = {"content-type": "application/json"}


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=LIST_BODY, headers=HEADERS)


async def timed(calls: int, call: Callable[[], Awaitable[object]]) -> float:
    for _ in range(200):  # warm up pools and caches
        await call()
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls


_ACTIVE = _tracing.active


def _configure(case: str, recording: TracerProvider) -> None:
    """Set the SDK's tracing up as ``case`` says (no global provider is ever set)."""
    _tracing.ENABLED = case != "sdk, tracing off"
    if case == "sdk, recording":
        _tracing._tracer = recording.get_tracer("sarv_async")
        _tracing.active = lambda: True  # as with a provider set
    else:
        _tracing._tracer = None
        _tracing.active = _ACTIVE


async def main(calls: int, repeat: int) -> None:
    transport = httpx.MockTransport(handler)
    auth = {"owner_id": "owner", "token": "token"}
    recording = TracerProvider()
    recording.add_span_processor(SimpleSpanProcessor(_Drop()))
    results: dict[str, list[float]] = {}

    async with httpx.AsyncClient(transport=transport) as raw:

        async def raw_list() -> object:
            response = await raw.post(f"{BASE}settings/listSmtp", json=auth)
            return response.json()

        sdk_http = httpx.AsyncClient(transport=transport)
        sdk = AsyncSarvClient(
            "owner", "token", base_url=BASE, http_client=sdk_http, rate_limit="1000000/second"
        )
        async with sdk_http, sdk:
            cases: dict[str, Callable[[], Awaitable[object]]] = {
                "raw httpx": raw_list,
                "sdk, tracing off": sdk.smtp_users.list,
                "sdk, no provider": sdk.smtp_users.list,
                "sdk, recording": sdk.smtp_users.list,
            }
            names = list(cases)
            for round_ in range(repeat):
                for name in names[round_ % 4 :] + names[: round_ % 4]:  # rotate the order
                    _configure(name, recording)
                    results.setdefault(name, []).append(await timed(calls, cases[name]))
            _configure("sdk, no provider", recording)

    for name, times in results.items():
        us = [t * 1e6 for t in times]
        print(
            f"{name:17s} median {statistics.median(us):7.1f} us/call   "
            f"spread {min(us):7.1f}-{max(us):7.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.repeat, backend=args.backend)
