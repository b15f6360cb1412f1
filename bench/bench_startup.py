"""Start-up costs: importing the package, and the pytest plugin in an unrelated project.

::

    python bench/bench_startup.py [--rounds 30] [--only import|pytest] [--source-of-before DIR]

Import: each statement runs in a fresh interpreter (cold: nothing imported yet; bytecode
already cached: the trees measured are compiled first, as ``PYTHONDONTWRITEBYTECODE``
would otherwise leave them to be compiled in every run), which prints how long the
statement took, measured around it, by the wall clock and in CPU time (which the load of
other processes disturbs far less). The statements rotate within each round, so load from
other processes falls on all alike. Printed: medians, the spread (25th-75th percentile)
and the per-round ratio to ``import httpx``, the floor any httpx-based SDK starts from,
and to each row's own floor where it has one: the dependencies the statement needs
imported alone, and for the first call the same call made with raw httpx. So what the
import no longer loads shows where it went: in constructing the client, or in the first
call (the cattrs converter, anyio's asyncio backend, the models).

pytest: ``python -m pytest`` runs one trivial test of a temporary project that knows
nothing of sarv-async. Wall and CPU time of the whole run, interleaved: with no plugin at all
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``) versus only this package's plugin (``-p``), and
with every installed plugin versus all but this one (``-p no:sarv_emulator``). The plugin's
cost is the per-round difference.

The ``sarv_async`` measured is this checkout's (put first on ``PYTHONPATH``), whatever is
installed. ``--source-of-before DIR`` adds the same rows for a source tree of another
version of ``sarv_async``, measured in the same interleaved rounds.
"""

from __future__ import annotations

import argparse
import compileall
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

#: The API's answer to the first call below, and that call made with raw httpx.
_FIRST_CALL_COMMON = """
import asyncio, json, httpx

def handler(request):
    return httpx.Response(
        200,
        content=b'{"status": "success", "message": "SMTP User Updated"}',
        headers={"content-type": "application/json"},
    )

BASE = "https://api.example.com/v1.0/"
"""
_RAW_FIRST_CALL = """
async def main():
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        body = json.dumps(
            {"smtp_user_name": "smtp1", "hourly_limit": 5, "owner_id": "o", "token": "t"}
        )
        answer = await http.post(
            BASE + "settings/editSmtp", content=body, headers={"content-type": "application/json"}
        )
        json.loads(answer.content)

asyncio.run(main())
"""
_SDK_FIRST_CALL = """
from sarv_async import AsyncSarvClient

async def main():
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with http, AsyncSarvClient("o", "t", base_url=BASE, http_client=http) as client:
        await client.smtp_users.update("smtp1", hourly_limit=5)

asyncio.run(main())
"""

#: name -> (set-up, not timed; the statement timed; the row it is also compared with)
IMPORTS: dict[str, tuple[str, str, str | None]] = {
    "nothing": ("pass", "pass", None),
    "import httpx": ("pass", "import httpx", None),
    "import httpx, attrs": ("pass", "import httpx, attrs", None),
    "httpx, attrs, cattrs, anyio as the client uses it": (
        "pass",
        "import httpx, attrs, cattrs, anyio; anyio.Semaphore, anyio.CancelScope",
        None,
    ),
    "import sarv_async": ("pass", "import sarv_async", None),
    "from sarv_async import AsyncSarvClient": (
        "pass",
        "from sarv_async import AsyncSarvClient",
        "import httpx, attrs",
    ),
    "the same, and AsyncSarvClient(...) on MockTransport": (
        "pass",
        "import httpx; from sarv_async import AsyncSarvClient; AsyncSarvClient('o', 't', "
        "base_url='https://api.example.com/v1.0/', "
        "http_client=httpx.AsyncClient(transport=httpx.MockTransport(print)))",
        None,
    ),
    "first call with raw httpx on MockTransport (edit)": (
        "pass",
        _FIRST_CALL_COMMON + _RAW_FIRST_CALL,
        None,
    ),
    "import + the first call on MockTransport (edit)": (
        "pass",
        _FIRST_CALL_COMMON + _SDK_FIRST_CALL,
        "first call with raw httpx on MockTransport (edit)",
    ),
    "the pytest plugin, pytest already imported": (
        "import pytest",
        "import sarv_async.testing.pytest_plugin",
        None,
    ),
}
TIMED = """{}
import time
w, c = time.perf_counter(), time.process_time()
{}
print(time.perf_counter() - w, time.process_time() - c)
"""
#: This checkout: the sarv_async measured (``--source-of-before`` adds another).
CHECKOUT = str(Path(__file__).resolve().parents[1])


def _env(source: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    if source:
        env["PYTHONPATH"] = source
        # Cached bytecode, as after an install, even when this shell writes none.
        compileall.compile_dir(Path(source) / "sarv_async", quiet=1)
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
    sources = {"": CHECKOUT} | ({" [before]": before} if before else {})
    cases: dict[str, Callable[[], Timing]] = {}
    floors: dict[str, str] = {}
    for label, source in sources.items():
        env = _env(source)
        for name, (setup, statement, floor) in IMPORTS.items():
            if label and "sarv_async" not in statement:
                continue
            cases[name + label] = partial(_import_time, setup, statement, env)
            if floor:
                floors[name + label] = floor
    results = interleaved(cases, rounds)
    for clock, clock_name in ((0, "wall time"), (1, "CPU time")):
        print(f"\nimport, cold (fresh interpreter, bytecode cached), {rounds} rounds, {clock_name}")
        print(f"{'statement':52s} {'median (p25-p75)':26s} {'vs import httpx':18s} vs its floor")
        for name, timings in results.items():
            times = [timing[clock] for timing in timings]
            line = f"{name:52s} {_ms(times):26s} {_ratio(times, results['import httpx'], clock)}"
            if name in floors:
                line += f" {_ratio(times, results[floors[name]], clock)}"
            print(line)
    for name, floor in floors.items():
        print(f"the floor of {name!r}: {floor!r}")


def _ratio(times: list[float], floor: list[Timing], clock: int) -> str:
    ratios = sorted(t / f[clock] for t, f in zip(times, floor, strict=True))
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return f"{median:.2f}x ({q1:.2f}-{q3:.2f})"


def pytest_startup(rounds: int, before: str | None) -> None:
    """Time pytest runs of an unrelated project with and without the plugin."""
    with tempfile.TemporaryDirectory() as directory:
        project = Path(directory)
        (project / "test_one.py").write_text("def test_one():\n    assert True\n")
        sources = {"": CHECKOUT} | ({" [before]": before} if before else {})
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
