"""The one road every request takes: encode, pace, post, read, retry, translate errors.

httpx and cattrs exceptions become `SarvError`s here and nowhere else. Nothing
logged here carries a body: method, path, HTTP status, duration and attempt only.

What a failed answer proves is read from its HTTP status first (see `_classify` and
docs/resilience.md): only HTTP 429 proves a call was refused. Errors leave through
`Pipeline.send` without the frames and context of the reading (they hold the answer,
passwords included, and sometimes the token), so error trackers that record frame
locals find no secret. An attempt, from the request leaving to the last byte of the
answer, is bounded by ``attempt_timeout`` with an anyio cancel scope, and an answer's
body by ``max_answer_bytes``, decoded (see `_answer_body`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import attrs
import httpx

from ._answer_body import DEFAULT_MAX_ANSWER_BYTES, Answer, Body, BodyError, read_body
from ._config import Secret
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
from ._limiter import CountedSend, RateLimiter
from ._logging import logger
from ._models import SmtpUserList
from ._requests import SarvRequest
from ._retry import Backoff, Failure, parse_retry_after
from ._text import server_text

if TYPE_CHECKING:
    from . import _tracing
    from ._converters import structure_response, unstructure_request
    from ._fast_decode import list_decoder
    from ._fence import Fence

__all__ = ["AnswerReader", "CallOptions", "Pipeline"]

#: Whether `_load` has run.
_loaded = False


def _load() -> None:
    """Import what only calls use, with the first call rather than with the client.

    The converter's module (and cattrs), the fast decoder and tracing (which looks for
    opentelemetry): a program that only imports or makes a client loads none of them.
    (The models and requests load with the client: the public methods' annotations name
    them, and `typing.get_type_hints` must find them.)
    """
    global _loaded, _tracing, list_decoder
    global structure_response, unstructure_request
    from . import _tracing
    from ._converters import structure_response, unstructure_request
    from ._fast_decode import list_decoder

    _loaded = True


T = TypeVar("T")

_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps makes one a call

#: Error kinds with a class of their own. ``RateLimitError`` is not one: only an HTTP 429
#: is a throttle, and an envelope that merely names it raises `APIError`.
_ERROR_KINDS: dict[str, type[APIError]] = {
    "ValidationError": ValidationError,
    "AuthenticationError": AuthenticationError,
    "GeneralError": GeneralError,
}
#: Kinds that say the server refused the call, so it was not applied (at 2xx and 4xx).
_REFUSALS = (ValidationError, AuthenticationError)


@attrs.frozen
class CallOptions:
    """What may differ from call to call (see `AsyncSarvClient.with_options`)."""

    timeout: httpx.Timeout
    max_retries: int
    backoff: Backoff
    max_retry_after: float
    #: Seconds one attempt may take in all, request out to last answer byte; None: unbounded.
    attempt_timeout: float | None
    #: The most bytes an answer's body may hold, decoded.
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    #: ``timeout`` as httpx's request extension, made once rather than per request.
    timeout_extension: dict[str, float | None] = attrs.field(init=False, eq=False, repr=False)

    @timeout_extension.default
    def _timeout_extension(self) -> dict[str, float | None]:
        return self.timeout.as_dict()


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
        fresh_http: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        self.limiter = limiter
        #: The limiter's optional ``acquire_send`` (see `CountedSend`), else None.
        self._acquire_send = _acquire_send_of(limiter)
        self.max_concurrency = max_concurrency
        self._http = http
        #: Makes the pool of calls unsafe to repeat: no keep-alive (see `_http_for_unsafe`).
        self._fresh_factory = fresh_http
        self._fresh: httpx.AsyncClient | None = None
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
            else f"the base URL {base_url} lacks the API version: try {_with_v1(base_url)}"
        )
        self._fixed_bodies: dict[type[SarvRequest[Any]], _RequestBody] = {}

    async def send(
        self, request: SarvRequest[T], options: CallOptions, fence: Fence | None = None
    ) -> T:
        """Send ``request``, repeating only what is safe to repeat; return its typed answer.

        With a ``fence`` (a create of the exactly-once engine), no attempt leaves once the
        holder's lease may have run out (`LeaseLost`; see ``_fence.py``).
        """
        if not _loaded:
            _load()
        if not _tracing.active():
            return await self._send(request, options, None, fence)  # type: ignore[return-value]
        with _tracing.call_span(request.path, self._base_url):
            return await self._send(request, options, None, fence)  # type: ignore[return-value]

    async def send_streaming(
        self, request: SarvRequest[T], options: CallOptions, reader: AnswerReader
    ) -> T | None:
        """`send`, with a 2xx answer's body read by ``reader`` as it arrives.

        None when ``reader`` took the answer's items; the typed answer when it could not
        (not a UTF-8 JSON object, or no array where it streams one). Each attempt reads
        afresh, so ``reader`` must tolerate items seen again after a retry.
        """
        if not _loaded:
            _load()
        if not _tracing.active():
            return await self._send(request, options, reader, None)
        with _tracing.call_span(request.path, self._base_url):
            return await self._send(request, options, reader, None)

    async def _send(
        self,
        request: SarvRequest[T],
        options: CallOptions,
        reader: AnswerReader | None,
        fence: Fence | None,
    ) -> T | None:
        path = request.path
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._base_url.join(path)
        body = self._encode(request)
        http = self._http if request.safe_to_repeat else self._http_for_unsafe()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._post(http, url, body, options, path, attempt, reader, fence)
            except httpx.HTTPError as exc:
                # Not chained: the httpx error and its frames hold the request, token included.
                error, failure = _translate_transport_error(exc, path)
            except BodyError as exc:
                # Its error was never raised: no frame of the reading (nor context) in it.
                error = exc.error
                failure = _classify(error)
            else:
                if response is None:
                    error = APITimeoutError(
                        f"POST {path} did not finish within attempt_timeout "
                        f"({options.attempt_timeout:g} s)"
                    )
                    failure = Failure.MAYBE_APPLIED
                else:
                    # The reader read this answer only if it is a 2xx: what it holds
                    # otherwise is an earlier attempt's.
                    status = response.status_code
                    read = reader if reader is not None and 200 <= status < 300 else None
                    try:
                        if read is not None and read.error is not None:
                            raise read.error
                        if read is not None and read.fields is not None:
                            return self._read_streamed(read, status, request)
                        return self._read(response, request)
                    except SarvError as exc:
                        error, failure = _detached(exc), _classify(exc)

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

    def _http_for_unsafe(self) -> httpx.AsyncClient:
        """The pool for calls unsafe to repeat: a fresh connection each, when the pool is ours.

        A keep-alive connection can hold bytes a server sent past an answer's end (h11
        keeps them for the next response on that connection), so a create sent on it
        could read a forged answer as its own. A connection of its own cannot.
        """
        if self._fresh_factory is None:
            return self._http
        if self._fresh is None:
            self._fresh = self._fresh_factory()
        return self._fresh

    async def aclose(self) -> None:
        """Close the pool of calls unsafe to repeat, if one was made."""
        fresh, self._fresh = self._fresh, None
        if fresh is not None:
            await fresh.aclose()

    async def _wait_before_retry(
        self, error: SarvError, failure: Failure, attempt: int, options: CallOptions
    ) -> float:
        delay = options.backoff.delay(attempt)
        if failure is Failure.THROTTLED:
            retry_after = error.retry_after if isinstance(error, RateLimitError) else None
            if retry_after is not None:
                if retry_after > options.max_retry_after:
                    # Too long to sit out: this call raises, and the pause is clamped so
                    # that no later call is held back longer than max_retry_after.
                    self.limiter.pause(options.max_retry_after)
                    raise error
                delay = retry_after
            # One 429 pauses every task of the client: the next acquire() waits it out.
            self.limiter.pause(delay)
        else:
            await anyio.sleep(delay)
        return delay

    def _encode(self, request: SarvRequest[Any]) -> _RequestBody:
        # A request without fields (list) always has the same body: encode it once.
        body = self._fixed_bodies.get(type(request))
        if body is not None:
            return body
        fields = unstructure_request(request)
        kind = type(request)
        fixed = not fields and attrs.has(kind) and not attrs.fields(kind)
        fields["owner_id"] = self._owner_id
        fields["token"] = self._token.reveal()
        body = _RequestBody(_COMPACT_JSON.encode(fields).encode())
        if fixed:
            self._fixed_bodies[kind] = body
        return body

    async def _post(
        self,
        http: httpx.AsyncClient,
        url: httpx.URL,
        body: _RequestBody,
        options: CallOptions,
        path: str,
        attempt: int,
        reader: AnswerReader | None = None,
        fence: Fence | None = None,
    ) -> Answer | None:
        """POST ``body``; the answer, or None if the attempt overran ``attempt_timeout``."""
        async with self._slots:
            # The pause and the rate windows are checked now, as the request leaves.
            queued = time.perf_counter()
            acquire_send = self._acquire_send
            sent: CountedSend | None = None
            if acquire_send is None:
                await self.limiter.acquire()
            else:
                sent = await acquire_send()
            started = time.perf_counter()
            request = http.build_request(
                "POST",
                url,
                content=body.content,
                headers=self._headers,
                extensions={"timeout": options.timeout_extension},
            )
            request.stream = body
            request.extensions[_tracing.RESEND_COUNT] = attempt - 1
            if sent is not None:
                # Told when the request leaves, after connecting if it needs a connection.
                request.extensions["trace"] = _Departure(sent)
            _tracing.record_rate_limit_wait(started - queued)
            if fence is not None:
                fence.check()  # a create's holder may have been frozen past its lease
            limit = options.attempt_timeout
            if limit is None:
                response = await _receive(http, request, reader, options.max_answer_bytes, path)
            else:
                # httpx's timeouts bound each read, so a server dripping a byte now and
                # then would keep the attempt alive forever. The scope bounds it whole;
                # httpx closes the connection it cancels (it never returns to the pool).
                with anyio.CancelScope(deadline=anyio.current_time() + limit) as scope:
                    response = await _receive(http, request, reader, options.max_answer_bytes, path)
                if scope.cancelled_caught:
                    return None
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

    def _read(self, response: Answer, request: SarvRequest[T]) -> T:
        status = response.status_code
        if status == 429:
            raise RateLimitError(
                f"POST {request.path} was rate limited",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status == 404 and self._not_found_hint is not None:
            raise ValidationError(
                f"POST {request.path} was not found: {self._not_found_hint}",
                field="base_url",
                status_code=status,
            )
        if request.response_type is SmtpUserList and 200 <= status < 300:
            # sarv-async[fast]: a well-formed list straight from the bytes; else as below.
            decode = list_decoder()
            answer = None if decode is None else decode(response.content)
            if answer is not None:
                return answer  # type: ignore[return-value]  # T is SmtpUserList here
        try:
            data = json.loads(response.content)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            data = _NOT_JSON  # raised below, outside this block: no json frames as context
        if not isinstance(data, dict):
            raise UnexpectedResponseError(
                f"POST {request.path} answered HTTP {status} with "
                + (
                    _describe_body(response)
                    if data is _NOT_JSON
                    else f"a JSON {type(data).__name__}, not an object"
                ),
                status_code=status,
            )
        self._check_envelope(data, status, request)
        result: T = structure_response(data, request.response_type, status_code=status)
        return result

    def _read_streamed(
        self, reader: AnswerReader, status: int, request: SarvRequest[T]
    ) -> T | None:
        """The envelope of an answer whose items ``reader`` took: None, or the typed answer."""
        fields = reader.fields
        assert fields is not None
        self._check_envelope(fields, status, request)
        if reader.streamed:
            return None
        result: T = structure_response(fields, request.response_type, status_code=status)
        return result

    def _check_envelope(self, data: dict[str, Any], status: int, request: SarvRequest[Any]) -> None:
        """Raise the error an error envelope (or no success envelope) stands for."""
        outcome = data.get("status")
        if outcome == "error":
            raise self._api_error(data, status)
        if not 200 <= status < 300 or outcome != "success":
            raise UnexpectedResponseError(
                f"POST {request.path} answered HTTP {status} with status {_short(outcome)}, "
                "neither a success nor an error envelope",
                status_code=status,
            )

    def _api_error(self, data: dict[str, Any], status: int) -> APIError:
        token = self._token.reveal()
        kind = data.get("name") or data.get("type")
        name = server_text(kind, mask=token) if isinstance(kind, str) and kind else "APIError"
        message = data.get("message")
        # The server has no reason to echo the token, but if it ever does, it stops here.
        message = server_text(message, mask=token) if isinstance(message, str) and message else ""
        code = data.get("code")
        if isinstance(code, str):
            code = server_text(code, mask=token)
        elif not isinstance(code, int) or isinstance(code, bool):
            code = None
        cls = _ERROR_KINDS.get(name, APIError)
        return cls(message or "(no message)", name=name, code=code, status_code=status)


class AnswerReader(Protocol):
    """Reads the body of a 2xx answer as it arrives (see `Pipeline.send_streaming`)."""

    #: The envelope's other fields once an answer was read in pieces; None if it was not.
    fields: dict[str, Any] | None
    #: Whether the answer's items went to the reader's consumer.
    streamed: bool
    #: What was wrong with the answer, if anything (invalid JSON, an item of no use).
    error: SarvError | None

    async def read(self, status: int, body: AsyncIterator[bytes]) -> bytes | None:
        """Consume ``body``, the decoded body of an answer of HTTP ``status``: None if read
        in pieces (or unreadable: ``error``), else the whole body, to read as usual.
        What the body raises (`BodyError`) and what the reader's consumer raises propagate."""
        ...


