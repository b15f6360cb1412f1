"""Four worker processes, one account, one Redis, an emulator in its own process enforcing R.

The workers (tests/shared_worker.py) run on asyncio or trio; Redis is a real redis-server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sarv_async._ledger import account_id
from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN
from tests.processes import PROJECT_ROOT, Launch, base_url_of, read_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts; killed at the end if still running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def start_emulator(launch: Launch, rate_limit: str) -> str:
    server = launch(["emulator", "--port", "0", "--rate-limit", rate_limit])
    return base_url_of(read_until(server, "base URL"))


def start_workers(
    started: list[subprocess.Popen[bytes]], count: int, **settings: Any
) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` workers, wait until each is ready, then let them all go at once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SARV_", "SENDCLEAN_"))}
    procs = []
    for i in range(count):
        config = {"owner_id": DEMO_OWNER_ID, "token": DEMO_TOKEN, **settings}
        if i == 0:
            config.update(settings.get("first", {}))
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "tests.shared_worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=PROJECT_ROOT,
        )
        started.append(proc)
        procs.append(proc)
    for proc in procs:
        read_until(proc, "ready")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    return procs


def results(procs: list[subprocess.Popen[bytes]]) -> list[tuple[dict[str, Any], str]]:
    """Each worker's JSON result and its stderr, once it ended."""
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 0, stderr.decode()
        lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
        out.append((json.loads(lines[-1]), stderr.decode()))
    return out


def server_responses(base_url: str) -> dict[str, int]:
    stats = httpx.get(str(httpx.URL(base_url).join("/_emulator/stats"))).json()
    responses: dict[str, int] = stats["responses"]
    return responses


def grants(redis: RedisServer, base_url: str, period: float) -> list[tuple[str, float]]:
    """(process, Redis time in seconds) of every send the window of ``period`` holds."""
    tag = account_id(base_url, DEMO_OWNER_ID)
    key = f"sarv:{{{tag}}}:window:{round(period * 1_000_000)}"
    flat = redis.query("ZRANGE", key, "0", "-1", "WITHSCORES")
    return [
        (member.partition(":")[0], float(score) / 1e6)
        for member, score in zip(flat[::2], flat[1::2], strict=True)
    ]


@BACKENDS
def test_four_processes_share_one_budget_without_a_429(
    launch: Launch, redis_server: RedisServer, workers: list[subprocess.Popen[bytes]], backend: str
) -> None:
    """4 processes x 10 calls against a server enforcing 20 per 2 s: no 429, all done in time."""
    rate, calls, count = "20/2s", 10, 4
    base_url = start_emulator(launch, rate)
    procs = start_workers(
        workers,
        count,
        base_url=base_url,
        redis_url=redis_server.url,
        rate_limit=f"{rate};1000/hour",
        calls=calls,
        max_retries=0,
        backend=backend,
    )
    done = results(procs)
    assert [r["errors"] for r, _ in done] == [[]] * count
    assert sum(r["done"] for r, _ in done) == count * calls
    assert server_responses(base_url) == {"200": count * calls}
    # 40 calls at 20 per 2.1 s: the second 20 go one span (2 s + 0.1 s margin) after the
    # first 20, across the processes: they shared one budget, and without waiting for more.
    sent = sorted(t for r, _ in done for t in r["sent"])
    assert 2.1 <= sent[-1] - sent[0] < 2.1 + 1.0
    assert len({p for p, _ in grants(redis_server, base_url, 3600)}) == count
    assert all(stderr == "" for _, stderr in done)


