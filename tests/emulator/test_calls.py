"""The four calls over raw HTTP: answers, validation, authentication and isolation."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from sarv_async.testing import Emulator

from ._support import assert_envelope, body, post

pytestmark = pytest.mark.anyio


async def _create(http: httpx.AsyncClient, owner: str = "acme", **fields: Any) -> dict[str, Any]:
    fields = {"total_limit": 100, "hourly_limit": 10, **fields}
    response = await post(http, "addSmtp", owner, **fields)
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    assert data["status"] == "success", data
    return data


# Success answers.


async def test_add_creates_an_enabled_user_and_returns_its_credentials(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """addSmtp answers the documented keys and stores an enabled user with those credentials."""
    response = await post(http, "addSmtp", total_limit=200, hourly_limit=20)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert list(data) == ["status", "message", "smtp_user_name", "smtp_password"]
    assert data["status"] == "success"
    assert data["message"] == "SMTP User Created"
    assert re.fullmatch(r"smtp\d{5,}", data["smtp_user_name"])
    assert re.fullmatch(r"[a-z0-9]{10}", data["smtp_password"])
    assert emu.users("acme") == [
        {
            "smtp_user_name": data["smtp_user_name"],
            "password": data["smtp_password"],
            "status": "Enable",
            "total_limit": 200,
            "hourly_limit": 20,
        }
    ]


async def test_add_accepts_digit_strings_for_limits(emu: Emulator, http: httpx.AsyncClient) -> None:
    """Limits sent as strings of digits are stored as integers, as the PHP backend would."""
    await _create(http, total_limit="300", hourly_limit="007")
    [user] = emu.users("acme")
    assert (user["total_limit"], user["hourly_limit"]) == (300, 7)


async def test_edit_changes_only_what_is_given(emu: Emulator, http: httpx.AsyncClient) -> None:
    """editSmtp answers "SMTP User Updated" and leaves the fields it was not given alone."""
    name = (await _create(http, total_limit=100, hourly_limit=10))["smtp_user_name"]
    response = await post(http, "editSmtp", smtp_user_name=name, hourly_limit=5)
    assert response.status_code == 200
    assert response.json() == {"status": "success", "message": "SMTP User Updated"}
    [user] = emu.users("acme")
    assert (user["total_limit"], user["hourly_limit"], user["status"]) == (100, 5, "Enable")

    await post(http, "editSmtp", smtp_user_name=name, status="Disable", total_limit="50")
    [user] = emu.users("acme")
    assert (user["total_limit"], user["hourly_limit"], user["status"]) == (50, 5, "Disable")


async def test_edit_with_nothing_to_change_succeeds(emu: Emulator, http: httpx.AsyncClient) -> None:
    """An edit naming only the user is a successful no-op (null counts as not given)."""
    name = (await _create(http))["smtp_user_name"]
    before = emu.users("acme")
    response = await post(http, "editSmtp", smtp_user_name=name, status=None, total_limit=None)
    assert response.json() == {"status": "success", "message": "SMTP User Updated"}
    assert emu.users("acme") == before


async def test_reset_password_returns_and_stores_a_new_password(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """resetSmtpPassword answers "password reseted" with the user's new password."""
    created = await _create(http)
    name = created["smtp_user_name"]
    response = await post(http, "resetSmtpPassword", smtp_user_name=name)
    data = response.json()
    assert list(data) == ["status", "message", "smtp_user_name", "smtp_password"]
    assert data["status"] == "success"
    assert data["message"] == "password reseted"
    assert data["smtp_user_name"] == name
    assert re.fullmatch(r"[a-z0-9]{10}", data["smtp_password"])
    assert data["smtp_password"] != created["smtp_password"]
    assert emu.users("acme")[0]["password"] == data["smtp_password"]


