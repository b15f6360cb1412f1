"""Pace requests client-wide, before they are sent, so a client within its limits never sees 429.

The invariant
-------------
Let ``s[1] <= s[2] <= ...`` be the clock readings at which `SlidingWindowLimiter.acquire`
calls returned, read with nothing awaited between the check and the return. For every
window ``limit/period`` with safety margin ``m``::

    s[i] >= s[i - limit] + period + m

so no span of ``period + m`` seconds, wherever it starts, holds more than ``limit`` sends:
the stricter of a fixed and a moving window, with no burst on top of the rate. Only sends
are recorded, each when it is allowed, so a late wake-up never breaks the invariant and a
cancelled waiter leaves nothing behind.

A request that needs a new connection leaves only once TCP (and TLS) are connected, which
can take longer than the margin; a later request on a reused connection leaves at once, and
would reach the server less than a period after it. So the client tells the limiter when a
request really left, if that was later (`SlidingWindowLimiter.acquire_send`): the send is
recorded at that later time, and ``s[i]`` above is the time it left. The margin covers what
remains: the network between the client and the server, whose clock counts arrivals, and
how late a busy server counts a request it has received.

Where this stops: until a request leaves, its send counts at the time it was allowed. A
connect that takes longer than ``period + margin`` (a lost SYN retransmitted after 1 s,
with a per-second window) lets that time age out of the window before the request
leaves, and the sends allowed meanwhile may then reach the server less than a period
apart from it: the server answers 429, and the client pauses and retries as for any
429. Windows of a minute or more (the API's own) are not affected by connects within
the default 5 s connect timeout.

How
---
A task that finds no one waiting and every window open returns at once: no lock, no
checkpoint. Otherwise it joins a FIFO queue. Only the head of the queue watches the clock:
it sleeps until the earliest instant the windows and any pause allow, re-checks both when it
wakes (a `pause` wakes it early), returns, and hands the head to the next task. A pause
is clamped to ``max_pause``: whatever a server asked for, no task is held back longer
than that by it (the call that met a longer ``Retry-After`` raised instead).
"""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio

from ._exceptions import ValidationError
from ._rate_spec import RateWindow, format_rate_limit

if TYPE_CHECKING:
    from anyio import Event

__all__ = ["CountedSend", "MovableSend", "RateLimiter", "SlidingWindowLimiter"]

_NO_PAUSE = -math.inf


@runtime_checkable
class RateLimiter(Protocol):
    """Decides when the next request of a client may go out; one instance per client.

    A limiter may also offer ``async def acquire_send(self) -> CountedSend | None``,
    optional: the client then tells it when each request really left (see `CountedSend`).
    """

    async def acquire(self) -> None:
        """Wait until one more request may be sent now, and count it as sent."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold back every request for ``seconds`` from now (the server answered 429).

        The client never asks for more than its ``max_retry_after``; an implementation
        should still clamp what it is given, so no one call can disable it for good.
        """
        ...


class CountedSend(Protocol):
    """A send a limiter counted, as its optional ``acquire_send`` returns it.

    A `RateLimiter` may offer ``async def acquire_send(self) -> CountedSend | None``: what
    `acquire` does, returning the send it counted (None if it counts nothing). The client
    uses it when present (looked up with ``getattr``; `acquire` alone still works): when
    the request really leaves, after connecting if it needed a new connection, it calls
    ``left_late(delay)`` if that was ``delay`` seconds after ``allowed``, and the limiter
    counts the send at the later time. ``left_late`` must not block nor raise.
    """

    #: When the send was allowed, on the event loop's clock (`anyio.current_time`).
    allowed: float

    def left_late(self, delay: float) -> None:
        """The request left ``delay`` seconds (> 0) after ``allowed``: count it then."""
        ...


class _Window:
    """One ``limit/period`` window and the times of the last ``limit`` sends."""

    __slots__ = ("limit", "sends", "span")

    def __init__(self, limit: int, span: float) -> None:
        self.limit = limit
        #: ``period + margin``: the least distance between a send and the limit-th before it.
        self.span = span
        self.sends: deque[float] = deque(maxlen=limit)


