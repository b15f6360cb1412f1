"""Per-call cost of the SDK versus raw httpx + ``json.loads``, on the same transport.

::

    python bench/bench_overhead.py [--rounds 20] [--transport mock|http|both]
                                   [--sizes 1,100,5000] [--backend asyncio|trio]
                                   [--no-gc | --gc-freeze] [--gc-stats]

Calls: list with 1, 100 and 5,000 users (``--sizes``), and edit. Transports: an
``httpx.MockTransport`` (no network: what is left is the two sides' own cost), and a real
HTTP server on loopback, in its own process, answering precomputed bodies (uvicorn, h11).

Five sides. The raw side encodes the body with ``json.dumps``, POSTs it with
``httpx.AsyncClient.post`` and decodes the answer with ``json.loads``: the floor of any
httpx-based client. The typed side does the same and then builds the answer the SDK returns,
an `SmtpUserList` of `SmtpUser`s, with the classes' own constructors and no checks at all:
the floor of any client that returns objects rather than dicts. The SDK side also validates
the request, paces it (with a limiter that never has to wait), bounds concurrency, bounds
each attempt with a deadline, checks the envelope and reads each user tolerantly, as
installed without ``sarv-async[fast]``. The fast side is the same client with the extra:
list answers decoded by msgspec straight into the SDK's classes (needs msgspec). The
msgspec side is the floor of that: the raw side's call, its answer handed to the same
msgspec decoder with nothing around it (no client, no checks), the least work that turns
the bytes into `SmtpUser` instances with msgspec. Run with and without ``--no-gc``, it
shows what the cyclic collector adds to any client that returns these objects.

Each round times a batch of calls of every case on every side, interleaved: the order of
the sides runs through the ten orders of a Williams design in turn, so drift and the load
of other processes fall on all sides alike: each side takes each place, and runs right
after each other side, equally often. Printed: the median time per call of each side,
the medians of the per-round ratios (SDK / raw, fast / raw, typed / raw, SDK / typed,
msgspec / raw, fast / msgspec) with their spread (min-max over rounds), and for lists the
cost per user. Twice: by the wall clock, and by this process's CPU time, which the load
of other processes on a shared machine disturbs far less (over HTTP it leaves out the
server's work). The figures go to bench/results.json, one entry per transport, backend and
collector setting (the site charts the cost per user).
"""

from __future__ import annotations

import argparse
import gc
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import anyio
import httpx
from _results import record

from sarv_async import (
    AsyncSarvClient,
    SmtpUser,
    SmtpUserList,
    SmtpUserStatus,
    UpdateSmtpUserResponse,
    _fast_decode,
)

OWNER, TOKEN = "owner", "token"
JSON = {"content-type": "application/json"}
EDIT_BODY = json.dumps({"status": "success", "message": "SMTP User Updated"}).encode()


def list_body(users: int) -> bytes:
    """A list answer of ``users`` users, shaped like the docs' sample."""
    return json.dumps(
        {
            "status": "success",
            "message": "",
            "smtp_list": [
                {
                    "smtp_user_name": f"smtp{i:07d}",
                    "password": f"{i:010x}",
                    "status": "Enable" if i % 4 else "Disable",
                    "total_limit": 1000 + i % 997,
                    "hourly_limit": 10 + i % 89,
                }
                for i in range(users)
            ],
        }
    ).encode()


def bodies(sizes: list[int]) -> dict[str, bytes]:
    """Answer by URL path: ``/u{size}/v1.0/settings/listSmtp`` and ``.../editSmtp``."""
    answers = {f"/u{size}/v1.0/settings/listSmtp": list_body(size) for size in sizes}
    answers.update({f"/u{size}/v1.0/settings/editSmtp": EDIT_BODY for size in sizes})
    return answers


# -- the loopback server (run as ``bench_overhead.py --serve SIZES``) -----------------


def serve(sizes: list[int]) -> None:
    """Serve the precomputed answers on a free loopback port; print the port, then run."""
    import uvicorn

    answers = bodies(sizes)
    missing = b'{"status": "error", "name": "GeneralError", "message": "no such path"}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        more = True
        while more:  # drain the request body
            message = await receive()
            more = message.get("more_body", False)
        body = answers.get(scope["path"], missing)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every answer's body waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


