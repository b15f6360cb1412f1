"""uvicorn's server, made to stop at once when told to.

`uvicorn.Server` notices ``should_exit`` on a tick every 0.1 s and then waits a fixed
0.1 s for open connections to wind down, so every stop costs up to 0.2 s of nothing: in a
test suite that starts an emulator per test, minutes. `PromptServer` wakes its main loop
as soon as `request_exit` is called (from any thread), and skips the fixed wait when no
connection and no request is left; with any left, uvicorn's own graceful shutdown runs.
Imported with uvicorn, when an emulator first serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

#: How often the main loop wakes by itself (uvicorn's own tick: it refreshes the Date header).
TICK = 0.1


class PromptServer(uvicorn.Server):
    """A `uvicorn.Server` that `request_exit` stops without waiting for a tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def request_exit(self) -> None:
        """Ask the server to stop; safe from any thread, and before or after it started."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            # RuntimeError: its loop has closed, so the server has stopped already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        """uvicorn's loop of ticks, each of which `request_exit` cuts short."""
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close at once when nothing is open; otherwise uvicorn's graceful shutdown."""
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        logging.getLogger("uvicorn.error").info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()
