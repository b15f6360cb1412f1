"""What is retried, what never is, and how long the client waits."""

from __future__ import annotations

import email.utils
import time

import anyio
import httpx
import pytest
import respx

from sarv_async import (
    APIConnectionError,
    APITimeoutError,
    Backoff,
    CreateSmtpUserRequest,
    GeneralError,
    OutcomeUnknownError,
    RateLimitError,
    UnexpectedResponseError,
    ValidationError,
)
from sarv_async._retry import parse_retry_after
from tests.helpers import BASE_URL, error_envelope, make_client, success

pytestmark = pytest.mark.anyio

ADD_URL = f"{BASE_URL}settings/addSmtp"
LIST_URL = f"{BASE_URL}settings/listSmtp"
CREATED = success(message="SMTP User Created", smtp_user_name="smtp1", smtp_password="pw1")
GATEWAY_PAGE = httpx.Response(
    502, text="<html>Bad Gateway</html>", headers={"content-type": "text/html"}
)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503),
        GATEWAY_PAGE,
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.ReadError("reset"),
        error_envelope("GeneralError", "try later"),
    ],
    ids=["503", "html-502", "read-timeout", "dropped", "read-error", "general-error"],
)
async def test_safe_calls_are_retried_after_failures_that_may_have_reached_the_server(
    failure: httpx.Response | Exception, respx_mock: respx.MockRouter
) -> None:
    """list/edit/reset are repeated after timeouts, drops, 5xx and unreadable answers."""
    route = respx_mock.post(LIST_URL).mock(side_effect=[failure, success(smtp_list=[])])
    async with make_client() as client:
        assert await client.smtp_users.list() == []
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (httpx.Response(503), UnexpectedResponseError),
        (GATEWAY_PAGE, UnexpectedResponseError),
        (httpx.ReadTimeout("slow"), APITimeoutError),
        (httpx.WriteTimeout("slow"), APITimeoutError),
        (httpx.RemoteProtocolError("dropped"), APIConnectionError),
        (httpx.ReadError("reset"), APIConnectionError),
        (error_envelope("GeneralError", "oops"), GeneralError),
        (
            httpx.Response(200, content=b'{"status":"success","smtp_user_name":"smtp1","smtp_pa'),
            UnexpectedResponseError,
        ),
        (success(message="SMTP User Created"), UnexpectedResponseError),
    ],
    ids=[
        "503",
        "html-502",
        "read-timeout",
        "write-timeout",
        "dropped",
        "read-error",
        "general-error",
        "truncated",
        "no-credentials",
    ],
)
async def test_create_is_never_repeated_once_it_may_have_reached_the_server(
    failure: httpx.Response | Exception,
    cause: type[Exception],
    respx_mock: respx.MockRouter,
) -> None:
    """A create that may have taken effect raises OutcomeUnknownError after exactly one request."""
    route = respx_mock.post(ADD_URL).mock(side_effect=[failure, CREATED])
    async with make_client(max_retries=5) as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.smtp_users.create(total_limit=10, hourly_limit=2)
    assert route.call_count == 1
    assert info.value.request == CreateSmtpUserRequest(total_limit=10, hourly_limit=2)
    assert isinstance(info.value.__cause__, cause)
    assert "list" in str(info.value)


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("no route"), httpx.Response(429)],
    ids=["connect-error", "connect-timeout", "429"],
)
async def test_create_is_retried_when_the_request_was_never_processed(
    failure: httpx.Response | Exception, respx_mock: respx.MockRouter
) -> None:
    """Connection failures before sending, and 429s, are retried even for create."""
    route = respx_mock.post(ADD_URL).mock(side_effect=[failure, CREATED])
    async with make_client() as client:
        creds = await client.smtp_users.create(total_limit=10, hourly_limit=2)
    assert creds.smtp_user_name == "smtp1"
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.Response(429, headers={"Retry-After": "0"}), RateLimitError),
        (httpx.ReadTimeout("slow"), APITimeoutError),
        (httpx.RemoteProtocolError("dropped"), APIConnectionError),
        (httpx.Response(503), UnexpectedResponseError),
    ],
    ids=["429", "timeout", "dropped", "503"],
)
async def test_spent_retries_raise_the_last_attempts_error(
    failure: httpx.Response | Exception, error: type[Exception], respx_mock: respx.MockRouter
) -> None:
    """After max_retries repeats, the typed error of the last attempt is raised."""
    route = respx_mock.post(LIST_URL).mock(side_effect=[failure] * 3)
    async with make_client(max_retries=2) as client:
        with pytest.raises(error):
            await client.smtp_users.list()
    assert route.call_count == 3


