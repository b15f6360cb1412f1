"""Connections to Redis, for the shared rate limiter and the Redis ledger alike.

coredis (the ``redis`` extra) is imported only when a connection is made. Every
connection is bounded in time and never retried here: each caller decides what a
failure means (the limiter falls back to pacing alone; the ledger raises).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import coredis

__all__ = [
    "ALLOW_VOLATILE",
    "bounded_client",
    "closing_buffers",
    "redis_errors",
    "redis_location",
    "sdk_options",
]

#: The URL parameter that lets the Redis ledger run on a Redis without persistence.
ALLOW_VOLATILE = "allow_volatile"
_SDK_PARAMETERS = (ALLOW_VOLATILE,)


def redis_location(url: str) -> str:
    """``url`` without its password, for messages and reprs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(not a URL)"
    netloc, slash, path = rest.partition("/")
    host = netloc.rpartition("@")[2]
    return f"{scheme}://{host}{slash}{path.partition('?')[0]}"


def sdk_options(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without the SDK's own query parameters, and those parameters.

    The SDK's parameters (``allow_volatile``) mean something to sarv-async, not to Redis.
    """
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    kept: list[str] = []
    ours: dict[str, str] = {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name in _SDK_PARAMETERS:
            ours[name] = value
        elif part:
            kept.append(part)
    return (f"{base}?{'&'.join(kept)}" if kept else base), ours


def bounded_client(url: str, timeout: float) -> coredis.Redis[bytes]:
    """A coredis client for ``url``: every connect, read and pool wait within ``timeout``.

    No retries (the caller decides what a failure means), and connections that close
    their buffers (`closing_buffers`).
    """
    import coredis
    from coredis.retry import NoRetryPolicy

    redis: coredis.Redis[bytes] = coredis.Redis.from_url(
        sdk_options(url)[0],
        stream_timeout=timeout,
        connect_timeout=timeout,
        pool_timeout=timeout,
        retry_policy=NoRetryPolicy(),
    )
    pool = redis.connection_pool
    pool.connection_class = closing_buffers(pool.connection_class)
    return redis


def closing_buffers(connection_class: type[Any]) -> type[Any]:
    """``connection_class``, closing its buffers when its connection ends.

    A coredis connection that cannot connect leaves its in-memory buffers (anyio memory
    object streams) open, and each then warns `ResourceWarning` when collected.
    """

    class Connection(connection_class):  # type: ignore[misc]
        async def run(self, **kwargs: Any) -> None:
            from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

            try:
                await super().run(**kwargs)
            finally:
                for value in list(vars(self).values()):
                    if isinstance(value, (MemoryObjectSendStream, MemoryObjectReceiveStream)):
                        value.close()

    Connection.__name__ = Connection.__qualname__ = connection_class.__name__
    return Connection


def redis_errors() -> type[Exception]:
    from coredis.exceptions import RedisError

    return RedisError
