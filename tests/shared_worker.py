"""One worker process of an account, pacing through Redis; run by the shared-budget tests.

``python -m tests.shared_worker '{"base_url": ..., "redis_url": ..., ...}'`` opens its
client, prints ``ready``, waits for a line on stdin, makes ``calls`` list calls from ``concurrency``
tasks on ``backend``, and prints one JSON line: calls done, errors, 429s it met, its
Redis process id, its send times (wall clock), and whether it shares through Redis at the
end. Settings:

- ``rate_limit``: the client's; ``max_retries``: the client's;
- ``inject_429_at``: answer the worker's n-th request (1-based) with a 429 and
  ``Retry-After: inject_retry_after`` itself, without sending it;
- ``progress``: print ``sent N`` after each response, for a test that acts mid-run.

Warnings of the ``sarv_async`` logger go to stderr, one per line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import anyio
import coredis  # noqa: F401 - loaded before "ready", as in a long-running worker
import httpx

from sarv_async import AsyncSarvClient, RedisRateLimiter


class _Injecting(httpx.AsyncBaseTransport):
    """A transport that answers the n-th request with a 429 itself."""

    def __init__(self, at: int | None, retry_after: float) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._at = at
        self._retry_after = retry_after
        self._count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._count += 1
        if self._count == self._at:
            return httpx.Response(
                429,
                headers={"retry-after": f"{self._retry_after:g}"},
                json={"status": "error", "code": -1, "name": "RateLimitError", "message": "x"},
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def work(settings: dict[str, Any]) -> dict[str, Any]:
    throttled = 0
    sent: list[float] = []

    async def on_request(request: httpx.Request) -> None:
        sent.append(time.time())

    async def on_response(response: httpx.Response) -> None:
        nonlocal throttled
        throttled += response.status_code == 429

    done = 0
    errors: list[str] = []
    transport = _Injecting(settings.get("inject_429_at"), settings.get("inject_retry_after", 2))
    async with (
        httpx.AsyncClient(
            transport=transport,
            event_hooks={"request": [on_request], "response": [on_response]},
        ) as http,
        AsyncSarvClient(
            settings["owner_id"],
            settings["token"],
            base_url=settings["base_url"],
            redis_url=settings["redis_url"],
            rate_limit=settings["rate_limit"],
            max_retries=settings.get("max_retries", 2),
            max_concurrency=settings.get("concurrency", 4),
            http_client=http,
        ) as client,
    ):
        limiter = client._shared.pipeline.limiter
        assert isinstance(limiter, RedisRateLimiter)
        # Ready once the client is open, as a long-running worker is; then wait for "go".
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        calls = list(range(settings["calls"]))

        async def worker() -> None:
            nonlocal done
            while calls:
                calls.pop()
                try:
                    await client.smtp_users.list()
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    done += 1
                if settings.get("progress"):
                    print(f"sent {done}", flush=True)

        async with anyio.create_task_group() as tg:
            for _ in range(settings.get("concurrency", 4)):
                tg.start_soon(worker)
        # A worker that ran out of calls while Redis was away shows that sharing resumes
        # only if it calls again: keep calling, one at a time, until it shares (bounded).
        extra = 0
        give_up = anyio.current_time() + settings.get("until_shared", 0)
        while not limiter.shared and anyio.current_time() < give_up:
            try:
                await client.smtp_users.list()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            extra += 1
        return {
            "extra": extra,
            "done": done,
            "errors": errors,
            "throttled": throttled,
            "sent": sent,
            "process": limiter._process,
            "shared": limiter.shared,
        }


def main() -> None:
    settings = json.loads(sys.argv[1])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("sarv_async")
    logger.addHandler(handler)
    if "log_dir" in settings:  # a copy the test can read while this process runs
        copy = logging.FileHandler(os.path.join(settings["log_dir"], f"{os.getpid()}.log"))
        copy.setFormatter(handler.formatter)
        logger.addHandler(copy)
    logger.setLevel(logging.WARNING)
    result = anyio.run(work, settings, backend=settings.get("backend", "asyncio"))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
