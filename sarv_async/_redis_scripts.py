"""Lua scripts called by digest on one kept Redis connection.

`KeptScripts` keeps one connection of a coredis client and sends every call on it as
one ``EVALSHA``: coredis matches answers to calls in order, so concurrent calls share
the connection (pipelined) instead of leasing one from the pool each. A call costs
about a third of the CPU of coredis's ``Script.__call__`` (bench/README.md, the Redis
ledger), which was most of what a ledger step cost the client.

A server that has lost its scripts (restarted, or ``SCRIPT FLUSH``) answers
``NOSCRIPT``, which means nothing ran: the script is loaded and the call made once
more. A connection that failed is dropped and the next call takes a new one from the
client's pool (one whose tasks were cancelled from outside may fail for a moment with
anyio's closed-stream errors: that too is a lost connection). A call that timed out
leaves its connection in use: coredis still matches the late answer to it, and dropping
the connection would fail every other call on it too (on a starved machine one slow
answer then became an outage of its own).
But a connection on which nothing at all was read since an earlier call timed out,
through the whole time of a call sent after that, is taken for dead and dropped: one
whose peer vanished without closing it (a host gone, a NAT or firewall entry dropped)
would otherwise time every call out for good.
Errors are coredis's, for the caller to translate.

The connection is taken from the pool and given back at once, as coredis's own
multiplexing does (``ConnectionPool.acquire``): it stays in the pool, so a connection
that dies is replaced there and never costs the pool a place. Hence the client must
serve nothing that needs a connection to itself (``MULTI``, blocking commands,
pub/sub): the ledger's own client, which only runs scripts and reads ``INFO``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    import coredis

__all__ = ["KeptScripts"]


class KeptScripts:
    """Named Lua scripts, each called with `call` on one connection kept by this object.

    ``redis`` is an open coredis client (bytes answers) used for nothing that needs a
    connection to itself; ``scripts`` maps each name to its Lua source.
    """

    def __init__(self, redis: coredis.Redis[bytes], scripts: Mapping[str, str]) -> None:
        self._redis = redis
        self._sources = {name: source.encode() for name, source in scripts.items()}
        self._digests = {
            name: hashlib.sha1(source, usedforsecurity=False).hexdigest().encode()
            for name, source in self._sources.items()
        }
        self._connection: Any = None
        self._connecting = anyio.Lock()
        #: Calls sent so far (numbered, so that no clock is read per call).
        self._sent = 0
        #: After a call timed out: the connection, the calls sent by then and the bytes it
        #: had read then; cleared with the connection.
        self._silent: tuple[Any, int, int] | None = None

    async def call(
        self, name: str, keys: Sequence[str], args: Sequence[str | bytes | int | float]
    ) -> Any:
        """Run script ``name`` with ``keys`` and ``args``; its answer, as Redis gave it."""
        from coredis.exceptions import ConnectionError, NoScriptError

        connection = await self._connected()
        self._sent += 1
        number = self._sent
        request = (b"EVALSHA", self._digests[name], len(keys), *keys, *args)
        try:
            try:
                return await connection.create_request(*request)
            except NoScriptError:
                await connection.create_request(b"SCRIPT", b"LOAD", self._sources[name])
                return await connection.create_request(*request)
        except TimeoutError:
            self._timed_out(connection, number)  # it stays, unless silent: see the docstring
            raise
        except (ConnectionError, OSError):
            self._drop(connection)
            raise
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            # The connection's tasks ended (cancelled from outside) before it read as
            # unusable: its buffers are closed. A lost connection, as coredis says it.
            self._drop(connection)
            raise ConnectionError("Connection lost") from exc

    async def _connected(self) -> Any:
        connection = self._connection
        if connection is not None and connection.usable:
            return connection
        async with self._connecting:
            if self._connection is not None and not self._connection.usable:
                self._drop(self._connection)
            if self._connection is None:
                pool = self._redis.connection_pool
                self._connection = await pool.get_connection()
                pool.release(self._connection)  # back at once: see the module's docstring
            return self._connection

    def _timed_out(self, connection: Any, number: int) -> None:
        """Call ``number`` on ``connection`` timed out: drop the connection if it is silent."""
        read = getattr(getattr(connection, "statistics", None), "bytes_read", None)
        if read is None:  # a coredis that does not count what it read: keep it, as before
            return
        silent = self._silent
        if silent is not None and silent[0] is connection and silent[2] == read:
            if number > silent[1]:  # nothing read since a time-out before this call was sent
                self._drop(connection)
            return
        self._silent = (connection, self._sent, read)

    def _drop(self, connection: Any) -> None:
        """Stop using ``connection``: its state can no longer be trusted."""
        if connection is self._connection:
            self._connection = None
        if self._silent is not None and self._silent[0] is connection:
            self._silent = None
        connection.invalidate()
