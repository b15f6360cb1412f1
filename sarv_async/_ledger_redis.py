"""`RedisLedger`: the `Ledger` on Redis, shared by every process on every host using that Redis.

Every operation is one Lua script, so it is atomic on the server and timed by the server's
clock (``TIME``): leases and ``ended_ago`` never compare two hosts' clocks. An account's
ledger is four keys under one hash tag, ``sarv:{<account>}:ledger:...`` (Redis Cluster and
Valkey keep them in one slot):

- ``entries``: a hash, idempotency key -> the entry as JSON (limits, state, user name,
  holder, lease end, last end, attempts);
- ``owners``: a hash, user name -> the key that owns it, which makes a claim exclusive;
- ``baseline``: a set, the users that existed when the ledger first met the account;
- ``baseline-at``: when the baseline was recorded (its existence says there is one).

No key expires: it is a ledger. It holds no password and no token.

There is no fallback: an operation Redis does not answer within ``timeout`` raises
`LedgerError` (before a create: nothing is sent), because guessing would break "exactly
once". Opened (``async with``, as a client opens a ledger it made from a URL), a ledger
keeps one connection for the event loop that opened it, its scripts called by digest on
it (``_redis_scripts.py``); otherwise, or from another event loop or thread, each operation opens
a connection of its own and loads its script (well under a millisecond on loopback, but
2.2x slower provisioning: ``bench/bench_engine.py``). The identity, the baseline taker
and the persistence check are explained in ``_ledger.py`` and docs/idempotency.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from ._exceptions import LedgerError
from ._ledger import Begin, Claim, Decision, EntryState, LedgerEntry
from ._redis import ALLOW_VOLATILE, bounded_client, redis_location, sdk_options
from ._redis_scripts import KeptScripts

__all__ = ["RedisLedger"]

# KEYS: entries, owners, baseline, baseline-at. ARGV[1]: the operation's arguments as JSON.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local entries, owners, baseline, meta, taker = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local a = cjson.decode(ARGV[1])
local function fmt(x) return string.format('%d', x) end
local function load(key)
  local raw = redis.call('HGET', entries, key)
  if not raw then return nil end
  return cjson.decode(raw)
end
local function save(key, e) redis.call('HSET', entries, key, cjson.encode(e)) end
local function view(key, e)
  if e == nil then return nil end
  local v = {key = key, total_limit = e.total_limit, hourly_limit = e.hourly_limit,
             state = e.state, user_name = e.user_name, fingerprint = e.fingerprint,
             holder = e.holder, attempts = e.attempts}
  if e.holder ~= nil and e.lease_until ~= nil then
    v.lease_left = (tonumber(e.lease_until) - now) / 1000000
  end
  if e.ended_at ~= nil then
    v.ended_ago = math.max(0, now - tonumber(e.ended_at)) / 1000000
  end
  return v
end
local function answer(decision, key, e)
  local identity = redis.call('GET', meta)
  return cjson.encode({decision = decision, entry = view(key, e), identity = identity})
end
local function lease_end(seconds) return fmt(now + seconds * 1000000) end
"""