async def test_list_returns_every_user_of_the_account_oldest_first(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """listSmtp answers {"status", "smtp_list"} with each user's password, in creation order."""
    first = await _create(http, total_limit=200, hourly_limit=20)
    second = await _create(http, total_limit=100, hourly_limit=30)
    await post(http, "editSmtp", smtp_user_name=second["smtp_user_name"], status="Disable")
    response = await post(http, "listSmtp")
    assert response.json() == {
        "status": "success",
        "smtp_list": [
            {
                "smtp_user_name": first["smtp_user_name"],
                "password": first["smtp_password"],
                "status": "Enable",
                "total_limit": 200,
                "hourly_limit": 20,
            },
            {
                "smtp_user_name": second["smtp_user_name"],
                "password": second["smtp_password"],
                "status": "Disable",
                "total_limit": 100,
                "hourly_limit": 30,
            },
        ],
    }


async def test_list_of_an_account_without_users_is_empty(http: httpx.AsyncClient) -> None:
    """An account with no users lists an empty array."""
    response = await post(http, "listSmtp")
    assert response.json() == {"status": "success", "smtp_list": []}


# Validation errors.

BAD_LIMITS = [True, False, 1.5, 2.0, 0, -3, "0", "-1", "1.0", " 5", "", "ten", "²", [], {}, 2**63]


@pytest.mark.parametrize("value", BAD_LIMITS, ids=repr)
async def test_add_refuses_a_limit_that_is_not_a_positive_integer(
    emu: Emulator, http: httpx.AsyncClient, value: object
) -> None:
    """Booleans, floats, zero, negatives and other non-digits are a ValidationError; no user."""
    response = await post(http, "addSmtp", total_limit=10, hourly_limit=value)
    data = assert_envelope(response, "ValidationError")
    assert "hourly_limit" in data["message"]
    assert emu.users("acme") == []


@pytest.mark.parametrize("missing", ["total_limit", "hourly_limit"])
@pytest.mark.parametrize("how", ["absent", "null"])
async def test_add_requires_both_limits(
    emu: Emulator, http: httpx.AsyncClient, missing: str, how: str
) -> None:
    """A missing (or null) limit is a ValidationError naming it."""
    fields: dict[str, Any] = {"total_limit": 10, "hourly_limit": 5}
    if how == "absent":
        del fields[missing]
    else:
        fields[missing] = None
    data = assert_envelope(await post(http, "addSmtp", **fields), "ValidationError")
    assert missing in data["message"]
    assert emu.users("acme") == []


@pytest.mark.parametrize("status", ["enable", "ENABLE", "Enabled", "Disabled", "", 1, True, 0])
async def test_edit_refuses_a_status_other_than_enable_or_disable(
    emu: Emulator, http: httpx.AsyncClient, status: object
) -> None:
    """Status must be exactly "Enable" or "Disable"; an invalid edit changes nothing at all."""
    name = (await _create(http, total_limit=100))["smtp_user_name"]
    before = emu.users("acme")
    response = await post(http, "editSmtp", smtp_user_name=name, total_limit=5, status=status)
    data = assert_envelope(response, "ValidationError")
    assert "status" in data["message"]
    assert emu.users("acme") == before


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "x"], ids=repr)
async def test_edit_refuses_bad_limits_without_applying_anything(
    emu: Emulator, http: httpx.AsyncClient, value: object
) -> None:
    """A bad limit in an edit is a ValidationError; the valid fields beside it are not applied."""
    name = (await _create(http))["smtp_user_name"]
    before = emu.users("acme")
    response = await post(
        http, "editSmtp", smtp_user_name=name, status="Disable", total_limit=value
    )
    assert "total_limit" in assert_envelope(response, "ValidationError")["message"]
    assert emu.users("acme") == before


@pytest.mark.parametrize("call", ["editSmtp", "resetSmtpPassword"])
@pytest.mark.parametrize("name", [None, "", 12345, ["smtp10001"]], ids=repr)
async def test_calls_on_a_user_require_a_user_name_string(
    http: httpx.AsyncClient, call: str, name: object
) -> None:
    """editSmtp and resetSmtpPassword without a string smtp_user_name are a ValidationError."""
    fields: dict[str, Any] = {} if name is None else {"smtp_user_name": name}
    data = assert_envelope(await post(http, call, **fields), "ValidationError")
    assert "smtp_user_name" in data["message"]


