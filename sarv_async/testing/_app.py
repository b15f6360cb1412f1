"""The emulator as a raw ASGI application (no web framework).

``POST /v1.0/settings/{addSmtp,editSmtp,resetSmtpPassword,listSmtp}`` answer as
the provider's documents show. A call goes through, in order:

1. the path (unknown: HTTP 404 with a ``ValidationError`` envelope) and the method
   (not POST: HTTP 200 ``ValidationError``, like the API's own envelope errors);
2. the body: a JSON object, else HTTP 200 ``ValidationError``;
3. ``owner_id`` and ``token``: missing, not strings or not matching an account give
   HTTP 200 ``AuthenticationError`` "Token MissMatch";
4. the account's rate limit, by arrival time: over it, HTTP 429 with ``Retry-After``
   and a ``RateLimitError`` envelope, and the refused call does not count; a call
   let through counts, whatever happens to it next;
5. a fault, maybe (see `sarv_async.testing._faults`);
6. the call itself: its parameters, then the change.

Error envelopes come with HTTP 200 and their kind in ``name``, as the documents'
samples show; `ErrorStyle` answers the other readings of the documents: a status by
kind (``error_status="http"``: ValidationError 400, AuthenticationError 401,
GeneralError 500) and the kind in ``type`` or in both keys. The statuses of errors
that have one of their own (404, 413, 429) never change. ``RateLimitError``, the 429
answer's kind, is the emulator's own choice: no document names one.

The answer then waits ``latency`` seconds before it goes out. ``GET
/_emulator/stats`` and ``POST /_emulator/reset`` are outside the API: never
counted, limited, delayed or faulted. Request bodies are never logged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal, get_args

import anyio
import attrs

from ._calls import CALLS, CallError
from ._faults import FaultPlan, gateway_page, truncate
from ._state import EmulatorState

__all__ = [
    "ADMIN_PREFIX",
    "API_PREFIX",
    "BASE_PATH",
    "ERROR_KIND_FIELDS",
    "ERROR_STATUSES",
    "EmulatorApp",
    "ErrorKindField",
    "ErrorStatus",
    "ErrorStyle",
    "Receive",
    "Scope",
    "Send",
    "envelope",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The API's base path; the four calls live at ``{API_PREFIX}addSmtp`` and so on.
BASE_PATH = "/v1.0/"
API_PREFIX = BASE_PATH + "settings/"
ADMIN_PREFIX = "/_emulator/"

_MAX_BODY = 1 << 20
_JSON = b"application/json"
_HTML = b"text/html"


class _ClientGone(Exception):
    """The client disconnected before its request was read."""


@attrs.frozen
class _Answer:
    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    drop: bool = False


def _json(payload: object, status: int = 200, **kwargs: Any) -> _Answer:
    return _Answer(status, json.dumps(payload).encode(), **kwargs)


ErrorStatus = Literal["200", "http"]
ErrorKindField = Literal["name", "type", "both"]
#: The readings of "what HTTP status comes with an error envelope".
ERROR_STATUSES: tuple[ErrorStatus, ...] = get_args(ErrorStatus)
#: The readings of "which key holds an error's kind".
ERROR_KIND_FIELDS: tuple[ErrorKindField, ...] = get_args(ErrorKindField)

_STATUS_BY_KIND = {"ValidationError": 400, "AuthenticationError": 401, "GeneralError": 500}


def envelope(name: str, message: str, kind_field: ErrorKindField = "name") -> dict[str, Any]:
    """The API's error envelope, its kind under ``kind_field`` (``"both"``: two keys)."""
    keys: tuple[str, ...] = ("name", "type") if kind_field == "both" else (kind_field,)
    kinds = dict.fromkeys(keys, name)
    return {"status": "error", "code": -1, **kinds, "message": message}


@attrs.frozen
class ErrorStyle:
    """How error envelopes are answered: their HTTP status and the key of their kind."""

    status: ErrorStatus = "200"
    kind_field: ErrorKindField = "name"

    def __attrs_post_init__(self) -> None:
        if self.status not in ERROR_STATUSES:
            raise ValueError(
                f"error_status must be one of {', '.join(ERROR_STATUSES)}, got {self.status!r}"
            )
        if self.kind_field not in ERROR_KIND_FIELDS:
            raise ValueError(
                f"error_kind_field must be one of {', '.join(ERROR_KIND_FIELDS)}, "
                f"got {self.kind_field!r}"
            )

    def answer(self, name: str, message: str, status: int | None = None, **kwargs: Any) -> _Answer:
        """An error envelope; ``status`` ``None``: the status this style gives the kind."""
        if status is None:
            status = _STATUS_BY_KIND.get(name, 400) if self.status == "http" else 200
        return _json(envelope(name, message, self.kind_field), status, **kwargs)