_SCRIPTS = {
    "record_baseline": """
if redis.call('EXISTS', meta) == 1 then return 0 end
redis.call('SET', meta, fmt(now) .. ' ' .. a.identity)
local names = a.names
for i = 1, #names, 1000 do
  redis.call('SADD', baseline, unpack(names, i, math.min(i + 999, #names)))
end
return 1
""",
    "take_baseline": """
local held = redis.call('GET', taker)
if held and held ~= a.holder then
  local left = redis.call('PTTL', taker)
  if left > 0 then return tostring(left / 1000) end
end
redis.call('SET', taker, a.holder, 'PX', math.max(1, math.floor(a.lease * 1000)))
return false
""",
    "begin": """
local key = a.key
local e = load(key)
if e == nil or e.state == 'failed' then
  if redis.call('EXISTS', meta) == 0 then return answer('need_baseline', key, e) end
  local attempts, ended = 1, nil
  if e ~= nil then attempts, ended = e.attempts + 1, e.ended_at end
  e = {total_limit = a.total_limit, hourly_limit = a.hourly_limit, fingerprint = a.fingerprint,
       state = 'pending', holder = a.holder, lease_until = lease_end(a.lease),
       ended_at = ended, attempts = attempts}
  save(key, e)
  return answer('send', key, e)
end
if e.total_limit ~= a.total_limit or e.hourly_limit ~= a.hourly_limit
   or e.fingerprint ~= a.fingerprint then
  return answer('mismatch', key, e)
end
if e.state == 'created' then return answer('done', key, e) end
local held = e.holder ~= nil and e.lease_until ~= nil and tonumber(e.lease_until) > now
if held and (e.holder ~= a.holder or e.state == 'pending') then
  return answer('busy', key, e)
end
if e.state == 'pending' then
  -- Its holder's lease ran out: take its attempt as ended then.
  local ended = tonumber(e.lease_until)
  if e.ended_at ~= nil then ended = math.max(ended, tonumber(e.ended_at)) end
  e.ended_at = fmt(ended)
end
e.state, e.holder, e.lease_until = 'unknown', a.holder, lease_end(a.lease)
save(key, e)
return answer('reconcile', key, e)
""",
    "renew": """
local e = load(a.key)
if e == nil or e.holder ~= a.holder or (e.state ~= 'pending' and e.state ~= 'unknown') then
  return 0
end
e.lease_until = lease_end(a.lease)
save(a.key, e)
return 1
""",
    "expire": """
local e = load(a.key)
if e == nil or e.holder ~= a.holder or (e.state ~= 'pending' and e.state ~= 'unknown') then
  return 0
end
local ended = now
if e.ended_at ~= nil then ended = math.max(ended, tonumber(e.ended_at)) end
e.state, e.holder, e.lease_until, e.ended_at = 'unknown', nil, nil, fmt(ended)
save(a.key, e)
return 1
""",
    "release": """
local e = load(a.key)
if e ~= nil and e.holder == a.holder and e.state ~= 'pending' then
  e.holder, e.lease_until = nil, nil
  save(a.key, e)
end
return 1
""",
    "claim": """
local key, user = a.key, a.user_name
local e = load(key)
if e == nil then return 'no_entry' end
if e.state == 'created' then
  if e.user_name == user then return 'claimed' end
  return 'settled'
end
if redis.call('HEXISTS', owners, user) == 1
   or (not a.known and redis.call('SISMEMBER', baseline, user) == 1) then
  if e.state == 'pending' then
    e.state, e.holder, e.lease_until, e.ended_at = 'unknown', nil, nil, fmt(now)
    save(key, e)
  end
  return 'taken'
end
e.state, e.user_name, e.holder, e.lease_until, e.ended_at = 'created', user, nil, nil, fmt(now)
save(key, e)
redis.call('HSET', owners, user, key)
return 'claimed'
""",
    "mark_unknown": """
local e = load(a.key)
if e == nil or e.state == 'created' then return 1 end
e.state = 'unknown'
local ended = now
if e.ended_at ~= nil then ended = math.max(ended, tonumber(e.ended_at)) end
e.ended_at = fmt(ended)
if e.holder == a.holder then e.holder, e.lease_until = nil, nil end
save(a.key, e)
return 1
""",
    "mark_failed": """
local e = load(a.key)
if e ~= nil and e.holder == a.holder and (e.state == 'pending' or e.state == 'unknown') then
  e.state, e.holder, e.lease_until, e.ended_at = 'failed', nil, nil, fmt(now)
  save(a.key, e)
end
return 1
""",
    "resend": """
local e = load(a.key)
if e == nil or e.holder ~= a.holder or e.state ~= 'unknown' then return 0 end
e.state, e.lease_until, e.attempts = 'pending', lease_end(a.lease), e.attempts + 1
save(a.key, e)
return 1
""",
    "owned": """
local found = {}
for _, name in ipairs(a.names) do
  if redis.call('HEXISTS', owners, name) == 1 or redis.call('SISMEMBER', baseline, name) == 1 then
    found[#found + 1] = name
  end
end
return found
""",
    "identity": """
return redis.call('GET', meta)
""",
    "get": """
local e = load(a.key)
if e == nil then return false end
return cjson.encode(view(a.key, e))
""",
}


