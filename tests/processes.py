"""Starting the project's own commands in subprocesses, for tests that need a separate process."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

__all__ = ["Launch", "base_url_of", "child_env", "launch", "read_until"]

#: The checkout (not where sarv_async was imported from: a nox session installs it), so
#: children can import ``tests``.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

Launch = Callable[[Sequence[str]], "subprocess.Popen[bytes]"]


def child_env() -> dict[str, str]:
    """The environment of a child running this checkout's package, with no SARV_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SARV_", "SENDCLEAN_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def launch() -> Iterator[Launch]:
    """Start ``main(argv)`` in a subprocess; kill whatever is left at the end.

    A fixture: tests/conftest.py makes it available to every test.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: Sequence[str]) -> subprocess.Popen[bytes]:
        code = f"import sys; from sarv_async._cli import main; sys.exit(main({list(argv)!r}))"
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def read_until(
    proc: subprocess.Popen[bytes], marker: str, timeout: float = 15.0, *, stderr: bool = False
) -> str:
    """What the process prints (on stdout, or stderr) up to ``marker``, without blocking forever."""
    stream = proc.stderr if stderr else proc.stdout
    assert stream is not None
    fd = stream.fileno()
    text = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in text:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in time; got {text!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"the process ended early: {text!r}"
            text += chunk
    return text.decode()


def base_url_of(banner: str) -> str:
    match = re.search(r"base URL:\s+(http://\S+/v1\.0/)", banner)
    assert match, banner
    return match.group(1)
