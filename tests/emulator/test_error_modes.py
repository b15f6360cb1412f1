"""Every reading of the documents, as real clients meet it: numeric owner ids, error
statuses by kind, the kind under ``name``, ``type`` or both, and requests shaped exactly
as three clients nobody here wrote send them (``tests/data/wire/clients.json``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sarv_async.testing import Emulator

from ._support import loopback_client
from .test_conformance import SEED_FILES, _same_shape, _sample

pytestmark = pytest.mark.anyio

WIRE = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "wire" / "clients.json").read_text()
)
NUMERIC = {"12345": "numeric-token-0001"}


@pytest.fixture(scope="module")
def numeric_emulator() -> Iterator[Emulator]:
    """An emulator whose account's owner id is all digits, as the official clients' are."""
    with Emulator(accounts=NUMERIC) as emulator:
        yield emulator


@pytest.fixture
async def http(numeric_emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """A raw client to the reset numeric-account emulator."""
    numeric_emulator.reset()
    async with loopback_client(numeric_emulator.url) as client:
        yield client


async def call(http: httpx.AsyncClient, name: str, **body: Any) -> httpx.Response:
    """POST ``body`` (JSON) to the call ``name``."""
    return await http.post(f"/v1.0/settings/{name}", json=body)


async def test_a_numeric_owner_id_names_the_same_account_as_its_digits(
    http: httpx.AsyncClient, numeric_emulator: Emulator
) -> None:
    """ "owner_id": 12345 and "owner_id": "12345" reach the same account's users."""
    token = NUMERIC["12345"]
    added = await call(http, "addSmtp", owner_id=12345, token=token, total_limit=5, hourly_limit=1)
    assert added.json()["status"] == "success"
    listed = await call(http, "listSmtp", owner_id="12345", token=token)
    assert [u["smtp_user_name"] for u in listed.json()["smtp_list"]] == [
        added.json()["smtp_user_name"]
    ]


@pytest.mark.parametrize("owner_id", [12345.0, True, [12345], 123450, -12345])
async def test_other_owner_ids_are_still_refused(http: httpx.AsyncClient, owner_id: Any) -> None:
    """A float, a boolean, a list or another number is a token mismatch."""
    answer = await call(http, "listSmtp", owner_id=owner_id, token=NUMERIC["12345"])
    assert answer.json()["name"] == "AuthenticationError"


async def test_the_sdk_sends_an_integer_owner_id_as_its_digits(
    numeric_emulator: Emulator,
) -> None:
    """AsyncSarvClient(12345, ...) works against the account "12345"."""
    from sarv_async import AsyncSarvClient

    numeric_emulator.reset()
    async with AsyncSarvClient(
        12345, NUMERIC["12345"], base_url=numeric_emulator.base_url, rate_limit=None
    ) as client:
        await client.smtp_users.create(total_limit=5, hourly_limit=1)
    assert len(numeric_emulator.users("12345")) == 1


# -- error readings ------------------------------------------------------------------

ERRORS: list[tuple[str, str, dict[str, Any], str, int]] = [
    # what, call, body fields, kind, status under error_status="http"
    ("a wrong token", "listSmtp", {"token": "wrong"}, "AuthenticationError", 401),
    ("a missing limit", "addSmtp", {"total_limit": 5}, "ValidationError", 400),
    ("an unknown user", "editSmtp", {"smtp_user_name": "smtp1"}, "ValidationError", 400),
]


@pytest.mark.parametrize("error_status", ["200", "http"])
@pytest.mark.parametrize("kind_field", ["name", "type", "both"])
async def test_error_envelopes_follow_the_reading(error_status: str, kind_field: str) -> None:
    """Each error comes with HTTP 200 or its kind's status, its kind under the chosen keys."""
    async with (
        Emulator(accounts=NUMERIC, error_status=error_status, error_kind_field=kind_field) as emu,  # type: ignore[arg-type]
        loopback_client(emu.url) as http,
    ):
        emu.inject_fault("general_error", path="listSmtp")
        cases = [*ERRORS, ("a general error", "listSmtp", {}, "GeneralError", 500)]
        for what, name, fields, kind, http_status in cases:
            body = {"owner_id": "12345", "token": NUMERIC["12345"], **fields}
            answer = await call(http, name, **body)
            expected_status = http_status if error_status == "http" else 200
            assert answer.status_code == expected_status, what
            data = answer.json()
            keys = ["name", "type"] if kind_field == "both" else [kind_field]
            assert list(data) == ["status", "code", *keys, "message"], what
            assert [data[key] for key in keys] == [kind] * len(keys), what
        # A status of its own (an unknown path: 404) is kept in every reading.
        assert (await http.post("/v1.0/nowhere", json={})).status_code == 404


async def test_rate_limit_answers_are_429_in_every_reading() -> None:
    """The 429 envelope's kind, RateLimitError, is the emulator's own: HTTP 429 always."""
    async with (
        Emulator(
            accounts=NUMERIC, rate_limit="1/hour", error_status="http", error_kind_field="type"
        ) as emu,
        loopback_client(emu.url) as http,
    ):
        body = {"owner_id": "12345", "token": NUMERIC["12345"]}
        assert (await call(http, "listSmtp", **body)).status_code == 200
        answer = await call(http, "listSmtp", **body)
        assert (answer.status_code, answer.json()["type"]) == (429, "RateLimitError")


def test_bad_readings_are_refused() -> None:
    """An unknown error_status or error_kind_field is a clear ValueError."""
    with pytest.raises(ValueError, match="error_status"):
        Emulator(error_status="201")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="error_kind_field"):
        Emulator(error_kind_field="kind")  # type: ignore[arg-type]


# -- wire shapes ---------------------------------------------------------------------


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 16):
        yield data[start : start + 16]


@pytest.mark.parametrize("seed", SEED_FILES, ids=lambda path: path.name.split("-")[0])
@pytest.mark.parametrize("client", sorted(WIRE["clients"]))
async def test_real_clients_requests_are_answered_as_the_seeds_say(
    http: httpx.AsyncClient, numeric_emulator: Emulator, client: str, seed: Path
) -> None:
    """Each client's four calls, byte for byte as it sends them, get the documents' answers."""
    shape = WIRE["clients"][client]
    seeded = await call(
        http, "addSmtp", owner_id="12345", token=NUMERIC["12345"], total_limit=9, hourly_limit=9
    )
    user = seeded.json()["smtp_user_name"]
    for step in shape["calls"]:
        users_before = len(numeric_emulator.users("12345"))
        text = step["body"].replace("{token}", NUMERIC["12345"]).replace("{smtp_user_name}", user)
        content = text.encode()
        request = httpx.Request(
            "POST",
            f"{numeric_emulator.base_url}settings/{step['path']}",
            headers=shape["headers"],
            content=_chunks(content) if shape["chunked"] else content,
        )
        if shape["chunked"]:
            assert request.headers["transfer-encoding"] == "chunked"
            assert "user-agent" not in request.headers
        answer = await http.send(request)
        assert answer.status_code == 200, step["what"]
        data = answer.json()
        _same_shape(data, _sample(seed, step["answered_as"], "success"), f"{client} {step['what']}")
        created = len(numeric_emulator.users("12345")) - users_before
        assert created == (1 if step.get("creates") else 0), step["what"]
