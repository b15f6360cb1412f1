"""Start-up costs: importing the package, and the pytest plugin in an unrelated project.

::

    python bench/bench_startup.py [--rounds 30] [--only import|pytest] [--source-of-before DIR]

Import: each statement runs in a fresh interpreter (cold: nothing imported yet; bytecode
already cached), which prints how long the statement took, measured around it, by the
wall clock and in CPU time (which the load of other processes disturbs far less). The
statements rotate within each round, so load from other processes falls on all alike.
Printed: medians, the spread (25th-75th percentile) and the per-round ratio to
``import httpx``, the floor any httpx-based SDK starts from.

pytest: ``python -m pytest`` runs one trivial test of a temporary project that knows
nothing of sarv-async. Wall and CPU time of the whole run, interleaved: with no plugin at all
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``) versus only this package's plugin (``-p``), and
with every installed plugin versus all but this one (``-p no:sarv_emulator``). The plugin's
cost is the per-round difference.

``--source-of-before DIR`` adds the same rows for a source tree of another version of
``sarv_async`` (put first on ``PYTHONPATH``), measured in the same interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

#: name -> (set-up, not timed; the statement timed)
IMPORTS = {
    "nothing": ("pass", "pass"),
    "import httpx": ("pass", "import httpx"),
    "import sarv_async": ("pass", "import sarv_async"),
    "from sarv_async import AsyncSarvClient": ("pass", "from sarv_async import AsyncSarvClient"),
    "the pytest plugin, pytest already imported": (
        "import pytest",
        "import sarv_async.testing.pytest_plugin",
    ),
}
TIMED = (
    "{}; import time; w, c = time.perf_counter(), time.process_time(); {}; "
    "print(time.perf_counter() - w, time.process_time() - c)"
)


def _env(source: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    if source:
        env["PYTHONPATH"] = source
    env.update(extra)
    return env


Timing = tuple[float, float]  # (wall, CPU) seconds


def _import_time(setup: str, statement: str, env: Mapping[str, str]) -> Timing:
    out = subprocess.run(  # noqa: S603 - this interpreter, our own statement
        [sys.executable, "-c", TIMED.format(setup, statement)],
        cwd=tempfile.gettempdir(),  # not a checkout, whose sarv_async would come first
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall, cpu = map(float, out.split())
    return wall, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pytest_time(project: Path, args: list[str], env: Mapping[str, str]) -> Timing:
    wall, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "test_one.py"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - wall, _children_cpu() - cpu


def interleaved(cases: dict[str, Callable[[], Timing]], rounds: int) -> dict[str, list[Timing]]:
    """Run every case once per round, in an order that rotates; warm up first."""
    for case in cases.values():
        case()
    results: dict[str, list[Timing]] = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(cases[name]())
    return results


def _ms(values: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return f"{median * 1e3:7.1f} ms ({q1 * 1e3:.1f}-{q3 * 1e3:.1f})"


def imports(rounds: int, before: str | None) -> None:
    """Time each import statement in fresh interpreters."""
    sources = {"": None} | ({" [before]": before} if before else {})
    cases: dict[str, Callable[[], Timing]] = {}
    for label, source in sources.items():
        env = _env(source)
        for name, (setup, statement) in IMPORTS.items():
            if label and "sarv_async" not in statement:
                continue
            cases[name + label] = partial(_import_time, setup, statement, env)
    results = interleaved(cases, rounds)
    for clock, clock_name in ((0, "wall time"), (1, "CPU time")):
        floor = [timing[clock] for timing in results["import httpx"]]
        print(f"\nimport, cold (fresh interpreter, bytecode cached), {rounds} rounds, {clock_name}")
        print(f"{'statement':52s} {'median (p25-p75)':26s} vs import httpx")
        for name, timings in results.items():
            times = [timing[clock] for timing in timings]
            ratios = sorted(t / f for t, f in zip(times, floor, strict=True))
            q1, median, q3 = statistics.quantiles(ratios, n=4)
            print(f"{name:52s} {_ms(times):26s} {median:.2f}x ({q1:.2f}-{q3:.2f})")


def pytest_startup(rounds: int, before: str | None) -> None:
    """Time pytest runs of an unrelated project with and without the plugin."""
    with tempfile.TemporaryDirectory() as directory:
        project = Path(directory)
        (project / "test_one.py").write_text("def test_one():\n    assert True\n")
        sources = {"": None} | ({" [before]": before} if before else {})
        cases: dict[str, Callable[[], Timing]] = {}
        for label, source in sources.items():
            bare = _env(source, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
            every = _env(source)
            runs = {
                "no plugin": ([], bare),
                "only the sarv_async plugin": (["-p", "sarv_async.testing.pytest_plugin"], bare),
                "installed plugins but sarv_emulator": (["-p", "no:sarv_emulator"], every),
                "installed plugins": ([], every),
            }
            for name, (args, env) in runs.items():
                if label and name == "no plugin":
                    continue
                cases[name + label] = partial(_pytest_time, project, args, env)
        results = interleaved(cases, rounds)
    for clock, clock_name in ((0, "wall time"), (1, "CPU time of the pytest process")):
        print(f"\npytest start-up, one trivial test, {rounds} interleaved rounds, {clock_name}")
        print(f"{'run':52s} {'median (p25-p75)':26s}")
        for name, timings in results.items():
            print(f"{name:52s} {_ms([timing[clock] for timing in timings])}")
        print("the plugin's cost (per-round difference)")
        for label in sources:
            for run, base in (
                ("only the sarv_async plugin" + label, "no plugin"),
                ("installed plugins" + label, "installed plugins but sarv_emulator" + label),
            ):
                diffs = [
                    a[clock] - b[clock] for a, b in zip(results[run], results[base], strict=True)
                ]
                print(f"  {run + ' - ' + base:64s} {_ms(diffs)}")


def main() -> None:
    """Parse options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="default: %(default)s")
    parser.add_argument("--only", choices=("import", "pytest"))
    parser.add_argument("--source-of-before", metavar="DIR", help="another sarv_async's tree")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    if args.only in (None, "import"):
        imports(args.rounds, args.source_of_before)
    if args.only in (None, "pytest"):
        pytest_startup(args.rounds, args.source_of_before)


if __name__ == "__main__":
    main()
