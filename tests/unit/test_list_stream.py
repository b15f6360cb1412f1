"""The list read in batches as its answer arrives: the users `list` reads, never all held.

Provisioning's last list (the orphan check) reads the account this way, so a run that
made 100,000 users does not hold them all at once.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import AsyncIterator, Collection
from typing import Any

import anyio
import httpx
import pytest
import respx

from sarv_async import APIError, RateLimitError, SarvError, SmtpUser, UnexpectedResponseError
from sarv_async._ledger_memory import MemoryLedger
from tests.helpers import BASE_URL, make_client

pytestmark = pytest.mark.anyio

LIST_URL = f"{BASE_URL}settings/listSmtp"
PASSWORD = "pw-LEAKED-7f3a9c"


def user(i: int) -> dict[str, Any]:
    return {
        "smtp_user_name": f"smtp{i:05d}",
        "password": f"pw{i}",
        "status": "Enable" if i % 3 else "Disable",
        "total_limit": 100 + i,
        "hourly_limit": 10,
    }


class Chunked(httpx.AsyncByteStream):
    """A body sent in chunks of ``size`` bytes, counting how many went out."""

    def __init__(self, body: bytes, size: int) -> None:
        self.body, self.size, self.sent = body, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), self.size):
            self.sent += 1
            yield self.body[start : start + self.size]


class Batches:
    """A consumer that keeps what it was given, and when."""

    def __init__(self, body: Chunked | None = None) -> None:
        self.users: list[SmtpUser] = []
        self.batches = 0
        self.chunks_sent_at_first: int | None = None
        self.body = body

    async def __call__(self, users: list[SmtpUser]) -> None:
        if self.chunks_sent_at_first is None and self.body is not None:
            self.chunks_sent_at_first = self.body.sent
        self.batches += 1
        self.users += users


async def test_users_arrive_in_batches_before_the_answer_ends(
    respx_mock: respx.MockRouter,
) -> None:
    body = json.dumps({"status": "success", "smtp_list": [user(i) for i in range(2000)]})
    stream = Chunked(body.encode(), 4096)
    respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, stream=stream))
    seen = Batches(stream)
    async with make_client() as client:
        await client.smtp_users._list_in_batches(seen)
        respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, content=body.encode()))
        whole = await client.smtp_users.list()
    assert seen.users == whole
    assert len(whole) == 2000
    assert seen.batches > 10
    assert seen.chunks_sent_at_first is not None
    assert seen.chunks_sent_at_first < stream.sent / 10  # not after the whole answer


@pytest.mark.parametrize(
    "answer",
    [
        # Tolerated spellings: numbers as strings, status words, nulls, the password alias.
        {
            "status": "success",
            "smtp_list": [
                {
                    "smtp_user_name": "a",
                    "smtp_password": "p",
                    "status": "enable",
                    "total_limit": "7",
                    "hourly_limit": 1,
                    "extra": None,
                },
                user(2),
            ],
        },
        {"smtp_list": [user(1)], "message": "ok", "status": "success"},  # status last
        {"status": "success", "smtp_list": None},
        {"status": "success", "smtp_list": {}},
        {"status": "success", "smtp_list": {"0": user(0)}},  # PHP's array as an object
        {"status": "success"},
    ],
)
async def test_every_shape_list_reads_is_read_alike(
    answer: dict[str, Any], respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(200, stream=Chunked(json.dumps(answer).encode(), 7))
    )
    seen = Batches()
    async with make_client() as client:
        await client.smtp_users._list_in_batches(seen)
        respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, json=answer))
        assert seen.users == await client.smtp_users.list()


async def test_a_body_that_is_no_utf8_object_is_read_whole(respx_mock: respx.MockRouter) -> None:
    body = "\ufeff" + json.dumps({"status": "success", "smtp_list": [user(1)]})
    respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, content=body.encode()))
    seen = Batches()
    async with make_client() as client:
        await client.smtp_users._list_in_batches(seen)
    assert [u.smtp_user_name for u in seen.users] == ["smtp00001"]


async def test_an_error_envelope_at_200_raises_its_error(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(LIST_URL).mock(
        return_value=httpx.Response(
            200, json={"status": "error", "name": "GeneralError", "message": "down"}
        )
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(APIError, match="down"):
            await client.smtp_users._list_in_batches(Batches())


async def test_invalid_json_mid_list_is_retried_then_raised(respx_mock: respx.MockRouter) -> None:
    body = b'{"status":"success","smtp_list":[' + json.dumps(user(1)).encode() + b",}"
    route = respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, content=body))
    async with make_client(max_retries=2) as client:
        with pytest.raises(UnexpectedResponseError, match="invalid JSON"):
            await client.smtp_users._list_in_batches(Batches())
    assert route.call_count == 3


async def test_an_answer_after_an_invalid_one_is_judged_on_its_own(
    respx_mock: respx.MockRouter,
) -> None:
    """A 429 after invalid JSON is a 429 (its Retry-After counts), not the earlier error."""
    garbled = b'{"status":"success","smtp_list":[' + json.dumps(user(1)).encode() + b",nonsense"
    route = respx_mock.post(LIST_URL).mock(
        side_effect=[
            httpx.Response(200, content=garbled),
            httpx.Response(429, headers={"retry-after": "0"}, json={"status": "error"}),
        ]
    )
    async with make_client(max_retries=1) as client:
        with pytest.raises(RateLimitError):
            await client.smtp_users._list_in_batches(Batches())
    assert route.call_count == 2


async def test_a_connection_cut_mid_list_is_retried(respx_mock: respx.MockRouter) -> None:
    body = json.dumps({"status": "success", "smtp_list": [user(i) for i in range(50)]}).encode()

    class Cut(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield body[:700]
            raise httpx.ReadError("connection reset")

    respx_mock.post(LIST_URL).mock(
        side_effect=[httpx.Response(200, stream=Cut()), httpx.Response(200, content=body)]
    )
    seen = Batches()
    async with make_client(max_retries=1) as client:
        await client.smtp_users._list_in_batches(seen)
    # The users of the cut answer came again: the consumer meets them twice.
    names = [u.smtp_user_name for u in seen.users]
    assert set(names) == {f"smtp{i:05d}" for i in range(50)}
    assert len(names) > 50


async def test_provisioning_reports_the_orphans_of_the_last_list_s_final_answer(
    respx_mock: respx.MockRouter,
) -> None:
    """A user seen in a cut answer, and gone by the retry's, is not reported as an orphan."""
    gone, kept = user(1), user(2)
    cut = json.dumps({"status": "success", "smtp_list": [gone, kept, user(3)]}).encode()

    class Cut(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield cut[: cut.index(b"smtp00003")]  # the first two users whole, then reset
            raise httpx.ReadError("connection reset")

    respx_mock.post(LIST_URL).mock(
        side_effect=[
            httpx.Response(200, json={"status": "success", "smtp_list": []}),  # the baseline
            httpx.Response(200, stream=Cut()),  # the last list, cut...
            httpx.Response(200, json={"status": "success", "smtp_list": [kept]}),  # ...retried
        ]
    )
    async with (
        make_client(max_retries=1) as client,
        client.smtp_users.provision([], settle_delay=0) as run,
    ):
        assert [result async for result in run] == []
    assert run.summary.orphans_checked
    assert [orphan.smtp_user_name for orphan in run.summary.orphans] == ["smtp00002"]


async def test_an_attempt_timed_out_while_the_ledger_answers_is_no_ledger_failure(
    respx_mock: respx.MockRouter,
) -> None:
    """The orphan check's list timed out mid-ledger-call, then failed: orphans unchecked.

    Only an error of the ledger's own is the run's to raise; a list that cannot be had
    leaves the orphans unchecked, as it does when the ledger is never asked.
    """

    class SlowOwned(MemoryLedger):
        async def owned(self, account: str, user_names: Collection[str]) -> set[str]:
            await anyio.sleep(30)  # past the attempt's deadline
            return await super().owned(account, user_names)

    respx_mock.post(LIST_URL).mock(
        side_effect=[
            httpx.Response(200, json={"status": "success", "smtp_list": []}),  # the baseline
            httpx.Response(200, json={"status": "success", "smtp_list": [user(1)]}),
            httpx.Response(502, text="Bad Gateway"),
        ]
    )
    async with (
        make_client(max_retries=1, attempt_timeout=0.2, ledger=SlowOwned()) as client,
        client.smtp_users.provision([], settle_delay=0) as run,
    ):
        assert [result async for result in run] == []
    assert run.summary.orphans_checked is False


async def test_what_the_consumer_raises_comes_out_without_the_answer_in_its_frames(
    respx_mock: respx.MockRouter,
) -> None:
    mock_secret_list(respx_mock)  # so that this test's own frame holds no password

    class Refused(SarvError):
        pass

    async def refuse(users: list[SmtpUser]) -> None:
        raise Refused("no")

    async with make_client() as client:
        with pytest.raises(Refused) as info:
            await client.smtp_users._list_in_batches(refuse)
    text = "".join(
        traceback.TracebackException(
            type(info.value), info.value, info.value.__traceback__, capture_locals=True
        ).format()
    )
    assert "_list_stream.py" in text
    assert PASSWORD not in text


def mock_secret_list(respx_mock: respx.MockRouter) -> None:
    secret = {**user(1), "password": PASSWORD}
    body = json.dumps({"status": "success", "smtp_list": [secret, user(2)]}).encode()
    respx_mock.post(LIST_URL).mock(return_value=httpx.Response(200, content=body))
