"""OpenTelemetry: the SDK's calls are traced, and no span holds a body, token or password.

Spans go to the OpenTelemetry SDK's in-memory exporter. The HTTP spans of each attempt
come from ``opentelemetry-instrumentation-httpx``, on the client the SDK makes and on
one passed in; the SDK's own INTERNAL span wraps each call. Every name, attribute,
event, status and resource of every span is searched for the secrets in play.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sarv_async import AsyncSarvClient, Backoff, OutcomeUnknownError
from sarv_async.testing import Emulator
from sarv_async.tracing import async_request_hook

pytestmark = pytest.mark.anyio

OWNER = "owner-trace"
TOKEN = "tok-Trace-Secret-9a8b7c6d5e4f"
FAST = Backoff(initial=0.01, maximum=0.02, jitter=0.0)


class _Recorder(SpanProcessor):
    """Exports finished spans to memory while a test records (the provider is global)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.recording = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            self.exporter.export([span])


_RECORDER = _Recorder()


@pytest.fixture(scope="session")
def _provider() -> TracerProvider:
    """The process's tracer provider (OpenTelemetry allows setting it once)."""
    provider = TracerProvider()
    provider.add_span_processor(_RECORDER)
    trace.set_tracer_provider(provider)
    return provider


@pytest.fixture
def spans(_provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test."""
    _RECORDER.exporter.clear()
    _RECORDER.recording = True
    yield _RECORDER.exporter
    _RECORDER.recording = False
    _RECORDER.exporter.clear()


@pytest.fixture
def instrumented(spans: InMemorySpanExporter) -> Iterator[None]:
    """httpx instrumented process-wide, as an app's OpenTelemetry setup does."""
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(async_request_hook=async_request_hook)
    yield
    instrumentor.uninstrument()


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(accounts={OWNER: TOKEN}) as emu:
        yield emu


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    emulator.reset()
    return emulator


async def _calls(client: AsyncSarvClient, emu: Emulator) -> list[str]:
    """Every call, a retried list among them; the passwords seen."""
    created = await client.smtp_users.create(total_limit=10, hourly_limit=1)
    emu.inject_fault("gateway_page", "listSmtp")
    users = await client.smtp_users.list()
    await client.smtp_users.update(created.smtp_user_name, hourly_limit=2)
    reset = await client.smtp_users.reset_password(created.smtp_user_name)
    return [created.smtp_password, reset.smtp_password, *(u.smtp_password for u in users)]


def _everything(span: ReadableSpan) -> str:
    """All a span says, as text."""
    parts: list[Any] = [span.name, span.status.description, dict(span.attributes or {})]
    parts += [(event.name, dict(event.attributes or {})) for event in span.events]
    parts += [(link.context, dict(link.attributes or {})) for link in span.links]
    parts.append(dict(span.resource.attributes))
    return repr(parts)


def _assert_no_secret(spans: Sequence[ReadableSpan], secrets: Sequence[str]) -> None:
    assert spans
    for span in spans:
        text = _everything(span)
        for secret in secrets:
            assert secret not in text, f"a secret in span {span.name}"
        assert '{"' not in text, f"a body in span {span.name}"
        assert "owner_id" not in text, f"a body in span {span.name}"


def _http_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is SpanKind.CLIENT]


def _sdk_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [span for span in spans if span.name.startswith("sarv_async ")]


def _url(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("url.full", attributes.get("http.url")))


def _status(span: ReadableSpan) -> object:
    attributes = span.attributes or {}
    return attributes.get("http.response.status_code", attributes.get("http.status_code"))


async def test_the_sdks_own_client_is_traced_without_secrets(
    emu: Emulator, spans: InMemorySpanExporter, instrumented: None
) -> None:
    """Each attempt is an HTTP span (path, status, resend count) inside the SDK's call span."""
    async with AsyncSarvClient(OWNER, TOKEN, base_url=emu.base_url, backoff=FAST) as client:
        passwords = await _calls(client, emu)
    finished = spans.get_finished_spans()
    _assert_no_secret(finished, [TOKEN, *passwords])

    http = _http_spans(finished)
    assert [_url(span).rsplit("/", 1)[1] for span in http] == [
        "addSmtp",
        "listSmtp",
        "listSmtp",
        "editSmtp",
        "resetSmtpPassword",
    ]
    assert [_status(span) for span in http] == [200, 502, 200, 200, 200] or [
        _status(span) for span in http
    ] == [200, 503, 200, 200, 200]
    resends = [(span.attributes or {}).get("http.request.resend_count") for span in http]
    assert resends == [None, None, 1, None, None]

    sdk = {span.name: span for span in _sdk_spans(finished)}
    assert set(sdk) == {
        "sarv_async settings/addSmtp",
        "sarv_async settings/listSmtp",
        "sarv_async settings/editSmtp",
        "sarv_async settings/resetSmtpPassword",
    }
    listed = sdk["sarv_async settings/listSmtp"]
    assert listed.kind is SpanKind.INTERNAL
    assert (listed.attributes or {})["http.request.resend_count"] == 1
    assert (listed.attributes or {})["http.response.status_code"] == 200
    assert (listed.attributes or {})["server.address"] == "127.0.0.1"
    [retry] = [event for event in listed.events if event.name == "sarv_async.retry"]
    assert (retry.attributes or {})["error.type"] == "UnexpectedResponseError"
    # Each attempt's HTTP span is a child of the call's span.
    for span in http:
        assert span.parent is not None
        assert span.parent.span_id in {s.context.span_id for s in sdk.values()}