async def _receive(
    http: httpx.AsyncClient,
    request: httpx.Request,
    reader: AnswerReader | None,
    max_bytes: int,
    path: str,
) -> Answer:
    """Send ``request``; a 2xx answer read through ``reader`` if any, any other whole.

    The body is read within ``max_bytes``, decoded (`BodyError` past them).
    """
    response = await http.send(request, stream=True)
    content: bytes | None
    try:
        status = response.status_code
        if reader is None or not 200 <= status < 300:
            content = await read_body(response, max_bytes, path)
        else:
            body = Body(response, max_bytes, path)
            try:
                content = await reader.read(status, body)  # None: read in pieces
            finally:
                await body.aclose()
    finally:
        await response.aclose()
    return Answer(status, response.headers, content or b"")


def _acquire_send_of(
    limiter: RateLimiter,
) -> Callable[[], Awaitable[CountedSend | None]] | None:
    """``limiter.acquire_send`` if it stands for the limiter's own ``acquire``, else None.

    A subclass that overrides ``acquire`` alone (to count, to gate) inherits an
    ``acquire_send`` that would pass it by, as would a wrapper forwarding attributes it
    does not define: such limiters are called through ``acquire``, as before.
    """
    acquire_send = getattr(limiter, "acquire_send", None)
    if acquire_send is None:
        return None
    mro = type(limiter).__mro__
    defines_send = next((cls for cls in mro if "acquire_send" in vars(cls)), None)
    defines_acquire = next((cls for cls in mro if "acquire" in vars(cls)), None)
    if defines_send is None or defines_acquire is None:
        return None
    if not issubclass(defines_send, defines_acquire):
        return None
    return acquire_send  # type: ignore[no-any-return]


