"""What a server says is kept in errors only up to about 1,000 characters, marked as cut."""

from __future__ import annotations

import httpx
import pytest
import respx

from sarv_async import APIError, SarvError, UnexpectedResponseError
from tests.helpers import BASE_URL, TOKEN, make_client

# Answers are read with sarv-async[fast] (msgspec) and as without it.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("list_decoding")]

LIST_URL = f"{BASE_URL}settings/listSmtp"
HUGE = 5_000_000
CAP = 1_000


async def test_a_huge_error_message_is_cut(respx_mock: respx.MockRouter) -> None:
    """A multi-megabyte ``message`` becomes about 1,000 characters, saying it was cut."""
    message = "A" * HUGE
    respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(
            200, json={"status": "error", "name": "ValidationError", "message": message}
        )
    )
    async with make_client() as client:
        with pytest.raises(APIError) as info:
            await client.smtp_users.list()
    error = info.value
    assert len(error.message) < CAP + 100
    assert error.message.startswith("A" * CAP)
    assert "cut" in error.message
    assert f"{HUGE:,}" in error.message
    assert len(str(error)) < CAP + 200
    assert len(repr(error)) < CAP + 300


async def test_huge_name_and_code_are_cut(respx_mock: respx.MockRouter) -> None:
    """The error kind and code are server text too."""
    respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(
            400, json={"status": "error", "name": "N" * HUGE, "code": "C" * HUGE, "message": "m"}
        )
    )
    async with make_client() as client:
        with pytest.raises(APIError) as info:
            await client.smtp_users.list()
    assert len(info.value.name) <= CAP + 100
    assert isinstance(info.value.code, str)
    assert len(info.value.code) <= CAP + 100
    assert len(str(info.value)) < 3 * CAP


async def test_a_token_on_the_cut_line_is_masked_whole(respx_mock: respx.MockRouter) -> None:
    """Masking runs before cutting, so no prefix of the token survives at the cut."""
    message = "x" * (CAP - 5) + TOKEN + "y" * 10_000
    respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(
            200, json={"status": "error", "name": "GeneralError", "message": message}
        )
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(APIError) as info:
            await client.smtp_users.list()
    assert TOKEN[:5] not in info.value.message


async def test_a_huge_content_type_is_cut(respx_mock: respx.MockRouter) -> None:
    """The content type named in an UnexpectedResponseError is server text as well."""
    respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(502, content=b"<html/>", headers={"content-type": "t" * HUGE})
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError) as info:
            await client.smtp_users.list()
    assert len(str(info.value)) < 3 * CAP


async def test_a_huge_transport_error_message_is_cut(respx_mock: respx.MockRouter) -> None:
    """httpx's messages can quote what the server sent: they are cut too."""
    respx_mock.post(LIST_URL).mock(side_effect=httpx.RemoteProtocolError("bad: " + "z" * HUGE))
    async with make_client(max_retries=0) as client:
        with pytest.raises(SarvError) as info:
            await client.smtp_users.list()
    assert len(str(info.value)) < 3 * CAP
    assert "cut" in str(info.value)
