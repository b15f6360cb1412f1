"""The SDK against every reading of the documents' errors, on a real emulator.

The documents disagree on an error's HTTP status (always 200, or a status by kind) and
on the key of its kind (``name`` in the samples, ``type`` in the table); deployments
differ. Each of the six combinations must give the same typed error, the same "was it
applied" judgement for a create, and no retry of a 4xx.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from sarv_async import (
    AsyncSarvClient,
    AuthenticationError,
    Backoff,
    OutcomeUnknownError,
    ValidationError,
)
from sarv_async.testing import Emulator

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

READINGS = list(itertools.product(("200", "http"), ("name", "type", "both")))


@pytest.fixture(scope="module", params=READINGS, ids=lambda r: f"status-{r[0]}-kind-{r[1]}")
def reading(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """An emulator answering errors in one reading of the documents."""
    error_status, kind_field = request.param
    with Emulator(error_status=error_status, error_kind_field=kind_field) as emulator:
        yield emulator


@pytest.fixture
def emu(reading: Emulator) -> Emulator:
    """The reading's emulator, reset."""
    reading.reset()
    return reading


def client(emu: Emulator) -> AsyncSarvClient:
    """A client with retries on (fast), so a retried 4xx would show in the counts."""
    return emu.client(rate_limit=None, max_retries=3, backoff=Backoff(initial=0.001, maximum=0.01))


async def test_a_wrong_token_is_an_authentication_error_sent_once(emu: Emulator) -> None:
    """AuthenticationError whatever the status and key; never retried."""
    owner = next(iter(emu.accounts))
    async with AsyncSarvClient(
        owner, "wrong-token", base_url=emu.base_url, rate_limit=None, max_retries=3
    ) as bad:
        with pytest.raises(AuthenticationError) as info:
            await bad.smtp_users.list()
    assert info.value.status_code == (401 if emu.error_status == "http" else 200)
    assert emu.stats()["requests"] == {"/v1.0/settings/listSmtp": 1}


async def test_a_bad_parameter_is_a_validation_error_sent_once(emu: Emulator) -> None:
    """An edit of an unknown user is a ValidationError (400 or 200), not retried."""
    async with client(emu) as sdk:
        with pytest.raises(ValidationError) as info:
            await sdk.smtp_users.update("smtp1", total_limit=5)
    assert info.value.status_code == (400 if emu.error_status == "http" else 200)
    assert emu.stats()["requests"] == {"/v1.0/settings/editSmtp": 1}


async def test_a_general_error_on_create_is_an_unknown_outcome_never_repeated(
    emu: Emulator,
) -> None:
    """A GeneralError (500 or 200) may follow a create that took effect: not repeated,
    OutcomeUnknownError carrying the GeneralError."""
    emu.inject_fault("general_error", path="addSmtp")
    async with client(emu) as sdk:
        with pytest.raises(OutcomeUnknownError) as info:
            await sdk.smtp_users.create(total_limit=10, hourly_limit=1)
    assert type(info.value.__cause__).__name__ == "GeneralError"
    assert emu.stats()["requests"] == {"/v1.0/settings/addSmtp": 1}


async def test_a_general_error_on_a_list_is_retried(emu: Emulator) -> None:
    """A list is safe to repeat: a GeneralError, 500 or 200, is retried and the list read."""
    emu.inject_fault("general_error", path="listSmtp")
    async with client(emu) as sdk:
        assert await sdk.smtp_users.list() == []
    assert emu.stats()["requests"] == {"/v1.0/settings/listSmtp": 2}