#: A request that left later than this after it was allowed is counted when it left.
_LATE = 0.001


class _Departure:
    """httpcore's ``trace`` extension: tells the limiter when a request really left.

    httpcore awaits it at each step of a request, in the request's task, on asyncio and
    trio alike; a request that needs a new connection leaves only once TCP (and TLS) are
    connected, which the limiter could not know when it allowed the send. Called once
    the headers start out, it never awaits (so it cannot be cancelled) nor raises, and
    keeps nothing of what httpcore passes it (the request, the token in its body).
    A transport that is not httpcore's never calls it: the send stays counted when allowed.
    """

    __slots__ = ("_sent",)

    def __init__(self, sent: CountedSend) -> None:
        self._sent: CountedSend | None = sent

    async def __call__(self, event: str, info: object) -> None:
        sent = self._sent
        if sent is None or not event.endswith(".send_request_headers.started"):
            return
        self._sent = None
        try:
            delay = anyio.current_time() - sent.allowed
            if delay > _LATE:
                sent.left_late(delay)
        except Exception as exc:  # a custom limiter's bug must not fail the request
            # No traceback: these frames' locals hold the request, token included.
            logger.warning(
                "the rate limiter could not count a send that left late (%s)",
                type(exc).__name__,
            )


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
    """What an error read from an answer says about repeating the call.

    The status speaks first: HTTP 429 (and only it) is a throttle, proof that nothing
    was applied. Any other status outside 2xx and 4xx (a 5xx, a 3xx) says the server
    failed, so the call may have been applied whatever the body says. At 2xx and 4xx
    the envelope decides: ``ValidationError`` and ``AuthenticationError`` are refusals;
    every other kind (``GeneralError``, a ``RateLimitError`` that is no 429, a kind the
    docs do not list, none) may have been applied. So may an unreadable answer.
    """
    status = getattr(error, "status_code", None)
    if isinstance(error, RateLimitError) and status == 429:
        return Failure.THROTTLED
    if (
        isinstance(error, _REFUSALS)
        and status is not None
        and (200 <= status < 300 or 400 <= status < 500)
    ):
        return Failure.FINAL
    if isinstance(error, (APIError, UnexpectedResponseError)):
        return Failure.MAYBE_APPLIED
    return Failure.FINAL


