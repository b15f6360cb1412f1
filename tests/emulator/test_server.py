"""The `Emulator` object: lifecycle, admin endpoints, snapshots, concurrency and the client."""

from __future__ import annotations

import re
import sys
import threading
import time

import anyio
import anyio.lowlevel
import httpx
import pytest

import sarv_async.testing
from sarv_async import AsyncSarvClient
from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN, Emulator

from ._support import ACCOUNTS, loopback_client, post

pytestmark = pytest.mark.anyio


# Lifecycle.


def test_plain_with_serves_in_a_thread_and_stops_on_exit() -> None:
    """The sync form serves while inside the block and refuses connections after it."""
    with Emulator() as emu:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1\.0/", emu.base_url)
        assert emu.base_url == emu.url + "/v1.0/"
        response = httpx.post(
            emu.base_url + "settings/listSmtp", json={"owner_id": "demo", "token": "demo-token"}
        )
        assert response.json() == {"status": "success", "smtp_list": []}
    with pytest.raises(httpx.ConnectError):
        httpx.post(emu.base_url + "settings/listSmtp", json={})


async def test_async_with_serves_without_blocking_the_callers_loop() -> None:
    """The async form works on asyncio and trio, and the caller's loop keeps running meanwhile."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        async with Emulator() as emu, loopback_client(emu.url) as http:
            assert (await post(http, "listSmtp", "demo")).status_code == 200
        tg.cancel_scope.cancel()
    assert ticks > 1


def test_default_account_is_the_demo_account() -> None:
    """With no accounts given there is one: demo / demo-token."""
    emu = Emulator()
    assert emu.accounts == {DEMO_OWNER_ID: DEMO_TOKEN} == {"demo": "demo-token"}


def test_accounts_is_a_copy() -> None:
    """Changing the returned mapping changes nothing in the emulator."""
    emu = Emulator(accounts=ACCOUNTS)
    emu.accounts["intruder"] = "x"
    assert emu.accounts == ACCOUNTS


def test_repr_shows_owner_ids_but_never_tokens() -> None:
    """The repr names the accounts and hides their tokens."""
    with Emulator(accounts=ACCOUNTS) as emu:
        text = repr(emu)
    assert "acme" in text
    assert "globex" in text
    assert not any(token in text for token in ACCOUNTS.values())


def test_an_emulator_runs_only_once() -> None:
    """Starting a stopped emulator raises; stopping twice is fine."""
    emu = Emulator()
    with emu:
        pass
    emu.stop()
    with pytest.raises(RuntimeError, match="only once"):
        emu.start()


@pytest.mark.slow
def test_stop_lets_an_answer_in_flight_finish() -> None:
    """A request the server is still answering when stop() is called gets its answer."""
    answers: list[int] = []
    with Emulator(latency_ms=300) as emu:
        asking = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    emu.base_url + "settings/listSmtp",
                    json={"owner_id": DEMO_OWNER_ID, "token": DEMO_TOKEN},
                ).status_code
            )
        )
        asking.start()
        deadline = time.monotonic() + 10
        while not emu.stats()["requests"]:  # the server has the request: it is in flight
            assert time.monotonic() < deadline, "the request never reached the server"
            time.sleep(0.002)
    asking.join(10)
    assert answers == [200]


def test_url_before_start_is_an_error() -> None:
    """There is no URL before the server is bound."""
    with pytest.raises(RuntimeError, match="not been started"):
        _ = Emulator().base_url


def test_a_busy_port_raises_oserror() -> None:
    """Binding a port in use fails at start, in the caller."""
    with Emulator() as first, pytest.raises(OSError, match=r"(?i)in use|only one usage"):
        Emulator(port=first.port).start()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"accounts": {}}, ValueError),
        ({"accounts": {"": "t"}}, ValueError),
        ({"accounts": {"a": ""}}, ValueError),
        ({"port": -1}, ValueError),
        ({"port": 70000}, ValueError),
        ({"latency_ms": -5}, ValueError),
        ({"latency_ms": "5"}, TypeError),
        ({"seed": "x"}, TypeError),
    ],
    ids=repr,
)
def test_bad_options_are_refused(options: dict[str, object], error: type[Exception]) -> None:
    """Impossible options raise before anything starts."""
    with pytest.raises(error):
        Emulator(**options)  # type: ignore[arg-type]


def test_a_missing_uvicorn_is_explained_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without uvicorn the package imports, and start() says which extra to install."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    emu = sarv_async.testing.Emulator()
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'sarv-async\[emulator\]'"):
        emu.start()


@pytest.mark.slow
async def test_latency_delays_every_api_answer() -> None:
    """latency_ms holds each API answer back at least that long."""
    async with Emulator(latency_ms=250) as emu, loopback_client(emu.url) as http:
        started = time.monotonic()
        assert (await post(http, "listSmtp", "demo")).status_code == 200
        assert time.monotonic() - started >= 0.25
        started = time.monotonic()
        assert (await http.get("/_emulator/stats")).status_code == 200
        assert time.monotonic() - started < 0.25


# Admin endpoints, stats and reset.


async def test_stats_count_requests_responses_and_users(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """GET /_emulator/stats counts requests by path, answers by status, faults and users."""
    await post(http, "addSmtp", total_limit=1, hourly_limit=1)
    await post(http, "addSmtp", "globex", total_limit=1, hourly_limit=1)
    await post(http, "listSmtp")
    await http.post("/nowhere", json={})
    emu.inject_fault("general_error")
    await post(http, "listSmtp")
    response = await http.get("/_emulator/stats")
    assert response.status_code == 200
    stats = response.json()
    assert stats == emu.stats()
    assert stats["requests"] == {
        "/v1.0/settings/addSmtp": 2,
        "/v1.0/settings/listSmtp": 2,
        "/nowhere": 1,
    }
    assert stats["responses"] == {"200": 4, "404": 1}
    assert (stats["faults"], stats["faults_by_kind"], stats["dropped"]) == (
        1,
        {"general_error": 1},
        0,
    )
    assert (stats["users"], stats["users_by_account"]) == (2, {"acme": 1, "globex": 1})


async def test_reset_endpoint_forgets_users_counters_and_queued_faults(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """POST /_emulator/reset clears everything; user names are not reused afterwards."""
    old = (await post(http, "addSmtp", total_limit=1, hourly_limit=1)).json()["smtp_user_name"]
    emu.inject_fault("drop_before")
    response = await http.post("/_emulator/reset")
    assert response.json() == {"status": "success", "message": "emulator reset"}
    stats = emu.stats()
    assert (stats["requests"], stats["responses"], stats["users"]) == ({}, {}, 0)
    new = (await post(http, "addSmtp", total_limit=1, hourly_limit=1)).json()["smtp_user_name"]
    assert new != old


async def test_reset_clears_rate_windows() -> None:
    """After a reset, an account over its limit is served again at once."""
    async with Emulator(rate_limit="1/minute") as emu, loopback_client(emu.url) as http:
        assert (await post(http, "listSmtp", "demo")).status_code == 200
        assert (await post(http, "listSmtp", "demo")).status_code == 429
        emu.reset()
        assert (await post(http, "listSmtp", "demo")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/_emulator/stats", 405),
        ("GET", "/_emulator/reset", 405),
        ("GET", "/_emulator/other", 404),
    ],
)
async def test_admin_paths_refuse_wrong_methods_and_unknown_names(
    http: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    """Admin endpoints answer 405 to the wrong method and 404 to unknown names, uncounted."""
    response = await http.request(method, path)
    assert response.status_code == status
    assert response.json()["name"] == "ValidationError"
    assert (await http.get("/_emulator/stats")).json()["requests"] == {}


async def test_stats_can_be_read_from_another_thread_under_load(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    """stats() and users() from a plain thread see the user count only grow while calls run."""
    done = threading.Event()
    seen: list[int] = []

    def watch() -> None:
        while not done.is_set():
            seen.append(emu.stats()["users"])
            seen.append(len(emu.users("acme")))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(20):
            await post(http, "addSmtp", total_limit=1, hourly_limit=1)
    finally:
        done.set()
        watcher.join()
    assert seen == sorted(seen)
    assert emu.stats()["users"] == 20


# Snapshots and concurrency.


async def test_users_is_a_snapshot(emu: Emulator, http: httpx.AsyncClient) -> None:
    """Changing what users() returned does not change the server."""
    await post(http, "addSmtp", total_limit=1, hourly_limit=1)
    snapshot = emu.users("acme")
    snapshot[0]["status"] = "Disable"
    snapshot.clear()
    assert emu.users("acme")[0]["status"] == "Enable"


def test_users_defaults_to_the_first_account_and_refuses_unknown_ones(emu: Emulator) -> None:
    """users() with no owner id is the first account's; an unknown owner id raises ValueError."""
    assert emu.users() == emu.users("acme")
    with pytest.raises(ValueError, match="nobody"):
        emu.users("nobody")


