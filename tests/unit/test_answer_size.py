"""An answer's body is bounded by ``max_answer_bytes``, counted decoded, whatever its coding.

The SDK asks for ``identity``; a server that compresses anyway is read, gzip or deflate,
in bounded steps, and what inflates past the bound is an invalid answer: retried where
that is safe, ``OutcomeUnknownError`` for a create.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import respx

from sarv_async import (
    AsyncSarvClient,
    OutcomeUnknownError,
    SmtpUser,
    UnexpectedResponseError,
    ValidationError,
)
from tests.helpers import BASE_URL, OWNER_ID, TOKEN, make_client
from tests.unit.test_frame_locals import PASSWORD, assert_clean, rendered

pytestmark = pytest.mark.anyio

LIST_URL = f"{BASE_URL}settings/listSmtp"
CREATE_URL = f"{BASE_URL}settings/addSmtp"
CAP = 10_000


def _users(count: int) -> list[dict[str, Any]]:
    return [
        {
            "smtp_user_name": f"smtp{i:05d}",
            "password": PASSWORD,
            "status": "Enable",
            "total_limit": 100,
            "hourly_limit": 10,
        }
        for i in range(count)
    ]


def _list_body(count: int) -> bytes:
    return json.dumps({"status": "success", "smtp_list": _users(count)}).encode()


def _padded_list(size: int) -> bytes:
    """A valid list answer of exactly ``size`` bytes (spaces pad it)."""
    body = _list_body(3)
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def _batches(client: AsyncSarvClient) -> list[SmtpUser]:
    got: list[SmtpUser] = []

    async def keep(users: list[SmtpUser]) -> None:
        got.extend(users)

    await client.smtp_users._list_in_batches(keep)
    return got


#: The whole list, and the one read in batches as it arrives (provisioning's last list).
LISTS: dict[str, Callable[[AsyncSarvClient], Awaitable[list[SmtpUser]]]] = {
    "list": lambda client: client.smtp_users.list(),
    "list-in-batches": _batches,
}


def _gzip(data: bytes) -> bytes:
    gzip = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return gzip.compress(data) + gzip.flush()


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data, 9)


def _raw_deflate(data: bytes) -> bytes:
    raw = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return raw.compress(data) + raw.flush()


#: Content-Encoding, and how a body is encoded for it.
CODINGS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", _gzip),
    "x-gzip": ("x-gzip", _gzip),
    "deflate": ("deflate", _deflate),
    "raw-deflate": ("deflate", _raw_deflate),
    "gzip-twice": ("gzip, gzip", lambda data: _gzip(_gzip(data))),
    "deflate-then-gzip": ("deflate, gzip", lambda data: _gzip(_deflate(data))),
    "identity-and-gzip": ("identity, gzip", _gzip),
}


class _Raw(httpx.AsyncByteStream):
    """A body as sent: httpx.Response(content=...) would decode it when made."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._data


def _coded(coding: str, content: bytes) -> httpx.Response:
    """An answer with ``Content-Encoding: coding`` and ``content`` as it is."""
    return httpx.Response(200, headers={"Content-Encoding": coding}, stream=_Raw(content))


def _encoded(coding: str, data: bytes) -> httpx.Response:
    header, encode = CODINGS[coding]
    return _coded(header, encode(data))


# -- what is asked for ------------------------------------------------------------------


@pytest.mark.parametrize("borrowed", [False, True])
async def test_every_call_asks_for_an_identity_coding(
    borrowed: bool, respx_mock: respx.MockRouter
) -> None:
    """Lists and creates (on their own pool, or a borrowed one) send Accept-Encoding: identity."""
    lists = respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, content=_list_body(1)))
    created = {"status": "success", "smtp_user_name": "u", "smtp_password": "p"}
    creates = respx_mock.post(CREATE_URL).mock(return_value=httpx.Response(200, json=created))
    async with (
        httpx.AsyncClient() as http,
        make_client(http_client=http if borrowed else None) as client,
    ):
        await client.smtp_users.list()
        await client.smtp_users.create(total_limit=1, hourly_limit=1)
    for route in (lists, creates):
        assert route.calls.last.request.headers["accept-encoding"] == "identity"


# -- the bound ----------------------------------------------------------------------------


@pytest.mark.parametrize("read", list(LISTS))
async def test_an_answer_of_exactly_the_bound_is_read(
    read: str, respx_mock: respx.MockRouter
) -> None:
    """max_answer_bytes is the most a body may hold: that many bytes pass."""
    respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, content=_padded_list(CAP)))
    async with make_client(max_answer_bytes=CAP) as client:
        assert len(await LISTS[read](client)) == 3


