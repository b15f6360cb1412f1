"""The client as an async resource: open once, close once, warn when leaked, copy cheaply."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import pytest
import respx

from sarv_async import AsyncSarvClient, ClientState
from tests.helpers import BASE_URL, make_client, success

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _young_heap() -> Iterator[None]:
    """What the test collects is only what it made: everything older is frozen meanwhile.

    A full collection of a worker's heap late in the suite takes seconds; the cycles these
    tests leave behind are all made during the test.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def test_states_follow_the_context_manager() -> None:
    """A client goes UNOPENED -> OPENED -> CLOSED through ``async with``."""
    client = make_client()
    seen = [client.state]
    async with client as entered:
        assert entered is client
        seen.append(client.state)
    seen.append(client.state)
    assert seen == [ClientState.UNOPENED, ClientState.OPENED, ClientState.CLOSED]


@pytest.mark.respx(assert_all_called=False)
async def test_calls_after_close_raise_a_clear_error(respx_mock: respx.MockRouter) -> None:
    """A closed client refuses calls with an error that says so, sending nothing."""
    route = respx_mock.route()
    async with make_client() as client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await client.smtp_users.list()
    assert not route.called


async def test_a_client_cannot_be_reopened() -> None:
    """Entering a closed client again is refused."""
    client = make_client()
    async with client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await client.__aenter__()


async def test_aclose_is_idempotent() -> None:
    """aclose() twice is harmless."""
    client = make_client()
    await client.aclose()
    await client.aclose()
    assert client.state is ClientState.CLOSED


async def test_unclosed_open_client_warns_resource_warning() -> None:
    """An opened client collected without closing warns ResourceWarning."""
    client = make_client()
    await client.__aenter__()
    pool = client._shared.http
    del client
    with pytest.warns(ResourceWarning, match="unclosed"):
        gc.collect()
    await pool.aclose()


async def test_collected_copies_of_an_open_client_do_not_warn(
    respx_mock: respx.MockRouter,
) -> None:
    """A with_options() copy dropped while its client is open is no leak and does not warn."""
    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(return_value=success(smtp_list=[]))
    async with make_client() as client:
        await client.with_options(max_retries=0).smtp_users.list()
        gc.collect()  # filterwarnings=error turns a ResourceWarning here into a failure


async def test_a_used_client_never_entered_warns_when_leaked(
    respx_mock: respx.MockRouter,
) -> None:
    """A client used without ``async with`` and never closed warns when collected."""
    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(return_value=success(smtp_list=[]))
    client = make_client()
    await client.smtp_users.list()
    pool = client._shared.http
    del client
    with pytest.warns(ResourceWarning, match="unclosed AsyncSarvClient for 'owner-42'"):
        gc.collect()
    await pool.aclose()


def test_never_used_client_does_not_warn() -> None:
    """A client built and dropped without use holds nothing and does not warn."""
    client = make_client()
    del client
    gc.collect()


async def test_with_options_shares_pool_and_overrides_per_call(
    respx_mock: respx.MockRouter,
) -> None:
    """with_options() copies share the pool and limiter but carry their own timeout and retries."""
    route = respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(
        side_effect=[httpx.Response(503), success(smtp_list=[])]
    )
    async with make_client(max_retries=0) as client:
        patient = client.with_options(max_retries=1, timeout=7.5)
        assert patient._shared is client._shared
        assert patient.timeout == httpx.Timeout(7.5)
        assert (client.max_retries, patient.max_retries) == (0, 1)
        assert await patient.smtp_users.list() == []
    assert route.call_count == 2
    assert patient.state is ClientState.CLOSED


async def test_repr_is_short_and_shows_state() -> None:
    """The repr names the base URL, owner and state."""
    client = AsyncSarvClient("o", "t", base_url=BASE_URL)
    assert repr(client) == f"<AsyncSarvClient base_url='{BASE_URL}' owner_id='o' state=UNOPENED>"
