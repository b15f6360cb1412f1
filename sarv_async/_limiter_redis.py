"""Pace every process and host of one account through Redis: one rate budget, one 429 pause.

The invariant
-------------
The one of `SlidingWindowLimiter`, across processes: let ``s[1] <= s[2] <= ...`` be the
Redis server's clock (``TIME``) when the check-and-record script granted a send, to any
process of the account. For every window ``limit/period`` with margin ``m``::

    s[i] >= s[i - limit] + period + m

The check and the record are one Lua script over every window, so two processes can never
both take the last place of a window; the hosts' clocks are never read for it.

A request that needed a new connection leaves later than it was granted, once connected:
the client says how much later (`CountedSend.left_late`), and the send's score moves forward
by as much in every window, written by a small script in the background (`_write_moves`) so
the request does not wait for Redis. ``s[i]`` is then the time it left, on Redis's clock
(the grant's ``TIME`` plus the delay this process measured). Requests on a reused
connection leave at once and cost no such write.

How
---
In each process, waiting tasks queue up in arrival order and only the head of the queue
talks to Redis. The head runs the script: it reads ``TIME``, drops sends no window can see
any more, and either records the send in every window (granted) or puts the head in the
account's queue of waiting processes and answers how long to wait. The head sleeps that
long with `anyio.sleep` (a local `pause` wakes it) and asks again. Across processes, heads
are served in the order they began waiting; a head that does not come back by its deadline
(killed) is forgotten, and a cancelled one takes itself out of the queue. So arrival order
is roughly kept and a cancelled waiter leaves nothing behind.

`pause` is synchronous, as the `RateLimiter` protocol wants: it holds this process back at
once and writes the pause to Redis in the background, where every other process sees it
at its next check (within one round trip).

Keys
----
``sarv:{<account>}:...`` where ``<account>`` is a hash of the API's base URL and the owner
id: one hash tag per account (Redis Cluster and Valkey keep an account's keys in one slot),
no token anywhere. A window's key expires ``period + margin`` after its last send, the
pause when it ends, so the day's count outlives every process, and nothing outlives use.

Redis unreachable or slow
-------------------------
Every Redis call is bounded by ``timeout``. When one fails, the process paces itself alone
at its share of each window (the limit divided by the processes Redis last saw), counting
its own recent sends, and logs **one** warning; every ``retry_interval`` seconds the head
of the queue tries Redis again and, once it answers, records there the sends made alone
(in the same script) and shares again (logged at INFO). With ``on_unavailable="raise"``,
`acquire` raises `StoreUnavailableError` instead.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import secrets
from collections import deque
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio import CancelScope, Event, current_time

from ._account import account_id
from ._exceptions import RateLimitError, StoreUnavailableError, ValidationError
from ._limiter import MovableSend, SlidingWindowLimiter, leave_queue, move_send
from ._rate_spec import RateWindow, format_rate_limit
from ._redis import bounded_client, redis_errors, redis_location
from ._redis_scripts import KeptScripts

if TYPE_CHECKING:
    import coredis
    from anyio.abc import TaskGroup

__all__ = ["RedisRateLimiter"]

logger = logging.getLogger("sarv_async")

_MICRO = 1_000_000
#: A waiting process that has not come back this long after it was due is gone.
_GRACE = 2.0
#: How soon a process that is not first in line asks again, once the windows allow a send.
_POLL = 0.005
#: A process that has not asked for this long no longer counts towards the fallback share.
_PEER_TTL = 60.0

# KEYS: pause, queue, deadlines, peers, one key per window.
# ARGV: token, process, age, grace, poll, max_pause, peer_ttl (microseconds),
#       then limit and span (microseconds) per window, then the ages of sends this
#       process made while Redis was out of reach, recorded first.
# Returns {1, now, peers} granted; {0, wait, peers} not yet; {2, pause left, peers} too long.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local token, process = ARGV[1], ARGV[2]
local age, grace, poll = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local max_pause, peer_ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local pause_key, queue, deadlines, peers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function int(x) return string.format('%d', x) end

redis.call('ZADD', peers, int(now), process)
redis.call('ZREMRANGEBYSCORE', peers, '-inf', int(now - peer_ttl))
redis.call('PEXPIRE', peers, int(math.ceil(peer_ttl / 1000)))
local alive = redis.call('ZCARD', peers)

local function leave()
  redis.call('ZREM', queue, token)
  redis.call('HDEL', deadlines, token)
end

-- Sends this process made while Redis was out of reach (ages after the window arguments).
local windows = #KEYS - 4
for j = 8 + 2 * windows, #ARGV do
  local sent = now - tonumber(ARGV[j])
  for i = 5, #KEYS do
    local span = tonumber(ARGV[9 + (i - 5) * 2])
    if sent > now - span then
      redis.call('ZADD', KEYS[i], int(sent), process .. ':backfill:' .. token .. ':' .. j)
      redis.call('PEXPIRE', KEYS[i], int(math.ceil(span / 1000)))
    end
  end
end

local when = now
local paused = tonumber(redis.call('GET', pause_key) or '0')
if paused > now then
  if paused - now > max_pause then
    leave()
    return {2, paused - now, alive}
  end
  when = paused
end
for i = 5, #KEYS do
  local limit = tonumber(ARGV[8 + (i - 5) * 2])
  local span = tonumber(ARGV[9 + (i - 5) * 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', int(now - span))
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    local allowed = tonumber(oldest[2]) + span
    if allowed > when then when = allowed end
  end
end

local head = nil
while true do
  local first = redis.call('ZRANGE', queue, 0, 0)
  if #first == 0 then break end
  local deadline = tonumber(redis.call('HGET', deadlines, first[1]) or '0')
  if deadline >= now then head = first[1]; break end
  redis.call('ZREM', queue, first[1])
  redis.call('HDEL', deadlines, first[1])
end

if when <= now and (head == nil or head == token) then
  for i = 5, #KEYS do
    local span = tonumber(ARGV[9 + (i - 5) * 2])
    redis.call('ZADD', KEYS[i], int(now), token)
    redis.call('PEXPIRE', KEYS[i], int(math.ceil(span / 1000)))
  end
  leave()
  return {1, now, alive}
end

local wait = when - now
if head ~= nil and head ~= token and wait < poll then wait = poll end
redis.call('ZADD', queue, 'NX', int(now - age), token)
redis.call('HSET', deadlines, token, int(now + wait + grace))
local ttl = math.ceil((wait + grace) / 1000)
if redis.call('PTTL', queue) < ttl then
  redis.call('PEXPIRE', queue, int(ttl))
  redis.call('PEXPIRE', deadlines, int(ttl))
end
return {0, wait, alive}
"""

