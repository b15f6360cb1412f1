"""OpenTelemetry spans of the SDK's own, when ``opentelemetry-api`` is installed.

Install the ``otel`` extra (``pip install 'sarv-async[otel]'``) and configure a tracer
provider as usual: each call then gets an INTERNAL span, ``sarv_async settings/addSmtp``,
around its attempts, with the HTTP semantic conventions' ``http.request.method``,
``server.address``, ``server.port``, ``http.response.status_code`` (of the last
attempt), ``http.request.resend_count`` (when repeated) and ``error.type`` (when it
failed), and events for what happened inside: ``sarv_async.rate_limit.wait`` (seconds
spent waiting for the rate limiter), ``sarv_async.retry`` (the error that caused a
repeat, and the delay before it) and ``sarv_async.outcome_unknown`` (a call that may
have taken effect and was not repeated). The HTTP spans of each attempt come from
``opentelemetry-instrumentation-httpx``; `async_request_hook` adds the resend count to
them.

No span, attribute or event ever holds a body, the token or a password: only the API
path, counts, durations, status codes and exception class names. Without
``opentelemetry-api`` every function here does nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import httpx

from ._exceptions import OutcomeUnknownError
from ._version import __version__

if TYPE_CHECKING:
    from types import ModuleType

    from opentelemetry.trace import Span, Tracer

__all__ = [
    "ENABLED",
    "RESEND_COUNT",
    "active",
    "async_request_hook",
    "call_span",
    "record_attempt",
    "record_rate_limit_wait",
    "record_retry",
]

#: Whether opentelemetry-api is installed (checked without importing it).
ENABLED = importlib.util.find_spec("opentelemetry") is not None
#: The httpx request extension holding how many times the call was sent before.
RESEND_COUNT = "sarv_async.resend_count"
_MIN_WAIT = 0.0005  # seconds: a limiter that let the request through at once is no event

_tracer: Tracer | None = None
_trace: ModuleType | None = None  # opentelemetry.trace, imported on first use
# The recording span of the call in progress: events go to it, never to a span of yours.
_call: ContextVar[Span | None] = ContextVar("sarv_async_call_span", default=None)


def _api() -> ModuleType:
    global _trace
    if _trace is None:
        from opentelemetry import trace

        _trace = trace
    return _trace


def active() -> bool:
    """Whether spans are wanted: opentelemetry-api is installed and a provider is set.

    Without a provider every span would be a no-op one: the call skips them entirely.
    """
    if not ENABLED:
        return False
    trace = _api()
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _get_tracer() -> Tracer:
    global _tracer
    if _tracer is None:
        _tracer = _api().get_tracer("sarv_async", __version__)
    return _tracer


def _current_span() -> Span | None:
    """The recording span of the SDK call in progress (inside `call_span`), else None."""
    return _call.get()


@contextmanager
def call_span(path: str, base_url: httpx.URL) -> Iterator[None]:
    """An INTERNAL span around one SDK call and all its attempts."""
    from opentelemetry.trace import SpanKind, StatusCode

    with _get_tracer().start_as_current_span(
        f"sarv_async {path}",
        kind=SpanKind.INTERNAL,
        record_exception=False,  # an exception event carries a message and a traceback
        set_status_on_exception=False,
    ) as span:
        recording = span.is_recording()
        previous = _call.set(span if recording else None)
        if recording:
            span.set_attributes(
                {
                    "http.request.method": "POST",
                    "server.address": base_url.host,
                    "server.port": base_url.port or (443 if base_url.scheme == "https" else 80),
                    "sarv_async.path": path,
                }
            )
        try:
            yield
        except BaseException as exc:
            if recording:
                name = type(exc).__qualname__
                span.set_attribute("error.type", name)
                span.set_status(StatusCode.ERROR, name)
                if isinstance(exc, OutcomeUnknownError):
                    cause = type(exc.__cause__).__qualname__ if exc.__cause__ else name
                    span.add_event("sarv_async.outcome_unknown", {"error.type": cause})
            raise
        finally:
            _call.reset(previous)


def record_attempt(resend_count: int, status_code: int) -> None:
    """An attempt got an answer: its status, and how many attempts came before it."""
    span = _current_span()
    if span is not None:
        span.set_attribute("http.response.status_code", status_code)
        if resend_count:
            span.set_attribute("http.request.resend_count", resend_count)


def record_retry(error: BaseException, delay: float, resend_count: int) -> None:
    """The call will be sent again after ``delay`` seconds, because of ``error``."""
    span = _current_span()
    if span is not None:
        span.add_event(
            "sarv_async.retry",
            {
                "error.type": type(error).__qualname__,
                "sarv_async.retry.delay": delay,
                "http.request.resend_count": resend_count,
            },
        )


def record_rate_limit_wait(seconds: float) -> None:
    """The request waited ``seconds`` for the rate limiter before it left."""
    if seconds < _MIN_WAIT:
        return
    span = _current_span()
    if span is not None:
        span.add_event("sarv_async.rate_limit.wait", {"sarv_async.wait.seconds": seconds})


async def async_request_hook(span: Span, request: Any) -> None:
    """A request hook for ``opentelemetry-instrumentation-httpx``: the resend count.

    ``HTTPXClientInstrumentor().instrument(async_request_hook=async_request_hook)``, or
    ``HTTPXClientInstrumentor.instrument_client(client, request_hook=async_request_hook)``.
    It reads only the request's extensions (never its body or headers).
    """
    extensions: Mapping[str, Any] | None = request[4]
    count = extensions.get(RESEND_COUNT) if extensions else None
    if count and span.is_recording():
        span.set_attribute("http.request.resend_count", count)
