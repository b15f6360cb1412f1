"""What an answer proves is read from its HTTP status first, its body second.

Only an HTTP 429 proves that nothing was applied; an envelope that merely *names*
``RateLimitError`` does not, so a create meeting one is never repeated. These tests hold
the rule table of docs/resilience.md, row by row.
"""

from __future__ import annotations

import httpx
import pytest
import respx

from sarv_async import (
    APIError,
    AuthenticationError,
    GeneralError,
    OutcomeUnknownError,
    RateLimitError,
    SarvError,
    UnexpectedResponseError,
    ValidationError,
)
from tests.helpers import BASE_URL, error_envelope, make_client, success

pytestmark = pytest.mark.anyio

ADD_URL = f"{BASE_URL}settings/addSmtp"
LIST_URL = f"{BASE_URL}settings/listSmtp"
CREATED = success(message="SMTP User Created", smtp_user_name="smtp1", smtp_password="pw1")


@pytest.mark.parametrize("status", [200, 400, 403, 500, 502, 503])
@pytest.mark.parametrize("key", ["name", "type"])
async def test_a_rate_limit_envelope_without_429_never_repeats_a_create(
    status: int, key: str, respx_mock: respx.MockRouter
) -> None:
    """HTTP 503 with ``{"name": "RateLimitError"}`` is no 429: the create is sent once."""
    route = respx_mock.post(ADD_URL).mock(
        side_effect=[error_envelope("RateLimitError", "busy", status=status, key=key), CREATED]
    )
    async with make_client(max_retries=3) as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.smtp_users.create(total_limit=1, hourly_limit=1)
    assert route.call_count == 1
    cause = info.value.__cause__
    assert isinstance(cause, APIError)
    assert not isinstance(cause, RateLimitError)  # RateLimitError means HTTP 429
    assert (cause.name, cause.status_code) == ("RateLimitError", status)


async def test_a_real_429_still_repeats_a_create(respx_mock: respx.MockRouter) -> None:
    """An HTTP 429 proves the create was refused: it is repeated after the pause."""
    throttled = httpx.Response(
        429,
        headers={"Retry-After": "0"},
        json={"status": "error", "name": "GeneralError", "message": "slow down"},
    )
    route = respx_mock.post(ADD_URL).mock(side_effect=[throttled, CREATED])
    async with make_client() as client:
        creds = await client.smtp_users.create(total_limit=1, hourly_limit=1)
    assert creds.smtp_user_name == "smtp1"
    assert route.call_count == 2


def _answer(status: int, body: dict[str, object] | bytes) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, headers={"content-type": "text/html"})
    return httpx.Response(status, json=body)


def _error(kind: str | None) -> dict[str, object]:
    envelope: dict[str, object] = {"status": "error", "code": -1, "message": "m"}
    if kind is not None:
        envelope["name"] = kind
    return envelope


SUCCESS_CREATE: dict[str, object] = {
    "status": "success",
    "smtp_user_name": "u",
    "smtp_password": "p",
}

# (status, body, class raised, safe calls repeated?, a create's outcome known?)
RULES: list[tuple[int, dict[str, object] | bytes, type[SarvError], bool, bool]] = [
    (200, _error("ValidationError"), ValidationError, False, True),
    (400, _error("ValidationError"), ValidationError, False, True),
    (401, _error("AuthenticationError"), AuthenticationError, False, True),
    (200, _error("GeneralError"), GeneralError, True, False),
    (200, _error("RateLimitError"), APIError, True, False),
    (200, _error("QuotaError"), APIError, True, False),
    (200, _error(None), APIError, True, False),
    (500, _error("ValidationError"), ValidationError, True, False),
    (503, _error("AuthenticationError"), AuthenticationError, True, False),
    (302, _error("ValidationError"), ValidationError, True, False),
    (500, SUCCESS_CREATE, UnexpectedResponseError, True, False),
    (404, b"<html>not found</html>", UnexpectedResponseError, True, False),
    (200, {"status": "maybe"}, UnexpectedResponseError, True, False),
]


@pytest.mark.parametrize(
    ("status", "body", "cls", "repeated", "known"),
    RULES,
    ids=[f"{s}-{b if isinstance(b, bytes) else b.get('name', b['status'])}" for s, b, *_ in RULES],
)
async def test_every_status_and_envelope_pair_follows_the_rule_table(
    status: int,
    body: dict[str, object] | bytes,
    cls: type[SarvError],
    repeated: bool,
    known: bool,
    respx_mock: respx.MockRouter,
) -> None:
    """Each (status, envelope) pair: the error raised, repeats of safe calls, a create's fate."""
    lists = respx_mock.post(LIST_URL).mock(return_value=_answer(status, body))
    creates = respx_mock.post(ADD_URL).mock(return_value=_answer(status, body))
    async with make_client(max_retries=2) as client:
        with pytest.raises(SarvError) as listed:
            await client.smtp_users.list()
        with pytest.raises(SarvError) as created:
            await client.smtp_users.create(total_limit=1, hourly_limit=1)
    assert type(listed.value) is cls
    assert lists.call_count == (3 if repeated else 1)
    assert creates.call_count == 1
    if known:
        assert type(created.value) is cls
    else:
        assert type(created.value) is OutcomeUnknownError
        assert type(created.value.__cause__) is cls
