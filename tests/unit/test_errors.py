"""Answers that are errors become typed exceptions, whatever their HTTP status."""

from __future__ import annotations

import httpx
import pytest
import respx

from sarv_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    GeneralError,
    SarvError,
    UnexpectedResponseError,
    ValidationError,
)
from tests.helpers import BASE_URL, TOKEN, error_envelope, make_client, success

# Answers are read with sarv-async[fast] (msgspec) and as without it.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("list_decoding")]

LIST_URL = f"{BASE_URL}settings/listSmtp"


@pytest.mark.parametrize("status", [200, 400, 401])
@pytest.mark.parametrize("key", ["name", "type"])
async def test_auth_error_envelope_raises_authentication_error(
    status: int, key: str, respx_mock: respx.MockRouter
) -> None:
    """The error envelope counts at HTTP 200 or not, its kind read from ``name`` or ``type``."""
    respx_mock.post(LIST_URL).mock(
        return_value=error_envelope(
            "AuthenticationError", "Token MissMatch", status=status, key=key
        )
    )
    async with make_client() as client:
        with pytest.raises(AuthenticationError) as info:
            await client.smtp_users.list()

    error = info.value
    assert (error.name, error.code, error.message, error.status_code) == (
        "AuthenticationError",
        -1,
        "Token MissMatch",
        status,
    )
    assert "Token MissMatch" in str(error)


@pytest.mark.parametrize(
    ("name", "cls"),
    [("ValidationError", ValidationError), ("AuthenticationError", AuthenticationError)],
)
async def test_each_documented_kind_has_its_class(
    name: str, cls: type[APIError], respx_mock: respx.MockRouter
) -> None:
    """Each documented error kind raises its own exception class, without retrying."""
    route = respx_mock.post(LIST_URL).mock(return_value=error_envelope(name, "nope"))
    async with make_client(max_retries=3) as client:
        with pytest.raises(cls):
            await client.smtp_users.list()
    assert route.call_count == 1


async def test_general_error_is_general_error_once_retries_are_spent(
    respx_mock: respx.MockRouter,
) -> None:
    """A GeneralError envelope on a safe call is retried, then raised as GeneralError."""
    route = respx_mock.post(LIST_URL).mock(return_value=error_envelope("GeneralError", "oops"))
    async with make_client(max_retries=1) as client:
        with pytest.raises(GeneralError):
            await client.smtp_users.list()
    assert route.call_count == 2


async def test_unknown_error_kind_raises_api_error_with_its_name(
    respx_mock: respx.MockRouter,
) -> None:
    """An error kind the docs do not list raises APIError itself, with .name set."""
    respx_mock.post(LIST_URL).mock(return_value=error_envelope("QuotaError", "over quota"))
    async with make_client() as client:
        with pytest.raises(APIError) as info:
            await client.smtp_users.list()
    assert type(info.value) is APIError
    assert info.value.name == "QuotaError"


async def test_error_envelope_without_kind_is_api_error(respx_mock: respx.MockRouter) -> None:
    """An error envelope with neither ``name`` nor ``type`` is still an APIError."""
    respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(200, json={"status": "error", "message": "bad"})
    )
    async with make_client() as client:
        with pytest.raises(APIError) as info:
            await client.smtp_users.list()
    assert info.value.name == "APIError"
    assert info.value.code is None


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(
            502, text="<html><body>Bad Gateway</body></html>", headers={"content-type": "text/html"}
        ),
        httpx.Response(200, content=b""),
        httpx.Response(200, content=b'{"status": "success", "smtp_li'),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"status": "maybe"}),
        httpx.Response(500, json={"status": "success", "smtp_list": []}),
    ],
    ids=["html-502", "empty", "truncated", "array", "odd-status", "success-at-500"],
)
async def test_unreadable_answers_raise_unexpected_response(
    response: httpx.Response, respx_mock: respx.MockRouter
) -> None:
    """Non-JSON, truncated or oddly shaped answers raise UnexpectedResponseError with the status."""
    respx_mock.post(LIST_URL).mock(return_value=response)
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError) as info:
            await client.smtp_users.list()
    assert info.value.status_code == response.status_code


