"""`sarv_async.testing.answers`: every builder is read by the client as the API's answer."""

from __future__ import annotations

import httpx
import pytest
import respx

from sarv_async import (
    APIError,
    AuthenticationError,
    GeneralError,
    RateLimitError,
    SmtpCredentials,
    SmtpUserStatus,
    ValidationError,
)
from sarv_async.testing import Emulator, answers
from tests.helpers import BASE_URL, make_client

pytestmark = pytest.mark.anyio


async def test_each_success_builder_is_read_as_its_call_answers(
    respx_mock: respx.MockRouter,
) -> None:
    """list, create, reset_password and update read what the builders answer, at `url`."""
    listed = [answers.user("smtp1", password="pw1"), answers.user("smtp2", status="Disable")]
    respx_mock.post(answers.url("list", BASE_URL)).mock(return_value=answers.list_answer(listed))
    respx_mock.post(answers.url("create", BASE_URL)).mock(
        return_value=answers.create_answer("smtp3", "pw3")
    )
    respx_mock.post(answers.url("reset_password", BASE_URL)).mock(
        return_value=answers.reset_password_answer("smtp3", "pw4")
    )
    respx_mock.post(answers.url("update", BASE_URL)).mock(return_value=answers.update_answer("ok"))
    async with make_client() as client:
        assert await client.smtp_users.list() == listed
        created = await client.smtp_users.create(total_limit=1, hourly_limit=1)
        reset = await client.smtp_users.reset_password("smtp3")
        updated = await client.smtp_users.update("smtp3", hourly_limit=2)
    assert created == SmtpCredentials("smtp3", "pw3", "SMTP User Created")
    assert (reset.smtp_user_name, reset.smtp_password) == ("smtp3", "pw4")
    assert updated.message == "ok"
    assert listed[1].status is SmtpUserStatus.DISABLE


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("ValidationError", ValidationError),
        ("AuthenticationError", AuthenticationError),
        ("GeneralError", GeneralError),
    ],
)
async def test_each_error_envelope_raises_its_error(
    kind: answers.ErrorKind, error: type[APIError], respx_mock: respx.MockRouter
) -> None:
    """An error envelope of each kind raises the SDK's error of that kind."""
    respx_mock.post(answers.url("list", BASE_URL)).mock(
        return_value=answers.error_answer(kind, "told so")
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(error, match="told so"):
            await client.smtp_users.list()


async def test_a_429_carries_its_retry_after(respx_mock: respx.MockRouter) -> None:
    """rate_limit_answer is an HTTP 429 whose Retry-After the client reads."""
    respx_mock.post(answers.url("list", BASE_URL)).mock(
        return_value=answers.rate_limit_answer(retry_after=7)
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.smtp_users.list()
    assert caught.value.retry_after == 7


async def test_a_429_then_an_answer_is_retried(respx_mock: respx.MockRouter) -> None:
    """A 429 then a list answer (respx side effects) is one successful call after a wait."""
    route = respx_mock.post(answers.url("list", BASE_URL)).mock(
        side_effect=[answers.rate_limit_answer(retry_after=0), answers.list_answer([])]
    )
    async with make_client() as client:
        assert await client.smtp_users.list() == []
    assert route.call_count == 2


def test_url_joins_the_calls_path_and_refuses_unknown_calls() -> None:
    """`url` gives the path the client posts to, for any base URL; a typo is a ValueError."""
    assert answers.url("create", answers.SENDCLEAN_BASE_URL) == (
        "https://api.sendclean.net/v1.0/settings/addSmtp"
    )
    assert answers.url("list", httpx.URL("http://127.0.0.1:1/v1.0/")).endswith("/settings/listSmtp")
    assert answers.url("update", answers.sarv_base_url("tes.example.com")) == (
        "https://api.tes.example.com/v1.0/settings/editSmtp"
    )
    from sarv_async import AsyncSarvClient

    made = AsyncSarvClient("o", "t", app_domain="tes.example.com")
    assert str(made.base_url) == answers.sarv_base_url("tes.example.com")
    with pytest.raises(ValueError, match="call must be one of"):
        answers.url("delete", BASE_URL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="error kind"):
        answers.error_answer("RateLimitError")  # type: ignore[arg-type]


def test_the_builders_answer_what_the_emulator_answers() -> None:
    """A list answer and an error envelope have the emulator's keys and status codes."""
    with Emulator() as emu:
        made = httpx.post(
            emu.base_url + "settings/addSmtp",
            json={"owner_id": "demo", "token": "demo-token", "total_limit": 5, "hourly_limit": 1},
        ).json()
        listed = httpx.post(
            emu.base_url + "settings/listSmtp", json={"owner_id": "demo", "token": "demo-token"}
        )
        wrong = httpx.post(
            emu.base_url + "settings/listSmtp", json={"owner_id": "demo", "token": "x"}
        )
    user = answers.user(
        made["smtp_user_name"], password=made["smtp_password"], total_limit=5, hourly_limit=1
    )
    ours = answers.list_answer([user])
    assert (ours.status_code, sorted(ours.json())) == (listed.status_code, sorted(listed.json()))
    assert ours.json()["smtp_list"] == listed.json()["smtp_list"]
    assert sorted(answers.create_answer().json()) == sorted(made)
    theirs = answers.error_answer("AuthenticationError")
    assert (theirs.status_code, sorted(theirs.json())) == (wrong.status_code, sorted(wrong.json()))
    assert theirs.json()["message"] == wrong.json()["message"]
