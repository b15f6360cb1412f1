"""The one road every request takes: encode, pace, post, read, retry, translate errors.

httpx and cattrs exceptions become `SarvError`s here and nowhere else. Nothing
logged here carries a body: method, path, HTTP status, duration and attempt only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import anyio
import attrs
import httpx

from . import _tracing
from ._config import Secret
from ._converters import structure_response, unstructure_request
from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    GeneralError,
    OutcomeUnknownError,
    RateLimitError,
    SarvError,
    UnexpectedResponseError,
    ValidationError,
)
from ._limiter import RateLimiter
from ._logging import logger
from ._requests import SarvRequest
from ._retry import Backoff, Failure, parse_retry_after

__all__ = ["CallOptions", "Pipeline"]

T = TypeVar("T")

_ERROR_KINDS: dict[str, type[APIError]] = {
    "ValidationError": ValidationError,
    "AuthenticationError": AuthenticationError,
    "GeneralError": GeneralError,
    "RateLimitError": RateLimitError,
}


@attrs.frozen
class CallOptions:
    """What may differ from call to call (see `AsyncSarvClient.with_options`)."""

    timeout: httpx.Timeout
    max_retries: int
    backoff: Backoff
    max_retry_after: float


class Pipeline:
    """Sends the requests of one client and of all its `with_options` copies."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        base_url: httpx.URL,
        owner_id: str,
        token: Secret,
        limiter: RateLimiter,
        max_concurrency: int,
        headers: dict[str, str] | None,
    ) -> None:
        self.limiter = limiter
        self.max_concurrency = max_concurrency
        self._http = http
        self._base_url = base_url
        self._token = token
        self._owner_id = owner_id
        self._slots = anyio.Semaphore(max_concurrency, fast_acquire=True)
        self._headers = headers
        self._urls: dict[str, httpx.URL] = {}
        # Every published base URL ends in /v1.0/: a 404 without it is most likely that.
        self._not_found_hint = (
            None
            if "/v1.0/" in base_url.path
            else f"the base URL {base_url} lacks the API version: try {base_url.join('v1.0/')}"
        )

    async def send(self, request: SarvRequest[T], options: CallOptions) -> T:
        """Send ``request``, repeating only what is safe to repeat; return its typed answer."""
        if not _tracing.active():
            return await self._send(request, options)
        with _tracing.call_span(request.path, self._base_url):
            return await self._send(request, options)

    async def _send(self, request: SarvRequest[T], options: CallOptions) -> T:
        path = request.path
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._base_url.join(path)
        body = self._encode(request)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._post(url, body, options.timeout, path, attempt)
            except httpx.HTTPError as exc:
                # Not chained: the httpx error and its frames hold the request, token included.
                error, failure = _translate_transport_error(exc, path)
            else:
                try:
                    return self._read(response, request)
                except SarvError as exc:
                    error, failure = exc, _classify(exc)

            if failure is Failure.MAYBE_APPLIED and not request.safe_to_repeat:
                # INFO, not WARNING: the caller gets OutcomeUnknownError and decides.
                logger.info(
                    "POST %s may have taken effect (%s); not repeated", path, type(error).__name__
                )
                raise OutcomeUnknownError(
                    f"{type(request).__name__} may or may not have taken effect ({error}); "
                    "it was not repeated, as a repeat could apply it twice. "
                    "Reconcile with client.smtp_users.list().",
                    request=request,
                ) from error
            if failure is Failure.FINAL or attempt > options.max_retries:
                raise error from None
            delay = await self._wait_before_retry(error, failure, attempt, options)
            _tracing.record_retry(error, delay, attempt)
            logger.info(
                "retrying POST %s after %s in %.2f s (attempt %d of %d)",
                path,
                type(error).__name__,
                delay,
                attempt + 1,
                options.max_retries + 1,
            )

    async def _wait_before_retry(
        self, error: SarvError, failure: Failure, attempt: int, options: CallOptions
    ) -> float:
        delay = options.backoff.delay(attempt)
        if failure is Failure.THROTTLED:
            retry_after = error.retry_after if isinstance(error, RateLimitError) else None
            if retry_after is not None:
                if retry_after > options.max_retry_after:
                    self.limiter.pause(retry_after)
                    raise error
                delay = retry_after
            # One 429 pauses every task of the client: the next acquire() waits it out.
            self.limiter.pause(delay)
        else:
            await anyio.sleep(delay)
        return delay

    def _encode(self, request: SarvRequest[Any]) -> _RequestBody:
        fields = unstructure_request(request)
        fields["owner_id"] = self._owner_id
        fields["token"] = self._token.reveal()
        return _RequestBody(json.dumps(fields, separators=(",", ":")).encode())

    async def _post(
        self, url: httpx.URL, body: _RequestBody, limits: httpx.Timeout, path: str, attempt: int
    ) -> httpx.Response:
        async with self._slots:
            # The pause and the rate windows are checked now, as the request leaves.
            queued = time.perf_counter()
            await self.limiter.acquire()
            started = time.perf_counter()
            request = self._http.build_request(
                "POST", url, content=body.content, headers=self._headers, timeout=limits
            )
            request.stream = body
            request.extensions[_tracing.RESEND_COUNT] = attempt - 1
            _tracing.record_rate_limit_wait(started - queued)
            response = await self._http.send(request)
        _tracing.record_attempt(attempt - 1, response.status_code)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "POST %s -> HTTP %d in %.1f ms (attempt %d)",
                path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
                attempt,
            )
        return response

    def _read(self, response: httpx.Response, request: SarvRequest[T]) -> T:
        status = response.status_code
        if status == 429:
            raise RateLimitError(
                f"POST {request.path} was rate limited",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status == 404 and self._not_found_hint is not None:
            raise ValidationError(
                f"POST {request.path} answered HTTP 404: {self._not_found_hint}",
                field="base_url",
                status_code=status,
            )
        try:
            data = json.loads(response.content)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            raise UnexpectedResponseError(
                f"POST {request.path} answered HTTP {status} with {_describe_body(response)}",
                status_code=status,
            ) from None
        if not isinstance(data, dict):
            raise UnexpectedResponseError(
                f"POST {request.path} answered HTTP {status} with a JSON "
                f"{type(data).__name__}, not an object",
                status_code=status,
            )
        outcome = data.get("status")
        if outcome == "error":
            raise self._api_error(data, status)
        if not 200 <= status < 300 or outcome != "success":
            raise UnexpectedResponseError(
                f"POST {request.path} answered HTTP {status} with status {_short(outcome)}, "
                "neither a success nor an error envelope",
                status_code=status,
            )
        result: T = structure_response(data, request.response_type, status_code=status)
        return result

    def _api_error(self, data: dict[str, Any], status: int) -> APIError:
        kind = data.get("name") or data.get("type")
        name = kind if isinstance(kind, str) and kind else "APIError"
        message = data.get("message")
        message = message if isinstance(message, str) else ""
        # The server has no reason to echo the token, but if it ever does, it stops here.
        message = message.replace(self._token.reveal(), "***") if message else "(no message)"
        code = data.get("code")
        code = code if isinstance(code, (int, str)) and not isinstance(code, bool) else None
        cls = _ERROR_KINDS.get(name, APIError)
        return cls(message, name=name, code=code, status_code=status)


class _RequestBody(httpx.AsyncByteStream):
    """An encoded request body: it holds the token, so its ``repr`` shows only its size.

    Its iterator is a plain object, not an async generator like httpx's own body
    stream, which a request cancelled mid-send leaves unfinished for the garbage
    collector, and trio reports that (encode/httpx#3686).
    """

    __slots__ = ("content",)

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __repr__(self) -> str:
        return f"<request body of {len(self.content)} bytes>"

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self.content)


