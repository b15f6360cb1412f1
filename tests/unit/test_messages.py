"""Messages a newcomer reads: they say what is wrong in plain words and how to fix it."""

from __future__ import annotations

import httpx
import pytest
import respx

from sarv_async import AsyncSarvClient, UnexpectedResponseError, ValidationError
from sarv_async.testing import Emulator
from tests.helpers import BASE_URL, make_client

LIST_URL = f"{BASE_URL}settings/listSmtp"


@pytest.mark.anyio
async def test_a_json_body_that_does_not_parse_is_called_invalid_json(
    respx_mock: respx.MockRouter,
) -> None:
    """Not "a application/json body ..., not JSON": invalid JSON, with its size."""
    respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(
            200,
            content=b'{"status": "success", "smtp_li',
            headers={"content-type": "application/json"},
        )
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError) as info:
            await client.smtp_users.list()
    assert str(info.value) == (
        "POST settings/listSmtp answered HTTP 200 with invalid JSON (an application/json body "
        "of 30 bytes)"
    )


@pytest.mark.anyio
async def test_an_html_page_is_named_with_its_article(respx_mock: respx.MockRouter) -> None:
    """An HTML gateway page: its type and size (never its content)."""
    respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(
            502, text="<html>oops</html>", headers={"content-type": "text/html"}
        )
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError) as info:
            await client.smtp_users.list()
    assert "answered HTTP 502 with a text/html body of 17 bytes, not JSON" in str(info.value)


def test_missing_endpoint_names_both_variables() -> None:
    """The missing endpoint names SARV_APP_DOMAIN and SARV_BASE_URL."""
    with pytest.raises(ValidationError) as info:
        AsyncSarvClient("owner", "token")
    assert "SARV_APP_DOMAIN or SARV_BASE_URL" in str(info.value)


@pytest.mark.anyio
async def test_a_base_url_without_the_api_version_gets_a_hint() -> None:
    """An API answering 404 to a base URL without /v1.0/ says what the base URL should be."""
    async with Emulator() as emu:
        url = emu.url + "/"
        async with AsyncSarvClient(*next(iter(emu.accounts.items())), base_url=url) as client:
            with pytest.raises(ValidationError) as info:
                await client.smtp_users.list()
    assert info.value.field == "base_url"
    assert info.value.status_code == 404
    assert f"{emu.url}/v1.0/" in str(info.value)
    assert "/v1.0/" in str(info.value)
