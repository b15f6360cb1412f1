"""Every SDK error survives pickling, so it crosses process pools as itself."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import anyio
import pytest
import respx

from sarv_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    CreateSmtpUserRequest,
    GeneralError,
    LedgerError,
    LedgerLostError,
    OutcomeUnknownError,
    RateLimitError,
    SarvError,
    StoreUnavailableError,
    UnexpectedResponseError,
    ValidationError,
    _exceptions,
)
from tests.helpers import BASE_URL, TOKEN, error_envelope, make_client

pytestmark = pytest.mark.anyio

REQUEST = CreateSmtpUserRequest(total_limit=7, hourly_limit=3)

EXAMPLES: list[SarvError] = [
    SarvError("plain"),
    APIError("m", name="QuotaError", code="Q1", status_code=402),
    ValidationError("bad", field="total_limit", name="ValidationError", code=-1, status_code=400),
    AuthenticationError("Token MissMatch", name="AuthenticationError", code=-1, status_code=200),
    GeneralError("oops", code=-1, status_code=500),
    RateLimitError("slow", retry_after=1.5, name="RateLimitError", code=-1, status_code=429),
    RateLimitError(retry_after=None, status_code=None),
    APIConnectionError("refused"),
    APITimeoutError("slow"),
    UnexpectedResponseError("html", status_code=502),
    OutcomeUnknownError("maybe", request=REQUEST),
    OutcomeUnknownError("maybe", request=REQUEST, idempotency_key="tenant-42"),
    LedgerError("the ledger lost idempotency key 'tenant-42'"),
    LedgerLostError("the ledger /var/lib/sarv/ledger.sqlite3 was deleted while in use"),
    StoreUnavailableError("Redis at 127.0.0.1:6379 did not answer within 0.5 s"),
]


def _exception_classes() -> set[type[SarvError]]:
    classes = {getattr(_exceptions, name) for name in _exceptions.__all__}
    return {cls for cls in classes if isinstance(cls, type) and issubclass(cls, SarvError)}


def test_the_examples_cover_every_error_class() -> None:
    """No class of the tree is left out of the round trip below."""
    assert {type(e) for e in EXAMPLES} == _exception_classes()


def _same(a: BaseException, b: BaseException) -> None:
    assert type(a) is type(b)
    assert a.args == b.args
    assert str(a) == str(b)
    assert repr(a) == repr(b)
    assert vars(a) == vars(b)


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
async def test_every_error_round_trips_through_pickle(error: SarvError) -> None:
    """Type, message and every attribute come back (``request`` too)."""
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        _same(pickle.loads(pickle.dumps(error, protocol)), error)  # noqa: S301


async def test_an_outcome_unknown_from_a_call_round_trips_without_the_token(
    respx_mock: respx.MockRouter,
) -> None:
    """The error of a real create keeps its request and cause; the pickle holds no token."""
    respx_mock.post(f"{BASE_URL}settings/addSmtp").mock(
        return_value=error_envelope("GeneralError", "try later")
    )
    async with make_client() as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.smtp_users.create(total_limit=7, hourly_limit=3)
    data = pickle.dumps(info.value)
    assert TOKEN.encode() not in data
    back = pickle.loads(data)  # noqa: S301
    _same(back, info.value)
    assert back.request == REQUEST
    assert isinstance(back.__cause__, GeneralError)
    assert back.__cause__.message == "try later"


def _raise_outcome_unknown() -> None:
    raise OutcomeUnknownError("maybe", request=REQUEST)


async def test_outcome_unknown_crosses_a_process_pool() -> None:
    """Raised in a worker process, it reaches the parent as itself, not as BrokenProcessPool."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(_raise_outcome_unknown)
        with pytest.raises(OutcomeUnknownError) as info:
            await anyio.to_thread.run_sync(future.result)
    assert info.value.request == REQUEST
