"""uvicorn's server, made to notice a stop at once.

`uvicorn.Server` notices ``should_exit`` on a tick every 0.1 s, so every stop costs up
to 0.1 s of nothing before uvicorn's own graceful shutdown: in a test suite that starts an
emulator per test, minutes. `PromptServer` wakes its main loop as soon as `request_exit`
is called (from any thread). The shutdown itself is uvicorn's, with its fixed 0.1 s for
connections to wind down: skipping it when none was open left, on Python 3.13, sockets
the stopped loop never closed.
Imported with uvicorn, when an emulator first serves.
"""

from __future__ import annotations

import asyncio
import contextlib

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
