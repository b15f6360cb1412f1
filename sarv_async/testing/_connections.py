"""Real connection drops under uvicorn.

An exception in an ASGI app makes uvicorn answer 500; it never drops the
connection. So the emulator runs uvicorn's h11 protocol with a subclass that
records each connection's transport by peer address; the app looks its request's
``scope["client"]`` up and calls ``transport.abort()``: the socket closes at once
and the client gets no answer at all (httpx raises `httpx.RemoteProtocolError` or
`httpx.ReadError`). ``proxy_headers`` must stay off so ``scope["client"]`` is the
real peer. Everything here runs on the server's event loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

__all__ = ["ConnectionRegistry", "protocol_class"]

_Peer = tuple[str, int]


def _peer(transport: asyncio.BaseTransport) -> _Peer | None:
    info = transport.get_extra_info("peername")
    if isinstance(info, tuple | list) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


class ConnectionRegistry:
    """The open connections' transports, by peer address."""

    def __init__(self) -> None:
        self._transports: dict[_Peer, asyncio.Transport] = {}

    def add(self, transport: asyncio.Transport) -> None:
        """Remember a new connection."""
        peer = _peer(transport)
        if peer is not None:
            self._transports[peer] = transport

    def discard(self, transport: asyncio.Transport) -> None:
        """Forget a closed connection."""
        peer = _peer(transport)
        if peer is not None and self._transports.get(peer) is transport:
            del self._transports[peer]

    def abort(self, scope: Mapping[str, Any]) -> bool:
        """Cut the connection a request came on; ``False`` when it is not known."""
        client = scope.get("client")
        if client is None:
            return False
        transport = self._transports.get((str(client[0]), int(client[1])))
        if transport is None:
            return False
        transport.abort()
        return True


def protocol_class(registry: ConnectionRegistry, *, access_log: bool) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, recording connections in ``registry``."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class EmulatorProtocol(H11Protocol):
        """uvicorn's h11 protocol that lets the emulator abort its connections."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not access_log:
                # Per connection: the global "uvicorn.access" logger stays untouched.
                self.access_log = False

        def connection_made(  # type: ignore[override]
            self, transport: asyncio.Transport
        ) -> None:
            super().connection_made(transport)
            registry.add(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            registry.discard(self.transport)
            super().connection_lost(exc)

    return EmulatorProtocol