class SlidingWindowLimiter:
    """An in-process `RateLimiter`: sliding-window pacing plus a client-wide pause.

    ``windows`` come from `parse_rate_limit`; with none, nothing is paced but `pause`
    still holds every task back. ``margin`` (seconds) is added to every window's period;
    by default it is ``min(0.25, period / 20)`` per window. Waiting tasks are served in
    arrival order. Bound to one event loop's clock: share it among that loop's tasks only.
    """

    __slots__ = (
        "_margin",
        "_max_pause",
        "_pause_until",
        "_rate_windows",
        "_waiters",
        "_wakeup",
        "_windows",
    )

    def __init__(
        self,
        windows: Sequence[RateWindow] = (),
        *,
        margin: float | None = None,
        max_pause: float = 120.0,
    ) -> None:
        if margin is not None and not 0 <= margin < math.inf:
            raise ValidationError(
                f"margin must be a finite number of seconds >= 0, not {margin!r}", field="margin"
            )
        if not 0 <= max_pause < math.inf:
            raise ValidationError(
                f"max_pause must be a finite number of seconds >= 0, not {max_pause!r}",
                field="max_pause",
            )
        rate_windows = tuple(windows)
        for window in rate_windows:
            if window.limit < 1 or not 0 < window.period < math.inf:
                raise ValidationError(
                    f"rate window {window} must allow at least one request", field="windows"
                )
        self._rate_windows = rate_windows
        self._margin = margin
        self._max_pause = max_pause
        self._windows = tuple(
            _Window(w.limit, w.period + (min(0.25, w.period / 20) if margin is None else margin))
            for w in rate_windows
        )
        self._pause_until = _NO_PAUSE
        #: Tasks waiting their turn, oldest first; the first one is the head.
        self._waiters: deque[Event] = deque()
        #: Set by `pause` to wake the head early; exists only while the head sleeps.
        self._wakeup: Event | None = None

    def __repr__(self) -> str:
        pacing = format_rate_limit(self._rate_windows) if self._rate_windows else "unpaced"
        margin = "" if self._margin is None else f" margin={self._margin:g}s"
        return f"<SlidingWindowLimiter {pacing}{margin} max_pause={self._max_pause:g}s>"

    async def acquire(self) -> None:
        """Return once a request may be sent now.

        Costs no checkpoint when the request may go at once.
        """
        await self.acquire_send()

    async def acquire_send(self) -> _Send | None:
        """`acquire`, returning the send it counted (None when no window counts sends).

        Call its ``left_late(delay)`` if the request left ``delay`` seconds after it was
        allowed (a new connection): the send is then counted when it left (see `CountedSend`).
        """
        waiters = self._waiters
        if not waiters:
            if not self._windows and self._pause_until == _NO_PAUSE:
                return None
            now = anyio.current_time()
            if self._earliest(now) <= now:
                return self._record(now)
        ticket = anyio.Event()
        waiters.append(ticket)
        try:
            if waiters[0] is not ticket:
                await ticket.wait()  # set when this task becomes the head
            while True:
                now = anyio.current_time()
                when = self._earliest(now)
                if when <= now:
                    return self._record(now)
                await self._sleep_until(when)
        finally:
            leave_queue(self._waiters, ticket)

    def pause(self, seconds: float) -> None:
        """Hold back every task's `acquire` until ``seconds`` from now, at most ``max_pause``.

        A later pause wins; ``inf`` or ``1e308`` hold back for ``max_pause``, not forever.
        """
        if not seconds >= 0:
            raise ValidationError(
                f"pause must be a number of seconds >= 0, not {seconds!r}", field="seconds"
            )
        until = anyio.current_time() + min(seconds, self._max_pause)
        if until > self._pause_until:
            self._pause_until = until
            if self._wakeup is not None:
                self._wakeup.set()

    def _earliest(self, now: float) -> float:
        """The earliest instant the next send is allowed."""
        when = now
        pause_until = self._pause_until
        if pause_until > now:
            when = pause_until
        else:
            self._pause_until = _NO_PAUSE
        for window in self._windows:
            sends = window.sends
            if len(sends) == window.limit:
                allowed = sends[0] + window.span
                if allowed > when:
                    when = allowed
        return when

    def _record(self, now: float) -> _Send | None:
        if not self._windows:
            return None
        for window in self._windows:
            window.sends.append(now)
        return _Send(self, now)

    def _move(self, sent: float, left: float) -> None:
        """Count the send recorded at ``sent`` at ``left`` instead (later), keeping order."""
        for window in self._windows:
            move_send(window.sends, sent, left)

    async def _sleep_until(self, when: float) -> None:
        """Sleep until ``when``, or until `pause` changes the picture."""
        wakeup = self._wakeup = anyio.Event()
        try:
            with anyio.CancelScope(deadline=when):
                await wakeup.wait()
        finally:
            if self._wakeup is wakeup:
                self._wakeup = None


class MovableSend:
    """A counted send that only ever moves later, once per later time: both limiters' rule.

    Subclasses say how a move is recorded (`_move`); see `CountedSend`.
    """

    __slots__ = ("_counted", "allowed")

    def __init__(self, allowed: float) -> None:
        #: When it was allowed, on the event loop's clock; counted then so far.
        self.allowed = self._counted = allowed

    def __repr__(self) -> str:
        return f"<send allowed at {self.allowed:.6f}>"

    def left_late(self, delay: float) -> None:
        left = self.allowed + delay
        if left > self._counted:
            self._move(self._counted, left)
            self._counted = left

    def _move(self, counted: float, left: float) -> None:
        """Count the send, counted at ``counted`` so far, at ``left`` (later)."""
        raise NotImplementedError


class _Send(MovableSend):
    """A send `SlidingWindowLimiter` counted (see `CountedSend`)."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: SlidingWindowLimiter, allowed: float) -> None:
        super().__init__(allowed)
        self._limiter = limiter

    def _move(self, counted: float, left: float) -> None:
        self._limiter._move(counted, left)


def move_send(sends: deque[float], sent: float, left: float) -> None:
    """Move the send at ``sent`` in ``sends`` (oldest first, at most ``maxlen``) to ``left``.

    ``left`` is later; the deque stays in order. A send no longer in it (``maxlen`` newer
    ones came after it) comes back at ``left``, and the oldest then drops out.
    Shared by the limiters that keep their last sends in a deque.
    """
    later: list[float] = []
    while sends and sends[-1] > sent:
        later.append(sends.pop())
    if sends and sends[-1] == sent:
        sends.pop()
    later.reverse()
    insort(later, left)
    sends.extend(later)


def leave_queue(waiters: deque[Event], ticket: Event) -> None:
    """Take ``ticket`` out of a FIFO of waiters; if it was the head, make the next the head.

    Shared by the limiters whose waiting tasks queue in arrival order.
    """
    if waiters[0] is ticket:
        waiters.popleft()
        if waiters:
            waiters[0].set()
    else:
        waiters.remove(ticket)
