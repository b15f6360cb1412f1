"""Every Python sample of README.md and docs/*.md type-checks (mypy --strict) and runs.

Samples run in this process against one shared emulator, whose account is in
``SARV_OWNER_ID``, ``SARV_TOKEN`` and ``SARV_BASE_URL`` (samples that build a client
from the environment reach it that way). Pacing is off by default for the samples,
which do not measure it; a sample that passes ``rate_limit`` keeps its own. A sample
marked ``<!-- docs-test: no-run -->`` is only type-checked. New pages in docs/ are
covered without being listed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from sarv_async import AsyncSarvClient, SarvClient
from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN, Emulator
from tests.once import once_per_run

from ._samples import Sample, find_samples, mypy_files, sample_errors

# mypy --strict over every sample (once per run), then each sample runs.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = find_samples(ROOT)


@pytest.fixture(scope="session")
def type_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy --strict (the project's settings) over every sample at once: errors per sample.

    Once per run, whichever worker asks first (`once_per_run`).
    """

    def check(directory: Path) -> None:
        files = mypy_files(SAMPLES, directory)
        # In a process of its own (the tests group installs mypy): in the worker, mypy's
        # objects would stay in its heap and slow every later gc.collect() there.
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--cache-dir",
                str(ROOT / ".mypy_cache"),
                "--no-error-summary",
                *map(str, files),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        out, err = done.stdout, done.stderr
        assert not err.strip(), err
        (directory / "errors.json").write_text(json.dumps(sample_errors(out, files)))

    directory = once_per_run(tmp_path_factory, "docs-samples-mypy", check)
    errors: dict[str, list[str]] = json.loads((directory / "errors.json").read_text())
    return errors


@pytest.fixture(scope="session")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator (the demo account, no rate limit) for every sample."""
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def account(shared_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator, emptied, in the SARV_* variables; client pacing off by default."""
    shared_emulator.reset()
    monkeypatch.setenv("SARV_OWNER_ID", DEMO_OWNER_ID)
    monkeypatch.setenv("SARV_TOKEN", DEMO_TOKEN)
    monkeypatch.setenv("SARV_BASE_URL", shared_emulator.base_url)
    for client_class in (AsyncSarvClient, SarvClient):
        defaults = client_class.__init__.__kwdefaults__
        assert defaults is not None
        monkeypatch.setitem(defaults, "rate_limit", None)
    return shared_emulator


def test_samples_are_found() -> None:
    """The harness sees the samples of the README and of every page (a guard on the parser)."""
    sources = {sample.source for sample in SAMPLES}
    assert "README.md" in sources
    assert {"docs/emulator.md", "docs/provisioning.md"} <= sources
    assert all(sample.code.strip() for sample in SAMPLES)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: sample.id)
def test_sample(
    sample: Sample,
    type_errors: dict[str, list[str]],
    account: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sample passes mypy --strict and, unless marked no-run, runs as printed."""
    errors = [line for line in type_errors[sample.id] if ": error:" in line]
    assert not errors, "\n".join(type_errors[sample.id])
    if not sample.run:
        return
    monkeypatch.chdir(tmp_path)  # a sample that writes files writes them here
    if sample.defines_tests:
        _run_with_pytest(sample, tmp_path)
    elif sample.isolated:
        _run_in_subprocess(sample, tmp_path)
    elif sample.is_async:
        backends = ["asyncio"] if sample.uses_asyncio else ["asyncio", "trio"]
        for backend in backends:
            account.reset()
            anyio.run(_run_async, sample, backend=backend)
    else:
        exec(sample.compile(), _namespace(sample))  # noqa: S102 - our own docs


def _namespace(sample: Sample) -> dict[str, Any]:
    return {"__name__": "__main__", "__file__": sample.id}


async def _run_async(sample: Sample) -> None:
    coroutine = eval(sample.compile(), _namespace(sample))  # noqa: S307 - our own docs
    await coroutine


# Runs a sample file in a fresh interpreter, top-level await allowed.
_RUNNER = """
import ast, inspect, sys
import anyio
path = sys.argv[1]
code = compile(open(path).read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__"}
if code.co_flags & inspect.CO_COROUTINE:
    async def main():
        await eval(code, namespace)
    anyio.run(main)
else:
    exec(code, namespace)
"""


def _run_in_subprocess(sample: Sample, directory: Path) -> None:
    """Run a sample in its own interpreter, the account in its environment."""
    path = directory / "sample.py"
    path.write_text(sample.code, encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", _RUNNER, str(path)],
        cwd=directory,
        env=dict(os.environ),  # SARV_* point at the emulator (the account fixture)
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _run_with_pytest(sample: Sample, directory: Path) -> None:
    """Run a sample of test functions with a plain pytest, as a user would paste it."""
    (directory / "pytest.ini").write_text(sample.ini or "[pytest]\n", encoding="utf-8")
    # Warnings are errors, so a page's ini shown to silence one is proven to. A sample
    # without an ini of its own runs as for a user without pytest-asyncio.
    options = ["-W", "error"] if sample.ini else ["-p", "no:asyncio"]
    (directory / "test_sample.py").write_text(sample.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SARV_", "SENDCLEAN_"))}
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *options,
            "-c",
            str(directory / "pytest.ini"),
            "--rootdir",
            str(directory),
            str(directory / "test_sample.py"),
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout, result.stdout