# KEYS: pause. ARGV: seconds (microseconds). A later end wins.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local seconds = tonumber(ARGV[1])
local ends = now + seconds
if ends > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%d', ends),
             'PX', string.format('%d', math.ceil(seconds / 1000) + 1))
end
return {1}
"""

# KEYS: one key per window. ARGV: spans (microseconds) per window, then token and score
# pairs: each send's score moves up to its score (never down), or comes back if it was
# dropped as too old and its new score is still within the window.
_MOVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local windows = #KEYS
for j = windows + 1, #ARGV, 2 do
  local token, score = ARGV[j], tonumber(ARGV[j + 1])
  for i = 1, windows do
    local span = tonumber(ARGV[i])
    local old = redis.call('ZSCORE', KEYS[i], token)
    if (old and tonumber(old) < score) or (not old and score > now - span) then
      redis.call('ZADD', KEYS[i], string.format('%d', score), token)
      if redis.call('PTTL', KEYS[i]) < span / 1000 then
        redis.call('PEXPIRE', KEYS[i], string.format('%d', math.ceil(span / 1000)))
      end
    end
  end
end
return {1}
"""

# KEYS: queue, deadlines. ARGV: token.
_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return {1}
"""

_GRANTED, _WAIT, _PAUSED_TOO_LONG = 1, 0, 2

OnUnavailable = Literal["fallback", "raise"]


class RedisRateLimiter:
    """A `RateLimiter` shared by every process and host using the same Redis and account.

    ``url`` is a ``redis://`` (or ``rediss://``, ``unix://``) URL; ``account`` names the
    account the same way in every process (a client uses `account_for` its base URL and
    owner id); ``windows``, ``margin`` and ``max_pause`` mean what they mean for
    `SlidingWindowLimiter`. ``timeout`` bounds every Redis call (seconds). When
    Redis fails, ``on_unavailable="fallback"`` paces in-process and retries Redis every
    ``retry_interval`` seconds; ``"raise"`` raises `StoreUnavailableError` instead.

    An async context manager: `AsyncSarvClient` opens and closes the one it builds from
    ``redis_url``; open one you pass as ``limiter=`` yourself, before the client.
    """

    def __init__(
        self,
        url: str,
        windows: Sequence[RateWindow] = (),
        *,
        account: str,
        margin: float | None = None,
        max_pause: float = 120.0,
        timeout: float = 0.5,
        on_unavailable: OnUnavailable = "fallback",
        retry_interval: float = 2.0,
        prefix: str = "sarv",
    ) -> None:
        # The checks of the in-process limiter, with its messages.
        SlidingWindowLimiter(windows, margin=margin, max_pause=max_pause)
        if not isinstance(url, str) or "://" not in url:
            raise ValidationError(
                "redis_url must be a URL such as 'redis://localhost:6379/0'", field="redis_url"
            )
        for name, value in (("timeout", timeout), ("retry_interval", retry_interval)):
            if not 0 < value < math.inf:
                raise ValidationError(
                    f"{name} must be a positive number of seconds, not {value!r}", field=name
                )
        if on_unavailable not in ("fallback", "raise"):
            raise ValidationError(
                f"on_unavailable must be 'fallback' or 'raise', not {on_unavailable!r}",
                field="on_unavailable",
            )
        self._url = url
        self._windows = tuple(windows)
        self._margin = margin
        self._max_pause = max_pause
        self._timeout = timeout
        self._on_unavailable = on_unavailable
        self._retry_interval = retry_interval
        spans = [
            w.period + (min(0.25, w.period / 20) if margin is None else margin)
            for w in self._windows
        ]
        base = f"{prefix}:{{{account}}}:"
        self._pause_key = base + "pause"
        self._queue_keys = [base + "queue", base + "queue-deadlines"]
        self._keys = [
            self._pause_key,
            *self._queue_keys,
            base + "processes",
            *(f"{base}window:{round(w.period * _MICRO)}" for w in self._windows),
        ]
        self._window_keys = self._keys[4:]
        self._span_args = [round(span * _MICRO) for span in spans]
        self._window_args = [
            arg
            for w, span in zip(self._windows, spans, strict=True)
            for arg in (w.limit, round(span * _MICRO))
        ]
        self._spans = spans
        #: This process's last sends per window (its clock), to pace alone from if need be.
        self._history = [deque[float](maxlen=w.limit) for w in self._windows]
        #: Sends made while Redis was out of reach, to record there when it is back.
        self._unrecorded: list[float] = []
        #: Names this process in Redis; random, so it says nothing about the host.
        self._process = secrets.token_hex(8)
        self._tickets = itertools.count()

        self._redis: coredis.Redis[bytes] | None = None
        self._scripts: KeptScripts | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None

        #: Tasks of this process waiting their turn, oldest first; the first is the head.
        self._waiters: deque[Event] = deque()
        self._wakeup: Event | None = None
        self._pause_until = -math.inf
        #: The pause still to be written to Redis, as an end on this process's clock.
        self._pause_to_share = -math.inf
        self._share_pause = Event()
        #: Sends that left late, token to score (Redis's clock, microseconds), to write.
        self._moves: dict[str, int] = {}
        self._write_move = Event()

        #: Whether Redis is in use; if not, when to try it again.
        self._shared = True
        self._retry_at = -math.inf
        #: Failed calls so far: an answer to a call begun before the last one is stale.
        self._outages = 0
        self._peers = 1
        #: Per window, this process's share of the limit while it paces alone.
        self._shares = [w.limit for w in self._windows]

    def __repr__(self) -> str:
        pacing = format_rate_limit(self._windows) if self._windows else "unpaced"
        state = "shared" if self._shared else "in-process fallback"
        return f"<RedisRateLimiter {pacing} at {redis_location(self._url)} ({state})>"

    @staticmethod
    def account_for(base_url: str, owner_id: str) -> str:
        """The ``account`` a client uses for its base URL and owner id (a hash of both)."""
        return account_id(base_url, owner_id)

    @property
    def shared(self) -> bool:
        """Whether pacing goes through Redis now (``False`` while falling back)."""
        return self._shared

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> RedisRateLimiter:
        if self._exit_stack is not None:
            raise RuntimeError("this RedisRateLimiter is already open")
        try:
            import coredis  # noqa: F401 - here, to say how to install it if missing
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "sharing the rate budget through Redis needs coredis: "
                "pip install 'sarv-async[redis]'"
            ) from None
        redis = bounded_client(self._url, self._timeout)
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(redis)
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            self._task_group.start_soon(self._write_pauses)
            self._task_group.start_soon(self._write_moves)
            self._redis = redis
            self._scripts = KeptScripts(
                redis, {"acquire": _ACQUIRE, "pause": _PAUSE, "leave": _LEAVE, "move": _MOVE}
            )
            self._exit_stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        stack, self._exit_stack = self._exit_stack, None
        if stack is None:
            return
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
        self._task_group = None
        self._redis = None
        await stack.aclose()
        self._scripts = None

    # -- the RateLimiter protocol ----------------------------------------------------

    async def acquire(self) -> None:
        """Return once a request may be sent now by this process; count it for the account.

        Raises `RateLimitError` on a pause longer than ``max_pause``, and with
        ``on_unavailable="raise"``, `StoreUnavailableError` when Redis fails.
        """
        await self.acquire_send()

    async def acquire_send(self) -> _RedisSend | None:
        """`acquire`, returning the send it counted (see `CountedSend`); None if unpaced.

        Its ``left_late(delay)`` moves the send ``delay`` seconds later, in Redis (written
        in the background) and in this process's own count.
        """
        if self._redis is None:
            raise RuntimeError(
                "this RedisRateLimiter is not open: use 'async with' (a client built with "
                "redis_url opens it in its own 'async with')"
            )
        arrived = current_time()
        ticket = Event()
        waiters = self._waiters
        waiters.append(ticket)
        try:
            if waiters[0] is not ticket:
                await ticket.wait()  # set when this task becomes the head
            send = await self._acquire_as_head(arrived)
        finally:
            leave_queue(self._waiters, ticket)
        return send if self._windows else None

    def pause(self, seconds: float) -> None:
        """Hold back every process of the account for ``seconds`` (a later end wins)."""
        if not seconds >= 0:
            raise ValidationError(
                f"pause must be a number of seconds >= 0, not {seconds!r}", field="seconds"
            )
        until = current_time() + seconds
        if until > self._pause_until:
            self._pause_until = until
            if self._wakeup is not None:
                self._wakeup.set()
        if self._task_group is not None and until > self._pause_to_share:
            self._pause_to_share = until
            self._share_pause.set()

    # -- inside --------------------------------------------------------------------

    async def _acquire_as_head(self, arrived: float) -> _RedisSend:
        token = f"{self._process}:{next(self._tickets)}"
        queued = False
        try:
            while True:
                now = current_time()
                left = self._pause_until - now
                if left > 0:
                    if left > self._max_pause:
                        raise _too_long(left)
                    await self._sleep(left)
                    continue
                if not self._shared and now < self._retry_at:
                    # Alone: this process's share of each window, counting its own sends.
                    wait = self._alone_wait(now)
                    if wait <= 0:
                        self._sent(now, recorded=False)
                        return _RedisSend(self, now, None, 0)
                    await self._sleep(min(wait, self._retry_at - now))
                    continue
                unrecorded = self._unrecorded
                try:
                    status, value, peers = await self._call(
                        "acquire",
                        self._keys,
                        [
                            token,
                            self._process,
                            round((now - arrived) * _MICRO),
                            round(_GRACE * _MICRO),
                            round(_POLL * _MICRO),
                            _micro(self._max_pause),
                            round(_PEER_TTL * _MICRO),
                            *self._window_args,
                            *(round((now - sent) * _MICRO) for sent in unrecorded),
                        ],
                    )
                except StoreUnavailableError:
                    queued = False  # its deadline drops it from Redis's queue
                    if self._on_unavailable == "raise":
                        raise
                    continue
                self._peers = max(1, peers)
                if unrecorded:
                    self._unrecorded = []  # recorded now
                if status == _GRANTED:
                    queued = False
                    now = current_time()
                    self._sent(now, recorded=True)
                    return _RedisSend(self, now, token, value)
                if status == _PAUSED_TOO_LONG:
                    queued = False
                    raise _too_long(value / _MICRO)
                queued = True
                await self._sleep(value / _MICRO)
        finally:
            if queued:
                await self._forget(token)

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> list[int]:
        """Run a script within ``timeout``; on failure fall back (or raise), once per outage."""
        scripts = self._scripts
        if scripts is None:
            raise RuntimeError("this RedisRateLimiter is closed")
        error: BaseException | None = None
        result: Any = None
        outages = self._outages
        with anyio.move_on_after(self._timeout * 2) as scope:
            try:
                result = await scripts.call(name, keys, args)
            except (OSError, redis_errors()) as exc:
                error = exc
        if scope.cancelled_caught:
            error = TimeoutError(f"no answer within {self._timeout * 2:g} s")
        if error is None:
            if self._outages == outages:
                # An answer to a call that began before a failure this process met since
                # may have left before Redis went: no sign that it is back.
                self._redis_is_back()
            return [int(x) for x in result]
        if self._on_unavailable == "fallback":
            self._fall_back(error)
        raise StoreUnavailableError(
            f"Redis at {redis_location(self._url)} did not answer in time "
            f"({type(error).__name__}: {error}); it holds this account's shared rate budget"
        ) from None

    def _fall_back(self, error: BaseException) -> None:
        self._outages += 1
        self._retry_at = current_time() + self._retry_interval
        if not self._shared:
            return
        self._shared = False
        self._shares = [max(1, w.limit // self._peers) for w in self._windows]
        share = ";".join(
            str(RateWindow(limit, w.period))
            for limit, w in zip(self._shares, self._windows, strict=True)
        )
        logger.warning(
            "Redis at %s did not answer (%s: %s); pacing this process alone at %s "
            "(%s) until Redis is back",
            redis_location(self._url),
            type(error).__name__,
            error,
            share or "no limit",
            f"its share of {self._peers} processes" if self._peers > 1 else "no other seen",
        )

    def _alone_wait(self, now: float) -> float:
        """Seconds until this process may send alone: its share of every window."""
        when = now
        for share, span, sends in zip(self._shares, self._spans, self._history, strict=True):
            if len(sends) >= share:
                when = max(when, sends[-share] + span)
        return when - now

    def _sent(self, now: float, *, recorded: bool) -> None:
        """Note a send of this process (and, if Redis did not see it, keep it for later)."""
        for sends in self._history:
            sends.append(now)
        if not recorded:
            horizon = now - max(self._spans, default=0.0)
            self._unrecorded = [t for t in self._unrecorded if t > horizon]
            self._unrecorded.append(now)

    def _left_late(self, send: _RedisSend, counted: float, left: float) -> None:
        """Count ``send``, counted at ``counted`` here, at ``left`` (both this clock)."""
        for sends in self._history:
            move_send(sends, counted, left)
        if send.token is None:
            # Made alone: recorded in Redis, when it is back, by its time here.
            unrecorded = self._unrecorded
            if counted in unrecorded:
                unrecorded[unrecorded.index(counted)] = left
            return
        if self._task_group is None:
            return  # closed: nothing writes to Redis any more
        self._moves[send.token] = send.granted + round((left - send.allowed) * _MICRO)
        self._write_move.set()

    def _redis_is_back(self) -> None:
        if self._shared:
            return
        self._shared = True
        logger.info(
            "Redis at %s answers again; the rate budget is shared again",
            redis_location(self._url),
        )

    async def _forget(self, token: str) -> None:
        """Take a cancelled or failed waiter out of the account's queue, if Redis answers."""
        if not self._shared:
            return
        # If Redis does not answer, the waiter's deadline drops it from the queue.
        with CancelScope(shield=True), contextlib.suppress(StoreUnavailableError):
            await self._call("leave", self._queue_keys, [token])

    async def _write_pauses(self) -> None:
        """Write each pause to Redis as it comes; runs for the limiter's life."""
        while True:
            await self._share_pause.wait()
            self._share_pause = Event()
            left = self._pause_to_share - current_time()
            if left > 0:
                # If Redis does not answer, this process holds back anyway.
                with contextlib.suppress(StoreUnavailableError):
                    await self._call("pause", [self._pause_key], [_micro(left)])

    async def _write_moves(self) -> None:
        """Write the sends that left late to Redis as they come; runs for the limiter's life."""
        while True:
            await self._write_move.wait()
            self._write_move = Event()
            moves, self._moves = self._moves, {}
            if moves:
                # If Redis does not answer, these sends stay counted when granted.
                with contextlib.suppress(StoreUnavailableError):
                    await self._call(
                        "move",
                        self._window_keys,
                        [*self._span_args, *itertools.chain.from_iterable(moves.items())],
                    )

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or until a `pause` changes the picture."""
        wakeup = self._wakeup = Event()
        try:
            with anyio.move_on_after(seconds):
                await wakeup.wait()
        finally:
            if self._wakeup is wakeup:
                self._wakeup = None


class _RedisSend(MovableSend):
    """A send `RedisRateLimiter` counted (see `CountedSend`)."""

    __slots__ = ("_limiter", "granted", "token")

    def __init__(
        self, limiter: RedisRateLimiter, allowed: float, token: str | None, granted: int
    ) -> None:
        super().__init__(allowed)
        self._limiter = limiter
        #: Its member in the windows' sorted sets, or None if it was made alone.
        self.token = token
        #: Its score there: Redis's clock (microseconds) when the script granted it.
        self.granted = granted

    def _move(self, counted: float, left: float) -> None:
        self._limiter._left_late(self, counted, left)


def _too_long(left: float) -> RateLimitError:
    return RateLimitError(
        f"the API asked to pause for {left:.3g} s, longer than max_pause",
        retry_after=left,
        status_code=None,  # raised here, before anything was sent
    )


def _micro(seconds: float) -> int:
    return round(min(seconds, 10 * 365 * 86400.0) * _MICRO)
