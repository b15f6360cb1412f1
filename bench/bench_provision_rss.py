"""Peak memory of ``sarv-async smtp provision``: the CLI process's RSS for N rows.

::

    python bench/bench_provision_rss.py --rows 10000,50000,100000 [--rounds 2]

For each N: a specs CSV of N rows (``total_limit,hourly_limit,team``), the emulator in a
process of its own (it holds every user it creates, so it is not measured), reset
before each run, and ``python -m sarv_async smtp provision`` with its default SQLite
ledger (a fresh file per run), no pacing (``--rate-limit none``) and
``--settle-delay 0``. The CLI's peak RSS is the kernel's ``ru_maxrss`` of that child
(``os.wait4``); the growth per row is the slope of the peaks between the smallest and
the largest N. Rounds interleave the sizes; printed are the median peak and the spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_ledger import emulator, reset

from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN

MIB = 1024 * 1024


def write_specs(path: str, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write("total_limit,hourly_limit,team\n")
        for i in range(rows):
            file.write(f"{100 + i % 7},{10 + i % 3},team-{i % 50:02d}\n")


def run_cli(url: str, specs: str, tmp: str, tag: str) -> tuple[int, float, int]:
    """Peak RSS (bytes), seconds, and exit status of one provisioning run."""
    env = dict(
        os.environ,
        SARV_OWNER_ID=DEMO_OWNER_ID,
        SARV_TOKEN=DEMO_TOKEN,
        SARV_BASE_URL=url,
    )
    command = [
        sys.executable,
        "-m",
        "sarv_async",
        "smtp",
        "provision",
        specs,
        "--out",
        os.path.join(tmp, f"out-{tag}.csv"),
        "--ledger",
        os.path.join(tmp, f"ledger-{tag}.sqlite3"),
        "--rate-limit",
        "none",
        "--settle-delay",
        "0",
        "--allow-insecure-http",
    ]
    started = time.perf_counter()
    child = subprocess.Popen(  # noqa: S603 - this interpreter
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.stderr is not None
    errors = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if child.returncode != 0:
        raise SystemExit(f"provision exited {child.returncode}: {errors[-2000:]}")
    return usage.ru_maxrss * 1024, elapsed, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,50000,100000", help="default: %(default)s")
    parser.add_argument("--rounds", type=int, default=2, help="default: %(default)s")
    args = parser.parse_args()
    sizes = [int(size) for size in args.rows.split(",")]
    peaks: dict[int, list[int]] = {size: [] for size in sizes}
    times: dict[int, list[float]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory() as tmp, emulator() as url:
        files = {}
        for size in sizes:
            files[size] = os.path.join(tmp, f"specs-{size}.csv")
            write_specs(files[size], size)
        for round_ in range(args.rounds):
            order = sizes if round_ % 2 == 0 else sizes[::-1]
            for size in order:
                reset(url)
                peak, elapsed, _ = run_cli(url, files[size], tmp, f"{size}-{round_}")
                peaks[size].append(peak)
                times[size].append(elapsed)
                print(f"  round {round_ + 1}: {size:7d} rows  peak RSS {peak / MIB:6.1f} MiB")
    print(f"smtp provision, SQLite ledger, no pacing, {args.rounds} interleaved rounds")
    for size in sizes:
        values = peaks[size]
        print(
            f"  {size:7d} rows: peak RSS median {statistics.median(values) / MIB:6.1f} MiB "
            f"(spread {min(values) / MIB:.1f}-{max(values) / MIB:.1f}), "
            f"{statistics.median(times[size]):.0f} s"
        )
    low, high = min(sizes), max(sizes)
    if high > low:
        slope = (statistics.median(peaks[high]) - statistics.median(peaks[low])) / (high - low)
        print(f"  growth per row ({low}-{high}): {slope:.0f} bytes (target <= 100)")


if __name__ == "__main__":
    main()