async def test_concurrent_creates_get_unique_names(emu: Emulator, http: httpx.AsyncClient) -> None:
    """Fifty simultaneous creates on two accounts give fifty distinct users."""
    names: list[str] = []

    async def create(owner: str) -> None:
        response = await post(http, "addSmtp", owner, total_limit=5, hourly_limit=1)
        names.append(response.json()["smtp_user_name"])

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(create, "acme" if i % 2 else "globex")
    assert len(set(names)) == 50
    assert len(emu.users("acme")) == len(emu.users("globex")) == 25


# The SDK's client.


async def test_client_talks_to_the_emulator(emu: Emulator) -> None:
    """emu.client() is an AsyncSarvClient for an account here, with the emulator's pacing."""
    client = emu.client("globex")
    assert isinstance(client, AsyncSarvClient)
    async with client:
        creds = await client.smtp_users.create(total_limit=100, hourly_limit=10)
        listed = await client.smtp_users.list()
    assert [u["smtp_user_name"] for u in emu.users("globex")] == [creds.smtp_user_name]
    assert [u.smtp_user_name for u in listed] == [creds.smtp_user_name]
    assert emu.users("acme") == []


def test_client_refuses_an_unknown_account(emu: Emulator) -> None:
    """client() for an owner id the emulator does not have raises ValueError."""
    with pytest.raises(ValueError, match="nobody"):
        emu.client("nobody")


def test_public_names_resolve() -> None:
    """Every name in sarv_async.testing.__all__ resolves (lazily) and shows in dir()."""
    for name in sarv_async.testing.__all__:
        assert getattr(sarv_async.testing, name) is not None
    assert set(sarv_async.testing.__all__) <= set(dir(sarv_async.testing))
    with pytest.raises(AttributeError):
        _ = sarv_async.testing.nothing_here