@pytest.mark.parametrize("read", list(LISTS))
async def test_a_list_one_byte_past_the_bound_is_retried_then_raised(
    read: str, respx_mock: respx.MockRouter
) -> None:
    """A body past the bound is an invalid answer: repeated, then UnexpectedResponseError."""
    route = respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(200, content=_padded_list(CAP + 1))
    )
    async with make_client(max_answer_bytes=CAP, max_retries=2) as client:
        with pytest.raises(UnexpectedResponseError) as info:
            await LISTS[read](client)
    assert route.call_count == 3
    message = str(info.value)
    assert "max_answer_bytes (10,000 bytes, decoded)" in message
    assert "with_options(max_answer_bytes=" in message
    assert info.value.status_code == 200
    assert PASSWORD not in message


async def test_a_list_past_the_bound_is_read_once_the_bound_is_raised(
    respx_mock: respx.MockRouter,
) -> None:
    """with_options(max_answer_bytes=...) raises the bound for the copy alone."""
    respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, content=_padded_list(CAP + 1)))
    async with make_client(max_answer_bytes=CAP, max_retries=0) as client:
        wider = client.with_options(max_answer_bytes=CAP + 1)
        assert wider.max_answer_bytes == CAP + 1
        assert client.max_answer_bytes == CAP
        assert len(await wider.smtp_users.list()) == 3
        with pytest.raises(UnexpectedResponseError):
            await client.smtp_users.list()


async def test_a_create_cut_off_by_the_bound_is_outcome_unknown(
    respx_mock: respx.MockRouter,
) -> None:
    """A create whose answer is too big may have been applied: sent once, never repeated."""
    route = respx_mock.post(CREATE_URL).mock(
        side_effect=lambda request: httpx.Response(200, content=_too_big(None))
    )
    async with make_client(max_answer_bytes=CAP, max_retries=3) as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.smtp_users.create(total_limit=1, hourly_limit=1)
    assert route.call_count == 1
    assert isinstance(info.value.__cause__, UnexpectedResponseError)
    assert "max_answer_bytes" in str(info.value)
    assert_clean(info.value)


async def test_an_error_answer_past_the_bound_is_an_invalid_answer(
    respx_mock: respx.MockRouter,
) -> None:
    """A non-2xx body is bounded too: a huge 500 page ends as UnexpectedResponseError."""
    respx_mock.post(LIST_URL).mock(return_value=httpx.Response(500, content=b"x" * (CAP + 1)))
    async with make_client(max_answer_bytes=CAP, max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError, match="HTTP 500 with more than"):
            await client.smtp_users.list()


# -- codings the server sends anyway ----------------------------------------------------------


@pytest.mark.parametrize("coding", list(CODINGS))
@pytest.mark.parametrize("read", list(LISTS))
async def test_a_compressed_answer_within_the_bound_is_read(
    coding: str, read: str, respx_mock: respx.MockRouter
) -> None:
    """gzip and deflate (zlib or raw), nested too, are decoded although not asked for."""
    respx_mock.post(LIST_URL).mock(side_effect=lambda request: _encoded(coding, _list_body(40)))
    async with make_client() as client:
        users = await LISTS[read](client)
    assert [user.smtp_user_name for user in users] == [f"smtp{i:05d}" for i in range(40)]


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "gzip-twice"])
@pytest.mark.parametrize("read", list(LISTS))
async def test_a_compressed_answer_is_bounded_decoded(
    coding: str, read: str, respx_mock: respx.MockRouter
) -> None:
    """The bound counts inflated bytes: a body far smaller on the wire than it is still stops."""
    body = _padded_list(CAP * 100)
    assert len(CODINGS[coding][1](body)) < CAP  # what goes over the wire
    respx_mock.post(LIST_URL).mock(side_effect=lambda request: _encoded(coding, body))
    async with make_client(max_answer_bytes=CAP, max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError, match=r"more than max_answer_bytes"):
            await LISTS[read](client)


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br"])
async def test_a_coding_the_sdk_does_not_read_is_an_invalid_answer(
    coding: str, respx_mock: respx.MockRouter
) -> None:
    """Codings that cannot be inflated in bounded steps are refused, by name."""
    route = respx_mock.post(LIST_URL).mock(
        side_effect=lambda request: _coded(coding, b"\x1b\x00\x00")
    )
    async with make_client(max_retries=1) as client:
        with pytest.raises(UnexpectedResponseError) as info:
            await client.smtp_users.list()
    assert route.call_count == 2
    assert "which the SDK did not ask for and does not read" in str(info.value)
    assert repr(coding.split(", ")[-1]) in str(info.value)


