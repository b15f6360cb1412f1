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
With psutil installed, the child's RSS is also sampled every 50 ms: "mid-run" is the
largest sample in the middle half of the run (while rows are being created), to tell
state that grows with the rows from the final list of the whole account (the orphan
check), which comes last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
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


def sample(pid: int, samples: list[tuple[float, int]]) -> None:
    """Append ``(seconds, rss)`` of process ``pid`` every 50 ms until it ends."""
    try:
        import psutil  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return
    started = time.perf_counter()
    try:
        process = psutil.Process(pid)
        while True:
            samples.append((time.perf_counter() - started, process.memory_info().rss))
            time.sleep(0.05)
    except psutil.Error:
        return


def mid_run(samples: list[tuple[float, int]]) -> int:
    """The largest RSS sampled in the middle half of the run (0 without samples)."""
    if not samples:
        return 0
    end = samples[-1][0]
    return max((rss for at, rss in samples if end / 4 <= at <= end * 3 / 4), default=0)


def run_cli(url: str, specs: str, tmp: str, tag: str) -> tuple[int, int, float]:
    """Peak RSS, mid-run RSS (bytes) and seconds of one provisioning run."""
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
    samples: list[tuple[float, int]] = []
    sampler = threading.Thread(target=sample, args=(child.pid, samples), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    sampler.join()
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.stderr is not None
    errors = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if child.returncode != 0:
        raise SystemExit(f"provision exited {child.returncode}: {errors[-2000:]}")
    if "orphans were not looked for" in errors:  # the last list is part of what is measured
        raise SystemExit(f"the run's last list failed: {errors[-2000:]}")
    return usage.ru_maxrss * 1024, mid_run(samples), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,50000,100000", help="default: %(default)s")
    parser.add_argument("--rounds", type=int, default=2, help="default: %(default)s")
    args = parser.parse_args()
    sizes = [int(size) for size in args.rows.split(",")]
    peaks: dict[int, list[int]] = {size: [] for size in sizes}
    mids: dict[int, list[int]] = {size: [] for size in sizes}
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
                peak, mid, elapsed = run_cli(url, files[size], tmp, f"{size}-{round_}")
                peaks[size].append(peak)
                mids[size].append(mid)
                times[size].append(elapsed)
                print(
                    f"  round {round_ + 1}: {size:7d} rows  peak RSS {peak / MIB:6.1f} MiB"
                    f"  mid-run {mid / MIB:6.1f} MiB"
                )
    print(f"smtp provision, SQLite ledger, no pacing, {args.rounds} interleaved rounds")
    for size in sizes:
        values = peaks[size]
        print(
            f"  {size:7d} rows: peak RSS median {statistics.median(values) / MIB:6.1f} MiB "
            f"(spread {min(values) / MIB:.1f}-{max(values) / MIB:.1f}), "
            f"mid-run {statistics.median(mids[size]) / MIB:6.1f} MiB, "
            f"{statistics.median(times[size]):.0f} s"
        )
    low, high = min(sizes), max(sizes)
    if high > low:
        slope = (statistics.median(peaks[high]) - statistics.median(peaks[low])) / (high - low)
        print(f"  growth per row ({low}-{high}): {slope:.0f} bytes (target <= 100)")
        mid_slope = (statistics.median(mids[high]) - statistics.median(mids[low])) / (high - low)
        print(f"  mid-run growth per row: {mid_slope:.0f} bytes")


if __name__ == "__main__":
    main()