@BACKENDS
def test_a_429_met_by_one_process_holds_back_the_others(
    launch: Launch, redis_server: RedisServer, workers: list[subprocess.Popen[bytes]], backend: str
) -> None:
    """A 429 with Retry-After: 2 met by one worker: no other worker sends until it ends."""
    base_url = start_emulator(launch, "50/second")
    tag = account_id(base_url, DEMO_OWNER_ID)
    procs = start_workers(
        workers,
        4,
        base_url=base_url,
        redis_url=redis_server.url,
        rate_limit="10/second;1000/hour",
        calls=20,
        concurrency=2,
        backend=backend,
        # The 15th request of the first worker: after the first second's 10, so all are busy.
        first={"inject_429_at": 15, "inject_retry_after": 2},
    )
    # Watch for the pause in Redis: its end, and Redis's clock when it was first seen there.
    seen: float | None = None
    pause_end: int | None = None
    deadline = time.monotonic() + 30
    while pause_end is None and time.monotonic() < deadline:
        value, (seconds, micros) = redis_server.query(
            "EVAL",
            "return {redis.call('GET', KEYS[1]), redis.call('TIME')}",
            "1",
            f"sarv:{{{tag}}}:pause",
        )
        if value is not None:
            pause_end, seen = int(value), int(seconds) + int(micros) / 1e6
        time.sleep(0.005)
    done = results(procs)
    assert pause_end is not None, "no pause reached Redis"
    assert seen is not None
    assert [r["errors"] for r, _ in done] == [[]] * 4
    assert done[0][0]["throttled"] == 1  # the injected one
    assert server_responses(base_url).get("429", 0) == 0

    # From the moment the pause was in Redis until it ended, nobody was let through.
    end = pause_end / 1e6
    assert end - seen > 1.5  # seen within a few ms of its start: the window checked is long
    sends = grants(redis_server, base_url, 3600)
    during = [t for _, t in sends if seen < t < end]
    assert during == [], f"{len(during)} sends during the pause"
    # The others sent before it and went on as soon as it ended: they were held back.
    others = {r["process"] for r, _ in done[1:]}
    assert any(p in others and t <= seen for p, t in sends), "the others had not started"
    assert any(p in others and end <= t < end + 0.5 for p, t in sends), [
        (p in others, round(t - end, 3)) for p, t in sends if end - 3 < t < end + 3
    ]


@BACKENDS
def test_killing_redis_mid_run_then_restarting_it(
    launch: Launch,
    volatile_redis_server: RedisServer,
    workers: list[subprocess.Popen[bytes]],
    backend: str,
    tmp_path: Path,
) -> None:
    """Redis killed: calls go on, one warning per process; restarted: sharing resumes."""
    # A window holds fewer sends than a worker makes, so no worker can be done before
    # Redis goes down (one that was would never meet the outage).
    rate = "10/1s"
    base_url = start_emulator(launch, rate)
    procs = start_workers(
        workers,
        4,
        base_url=base_url,
        redis_url=volatile_redis_server.url,
        rate_limit=f"{rate};1000/hour",
        calls=20,
        max_retries=5,
        backend=backend,
        until_shared=20,
        log_dir=str(tmp_path),
    )
    deadline = time.monotonic() + 30
    while len(grants(volatile_redis_server, base_url, 3600)) < 6:
        assert time.monotonic() < deadline, "the workers did not get going"
        time.sleep(0.02)
    volatile_redis_server.kill()
    # Down until every worker has met the outage (a worker queued behind the others may
    # wait longer than one window's span before it asks Redis again).
    deadline = time.monotonic() + 30
    while sum("WARNING" in log.read_text() for log in tmp_path.glob("*.log")) < 4:
        if any(proc.poll() is not None for proc in procs) or time.monotonic() > deadline:
            for proc in procs:
                proc.kill()
            report = [(proc.returncode, proc.communicate()) for proc in procs]
            raise AssertionError(f"not every worker met the outage (code, output): {report}")
        time.sleep(0.05)
    volatile_redis_server.start()  # empty: no persistence
    done = results(procs)

    assert [r["errors"] for r, _ in done] == [[]] * 4
    assert sum(r["done"] for r, _ in done) == 80
    for result, stderr in done:
        warnings = [line for line in stderr.splitlines() if line.startswith("WARNING")]
        assert len(warnings) == 1, stderr
        # Its share of the processes Redis last saw (the first ones may have seen fewer).
        assert "pacing this process alone at" in warnings[0]
        assert result["shared"], "this worker never went back to Redis"
    # What was sent after the restart is on record in the new Redis.
    assert grants(volatile_redis_server, base_url, 3600)