async def test_too_many_codings_are_refused(respx_mock: respx.MockRouter) -> None:
    """Four codings on one body are more than any server has reason to send."""
    body = _list_body(1)
    for _ in range(4):
        body = _gzip(body)
    respx_mock.post(LIST_URL).mock(
        side_effect=lambda request: _coded("gzip, gzip, gzip, gzip", body)
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError, match="4 content codings"):
            await client.smtp_users.list()


@pytest.mark.parametrize("read", list(LISTS))
async def test_an_invalid_compressed_body_is_an_invalid_answer(
    read: str, respx_mock: respx.MockRouter
) -> None:
    """Bytes that are no gzip stream end as UnexpectedResponseError, not a zlib error."""
    respx_mock.post(LIST_URL).mock(side_effect=lambda request: _coded("gzip", b"not gzip at all"))
    async with make_client(max_retries=0) as client:
        with pytest.raises(UnexpectedResponseError, match="could not be decoded"):
            await LISTS[read](client)


async def test_a_create_with_an_unreadable_coding_is_outcome_unknown(
    respx_mock: respx.MockRouter,
) -> None:
    """A create's answer in a coding the SDK cannot read may hide a made user: not repeated."""
    route = respx_mock.post(CREATE_URL).mock(side_effect=lambda request: _coded("br", b"\x1b"))
    async with make_client(max_retries=3) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.smtp_users.create(total_limit=1, hourly_limit=1)
    assert route.call_count == 1


def _too_big(coding: str | None) -> bytes:
    """An answer with users, a password and the token, then past the bound (made here, so
    that no frame of the test holds its secrets)."""
    return json.dumps(
        {
            "status": "success",
            "smtp_user_name": "u",
            "smtp_password": PASSWORD,
            "smtp_list": _users(5),
            "echo": TOKEN,
            "pad": " " * CAP,
        }
    ).encode()


# -- frames ---------------------------------------------------------------------------------


CALLS: dict[str, Callable[[AsyncSarvClient], Awaitable[Any]]] = {
    **LISTS,
    "create": lambda client: client.smtp_users.create(total_limit=1, hourly_limit=1),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("coding", [None, "gzip"])
async def test_no_secret_in_the_frames_of_a_too_big_answer(
    call: str, coding: str | None, respx_mock: respx.MockRouter
) -> None:
    """The bound is met after users (and the echoed token) were read: no frame keeps them."""
    path = "settings/addSmtp" if call == "create" else "settings/listSmtp"
    respx_mock.post(f"{BASE_URL}{path}").mock(
        side_effect=lambda request: (
            _encoded(coding, _too_big(coding))
            if coding
            else httpx.Response(200, content=_too_big(coding))
        )
    )
    async with make_client(max_answer_bytes=CAP, max_retries=1) as client:
        with pytest.raises((UnexpectedResponseError, OutcomeUnknownError)) as info:
            await CALLS[call](client)
    assert "max_answer_bytes" in str(info.value)
    assert "_pipeline.py" in rendered(info.value)
    assert_clean(info.value)


# -- the option ------------------------------------------------------------------------------


async def test_the_default_bound_is_64_mib() -> None:
    """Room for a list of several hundred thousand users (100,000 are 15-20 MB)."""
    client = AsyncSarvClient(OWNER_ID, TOKEN, base_url=BASE_URL)
    assert client.max_answer_bytes == 64 * 1024 * 1024
    assert client.with_options(max_retries=0).max_answer_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "1000", None])
async def test_a_bad_bound_is_refused_naming_the_field(value: object) -> None:
    """Not a positive integer: ValidationError naming max_answer_bytes, before any call."""
    with pytest.raises(ValidationError) as info:
        AsyncSarvClient(OWNER_ID, TOKEN, base_url=BASE_URL, max_answer_bytes=value)  # type: ignore[arg-type]
    assert info.value.field == "max_answer_bytes"
    if value is not None:  # None means "keep the client's" to with_options
        client = AsyncSarvClient(OWNER_ID, TOKEN, base_url=BASE_URL)
        with pytest.raises(ValidationError) as info:
            client.with_options(max_answer_bytes=value)  # type: ignore[arg-type]
        assert info.value.field == "max_answer_bytes"