async def test_definite_errors_are_not_retried(respx_mock: respx.MockRouter) -> None:
    """A ValidationError answer is final: one request, no retry."""
    route = respx_mock.post(LIST_URL).mock(return_value=error_envelope("ValidationError", "bad"))
    async with make_client(max_retries=3) as client:
        with pytest.raises(ValidationError):
            await client.smtp_users.list()
    assert route.call_count == 1


async def test_max_retries_zero_sends_once(respx_mock: respx.MockRouter) -> None:
    """max_retries=0 turns retries off."""
    route = respx_mock.post(LIST_URL).mock(return_value=httpx.Response(503))
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError):
            await client.smtp_users.list()
    assert route.call_count == 1


@pytest.mark.slow
async def test_retry_after_seconds_is_honoured(respx_mock: respx.MockRouter) -> None:
    """A 429's Retry-After (seconds) is waited out before the repeat."""
    times: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        if len(times) == 1:
            return httpx.Response(429, headers={"Retry-After": "0.3"})
        return success(smtp_list=[])

    respx_mock.post(LIST_URL).mock(side_effect=answer)
    async with make_client() as client:
        await client.smtp_users.list()
    assert times[1] - times[0] >= 0.3


@pytest.mark.slow
async def test_retry_after_beyond_the_cap_surfaces(respx_mock: respx.MockRouter) -> None:
    """A Retry-After beyond max_retry_after raises RateLimitError at once, with .retry_after."""
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return httpx.Response(429, headers={"Retry-After": "3600"})

    respx_mock.post(LIST_URL).mock(side_effect=answer)
    async with make_client(max_retries=5, max_retry_after=0.3) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitError) as info:
            await client.smtp_users.list()
        assert time.monotonic() - started < 0.3
        assert info.value.retry_after == 3600
        assert info.value.status_code == 429
        # The whole client is paused, for max_retry_after at most: another call does not
        # hammer the server meanwhile, and is not held back for the hour either.
        with pytest.raises(RateLimitError):
            await client.smtp_users.list()
    assert len(sent) == 2
    assert 0.3 <= sent[1] - sent[0] < 1.5


@pytest.mark.slow
async def test_one_429_pauses_every_task(respx_mock: respx.MockRouter) -> None:
    """After one 429 with Retry-After, no task of the client sends until the pause ends."""
    sent: list[float] = []
    throttled_at: list[float] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        now = time.monotonic()
        if not throttled_at:
            throttled_at.append(now)
            return httpx.Response(429, headers={"Retry-After": "0.4"})
        sent.append(now)
        return success(smtp_list=[])

    respx_mock.post(LIST_URL).mock(side_effect=answer)
    async with make_client(max_concurrency=1) as client, anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(client.smtp_users.list)
    assert len(sent) == 6
    assert min(sent) - throttled_at[0] >= 0.4


async def test_max_concurrency_bounds_requests_in_flight(respx_mock: respx.MockRouter) -> None:
    """No more than max_concurrency requests are in flight across all tasks."""
    in_flight = 0
    peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.01)
        in_flight -= 1
        return success(smtp_list=[])

    respx_mock.post(LIST_URL).mock(side_effect=answer)
    async with make_client(max_concurrency=3) as client, anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(client.smtp_users.list)
    assert peak == 3


async def test_cancelled_requests_leave_the_client_usable(respx_mock: respx.MockRouter) -> None:
    """Cancelling calls mid-request frees their concurrency slots for the next call."""
    hang = anyio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        if not hang.is_set():
            await anyio.sleep(3600)
        return success(smtp_list=[])

    respx_mock.post(LIST_URL).mock(side_effect=answer)
    async with make_client(max_concurrency=2) as client:
        with anyio.move_on_after(0.1) as scope:
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(client.smtp_users.list)
        assert scope.cancelled_caught
        hang.set()
        with anyio.fail_after(2):
            assert await client.smtp_users.list() == []
            assert await client.smtp_users.list() == []


def test_backoff_grows_exponentially_within_its_cap() -> None:
    """Backoff starts near `initial`, doubles, stays under `maximum` (plus jitter)."""
    backoff = Backoff(initial=0.5, maximum=8.0, jitter=0.25)
    for retry, base in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (50, 8.0)]:
        for _ in range(20):
            assert base * 0.75 <= backoff.delay(retry) <= base * 1.25
    assert Backoff(jitter=0).delay(1) == 0.5


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), ("0.5", 0.5), ("-3", None), ("soon", None), (None, None), ("nan", None)],
)
def test_retry_after_seconds_parsing(header: str | None, expected: float | None) -> None:
    """Retry-After in seconds is read; nonsense is ignored."""
    assert parse_retry_after(header) == expected


def test_retry_after_http_date_parsing() -> None:
    """Retry-After as an HTTP date becomes the seconds until then."""
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)