_DROP = _Answer(0, b"", drop=True)


class EmulatorApp:
    """The ASGI application; ``drop_connection(scope)`` cuts the request's connection."""

    def __init__(
        self,
        state: EmulatorState,
        faults: FaultPlan,
        *,
        latency: float = 0.0,
        drop_connection: Callable[[Scope], bool] | None = None,
        errors: ErrorStyle | None = None,
    ) -> None:
        self.state = state
        self.faults = faults
        self.errors = errors if errors is not None else ErrorStyle()
        self._error = self.errors.answer
        self.latency = latency
        self._drop_connection = drop_connection

    def reset(self) -> None:
        """Forget users, counters, rate windows and queued faults."""
        self.state.reset()
        self.faults.reset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        try:
            if path.startswith(ADMIN_PREFIX):
                answer = await self._admin(scope, receive)
            else:
                self.state.record_request(path)
                answer = await self._api(scope, receive)
                if self.latency:
                    await anyio.sleep(self.latency)
        except _ClientGone:
            return
        if answer.drop:
            await self._drop(scope, receive)
            return
        if not path.startswith(ADMIN_PREFIX):
            self.state.record_response(answer.status)
        await _send(send, answer)

    async def _api(self, scope: Scope, receive: Receive) -> _Answer:
        path: str = scope["path"]
        call = path.removeprefix(API_PREFIX) if path.startswith(API_PREFIX) else ""
        handler = CALLS.get(call)
        if handler is None:
            return self._error(
                "ValidationError",
                f"unknown API path {path} (API paths start with {API_PREFIX})",
                404,
            )
        if scope["method"] != "POST":
            return self._error(
                "ValidationError", f"{scope['method']} is not allowed; API calls are POST"
            )
        raw = await _read_body(receive)
        if raw is None:
            return self._error("ValidationError", "the request body is too large", 413)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return self._error("ValidationError", "the request body is not valid JSON")
        if not isinstance(body, dict):
            return self._error("ValidationError", "the request body must be a JSON object")
        owner_id = self.state.authenticate(body.get("owner_id"), body.get("token"))
        if owner_id is None:
            return self._error("AuthenticationError", "Token MissMatch")
        wait = self.state.admit(owner_id)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            return self._error(
                "RateLimitError",
                f"rate limit exceeded; retry after {seconds} s",
                429,
                headers=((b"retry-after", str(seconds).encode()),),
            )

        fault = self.faults.draw(call)
        if fault is not None:
            self.state.record_fault(fault.kind)
            if fault.kind == "drop_before":
                return _DROP
            if fault.kind == "gateway_page":
                return _Answer(fault.gateway_status, gateway_page(fault.gateway_status), _HTML)
            if fault.kind == "general_error":
                return self._error("GeneralError", "An unexpected error occurred; please try again")

        try:
            answer = _json(handler(self.state, owner_id, body))
        except CallError as exc:
            answer = self._error(exc.name, exc.message)
        if fault is not None and fault.kind == "drop_after_apply":
            return _DROP
        if fault is not None and fault.kind == "truncated_json":
            return attrs.evolve(answer, body=truncate(answer.body))
        return answer

    async def _admin(self, scope: Scope, receive: Receive) -> _Answer:
        path, method = scope["path"], scope["method"]
        if path == f"{ADMIN_PREFIX}stats":
            if method != "GET":
                return self._error("ValidationError", "use GET", 405, headers=((b"allow", b"GET"),))
            return _json(self.state.stats())
        if path == f"{ADMIN_PREFIX}reset":
            if method != "POST":
                return self._error(
                    "ValidationError", "use POST", 405, headers=((b"allow", b"POST"),)
                )
            await _read_body(receive)
            self.reset()
            return _json({"status": "success", "message": "emulator reset"})
        return self._error("ValidationError", f"unknown emulator path {path}", 404)

    async def _drop(self, scope: Scope, receive: Receive) -> None:
        """Cut the connection without an answer; nothing reaches the client."""
        self.state.record_drop()
        if self._drop_connection is None or not self._drop_connection(scope):
            # Not under the emulator's server: let the server close the connection.
            raise RuntimeError("emulated connection drop")
        # Wait until the server has seen the connection go, so it does not answer for us.
        while (await receive())["type"] != "http.disconnect":
            pass


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; ``None`` when larger than the cap."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, answer: _Answer) -> None:
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(answer.body)).encode()),
        *answer.headers,
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