async def test_an_injected_client_is_traced(emu: Emulator, spans: InMemorySpanExporter) -> None:
    """A client passed as http_client, instrumented on its own, is the one traced."""
    async with httpx.AsyncClient() as http:
        HTTPXClientInstrumentor.instrument_client(http, request_hook=async_request_hook)
        async with AsyncSarvClient(
            OWNER, TOKEN, base_url=emu.base_url, http_client=http, backoff=FAST
        ) as client:
            passwords = await _calls(client, emu)
        HTTPXClientInstrumentor.uninstrument_client(http)
    finished = spans.get_finished_spans()
    _assert_no_secret(finished, [TOKEN, *passwords])
    http_spans = _http_spans(finished)
    assert len(http_spans) == 5
    assert [(s.attributes or {}).get("http.request.resend_count") for s in http_spans][2] == 1


async def test_an_unknown_outcome_is_marked(emu: Emulator, spans: InMemorySpanExporter) -> None:
    """A create that may have taken effect: error.type and an outcome_unknown event."""
    emu.inject_fault("drop_after_apply", "addSmtp")
    async with AsyncSarvClient(OWNER, TOKEN, base_url=emu.base_url, backoff=FAST) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.smtp_users.create(total_limit=10, hourly_limit=1)
    [span] = _sdk_spans(spans.get_finished_spans())
    assert (span.attributes or {})["error.type"] == "OutcomeUnknownError"
    assert not span.status.is_ok
    [event] = [event for event in span.events if event.name == "sarv_async.outcome_unknown"]
    assert (event.attributes or {})["error.type"] == "APIConnectionError"
    _assert_no_secret([span], [TOKEN, *(user["password"] for user in emu.users(OWNER))])


@pytest.mark.slow
async def test_rate_limiter_waits_are_events(emu: Emulator, spans: InMemorySpanExporter) -> None:
    """Time spent waiting for the client's limiter shows on the call that waited."""
    async with AsyncSarvClient(
        OWNER, TOKEN, base_url=emu.base_url, rate_limit="2/second", backoff=FAST
    ) as client:
        for _ in range(3):
            await client.smtp_users.list()
    waits = [
        (event.attributes or {})["sarv_async.wait.seconds"]
        for span in _sdk_spans(spans.get_finished_spans())
        for event in span.events
        if event.name == "sarv_async.rate_limit.wait"
    ]
    assert len(waits) == 1
    assert 0.5 < float(waits[0]) < 1.5  # type: ignore[arg-type]


async def test_nothing_is_recorded_without_a_provider_listening(
    emu: Emulator, spans: InMemorySpanExporter
) -> None:
    """Calls made outside a recording provider leave no span behind (a guard on the fixture)."""
    _RECORDER.recording = False
    async with AsyncSarvClient(OWNER, TOKEN, base_url=emu.base_url) as client:
        await client.smtp_users.list()
    assert spans.get_finished_spans() == ()


async def test_without_opentelemetry_the_sdk_makes_no_span(
    emu: Emulator, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without opentelemetry-api (as the SDK sees it), calls work and make no span of the SDK's."""
    from sarv_async import _tracing

    monkeypatch.setattr(_tracing, "ENABLED", False)
    async with AsyncSarvClient(OWNER, TOKEN, base_url=emu.base_url) as client:
        await client.smtp_users.list()
    assert _sdk_spans(spans.get_finished_spans()) == []


async def test_the_sdk_writes_only_to_its_own_spans(
    emu: Emulator, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the SDK's spans off, an application span around a call gets nothing from it."""
    from sarv_async import _tracing

    monkeypatch.setattr(_tracing, "active", lambda: False)
    emu.inject_fault("gateway_page", "listSmtp")
    with trace.get_tracer("app").start_as_current_span("app work"):
        async with AsyncSarvClient(OWNER, TOKEN, base_url=emu.base_url, backoff=FAST) as client:
            await client.smtp_users.list()
    [app] = spans.get_finished_spans()
    assert app.name == "app work"
    assert dict(app.attributes or {}) == {}
    assert app.events == ()