@pytest.mark.parametrize("call", ["editSmtp", "resetSmtpPassword"])
async def test_calls_on_an_unknown_user_are_a_validation_error(
    http: httpx.AsyncClient, call: str
) -> None:
    """Naming a user the account does not have is a ValidationError."""
    response = await post(http, call, smtp_user_name="smtp99999", status="Enable")
    assert "smtp_user_name" in assert_envelope(response, "ValidationError")["message"]


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"\xff\xfe", b"[" * 100_000],
    ids=["empty", "cut", "text", "bytes", "deep"],
)
async def test_a_body_that_is_not_json_is_a_validation_error(
    http: httpx.AsyncClient, raw: bytes
) -> None:
    """Malformed JSON is answered with a ValidationError envelope, HTTP 200."""
    response = await http.post("/v1.0/settings/listSmtp", content=raw)
    assert_envelope(response, "ValidationError")


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null"], ids=repr)
async def test_a_json_body_that_is_not_an_object_is_a_validation_error(
    http: httpx.AsyncClient, raw: bytes
) -> None:
    """The body must be a JSON object."""
    response = await http.post("/v1.0/settings/listSmtp", content=raw)
    assert "object" in assert_envelope(response, "ValidationError")["message"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_a_wrong_method_on_an_api_path_is_a_validation_error(
    http: httpx.AsyncClient, method: str
) -> None:
    """Only POST is served; another method gets a ValidationError envelope with HTTP 200."""
    response = await http.request(method, "/v1.0/settings/listSmtp", json=body())
    assert "POST" in assert_envelope(response, "ValidationError")["message"]


@pytest.mark.parametrize(
    "path",
    ["/", "/v1.0/", "/v1.0/settings/", "/v1.0/settings/addsmtp", "/v2.0/settings/addSmtp", "/x"],
)
async def test_an_unknown_path_is_a_404_validation_error(
    http: httpx.AsyncClient, path: str
) -> None:
    """Unknown paths answer HTTP 404 with a JSON ValidationError envelope."""
    assert_envelope(await http.post(path, json=body()), "ValidationError", status=404)


# Authentication.

BAD_CREDENTIALS: list[dict[str, Any]] = [
    {"owner_id": "acme", "token": "wrong"},
    {"owner_id": "acme", "token": "globex-token-0002"},
    {"owner_id": "nobody", "token": "acme-token-0001"},
    {"owner_id": "acme"},
    {"token": "acme-token-0001"},
    {},
    {"owner_id": "acme", "token": None},
    {"owner_id": ["acme"], "token": "acme-token-0001"},
    {"owner_id": "acme", "token": "acme-token-0001 "},
]


@pytest.mark.parametrize("credentials", BAD_CREDENTIALS, ids=repr)
async def test_bad_credentials_are_an_authentication_error(
    emu: Emulator, http: httpx.AsyncClient, credentials: dict[str, Any]
) -> None:
    """Wrong, missing, foreign or non-string credentials answer "Token MissMatch", HTTP 200."""
    fields = {"total_limit": 1, "hourly_limit": 1, "smtp_user_name": "smtp10001"}
    for call in ("addSmtp", "editSmtp", "resetSmtpPassword", "listSmtp"):
        response = await http.post(f"/v1.0/settings/{call}", json={**credentials, **fields})
        assert_envelope(response, "AuthenticationError", message="Token MissMatch")
    assert emu.stats()["users"] == 0


async def test_authentication_comes_before_parameter_checks(http: httpx.AsyncClient) -> None:
    """A call with bad credentials and bad parameters is an AuthenticationError."""
    response = await http.post(
        "/v1.0/settings/addSmtp", json={"owner_id": "acme", "token": "no", "total_limit": -1}
    )
    assert_envelope(response, "AuthenticationError")


# Accounts are isolated.


async def test_an_account_never_sees_or_changes_another_accounts_users(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """globex cannot list, edit or reset acme's users, and acme's user stays as it was."""
    acme_user = await _create(http, "acme")
    globex_user = await _create(http, "globex")
    before = emu.users("acme")

    listed = (await post(http, "listSmtp", "globex")).json()["smtp_list"]
    assert [u["smtp_user_name"] for u in listed] == [globex_user["smtp_user_name"]]
    name = acme_user["smtp_user_name"]
    assert_envelope(
        await post(http, "editSmtp", "globex", smtp_user_name=name, status="Disable"),
        "ValidationError",
    )
    assert_envelope(
        await post(http, "resetSmtpPassword", "globex", smtp_user_name=name), "ValidationError"
    )
    assert emu.users("acme") == before
    assert emu.stats()["users_by_account"] == {"acme": 1, "globex": 1}


async def test_user_names_are_unique_across_accounts(http: httpx.AsyncClient) -> None:
    """Two accounts never get the same SMTP user name."""
    names = [(await _create(http, owner))["smtp_user_name"] for owner in ["acme", "globex"] * 3]
    assert len(set(names)) == len(names)