class _Once:
    __slots__ = ("_content",)

    def __init__(self, content: bytes) -> None:
        self._content: bytes | None = content

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        content, self._content = self._content, None
        if content is None:
            raise StopAsyncIteration
        return content


def _classify(error: SarvError) -> Failure:
    """What an error read from an answer says about repeating the call."""
    if isinstance(error, RateLimitError):
        return Failure.THROTTLED
    if isinstance(error, (GeneralError, UnexpectedResponseError)):
        return Failure.MAYBE_APPLIED
    return Failure.FINAL


def _translate_transport_error(exc: httpx.HTTPError, path: str) -> tuple[SarvError, Failure]:
    """The SDK's error for an httpx failure, and whether the request can have been seen."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        not_sent = isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
        error: SarvError = APITimeoutError(
            f"POST {path} timed out ({name}{': the request was not sent' if not_sent else ''})"
        )
        return error, Failure.NOT_SENT if not_sent else Failure.MAYBE_APPLIED
    if isinstance(exc, httpx.ConnectError):
        return APIConnectionError(f"POST {path}: could not connect ({exc})"), Failure.NOT_SENT
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return APIConnectionError(f"POST {path}: cannot be sent ({name}: {exc})"), Failure.FINAL
    if isinstance(exc, httpx.DecodingError):
        return (
            UnexpectedResponseError(f"POST {path}: the answer could not be decoded ({name})"),
            Failure.MAYBE_APPLIED,
        )
    return APIConnectionError(f"POST {path}: connection failed ({name}: {exc})"), (
        Failure.MAYBE_APPLIED
    )


def _describe_body(response: httpx.Response) -> str:
    """The kind and size of a body, never its content (it may hold a password)."""
    size = len(response.content)
    if not size:
        return "an empty body, not JSON"
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "untyped"
    body = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} body of {size} bytes"
    return f"invalid JSON ({body})" if "json" in kind else f"{body}, not JSON"


def _short(value: object) -> str:
    if isinstance(value, (str, int, float, type(None))):
        return repr(value)[:40]
    return "of another type"
