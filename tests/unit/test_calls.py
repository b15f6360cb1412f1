"""Each of the four calls: the path, the body it sends and the answer it reads."""

from __future__ import annotations

import httpx
import pytest
import respx

from sarv_async import (
    CreateSmtpUserRequest,
    ListSmtpUsersRequest,
    SmtpCredentials,
    SmtpUser,
    SmtpUserList,
    SmtpUserStatus,
    UpdateSmtpUserResponse,
    __version__,
)
from tests.helpers import BASE_URL, OWNER_ID, TOKEN, body_of, make_client, success

# Answers are read with sarv-async[fast] (msgspec) and as without it.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("list_decoding")]


async def test_create_posts_limits_with_credentials_to_add_smtp(
    respx_mock: respx.MockRouter,
) -> None:
    """create() POSTs the limits plus owner_id and token to settings/addSmtp and reads the creds."""
    route = respx_mock.post(f"{BASE_URL}settings/addSmtp").mock(
        return_value=success(
            message="SMTP User Created", smtp_user_name="smtp12345", smtp_password="asfsf4w343"
        )
    )
    async with make_client() as client:
        creds = await client.smtp_users.create(total_limit=100, hourly_limit=10)

    assert creds == SmtpCredentials("smtp12345", "asfsf4w343", "SMTP User Created")
    assert creds.smtp_password == "asfsf4w343"
    sent = route.calls.last.request
    assert sent.method == "POST"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"] == f"sarv-async/{__version__}"
    assert body_of(sent) == {
        "total_limit": 100,
        "hourly_limit": 10,
        "owner_id": OWNER_ID,
        "token": TOKEN,
    }


async def test_update_sends_only_the_fields_given(respx_mock: respx.MockRouter) -> None:
    """update() leaves out what was not given, never sending null, and sends status as a string."""
    route = respx_mock.post(f"{BASE_URL}settings/editSmtp").mock(
        return_value=success(message="SMTP User Updated")
    )
    async with make_client() as client:
        answer = await client.smtp_users.update(
            "smtp12345", hourly_limit=15, status=SmtpUserStatus.DISABLE
        )
        await client.smtp_users.update("smtp12345", status="Enable")

    assert answer == UpdateSmtpUserResponse("SMTP User Updated")
    first, second = (body_of(call.request) for call in route.calls)
    assert first == {
        "smtp_user_name": "smtp12345",
        "hourly_limit": 15,
        "status": "Disable",
        "owner_id": OWNER_ID,
        "token": TOKEN,
    }
    assert second == {
        "smtp_user_name": "smtp12345",
        "status": "Enable",
        "owner_id": OWNER_ID,
        "token": TOKEN,
    }


async def test_reset_password_returns_the_new_password(respx_mock: respx.MockRouter) -> None:
    """reset_password() POSTs the name to settings/resetSmtpPassword; returns the new password."""
    route = respx_mock.post(f"{BASE_URL}settings/resetSmtpPassword").mock(
        return_value=success(
            message="password reseted", smtp_user_name="smtp12345", smtp_password="2fg345gy6r7"
        )
    )
    async with make_client() as client:
        creds = await client.smtp_users.reset_password("smtp12345")

    assert creds.smtp_password == "2fg345gy6r7"
    assert body_of(route.calls.last.request) == {
        "smtp_user_name": "smtp12345",
        "owner_id": OWNER_ID,
        "token": TOKEN,
    }


async def test_list_reads_the_documented_sample(respx_mock: respx.MockRouter) -> None:
    """list() reads the docs' sample (``password`` key, string status) into SmtpUser objects."""
    route = respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(
        return_value=success(
            smtp_list=[
                {
                    "smtp_user_name": "smtps456546",
                    "password": "cgvddgrsd",
                    "status": "Enable",
                    "total_limit": 200,
                    "hourly_limit": 20,
                },
                {
                    "smtp_user_name": "smtps456567",
                    "password": "fdsdfs",
                    "status": "Disable",
                    "total_limit": 100,
                    "hourly_limit": 30,
                },
            ]
        )
    )
    async with make_client() as client:
        users = await client.smtp_users.list()

    assert users == [
        SmtpUser("smtps456546", "cgvddgrsd", SmtpUserStatus.ENABLE, 200, 20),
        SmtpUser("smtps456567", "fdsdfs", SmtpUserStatus.DISABLE, 100, 30),
    ]
    assert body_of(route.calls.last.request) == {"owner_id": OWNER_ID, "token": TOKEN}