def _detached(error: SarvError) -> SarvError:
    """``error`` without the frames and context it was raised with.

    Those frames (the reading of the answer, the converter, cattrs, json) hold the parsed
    answer, passwords included; the context is json's or cattrs' exception, with more.
    """
    error.__traceback__ = None
    error.__context__ = None
    return error


#: Stands for a body that is not JSON.
_NOT_JSON: Any = object()


def _translate_transport_error(exc: httpx.HTTPError, path: str) -> tuple[SarvError, Failure]:
    """The SDK's error for an httpx failure, and whether the request can have been seen."""
    name = type(exc).__name__
    text = server_text(str(exc))  # httpx's messages can quote what the server sent
    if isinstance(exc, httpx.TimeoutException):
        not_sent = isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
        error: SarvError = APITimeoutError(
            f"POST {path} timed out ({name}{': the request was not sent' if not_sent else ''})"
        )
        return error, Failure.NOT_SENT if not_sent else Failure.MAYBE_APPLIED
    if isinstance(exc, httpx.ConnectError):
        return APIConnectionError(f"POST {path}: could not connect ({text})"), Failure.NOT_SENT
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return APIConnectionError(f"POST {path}: cannot be sent ({name}: {text})"), Failure.FINAL
    if isinstance(exc, httpx.DecodingError):
        return (
            UnexpectedResponseError(f"POST {path}: the answer could not be decoded ({name})"),
            Failure.MAYBE_APPLIED,
        )
    return APIConnectionError(f"POST {path}: connection failed ({name}: {text})"), (
        Failure.MAYBE_APPLIED
    )


def _describe_body(response: Answer) -> str:
    """The kind and size of a body, never its content (it may hold a password)."""
    size = len(response.content)
    if not size:
        return "an empty body, not JSON"
    kind = server_text(response.headers.get("content-type", "").split(";")[0].strip(), limit=100)
    kind = kind or "untyped"
    body = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} body of {size} bytes"
    return f"invalid JSON ({body})" if "json" in kind else f"{body}, not JSON"


def _short(value: object) -> str:
    if isinstance(value, (str, int, float, type(None))):
        return repr(value)[:40]
    return "of another type"


def _with_v1(base_url: httpx.URL) -> httpx.URL:
    """``base_url`` with the API's version: its version segment (``v2``) replaced, else added."""
    head, _, last = base_url.path.rstrip("/").rpartition("/")
    if re.fullmatch(r"v\d+(\.\d+)*", last):
        return base_url.copy_with(path=f"{head}/v1.0/")
    return (
        base_url.join("v1.0/")
        if base_url.path.endswith("/")
        else base_url.join(base_url.path + "/v1.0/")
    )
