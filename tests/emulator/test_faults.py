"""Faults: what a raw httpx client sees for each kind, and whether the call was applied."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from sarv_async.testing import FAULT_KINDS, Emulator

from ._support import assert_envelope, body, loopback_client, post

pytestmark = pytest.mark.anyio

ADD: dict[str, Any] = {"total_limit": 10, "hourly_limit": 1}


async def test_drop_before_cuts_the_connection_and_applies_nothing(
    emu: Emulator, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The client gets a transport error, no response, and no user is created."""
    caplog.set_level(logging.DEBUG, logger="uvicorn")
    emu.inject_fault("drop_before")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await post(http, "addSmtp", **ADD)
    assert emu.users("acme") == []
    stats = emu.stats()
    assert (stats["faults"], stats["dropped"], stats["responses"]) == (1, 1, {})
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_drop_after_apply_cuts_the_connection_after_the_change(
    emu: Emulator, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The client gets a transport error, yet the user was created: a retry would duplicate it."""
    caplog.set_level(logging.DEBUG, logger="uvicorn")
    emu.inject_fault("drop_after_apply", path="settings/addSmtp")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await post(http, "addSmtp", **ADD)
    assert len(emu.users("acme")) == 1
    assert emu.stats()["faults_by_kind"] == {"drop_after_apply": 1}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_gateway_page_is_html_and_applies_nothing(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """The client gets a 502 or 503 HTML page that is not JSON, and nothing changes."""
    emu.inject_fault("gateway_page")
    response = await post(http, "addSmtp", **ADD)
    assert response.status_code in (502, 503)
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")
    assert str(response.status_code) in response.text
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert emu.users("acme") == []


async def test_general_error_is_an_envelope_and_applies_nothing(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """The client gets a GeneralError envelope with HTTP 200, and nothing changes."""
    emu.inject_fault("general_error")
    assert_envelope(await post(http, "addSmtp", **ADD), "GeneralError")
    assert emu.users("acme") == []


async def test_truncated_json_applies_the_change_and_cuts_the_answer(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """The user is created; the HTTP 200 answer is the start of its JSON and does not parse."""
    emu.inject_fault("truncated_json")
    response = await post(http, "addSmtp", **ADD)
    assert response.status_code == 200
    assert response.text.startswith('{"status": "success"')
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert len(emu.users("acme")) == 1


async def test_an_edit_dropped_after_apply_was_applied(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """drop_after_apply on an edit leaves the edit in place."""
    name = (await post(http, "addSmtp", **ADD)).json()["smtp_user_name"]
    emu.inject_fault("drop_after_apply", path="editSmtp")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await post(http, "editSmtp", smtp_user_name=name, status="Disable")
    assert emu.users("acme")[0]["status"] == "Disable"


async def test_a_fault_for_one_path_spares_the_others(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """A fault queued for listSmtp waits for a list call; other calls pass."""
    emu.inject_fault("general_error", path="listSmtp")
    assert (await post(http, "addSmtp", **ADD)).json()["status"] == "success"
    assert_envelope(await post(http, "listSmtp"), "GeneralError")
    assert (await post(http, "listSmtp")).json()["status"] == "success"


async def test_count_and_order_of_queued_faults(emu: Emulator, http: httpx.AsyncClient) -> None:
    """Queued faults meet the next calls in order, each as many times as its count."""
    emu.inject_fault("general_error", count=2)
    emu.inject_fault("gateway_page")
    assert_envelope(await post(http, "listSmtp"), "GeneralError")
    assert_envelope(await post(http, "listSmtp"), "GeneralError")
    assert (await post(http, "listSmtp")).status_code in (502, 503)
    assert (await post(http, "listSmtp")).status_code == 200


async def test_faults_spare_calls_that_fail_authentication(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """A queued fault waits for an authenticated call with a JSON body."""
    emu.inject_fault("drop_before")
    wrong = {"owner_id": "acme", "token": "wrong"}
    assert_envelope(await http.post("/v1.0/settings/listSmtp", json=wrong), "AuthenticationError")
    assert_envelope(await http.post("/v1.0/settings/listSmtp", content=b"{"), "ValidationError")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await http.post("/v1.0/settings/listSmtp", json=body())


async def test_a_dropped_connection_does_not_hurt_the_next_calls(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """After a drop, the same client is served normally on a new connection."""
    emu.inject_fault("drop_before")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await post(http, "listSmtp")
    assert (await post(http, "listSmtp")).status_code == 200


def _outcome(call: httpx.Response | Exception) -> str:
    if isinstance(call, Exception):
        return "dropped"
    if call.status_code != 200:
        return f"http {call.status_code}"
    try:
        return str(call.json().get("name", "ok"))
    except json.JSONDecodeError:
        return "truncated"


async def _outcomes(emu: Emulator, calls: int) -> list[str]:
    outcomes: list[str] = []
    async with loopback_client(emu.url) as http:
        for _ in range(calls):
            try:
                outcomes.append(_outcome(await post(http, "listSmtp", "demo")))
            except httpx.TransportError as exc:
                outcomes.append(_outcome(exc))
    return outcomes


async def test_random_faults_are_repeatable_with_a_seed() -> None:
    """Two emulators with the same seed fail the same calls the same way."""
    runs = []
    for _ in range(2):
        async with Emulator(fault_rate=0.5, seed=1234) as emu:
            runs.append(await _outcomes(emu, 30))
            assert emu.stats()["faults"] == sum(o != "ok" for o in runs[-1])
    assert runs[0] == runs[1]
    assert "ok" in runs[0]
    assert len(set(runs[0])) >= 4


async def test_every_call_fails_at_fault_rate_one() -> None:
    """With fault_rate=1 every authenticated call meets a fault, of every kind in time."""
    async with Emulator(fault_rate=1.0, seed=5) as emu:
        outcomes = await _outcomes(emu, 40)
        assert "ok" not in outcomes
        assert set(emu.stats()["faults_by_kind"]) == set(FAULT_KINDS)


def test_bad_fault_requests_are_refused(emu: Emulator) -> None:
    """An unknown kind or path, or a count below one, raises ValueError at once."""
    with pytest.raises(ValueError, match="fault kind"):
        emu.inject_fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="API call"):
        emu.inject_fault("drop_before", path="settings/deleteSmtp")
    with pytest.raises(ValueError, match="count"):
        emu.inject_fault("drop_before", count=0)


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "0.5", True])
def test_a_bad_fault_rate_is_refused(rate: object) -> None:
    """fault_rate must be a probability."""
    with pytest.raises(ValueError, match="fault_rate"):
        Emulator(fault_rate=rate)  # type: ignore[arg-type]
