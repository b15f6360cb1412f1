"""A real ``redis-server`` on a free loopback port, for tests that share state through Redis.

Under ``CI=true`` a missing ``redis-server`` fails the test (CI installs it); elsewhere
the test is skipped with a reason that names the missing binary.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["RedisServer", "redis_server"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RedisServer:
    """One ``redis-server`` process bound to 127.0.0.1; restartable.

    With ``persist`` it keeps an append-only file (as a ledger's Redis must); without it,
    it holds nothing across a restart.
    """

    def __init__(self, binary: str, directory: Path, *, persist: bool = True) -> None:
        self.binary = binary
        self.directory = directory
        self.persist = persist
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(  # noqa: S603 - the found binary, fixed arguments
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persist else "no",
                "--appendfsync",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, "redis-server exited at start-up"
            assert time.monotonic() < deadline, "redis-server did not start within 10 s"
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def command(self, *args: str) -> bytes:
        """Run one command with a raw socket (for checks from the test itself); its raw reply."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"".join(parts))
            reader = sock.makefile("rb")
            raw: list[bytes] = []
            _read_reply(reader, raw)
        return b"".join(raw)

    def query(self, *args: str) -> Any:
        """Run one command; its reply as Python values (bytes decoded to str)."""
        return _parse(self.command(*args))


def _read_reply(reader: Any, raw: list[bytes]) -> None:
    """Read one RESP2 reply from ``reader`` into ``raw``, its lines as they came."""
    line = reader.readline()
    raw.append(line)
    kind, rest = line[:1], line[1:-2]
    if kind == b"$" and int(rest) >= 0:
        raw.append(reader.read(int(rest) + 2))
    elif kind == b"*":
        for _ in range(max(0, int(rest))):
            _read_reply(reader, raw)


def _parse(data: bytes) -> Any:
    def one(at: int) -> tuple[Any, int]:
        end = data.index(b"\r\n", at)
        kind, rest = data[at : at + 1], data[at + 1 : end]
        at = end + 2
        if kind in (b"+", b"-"):
            return rest.decode(), at
        if kind == b":":
            return int(rest), at
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None, at
            return data[at : at + size].decode(), at + size + 2
        assert kind == b"*", data
        items = []
        for _ in range(max(0, int(rest))):
            item, at = one(at)
            items.append(item)
        return items, at

    return one(0)[0]


def _redis_server(tmp_path: Path, *, persist: bool) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server not found on PATH (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    server = RedisServer(binary, tmp_path, persist=persist)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` for the test (append-only file on), killed after it."""
    yield from _redis_server(tmp_path, persist=True)


@pytest.fixture
def volatile_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` without persistence: a restart empties it."""
    yield from _redis_server(tmp_path, persist=False)
