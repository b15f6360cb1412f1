"""Helpers for the emulator's tests: accounts and raw API calls with httpx."""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx

__all__ = ["ACCOUNTS", "TOKENS", "assert_envelope", "body", "loopback_client", "post"]

#: The accounts of the shared test emulator.
ACCOUNTS = {"acme": "acme-token-0001", "globex": "globex-token-0002"}
#: Every token the tests know, the default demo account's included.
TOKENS = {**ACCOUNTS, "demo": "demo-token"}


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def loopback_client(url: str) -> httpx.AsyncClient:
    """A raw httpx client for ``url`` (made fast by sharing one, unused, TLS context)."""
    return httpx.AsyncClient(base_url=url, timeout=10, verify=_ssl_context())


def body(owner: str = "acme", **fields: Any) -> dict[str, Any]:
    """A request body with the account's credentials."""
    return {"owner_id": owner, "token": TOKENS[owner], **fields}


async def post(
    http: httpx.AsyncClient, call: str, owner: str = "acme", **fields: Any
) -> httpx.Response:
    """POST a call (``"addSmtp"``, ...) for ``owner`` with ``fields``."""
    return await http.post(f"/v1.0/settings/{call}", json=body(owner, **fields))


def assert_envelope(
    response: httpx.Response, name: str, *, status: int = 200, message: str | None = None
) -> dict[str, Any]:
    """Check that ``response`` is the API's error envelope of kind ``name``; return it."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    data: dict[str, Any] = response.json()
    assert set(data) == {"status", "code", "name", "message"}
    assert data["status"] == "error"
    assert data["code"] == -1
    assert data["name"] == name
    assert isinstance(data["message"], str)
    assert data["message"]
    if message is not None:
        assert data["message"] == message
    return data