@contextmanager
def loopback_server(sizes: list[int]) -> Iterator[str]:
    """Start the server in a child process; yield its root URL."""
    child = subprocess.Popen(  # noqa: S603 - this interpreter, this file
        [sys.executable, __file__, "--serve", ",".join(map(str, sizes))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(10)


# -- timing ------------------------------------------------------------------------------

Call = Callable[[], Awaitable[object]]


async def batch(calls: int, call: Call) -> tuple[float, float]:
    """Wall-clock and CPU seconds (of this process) per call, over ``calls`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


SIDES = ("raw", "typed", "sdk", "fast", "msgspec")


def balanced_orders(sides: int) -> list[tuple[int, ...]]:
    """Orders of the sides in which each side takes each place, and runs right after each
    other side, equally often (a Williams design: ``sides`` orders, twice as many if odd)."""
    first, low, high = [0], 1, sides - 1
    while len(first) < sides:
        first.append(low)
        low += 1
        if len(first) < sides:
            first.append(high)
            high -= 1
    orders = [tuple((side + shift) % sides for side in first) for shift in range(sides)]
    if sides % 2:
        orders += [order[::-1] for order in orders]
    return orders


async def cases(
    stack: AsyncExitStack, root: str, sizes: list[int], mock: bool
) -> dict[str, tuple[Call, ...]]:
    """``name -> (raw, typed, SDK, SDK with [fast], msgspec) calls`` per list size, and edit."""
    transport = httpx.MockTransport(_mock_handler(bodies(sizes))) if mock else None
    raw = await stack.enter_async_context(httpx.AsyncClient(transport=transport))
    result: dict[str, tuple[Call, ...]] = {}
    for size in sizes:
        base = f"{root}/u{size}/v1.0/"
        http = (
            await stack.enter_async_context(httpx.AsyncClient(transport=transport))
            if mock
            else None
        )
        sdk = await stack.enter_async_context(
            AsyncSarvClient(
                OWNER, TOKEN, base_url=base, http_client=http, rate_limit="1000000/second"
            )
        )
        result[f"list {size}"] = (
            _raw_list(raw, base),
            _typed_list(raw, base),
            _without_fast(sdk.smtp_users.list),
            sdk.smtp_users.list,
            _msgspec_list(raw, base),
        )
        if size == sizes[0]:

            async def sdk_edit(sdk: AsyncSarvClient = sdk) -> object:
                return await sdk.smtp_users.update("smtp0000001", hourly_limit=5)

            edit = (
                _raw_edit(raw, base),
                _typed_edit(raw, base),
                _without_fast(sdk_edit),
                sdk_edit,
                _raw_edit(raw, base),  # an edit's answer is no list: the raw call
            )
            result["edit"] = edit
    return result


def _without_fast(call: Call) -> Call:
    """``call`` as installed without ``sarv-async[fast]``: no msgspec decoder."""
    decoders = _fast_decode._decoders

    async def plain() -> object:
        fast = decoders.get("list")
        decoders["list"] = None
        try:
            return await call()
        finally:
            decoders["list"] = fast

    return plain


def _mock_handler(answers: dict[str, bytes]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answers[request.url.path], headers=JSON)

    return handler


def _raw_list(raw: httpx.AsyncClient, base: str) -> Call:
    url = f"{base}settings/listSmtp"

    async def call() -> object:
        body = json.dumps({"owner_id": OWNER, "token": TOKEN})
        response = await raw.post(url, content=body, headers=JSON)
        return json.loads(response.content)

    return call


def _raw_edit(raw: httpx.AsyncClient, base: str) -> Call:
    url = f"{base}settings/editSmtp"

    async def call() -> object:
        body = json.dumps(
            {"smtp_user_name": "smtp0000001", "hourly_limit": 5, "owner_id": OWNER, "token": TOKEN}
        )
        response = await raw.post(url, content=body, headers=JSON)
        return json.loads(response.content)

    return call


#: A dict lookup, not ``SmtpUserStatus(value)``: an enum's call costs more than the rest.
STATUS = {status.value: status for status in SmtpUserStatus}


def _typed_list(raw: httpx.AsyncClient, base: str) -> Call:
    """Raw, then the SDK's answer built with the classes' own constructors, unchecked."""
    call = _raw_list(raw, base)

    async def typed() -> object:
        data: Any = await call()
        users = [
            SmtpUser(
                smtp_user_name=user["smtp_user_name"],
                smtp_password=user["password"],
                status=STATUS[user["status"]],
                total_limit=user["total_limit"],
                hourly_limit=user["hourly_limit"],
            )
            for user in data["smtp_list"]
        ]
        return SmtpUserList(smtp_list=users, message=data["message"])

    return typed


def _msgspec_list(raw: httpx.AsyncClient, base: str) -> Call:
    """Raw, but the answer decoded by the ``[fast]`` decoder alone: msgspec, no client."""
    url = f"{base}settings/listSmtp"
    decode = _fast_decode.list_decoder()
    assert decode is not None, "the msgspec side needs msgspec"

    async def call() -> object:
        body = json.dumps({"owner_id": OWNER, "token": TOKEN})
        response = await raw.post(url, content=body, headers=JSON)
        return decode(response.content)

    return call


def _typed_edit(raw: httpx.AsyncClient, base: str) -> Call:
    call = _raw_edit(raw, base)

    async def typed() -> object:
        data: Any = await call()
        return UpdateSmtpUserResponse(message=data["message"])

    return typed


Sample = tuple[tuple[float, float], ...]  # per side (as `SIDES`): (wall, CPU)


class CollectorClock:
    """The cyclic garbage collector's passes and time, by generation (via `gc.callbacks`)."""

    def __init__(self) -> None:
        self._started = 0.0
        self.reset()

    def reset(self) -> None:
        self.passes, self.seconds = [0, 0, 0], 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.passes[info["generation"]] += 1


async def collector_share(triples: Mapping[str, tuple[Call, ...]], counts: dict[str, int]) -> None:
    """Print, per case and side, the collector's passes and time per call.

    Over at least 200 calls each: full passes are rare, and a batch holds only tens of
    the largest lists.
    """
    clock = CollectorClock()
    gc.callbacks.append(clock)
    try:
        heading = f"{'passes per call (gen 0/1/2)':>28s} {'time per call':>14s}"
        print(f"\nthe garbage collector\n{'call':10s} {'side':6s} {heading}")
        for name, calls in triples.items():
            for side, call in zip(SIDES, calls, strict=True):
                calls_made = max(200, counts[name])
                clock.reset()
                await batch(calls_made, call)
                per_call = "/".join(f"{n / calls_made:.2f}" for n in clock.passes)
                spent = _us(clock.seconds / calls_made)
                print(f"{name:10s} {side:6s} {per_call:>28s} {spent:>14s}")
    finally:
        gc.callbacks.remove(clock)


async def measure(
    root: str, sizes: list[int], args: argparse.Namespace, mock: bool
) -> dict[str, list[Sample]]:
    """``name -> [per round, per side: (wall, CPU)]``, seconds per call.

    ``args.gc_freeze``: `gc.freeze()` once set up and warmed up, as an application may
    after its start-up, so that the collector's full passes skip what was made until then.
    ``args.gc_stats``: then print the collector's share of each side's calls.
    """
    rounds, seconds = args.rounds, args.seconds
    async with AsyncExitStack() as stack:
        triples = await cases(stack, root, sizes, mock)
        counts = {}
        for name, calls in triples.items():  # warm up; size batches to ~``seconds``
            for call in calls[1:]:
                await batch(3, call)
            per_call, _ = await batch(3, calls[0])
            counts[name] = max(3, round(seconds / per_call))
        if args.gc_freeze:
            gc.freeze()
        results: dict[str, list[Sample]] = {name: [] for name in triples}
        # Balanced orders in turn (over a multiple of 10 rounds): no ratio leans on
        # position, nor on which side ran just before.
        orders = balanced_orders(len(SIDES))
        for round_ in range(rounds):
            for name, calls in triples.items():
                timed: dict[int, tuple[float, float]] = {}
                for side in orders[round_ % len(orders)]:
                    timed[side] = await batch(counts[name], calls[side])
                results[name].append(tuple(timed[side] for side in range(len(calls))))
        if args.gc_stats:
            await collector_share(triples, counts)
    return results


RATIOS = (
    ("sdk/raw", 2, 0),
    ("fast/raw", 3, 0),
    ("typed/raw", 1, 0),
    ("sdk/typed", 2, 1),
    ("msgspec/raw", 4, 0),
    ("fast/msgspec", 3, 4),
)


def report(title: str, results: dict[str, list[Sample]], case: dict[str, object]) -> None:
    """Print, per clock, one line per case: medians, ratios with spread, per-user costs.

    The same figures go to bench/results.json under ``case``.
    """
    rounds = len(next(iter(results.values())))
    figures: dict[str, object] = {"rounds": rounds, "sides": list(SIDES)}
    for clock, clock_name in ((0, "wall time"), (1, "CPU time of this process")):
        calls: dict[str, object] = {}
        figures["wall" if clock == 0 else "cpu"] = calls
        print(f"\n{title}, {rounds} interleaved rounds, {clock_name}")
        header = f"{'call':10s}" + "".join(f"{side:>10s}" for side in SIDES)
        header += "".join(f"  {name + ' (min-max)':>21s}" for name, _, _ in RATIOS)
        per_user = "".join(f" {side:>7s}" for side in SIDES[1:])
        print(header + f"  {'per user: raw':>14s}{per_user}")
        for name, samples in results.items():
            times = [[sample[side][clock] for sample in samples] for side in range(len(SIDES))]
            medians = [statistics.median(side) for side in times]
            line = f"{name:10s}" + "".join(f"{_us(median):>10s}" for median in medians)
            recorded: dict[str, object] = {
                f"{side}_s": float(f"{median:.4g}")
                for side, median in zip(SIDES, medians, strict=True)
            }
            calls[name] = recorded
            for ratio_name, top, bottom in RATIOS:
                ratios = sorted(t / b for t, b in zip(times[top], times[bottom], strict=True))
                spread = f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
                line += f"  {spread:>21s}"
                recorded[ratio_name] = [
                    round(statistics.median(ratios), 3),
                    round(ratios[0], 3),
                    round(ratios[-1], 3),
                ]
            users = int(name.split()[1]) if name.startswith("list") else 0
            recorded["users"] = users
            if users > 1:
                line += f"  {medians[0] / users * 1e9:11.0f} ns"
                line += "".join(f" {median / users * 1e9:4.0f} ns" for median in medians[1:])
            print(line)
    record("bench_overhead", case, figures)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main() -> None:
    """Parse options, run each transport, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=20, help="a multiple of 10 (default: %(default)s)"
    )
    parser.add_argument(
        "--seconds", type=float, default=0.1, help="per batch of one side (default: %(default)s)"
    )
    parser.add_argument("--sizes", default="1,100,5000", help="users per list (%(default)s)")
    parser.add_argument("--transport", choices=("mock", "http", "both"), default="both")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument(
        "--no-gc", action="store_true", help="turn the cyclic garbage collector off (both sides)"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after set-up and warm-up (both sides), as an application may",
    )
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="after the rounds, print the collector's passes and time per call of each side",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve([int(size) for size in args.serve.split(",")])
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    if _fast_decode.list_decoder() is None:  # built now, before any side can hide it
        parser.error('the fast side needs msgspec: pip install -e ".[fast]"')
    if args.no_gc:
        gc.disable()
    print(
        f"Python {sys.version.split()[0]}, httpx {httpx.__version__}, "
        f"{args.seconds:.2f} s per batch{', garbage collector off' if args.no_gc else ''}"
        f"{', gc.freeze() after set-up' if args.gc_freeze else ''}"
    )
    collector = "off" if args.no_gc else "frozen" if args.gc_freeze else "on"
    case: dict[str, object] = {"backend": args.backend, "gc": collector, "sizes": args.sizes}
    if args.transport in ("mock", "both"):
        results = anyio.run(
            measure, "https://api.bench.example", sizes, args, True, backend=args.backend
        )
        report(f"MockTransport, {args.backend}", results, {**case, "transport": "mock"})
    if args.transport in ("http", "both"):
        with loopback_server(sizes) as root:
            results = anyio.run(measure, root, sizes, args, False, backend=args.backend)
        report(
            f"loopback HTTP (uvicorn in a child process), {args.backend}",
            results,
            {**case, "transport": "http"},
        )


if __name__ == "__main__":
    main()
