"""A hostile HTTP/1.1 server on loopback, for tests of what the emulator cannot misbehave at.

It speaks raw bytes over a real socket, so it can drip a status line, send an endless
chunked body (compressed or not) or a decompression bomb, or put bytes past
``Content-Length``. Each connection is served in a thread of its own by a
``handler(conn)`` the test writes, so it serves asyncio and trio clients alike. Leaving
the ``with`` block closes every socket and stops every thread.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["Conn", "HostileServer", "gzip_bomb", "http_response", "send_endless_gzip"]

_MIB = 1 << 20


def http_response(
    body: bytes | dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> bytes:
    """A complete, well-framed HTTP/1.1 response (JSON when ``body`` is a dict)."""
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}"]
    lines.append("Content-Type: application/json")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


@functools.cache
def gzip_bomb(mib: int, fill: bytes = b" ", *, prefix: bytes = b"") -> bytes:
    """One gzip member inflating to ``prefix`` then ``mib`` MiB of ``fill``: ~1 KiB a MiB."""
    gzip = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = fill * (_MIB // len(fill))
    parts = [gzip.compress(prefix), *(gzip.compress(block) for _ in range(mib)), gzip.flush()]
    return b"".join(parts)


def send_endless_gzip(conn: Conn, prefix: bytes, fill: bytes = b" ") -> None:
    """Answer 200 with a chunked gzip body: ``prefix``, then ``fill`` without end, fast.

    Each chunk is one MiB of ``fill`` compressed on its own (a full flush), so the server
    sends the same ~1 KiB again and again, as fast as the client reads.
    """
    gzip = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    first = gzip.compress(prefix) + gzip.flush(zlib.Z_FULL_FLUSH)
    block = fill * (_MIB // len(fill))
    again = gzip.compress(block) + gzip.flush(zlib.Z_FULL_FLUSH)
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
    if not conn.send(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()):
        return
    chunk = f"{len(again):x}\r\n".encode() + again + b"\r\n"
    if not conn.send(f"{len(first):x}\r\n".encode() + first + b"\r\n"):
        return
    while conn.send(chunk) and conn.sleep(0):
        pass


class Conn:
    """One accepted connection, as the handler sees it."""

    def __init__(self, sock: socket.socket, index: int, stopping: threading.Event) -> None:
        self.sock = sock
        #: 0 for the server's first connection, 1 for the second, ...
        self.index = index
        self._stopping = stopping
        self._buffer = b""
        #: Set once the client closed its end (a read returned no bytes).
        self.closed_by_client = threading.Event()

    def read_request(self) -> tuple[str, bytes] | None:
        """The next request's path and body; None once the client closed the connection."""
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill():
                return None
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        while len(self._buffer) < length:
            if not self._fill():
                return None
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return path, body

    def wait_closed(self, timeout: float) -> bool:
        """Whether the client closes this connection within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed_by_client.is_set():
            if not self._fill(timeout=deadline - time.monotonic()):
                break
        return self.closed_by_client.is_set()

    def send(self, data: bytes) -> bool:
        """Send ``data``; False if the client is gone."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def drip(self, data: bytes, every: float) -> bool:
        """Send ``data`` one byte at a time, ``every`` seconds apart; False once cut off."""
        for i in range(len(data)):
            if self._stopping.wait(every) or not self.send(data[i : i + 1]):
                return False
        return True

    def sleep(self, seconds: float) -> bool:
        """Wait, unless the server is stopping; False if it is."""
        return not self._stopping.wait(seconds)

    def _fill(self, timeout: float = 30.0) -> bool:
        self.sock.settimeout(max(0.01, timeout))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            self.closed_by_client.set()
            return False
        self._buffer += chunk
        return True


class HostileServer:
    """Serve every connection to ``127.0.0.1:<free port>`` with ``handler``."""

    def __init__(self, handler: Callable[[Conn], None]) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: Every connection accepted so far, in order.
        self.connections: list[Conn] = []
        #: (connection index, path) of every request a handler read.
        self.requests: list[tuple[int, str]] = []

    @property
    def base_url(self) -> str:
        port = self._listener.getsockname()[1]
        return f"http://127.0.0.1:{port}/v1.0/"

    def __enter__(self) -> HostileServer:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                conn = Conn(sock, len(self.connections), self._stopping)
                self.connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: Conn) -> None:
        with contextlib.suppress(OSError):
            self._handler(conn)

    def read_request(self, conn: Conn) -> tuple[str, bytes] | None:
        """Read ``conn``'s next request and note its path."""
        request = conn.read_request()
        if request is not None:
            with self._lock:
                self.requests.append((conn.index, request[0]))
        return request
