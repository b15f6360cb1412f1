"""The figures the benches record: bench/results.json, which the site's charts are drawn from.

A bench script calls `record` once per case it measured. An entry is keyed by the bench
and its case (the options that make it another measurement: the rate, the backend, the
transport...), so a rerun of a case replaces that case's entry and leaves the others;
every entry says when, on which commit, Python and machine, and by which command it was
taken. ``SARV_BENCH_RESULTS=path`` writes elsewhere; ``SARV_BENCH_RESULTS=`` (empty) not at
all.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "entry_key", "load", "record"]

#: Where the figures are kept, beside the benches.
RESULTS = Path(__file__).resolve().parent / "results.json"

_ABOUT = (
    "Figures recorded by the bench scripts when run (bench/_results.py); the site's "
    "benchmark charts are drawn from them at build time (bench/charts.py). Each entry "
    "says when, where and how it was taken."
)


def entry_key(bench: str, case: Mapping[str, object]) -> str:
    """``bench[option=value,...]``: one entry per bench and case."""
    return f"{bench}[{','.join(f'{name}={case[name]}' for name in sorted(case))}]"


def load(path: Path = RESULTS) -> dict[str, Any]:
    """The recorded figures (an empty record if there are none yet)."""
    if not path.exists():
        return {"about": _ABOUT, "entries": {}}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "sarv_async"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def record(bench: str, case: Mapping[str, object], figures: Mapping[str, object]) -> None:
    """Store one case's figures in bench/results.json, replacing that case's last ones."""
    target = os.environ.get("SARV_BENCH_RESULTS")
    if target == "":
        return
    path = Path(target) if target else RESULTS
    data = load(path)
    data["about"] = _ABOUT
    load1, load5, _ = os.getloadavg()
    data["entries"][entry_key(bench, case)] = {
        "bench": bench,
        "case": dict(case),
        "figures": dict(figures),
        "source": "run",
        "recorded": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "commit": _commit(),
        "command": shlex.join(["python", *sys.argv]),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load1:.1f} / {load5:.1f}",
    }
    data["entries"] = dict(sorted(data["entries"].items()))
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(path)
    print(f"recorded in {path}: {entry_key(bench, case)}")
