"""An answer's body, decoded by the SDK and bounded in size: at most ``max_answer_bytes``.

The SDK asks for ``Accept-Encoding: identity``, but a server may compress anyway, and
httpx inflates a Content-Encoding with no bound on what one chunk becomes: 64 KiB of
gzip can be 64 MB, and ``gzip, gzip`` thousands of times that. So `Body` reads the raw
bytes and inflates gzip and deflate itself, `PIECE` bytes at a time per coding, counting
what comes out; past the bound it stops with `BodyError`. Codings it cannot inflate in
steps (``br``, ``zstd``, unknown ones) are refused: none was asked for.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator
from typing import NoReturn

import anyio
import httpx

from ._exceptions import UnexpectedResponseError
from ._text import server_text

__all__ = ["DEFAULT_MAX_ANSWER_BYTES", "Answer", "Body", "BodyError", "end", "read_body"]

#: 64 MiB: more than three times the answer of a list of 100,000 users (15-20 MB), and
#: little enough that a hostile answer cut off there costs well under 100 MB of memory.
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: The most one coding inflates in one step.
PIECE = 64 * 1024
#: More codings than this on one body (``gzip, gzip, gzip, gzip``) are refused.
MAX_CODINGS = 3


class BodyError(Exception):
    """A body could not be read within its bound; ``error`` is the `SarvError` to raise.

    ``error`` was made, never raised, so it holds no frame of the reading (nor of the
    consumer the body was read by, which may hold the answer's passwords).
    """

    def __init__(self, error: UnexpectedResponseError) -> None:
        super().__init__(str(error))
        self.error = error


class Answer:
    """A whole answer: status, headers and the decoded body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: httpx.Headers, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content


class Body:
    """The decoded body of ``response``, in pieces; `BodyError` once past ``limit`` bytes."""

    __slots__ = (
        "_decoders",
        "_done",
        "_left",
        "_limit",
        "_path",
        "_pieces",
        "_raw",
        "_response",
        "_status",
    )

    def __init__(self, response: httpx.Response, limit: int, path: str) -> None:
        self._status = response.status_code
        self._limit = limit
        self._left = limit
        self._path = path
        # A body read when made (httpx.MockTransport) was decoded by httpx then.
        self._decoders = [] if response.is_stream_consumed else _decoders(response, path)
        self._raw: AsyncIterator[bytes] | None = None
        self._response = response
        self._pieces: Iterator[bytes] | None = None
        self._done = False

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._pieces is not None:
                piece = next(self._pieces, None)
                if piece is not None:
                    return self._count(piece)
                self._pieces = None
            if self._done:
                raise StopAsyncIteration
            if self._raw is None:
                if self._response.is_stream_consumed:
                    self._done = True
                    self._pieces = iter((self._response.content,))
                    continue
                self._raw = self._response.aiter_raw()
            chunk = await anext(self._raw, None)
            if chunk is None:
                self._done = True
                continue
            if not self._decoders:
                return self._count(chunk)
            self._pieces = self._inflated(chunk, 0)

    async def read(self) -> bytes:
        """The whole body (at most ``limit`` bytes), read to its end or closed."""
        try:
            return b"".join([piece async for piece in self])
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop reading where the body stands (see `end`)."""
        if self._raw is not None and not self._done:
            self._done = True
            await end(self._raw)

    def _count(self, piece: bytes) -> bytes:
        self._left -= len(piece)
        if self._left < 0:
            _fail(self._path, self._status, _too_large(self._limit))
        return piece

    def _inflated(self, data: bytes, level: int) -> Iterator[bytes]:
        """``data`` through the codings from ``level`` on, one bounded piece at a time."""
        if level == len(self._decoders):
            yield data
            return
        try:
            for piece in self._decoders[level].feed(data):
                yield from self._inflated(piece, level + 1)
        except zlib.error:
            error = "invalid compressed data"
        else:
            return
        _fail(self._path, self._status, f"a body that could not be decoded ({error})")


async def read_body(response: httpx.Response, limit: int, path: str) -> bytes:
    """The whole decoded body of ``response``: at most ``limit`` bytes, else `BodyError`."""
    if response.is_stream_consumed:  # read and decoded when made (httpx.MockTransport)
        content = response.content
        if len(content) > limit:
            _fail(path, response.status_code, _too_large(limit))
        return content
    return await Body(response, limit, path).read()


def _too_large(limit: int) -> str:
    return (
        f"more than max_answer_bytes ({limit:,} bytes, decoded); raise it with "
        "AsyncSarvClient(max_answer_bytes=...) or client.with_options(max_answer_bytes=...) "
        "if such answers are expected"
    )


def _fail(path: str, status: int, what: str) -> NoReturn:
    """Raise `BodyError`: ``path`` answered HTTP ``status`` with ``what``."""
    raise BodyError(
        UnexpectedResponseError(
            f"POST {path} answered HTTP {status} with {what}", status_code=status
        )
    )


class _Inflater:
    """Inflates one gzip or deflate coding, at most `PIECE` bytes per step."""

    __slots__ = ("_first", "_zlib")

    def __init__(self, coding: str) -> None:
        gzip = coding in ("gzip", "x-gzip")
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)
        #: deflate: zlib-wrapped, else (on the first failure) raw, as httpx reads it.
        self._first = not gzip

    def feed(self, data: bytes) -> Iterator[bytes]:
        """What ``data`` inflates to, in pieces: all of it, once the pieces are taken."""
        while True:
            try:
                out = self._zlib.decompress(data, PIECE)
            except zlib.error:
                if not self._first:
                    raise
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self._first = False
                continue
            self._first = False
            data = self._zlib.unconsumed_tail
            if out:
                yield out
            if not data and len(out) < PIECE:  # the input is spent, and so is the output
                return


def _decoders(response: httpx.Response, path: str) -> list[_Inflater]:
    """The inflaters for the body's codings, outermost first; `BodyError` if unreadable."""
    codings = [
        value.strip().lower()
        for value in response.headers.get_list("content-encoding", split_commas=True)
        if value.strip().lower() not in ("", "identity")
    ]
    if not codings:
        return []
    unknown = [coding for coding in codings if coding not in ("gzip", "x-gzip", "deflate")]
    if unknown:
        _fail(
            path,
            response.status_code,
            f"Content-Encoding {server_text(unknown[0], limit=40)!r}, which the SDK did not "
            "ask for and does not read",
        )
    if len(codings) > MAX_CODINGS:
        _fail(
            path,
            response.status_code,
            f"{len(codings)} content codings, more than the SDK reads ({MAX_CODINGS})",
        )
    return [_Inflater(coding) for coding in reversed(codings)]


async def end(chunks: AsyncIterator[bytes]) -> None:
    """Finish ``chunks`` where they stand: at once, and every generator httpx nests in it.

    Closing the outer generator would leave the inner ones (httpx's raw stream) to the
    garbage collector, which trio reports. A cancellation thrown through them ends each.
    """
    with anyio.CancelScope() as scope:
        scope.cancel()
        async for _ in chunks:
            pass
