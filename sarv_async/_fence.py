"""Lease fences: a create leaves only while its holder's lease on the key surely runs.

A process frozen after the ledger gave it a key (``SIGSTOP``, a paused container or VM,
a machine swapping hard) stops renewing its lease. Once the lease has run out, another
caller may reconcile the key, find no user and create one. When the frozen process
resumes, its create must not leave any more: that would be a second user for one key.

The holder runs its create inside `fenced` with a `Fence` saying until when (anyio
clock) its lease surely runs: measured from *before* the ledger call that granted or
renewed it, so never later than the store's own deadline. The pipeline calls `check`
just before each attempt goes out; past the deadline it raises `LeaseLost`, which the
ledger code turns into "begin again" (the key is then reconciled like a lost answer).
Nothing was sent, so nothing is lost. `LeaseLost` never reaches a caller of the SDK.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import attrs

__all__ = ["Fence", "LeaseLost", "check", "fenced"]


@attrs.define
class Fence:
    """Until when (anyio clock) the holder's lease on its key surely runs."""

    until: float

    def extend(self, asked: float, lease: float) -> None:
        """A renewal asked at ``asked`` (anyio clock) for ``lease`` seconds succeeded."""
        self.until = max(self.until, asked + lease)


class LeaseLost(Exception):
    """The create was not sent: its holder's lease may have run out (see the module)."""


_current: contextvars.ContextVar[Fence | None] = contextvars.ContextVar(
    "sarv_async_fence", default=None
)


@contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Check ``fence`` before every attempt sent inside the block (this task only)."""
    token = _current.set(fence)
    try:
        yield
    finally:
        _current.reset(token)


def check() -> None:
    """Raise `LeaseLost` if the current fence's lease may have run out."""
    fence = _current.get()
    if fence is not None and anyio.current_time() >= fence.until:
        raise LeaseLost(f"the lease ran out {anyio.current_time() - fence.until:.3f} s ago")