async def test_list_reads_the_table_variant_and_odd_types(respx_mock: respx.MockRouter) -> None:
    """list() also reads ``smtp_password``, numeric strings, 1/0 status and ignores extra keys."""
    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(
        return_value=success(
            message="ok",
            smtp_list=[
                {
                    "smtp_user_name": "smtp1",
                    "smtp_password": "pw1",
                    "status": 1,
                    "total_limit": "200",
                    "hourly_limit": "20",
                    "created_at": "2024-01-01",
                },
                {
                    "smtp_user_name": "smtp2",
                    "smtp_password": "pw2",
                    "status": "disable",
                    "total_limit": 5.0,
                    "hourly_limit": 1,
                },
            ],
        )
    )
    async with make_client() as client:
        users = await client.smtp_users.list()

    assert users == [
        SmtpUser("smtp1", "pw1", SmtpUserStatus.ENABLE, 200, 20),
        SmtpUser("smtp2", "pw2", SmtpUserStatus.DISABLE, 5, 1),
    ]


@pytest.mark.parametrize("payload", [[], None, {}], ids=["empty-list", "null", "empty-object"])
async def test_list_of_no_users_is_an_empty_list(
    payload: object, respx_mock: respx.MockRouter
) -> None:
    """An account without users lists as [], however the server spells emptiness."""
    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(return_value=success(smtp_list=payload))
    async with make_client() as client:
        assert await client.smtp_users.list() == []


@pytest.mark.parametrize(
    "fields",
    [
        {"data": [{"smtp_user_name": "smtp1", "password": "pw"}]},
        {"users": []},
        {"data": {"smtp_list": []}},
    ],
    ids=["array-under-data", "empty-array-under-users", "object-under-data"],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["list", "in-batches"])
async def test_a_list_answer_without_smtp_list_but_another_array_is_unexpected(
    fields: dict[str, object], streamed: bool, respx_mock: respx.MockRouter
) -> None:
    """Users under an unknown key are not "no users": UnexpectedResponseError names the key."""
    from sarv_async import UnexpectedResponseError

    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(return_value=success(**fields))
    batches: list[list[SmtpUser]] = []

    async def keep(users: list[SmtpUser]) -> None:
        batches.append(users)

    async with make_client(max_retries=0) as client:

        async def read() -> None:
            if streamed:
                await client.smtp_users._list_in_batches(keep)
            else:
                await client.smtp_users.list()

        with pytest.raises(UnexpectedResponseError, match=f"{next(iter(fields))!r}"):
            await read()
    assert batches == []


async def test_send_takes_request_objects(respx_mock: respx.MockRouter) -> None:
    """client.send() takes a request object and returns its response type."""
    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(return_value=success(smtp_list=[]))
    respx_mock.post(f"{BASE_URL}settings/addSmtp").mock(
        return_value=success(smtp_user_name="smtp1", smtp_password="pw")
    )
    async with make_client() as client:
        listed = await client.send(ListSmtpUsersRequest())
        created = await client.send(CreateSmtpUserRequest(total_limit=1, hourly_limit=1))

    assert listed == SmtpUserList([], "")
    assert created.smtp_user_name == "smtp1"


async def test_one_connection_pool_serves_every_call(respx_mock: respx.MockRouter) -> None:
    """Calls reuse the client's one httpx.AsyncClient rather than building one per call."""
    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(return_value=success(smtp_list=[]))
    async with make_client() as client:
        pool = client._shared.http
        for _ in range(3):
            await client.smtp_users.list()
        assert client._shared.http is pool
        assert not pool.is_closed
    assert pool.is_closed


async def test_user_supplied_http_client_is_used_and_left_open(
    respx_mock: respx.MockRouter,
) -> None:
    """A passed-in httpx.AsyncClient carries the calls, gets our headers, and is not closed."""
    route = respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(return_value=success(smtp_list=[]))
    async with httpx.AsyncClient(headers={"X-Trace": "abc"}) as http:
        async with make_client(http_client=http) as client:
            await client.smtp_users.list()
        assert not http.is_closed
    sent = route.calls.last.request
    assert sent.headers["x-trace"] == "abc"
    assert sent.headers["user-agent"].startswith("sarv-async/")
    assert sent.headers["content-type"] == "application/json"


async def test_nulls_and_the_password_alias_are_read_for_credentials(
    respx_mock: respx.MockRouter,
) -> None:
    """A create answer with ``message: null`` and ``password`` still gives the credentials."""
    respx_mock.post(f"{BASE_URL}settings/addSmtp").mock(
        return_value=success(message=None, smtp_user_name="smtp9", password="pw9")
    )
    async with make_client() as client:
        creds = await client.smtp_users.create(total_limit=1, hourly_limit=1)
    assert creds == SmtpCredentials("smtp9", "pw9", "")
