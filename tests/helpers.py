"""Small helpers shared by the tests."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx

from sarv_async import AsyncSarvClient, EntryState, Ledger, LedgerEntry

OWNER_ID = "owner-42"
TOKEN = "tok-SECRET-0123456789abcdef"
BASE_URL = "https://api.tes.example.com/v1.0/"


def make_client(**kwargs: Any) -> AsyncSarvClient:
    """A client for respx tests: no pacing, fast backoff unless a test says otherwise."""
    from sarv_async import Backoff

    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("backoff", Backoff(initial=0.001, maximum=0.01, jitter=0.0))
    return AsyncSarvClient(OWNER_ID, TOKEN, base_url=BASE_URL, **kwargs)


def body_of(request: httpx.Request) -> dict[str, Any]:
    """The JSON body a request carried."""
    data: dict[str, Any] = json.loads(request.content)
    return data


def success(**fields: Any) -> httpx.Response:
    """An HTTP 200 success envelope."""
    return httpx.Response(200, json={"status": "success", **fields})


def error_envelope(
    name: str, message: str, *, status: int = 200, key: str = "name"
) -> httpx.Response:
    """The API's error envelope, with the kind under ``name`` (samples) or ``type`` (table)."""
    return httpx.Response(
        status, json={"status": "error", "code": -1, key: name, "message": message}
    )


async def renewed_past_its_lease(
    ledger: Ledger, account: str, key: str, lease: float
) -> LedgerEntry:
    """``key``'s entry once seen PENDING with its lease running, over ``2 * lease`` after it
    was first seen PENDING: only renewals keep a create's key held that long.

    Polled, not read after a fixed sleep: a loaded machine may renew late, or lapse a
    moment between two renewals. Fails if the key stops being PENDING first (its create
    ended before a renewal was seen).
    """
    first: float | None = None
    with anyio.fail_after(30):
        while True:
            entry = await ledger.get(account, key)
            now = anyio.current_time()
            if entry is not None:
                assert entry.state is EntryState.PENDING, f"no renewal seen while held: {entry}"
                if first is None:
                    first = now
                elif now - first > 2 * lease and (entry.lease_left or 0) > 0:
                    return entry
            await anyio.sleep(0.01)
