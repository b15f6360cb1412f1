"""`MovingRate`: results per second over the last minute, for a progress display.

Provisioning starts with a burst (the rate limiter lets a window's worth of calls go at
once), then settles to the account's pace. A rate measured from the start, or from the
first results, shows the burst (thousands per second) and an ETA that is far too short;
this one looks at the last ``window`` seconds only, and says nothing until it has seen
``min_span`` seconds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["MovingRate"]


class MovingRate:
    """Counts per second over a moving window of time."""

    __slots__ = ("_clock", "_min_span", "_samples", "_window")

    def __init__(
        self,
        *,
        window: float = 60.0,
        min_span: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._min_span = min_span
        self._clock = clock
        #: (time, count) pairs: the oldest is the newest one at least ``window`` old, if any.
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def add(self, count: int) -> None:
        """Record that ``count`` (a running total) is reached now."""
        now = self._clock()
        self._samples.append((now, count))
        # Keep one sample at or beyond the window's start, to measure the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()

    def per_second(self) -> float | None:
        """The rate over the window (or since the start, if shorter); None before ``min_span``."""
        now = self._clock()
        start, first = self._samples[0]
        _, last = self._samples[-1]
        span = now - start
        if span < self._min_span:
            return None
        return (last - first) / span

    def seconds_left(self, remaining: int) -> float | None:
        """How long ``remaining`` more would take at this rate; None if unknown."""
        rate = self.per_second()
        if rate is None or rate <= 0:
            return None
        return remaining / rate
