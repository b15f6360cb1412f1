"""`LoopThread`: one event loop in a daemon thread, and a blocking way into it.

The synchronous clients run every call of their async twin on this loop, so the
connection pool, the rate limiter and the ledger live in one place for the client's
whole life, whichever thread calls. `anyio.from_thread.BlockingPortal` is the way in:
it is safe to call from many threads at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

__all__ = ["LoopThread", "running_loop"]

T = TypeVar("T")


def running_loop() -> str | None:
    """The event loop library running in this thread ("asyncio", "trio"), or None."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            return None
        return "trio"
    return None


class LoopThread:
    """An asyncio event loop running in a daemon thread until `stop`.

    A daemon thread, so that a client never closed does not keep the interpreter from
    exiting (a closed one stops its thread). A child forked from the process has no
    such thread: `forked` says so, and nothing may then be sent to the loop.
    """

    __slots__ = ("_pid", "_portal", "_thread")

    def __init__(self, name: str) -> None:
        self._pid = os.getpid()
        started: Future[BlockingPortal] = Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        self._thread.start()
        self._portal = started.result()

    @staticmethod
    def _run(started: Future[BlockingPortal]) -> None:
        import anyio
        from anyio.from_thread import BlockingPortal

        async def serve() -> None:
            async with BlockingPortal() as portal:
                started.set_result(portal)
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve)
        except BaseException as exc:  # pragma: no cover - the loop failed to start
            if not started.done():
                started.set_exception(exc)
            raise

    @property
    def forked(self) -> bool:
        """Whether this is a child forked from the process the loop runs in (not there)."""
        return os.getpid() != self._pid

    @property
    def in_this_thread(self) -> bool:
        """Whether the caller runs in the loop's own thread (a callback of a call)."""
        return threading.current_thread() is self._thread

    def call(self, func: Callable[[], Awaitable[T]]) -> T:
        """Run ``func()`` on the loop and wait for its result (or its exception).

        An interruption of the wait (KeyboardInterrupt) cancels the call on the loop.
        """
        future = self._portal.start_task_soon(func)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def call_sync(self, func: Callable[[], T]) -> T:
        """Run the plain function ``func`` in the loop's thread and return its result."""
        return self._portal.call(func)

    def enter(self, manager: AbstractAsyncContextManager[T]) -> AbstractContextManager[T]:
        """``manager`` as a blocking context manager, entered and exited by one task."""
        return self._portal.wrap_async_context_manager(manager)

    def stop(self) -> None:
        """Stop the loop once the calls in flight ended; wait for its thread to end."""
        self._portal.call(self._portal.stop)
        self._thread.join()
