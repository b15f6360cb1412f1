"""Per-account rate limits, enforced strictly by arrival time.

A request is accepted when, for every window ``COUNT/PERIOD``, fewer than COUNT
accepted requests arrived in the last PERIOD seconds (the half-open interval
``(now - PERIOD, now]``). So no interval of length PERIOD, wherever it starts,
holds more than COUNT accepted requests. Rejected requests leave no trace.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

from .._rate_spec import RateWindow

__all__ = ["RateWindows"]


class RateWindows:
    """The times of accepted requests per account, checked against every window.

    Not thread-safe: the caller holds a lock and reads the clock under it, so the
    recorded times never go backwards.
    """

    def __init__(
        self,
        windows: Sequence[RateWindow],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.windows = tuple(windows)
        self._horizon = max((w.period for w in self.windows), default=0.0)
        self._accepted: dict[str, list[float]] = {}
        self._clock = clock

    def admit(self, key: str) -> float | None:
        """Accept a request for ``key`` now and return ``None``, or return the seconds to wait."""
        if not self.windows:
            return None
        now = self._clock()
        times = self._accepted.setdefault(key, [])
        # Forget what no window can see any more.
        del times[: bisect.bisect_right(times, now - self._horizon)]
        blocked = False
        wait = 0.0
        for window in self.windows:
            inside = len(times) - bisect.bisect_right(times, now - window.period)
            if inside >= window.limit:
                # Room comes back when the oldest request that keeps it full leaves the window.
                blocked = True
                wait = max(wait, times[len(times) - window.limit] + window.period - now)
        if blocked:
            return wait
        times.append(now)
        return None

    def clear(self) -> None:
        """Forget every accepted request."""
        self._accepted.clear()