async def test_wrong_shape_names_the_bad_field(respx_mock: respx.MockRouter) -> None:
    """A success answer of the wrong shape says which value was wrong, not a cattrs error."""
    respx_mock.post(LIST_URL).mock(
        return_value=success(
            smtp_list=[
                {
                    "smtp_user_name": "a",
                    "password": "p",
                    "status": "Enable",
                    "total_limit": "lots",
                    "hourly_limit": 1,
                }
            ]
        )
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError, match=r"\$\.smtp_list\[0\]\.total_limit"):
            await client.smtp_users.list()


async def test_missing_fields_raise_unexpected_response_not_key_error(
    respx_mock: respx.MockRouter,
) -> None:
    """A success answer missing the credentials raises UnexpectedResponseError, never KeyError."""
    respx_mock.post(f"{BASE_URL}settings/resetSmtpPassword").mock(
        return_value=success(message="ok")
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError, match="smtp_password"):
            await client.smtp_users.reset_password("smtp1")


async def test_timeouts_and_connection_failures_are_translated(
    respx_mock: respx.MockRouter,
) -> None:
    """httpx timeouts and connection errors reach users as APITimeoutError / APIConnectionError."""
    respx_mock.post(LIST_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    respx_mock.post(f"{BASE_URL}settings/editSmtp").mock(side_effect=httpx.ConnectError("refused"))
    async with make_client(max_retries=0) as client:
        with pytest.raises(APITimeoutError) as timeout:
            await client.smtp_users.list()
        with pytest.raises(APIConnectionError) as connection:
            await client.smtp_users.update("smtp1", hourly_limit=1)
    assert isinstance(timeout.value, APIConnectionError)
    assert "ReadTimeout" in str(timeout.value)
    assert not isinstance(connection.value, APITimeoutError)
    # httpx's errors are not chained: they and their frames hold the request body.
    assert timeout.value.__cause__ is None
    assert timeout.value.__suppress_context__


async def test_a_token_echoed_by_the_server_is_masked(respx_mock: respx.MockRouter) -> None:
    """Should the server ever echo the token in a message, the exception does not carry it."""
    respx_mock.post(LIST_URL).mock(
        return_value=error_envelope("AuthenticationError", f"token {TOKEN} does not match")
    )
    async with make_client() as client:
        with pytest.raises(SarvError) as info:
            await client.smtp_users.list()
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"), httpx.Response(502)],
    ids=["timeout", "dropped", "502"],
)
async def test_no_token_in_an_errors_chain_or_frames(
    failure: httpx.Response | Exception, respx_mock: respx.MockRouter
) -> None:
    """Error trackers that record exception chains and frame locals find no token."""
    respx_mock.post(LIST_URL).mock(side_effect=[failure] * 3)
    respx_mock.post(f"{BASE_URL}settings/addSmtp").mock(side_effect=[failure])
    caught: list[BaseException] = []
    async with make_client(max_retries=2) as client:
        for call in (
            client.smtp_users.list,
            lambda: client.smtp_users.create(total_limit=1, hourly_limit=1),
        ):
            with pytest.raises(SarvError) as info:
                await call()
            caught.append(info.value)
    for error in caught:
        for exc in _chain(error):
            assert TOKEN not in str(exc)
            assert TOKEN not in repr(exc)
            tb = exc.__traceback__
            while tb is not None:
                for name, value in tb.tb_frame.f_locals.items():
                    text = value if isinstance(value, bytes) else repr(value).encode()
                    assert TOKEN.encode() not in text, (tb.tb_frame.f_code.co_name, name)
                tb = tb.tb_next


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


async def test_absurdly_nested_json_is_an_unexpected_response(
    respx_mock: respx.MockRouter,
) -> None:
    """A body nested past the parser's recursion limit is an UnexpectedResponseError."""
    respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, content=b"[" * 100_000))
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError):
            await client.smtp_users.list()
