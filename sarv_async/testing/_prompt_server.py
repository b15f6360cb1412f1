"""uvicorn's server, made to stop at once and to leave no connection open.

`uvicorn.Server` notices ``should_exit`` on a tick every 0.1 s, then waits a fixed 0.1 s
for connections, so every stop costs up to 0.2 s of nothing: in a test suite that starts
an emulator per test, minutes. `PromptServer` wakes its main loop as soon as
`request_exit` is called (from any thread), and its shutdown waits on events instead:
requests in flight still finish (up to ``timeout_graceful_shutdown``, then they are
cancelled and their connections cut), and every socket the server accepted is closed
before `serve` returns (see `stop_accepting`). Imported with uvicorn, when an emulator
first serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn

from ._accepting import stop_accepting

__all__ = ["TICK", "PromptServer"]

logger = logging.getLogger("uvicorn.error")

#: How often the main loop wakes by itself (uvicorn's tick: it refreshes the Date header).
TICK = 0.1
#: How long cancelled requests and cut connections get to end, once the grace is over.
_CUT_TIMEOUT = 1.0


class _Connections(set[Any]):
    """uvicorn's set of open connections, which can be awaited until it is empty.

    uvicorn's protocols ``add`` themselves on ``connection_made`` and ``discard``
    themselves on ``connection_lost``.
    """

    _emptied: asyncio.Event | None = None

    def discard(self, element: Any) -> None:
        super().discard(element)
        if not self and self._emptied is not None:
            self._emptied.set()

    async def wait_empty(self) -> None:
        """Return once no connection is left (on the loop that serves them)."""
        while self:
            self._emptied = asyncio.Event()
            await self._emptied.wait()


class PromptServer(uvicorn.Server):
    """A `uvicorn.Server` that `request_exit` stops without waiting for a tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._connections = _Connections()
        self.server_state.connections = self._connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._grace: asyncio.Timeout | None = None

    def request_exit(self) -> None:
        """Ask the server to stop; safe from any thread, before or after it started."""
        self.should_exit = True
        self._soon(self._wake.set)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's signal handler (a second Ctrl+C cuts the grace short), waking the loop."""
        super().handle_exit(sig, frame)
        self._soon(self._wake.set)
        if self.force_exit:
            self._soon(self._end_grace)

    def _soon(self, callback: Callable[[], object]) -> None:
        loop = self._loop
        if loop is not None:
            # RuntimeError: its loop has closed, so the server has stopped already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback)

    def _end_grace(self) -> None:
        grace = self._grace
        if grace is not None and not grace.expired():
            grace.reschedule(asyncio.get_running_loop().time())

    async def main_loop(self) -> None:
        """uvicorn's loop of ticks, each of which `request_exit` cuts short."""
        # Set before should_exit is first read: request_exit either sees the loop or has
        # set should_exit before the first tick reads it.
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self._wake.wait()
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's graceful shutdown, waiting on events instead of fixed times."""
        logger.info("Shutting down")
        await stop_accepting(self.servers)
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # closes it now if idle, else after its answer
        grace = 0 if self.force_exit else self.config.timeout_graceful_shutdown
        try:
            async with asyncio.timeout(grace) as self._grace:
                await self._until_closed()
        except TimeoutError:
            await self._cut()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _until_closed(self) -> None:
        """Return once no request is in flight and every connection has closed."""
        while self.server_state.tasks or self._connections:
            await self._until_answered()
            await self._connections.wait_empty()
        for server in self.servers:
            # Python 3.12+: also every transport the server made has closed its socket.
            await server.wait_closed()

    async def _until_answered(self) -> None:
        """Return once no request is in flight."""
        while self.server_state.tasks:
            await asyncio.wait(set(self.server_state.tasks))

    async def _cut(self) -> None:
        """Cancel the requests in flight (each answers 500), then cut the connections left."""
        tasks = self.server_state.tasks
        if tasks:
            logger.error(
                "Cancel %s running task(s), timeout graceful shutdown exceeded", len(tasks)
            )
        for task in tasks:
            task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        await _within(_CUT_TIMEOUT, self._until_answered())
        for connection in list(self._connections):
            connection.transport.abort()
        if not await _within(_CUT_TIMEOUT, self._until_closed()):
            logger.error("Connections still open %s s after being cut", _CUT_TIMEOUT)


async def _within(seconds: float, awaitable: Awaitable[None]) -> bool:
    """Await ``awaitable`` for up to ``seconds``; whether it finished."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await awaitable
            return True
    return False
