"""Stopping an asyncio server without leaking the connections it has just accepted.

asyncio's selector loop accepts a connection in a reader callback, but makes its
transport in a new task, one loop turn later (``_accept_connection2`` in
``asyncio/selector_events.py``). If ``Server.close()`` runs in between, the transport
fails to attach (``Server._attach`` asserts that the server is open), the task swallows
the error, and the accepted socket is left to the garbage collector: a
``ResourceWarning``. If the loop ends first, the task is cancelled before it starts, with
the same result. A stop that wakes the loop from another thread (``call_soon_threadsafe``)
is queued ahead of that turn's accepts, so it meets this race; uvicorn's 0.1 s tick, a
timer, is queued after them and never did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

__all__ = ["stop_accepting"]


async def stop_accepting(servers: Iterable[asyncio.Server]) -> None:
    """Stop accepting; return once each connection accepted so far has its protocol.

    The servers stay open (so the transports can attach): close them afterwards.
    """
    loop = asyncio.get_running_loop()
    for server in servers:
        for sock in server.sockets:
            # A proactor loop (Windows) makes the transport as it accepts: no race there.
            with contextlib.suppress(NotImplementedError):
                loop.remove_reader(sock.fileno())
    # Every accept task was scheduled before this point (removing the reader cancels an
    # accept queued for this turn), so its first step, which makes the transport and
    # schedules connection_made, runs before this task's next step; connection_made
    # runs before the step after that.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