class RedisLedger:
    """A `Ledger` in Redis: safe for every task, thread, process and host using that Redis.

    ```python
    ledger = RedisLedger("redis://localhost:6379/0")
    ```

    ``url`` is a ``redis://`` (``rediss://``, ``unix://``) URL; ``timeout`` (seconds)
    bounds each operation, which raises `LedgerError` when Redis does not answer in time.
    A ledger must survive a Redis restart, so the server must persist what it holds (AOF,
    or RDB snapshots): on first use the ledger asks (``INFO persistence``, ``CONFIG GET
    save``) and refuses a server with neither with a `LedgerError`, unless
    ``allow_volatile=True`` (or ``?allow_volatile=1`` in the URL) says that losing the
    ledger with a restart is accepted. A ledger lost while in use is noticed all the same
    (`LedgerLostError`); see docs/idempotency.md.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        prefix: str = "sarv",
        allow_volatile: bool = False,
    ) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise LedgerError("the Redis ledger needs a URL such as 'redis://localhost:6379/0'")
        self.url = url
        self._timeout = timeout
        self._prefix = prefix
        flag = sdk_options(url)[1].get(ALLOW_VOLATILE)
        self._allow_volatile = allow_volatile or (
            flag is not None and flag.lower() in ("", "1", "true", "yes")
        )
        #: Whether the server was seen to persist what it holds (or volatility was allowed).
        self._durable = self._allow_volatile
        self._closed = False
        #: While open (``async with``): one client kept for every operation of the event
        #: loop that opened it, its scripts loaded once and called by digest.
        self._kept: _Kept | None = None

    #: Operations wait for Redis.
    instant = False

    def __repr__(self) -> str:
        return f"<RedisLedger {redis_location(self.url)}>"

    async def __aenter__(self) -> RedisLedger:
        """Keep one connection pool open for the block (a client opens the ledger it owns).

        Without it, each operation connects on its own: right for a handle shared by
        several event loops or threads, slower (a connection and a script load each).
        """
        if self._kept is not None:
            raise RuntimeError("this RedisLedger is already open")
        redis = bounded_client(self.url, self._timeout)
        stack = AsyncExitStack()
        await stack.enter_async_context(redis)
        scripts = KeptScripts(redis, {name: _PRELUDE + body for name, body in _SCRIPTS.items()})
        self._kept = _Kept(anyio.lowlevel.current_token(), stack, redis, scripts)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            await kept.stack.aclose()

    # -- the protocol --------------------------------------------------------------

    async def record_baseline(self, account: str, user_names: Collection[str]) -> bool:
        names = sorted(set(user_names))
        identity = os.urandom(8).hex()
        return bool(await self._run("record_baseline", account, names=names, identity=identity))

    async def take_baseline(self, account: str, *, holder: str, lease: float) -> float | None:
        left = await self._run("take_baseline", account, holder=holder, lease=lease)
        return None if left is None else float(_text(left))

    async def begin(
        self,
        account: str,
        key: str,
        *,
        total_limit: int,
        hourly_limit: int,
        holder: str,
        lease: float,
        fingerprint: str | None = None,
    ) -> Begin:
        answer = json.loads(
            await self._run(
                "begin",
                account,
                key=key,
                # As decimal text: Lua's numbers are doubles, and limits may exceed 2**53.
                total_limit=str(total_limit),
                hourly_limit=str(hourly_limit),
                holder=holder,
                lease=lease,
                fingerprint=fingerprint,
            )
        )
        identity = answer.get("identity")
        return Begin(
            Decision(answer["decision"]),
            _entry(answer.get("entry")),
            identity if isinstance(identity, str) else None,
        )

    async def renew(self, account: str, key: str, *, holder: str, lease: float) -> bool:
        return bool(await self._run("renew", account, key=key, holder=holder, lease=lease))

    async def expire(self, account: str, key: str, *, holder: str) -> bool:
        return bool(await self._run("expire", account, key=key, holder=holder))

    async def release(self, account: str, key: str, *, holder: str) -> None:
        await self._run("release", account, key=key, holder=holder)

    async def claim(self, account: str, key: str, user_name: str, *, known: bool = False) -> Claim:
        found = await self._run("claim", account, key=key, user_name=user_name, known=known or None)
        return Claim(_text(found))

    async def mark_unknown(self, account: str, key: str, *, holder: str) -> None:
        await self._run("mark_unknown", account, key=key, holder=holder)

    async def mark_failed(self, account: str, key: str, *, holder: str) -> None:
        await self._run("mark_failed", account, key=key, holder=holder)

    async def resend(self, account: str, key: str, *, holder: str, lease: float) -> bool:
        return bool(await self._run("resend", account, key=key, holder=holder, lease=lease))

    async def owned(self, account: str, user_names: Collection[str]) -> set[str]:
        found = await self._run("owned", account, names=sorted(set(user_names)))
        return {_text(name) for name in found}

    async def get(self, account: str, key: str) -> LedgerEntry | None:
        raw = await self._run("get", account, key=key)
        return None if raw is None else _entry(json.loads(raw))

    async def identity(self, account: str) -> str | None:
        found = await self._run("identity", account)
        return None if found is None else _text(found)

    async def aclose(self) -> None:
        self._closed = True
        await self.__aexit__()

    # -- plumbing ------------------------------------------------------------------

    async def _run(self, operation: str, account: str, **arguments: Any) -> Any:
        """Run one operation's script on a connection of its own, within ``timeout``."""
        if self._closed:
            raise RuntimeError("this RedisLedger is closed")
        from coredis.exceptions import RedisError

        base = f"{self._prefix}:{{{account}}}:ledger:"
        keys = [
            base + "entries",
            base + "owners",
            base + "baseline",
            base + "baseline-at",
            base + "baseline-taker",
        ]
        args = [json.dumps({k: v for k, v in arguments.items() if v is not None})]
        kept = self._kept
        if kept is not None and kept.token == anyio.lowlevel.current_token():
            return await self._on_kept(kept, operation, keys, args)
        redis = bounded_client(self.url, self._timeout)
        failure: str | None = None
        volatile: str | None = None
        with anyio.move_on_after(self._timeout * 2) as scope:
            try:
                async with redis:
                    try:
                        scripts = KeptScripts(redis, {operation: _PRELUDE + _SCRIPTS[operation]})
                        result, volatile = await self._script(redis, scripts, operation, keys, args)
                        if volatile is None:
                            return result
                    except (OSError, RedisError) as exc:
                        failure = f"{type(exc).__name__}: {exc}"
            except* (OSError, RedisError) as group:  # from the client's own tasks
                first = group.exceptions[0]
                failure = failure or f"{type(first).__name__}: {first}"
        if scope.cancelled_caught:
            failure = f"no answer within {self._timeout * 2:g} s"
        raise self._failed(failure, volatile) from None

    async def _on_kept(self, kept: _Kept, operation: str, keys: list[str], args: list[str]) -> Any:
        """Run one operation's script on the kept client, within ``timeout``."""
        from coredis.exceptions import RedisError

        failure: str | None = None
        volatile: str | None = None
        with anyio.move_on_after(self._timeout * 2) as scope:
            try:
                result, volatile = await self._script(
                    kept.redis, kept.scripts, operation, keys, args
                )
                if volatile is None:
                    return result
            except (OSError, RedisError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            failure = f"no answer within {self._timeout * 2:g} s"
        raise self._failed(failure, volatile) from None

    async def _script(
        self, redis: Any, scripts: KeptScripts, operation: str, keys: list[str], args: list[str]
    ) -> tuple[Any, str | None]:
        """Run the operation's script once the server is seen to persist (or that need not
        be seen); else None and why the server would lose the ledger."""
        if not self._durable:
            volatile = await _volatility(redis)
            if volatile is not None:
                return None, volatile
            self._durable = True
        return await scripts.call(operation, keys, args), None

    def _failed(self, failure: str | None, volatile: str | None) -> LedgerError:
        where = redis_location(self.url)
        if volatile is not None and failure is None:
            return LedgerError(
                f"the Redis at {where} would lose the ledger when it restarts ({volatile}): "
                "enable AOF or RDB snapshots, or accept the risk with allow_volatile=True "
                f"(?{ALLOW_VOLATILE}=1 in the URL)"
            )
        return LedgerError(f"the Redis ledger at {where} failed ({failure})")


@attrs.frozen
class _Kept:
    """The client a ledger keeps while open, for the event loop that opened it."""

    token: object
    stack: AsyncExitStack
    redis: Any
    scripts: KeptScripts


async def _volatility(redis: Any) -> str | None:
    """Why the server would lose its data when it restarts; None if it persists it."""
    from coredis.exceptions import ResponseError

    info = await redis.info("persistence")
    if str(info.get("aof_enabled", "0")) == "1":
        return None
    try:
        found = await redis.config_get(["save"])
    except ResponseError:  # CONFIG renamed away or not permitted: it cannot be told
        return "AOF is off and CONFIG GET is refused, so RDB snapshots cannot be confirmed"
    save = found.get("save", found.get(b"save", ""))
    if isinstance(save, bytes):
        save = save.decode()
    if str(save).strip():
        return None
    return "neither AOF nor RDB snapshots are enabled"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(data: dict[str, Any] | None) -> LedgerEntry | None:
    if not data:
        return None
    return LedgerEntry(
        key=data["key"],
        total_limit=int(data["total_limit"]),
        hourly_limit=int(data["hourly_limit"]),
        state=EntryState(data["state"]),
        user_name=data.get("user_name"),
        fingerprint=data.get("fingerprint"),
        holder=data.get("holder"),
        lease_left=data.get("lease_left"),
        ended_ago=data.get("ended_ago"),
        attempts=int(data["attempts"]),
    )
