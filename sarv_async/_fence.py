"""Lease fences: a create leaves only while its holder's lease on the key surely runs.

A process frozen after the ledger gave it a key (``SIGSTOP``, a paused container or VM,
a machine swapping hard) stops renewing its lease. Once the lease has run out, another
caller may reconcile the key, find no user and create one. When the frozen process
resumes, its create must not leave any more: that would be a second user for one key.

The holder sends its create with a `Fence` saying until when (anyio clock) its lease
surely runs: measured from *before* the ledger call that granted or renewed it, so never
later than the store's own deadline. The pipeline calls `Fence.check` just before each
attempt goes out; past the deadline it raises `LeaseLost`, which the engine turns into
"begin again" (the key is then reconciled like a lost answer). Nothing was sent, so
nothing is lost. `LeaseLost` never reaches a caller of the SDK.

The fence goes with the call as an argument, not in a context variable: every timer
set during the call (the attempt's deadline) keeps a copy of the context until the
timer's own deadline, which would keep each create's fence alive long after the create.
"""

from __future__ import annotations

import anyio
import attrs

__all__ = ["Fence", "LeaseLost"]


@attrs.define
class Fence:
    """Until when (anyio clock) the holder's lease on its key surely runs."""

    until: float

    def extend(self, asked: float, lease: float) -> None:
        """A renewal asked at ``asked`` (anyio clock) for ``lease`` seconds succeeded."""
        self.until = max(self.until, asked + lease)

    def check(self) -> None:
        """Raise `LeaseLost` if the lease may have run out (just before an attempt leaves)."""
        now = anyio.current_time()
        if now >= self.until:
            raise LeaseLost(f"the lease ran out {now - self.until:.3f} s ago")


class LeaseLost(Exception):
    """The create was not sent: its holder's lease may have run out (see the module)."""
