"""No raised error's frames hold the token or a password (error trackers record frame locals).

Each error is rendered the way Sentry or ``traceback`` with locals does it, for every
exception of its chain, ``__cause__`` and ``__context__`` alike (suppressed or not),
every frame down to cattrs' and json's.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import respx

from sarv_async import AsyncSarvClient, SarvError
from sarv_async._ledger_memory import MemoryLedger
from tests.helpers import BASE_URL, OWNER_ID, TOKEN, make_client, success

pytestmark = pytest.mark.anyio

PASSWORD = "pw-LEAKED-7f3a9c"
PATHS = {
    "create": "settings/addSmtp",
    "reset": "settings/resetSmtpPassword",
    "update": "settings/editSmtp",
    "list": "settings/listSmtp",
    "list-in-batches": "settings/listSmtp",
}
CALLS: dict[str, Callable[[AsyncSarvClient], Awaitable[Any]]] = {
    "create": lambda c: c.smtp_users.create(total_limit=1, hourly_limit=1),
    "reset": lambda c: c.smtp_users.reset_password("smtp1"),
    "update": lambda c: c.smtp_users.update("smtp1", hourly_limit=2),
    "list": lambda c: c.smtp_users.list(),
    "list-in-batches": lambda c: c.smtp_users._list_in_batches(_ignore),
}


async def _ignore(users: list[Any]) -> None:
    pass


def _bad_field(call: str) -> bytes:
    """A success-shaped answer holding a password and one field of the wrong type."""
    if call.startswith("list"):
        user: dict[str, object] = {"smtp_user_name": "u", "password": PASSWORD}
        user |= {"status": "Enable", "total_limit": "x", "hourly_limit": 1}
        return json.dumps({"status": "success", "smtp_list": [user]}).encode()
    if call == "update":
        return json.dumps({"status": "success", "message": [PASSWORD]}).encode()
    return json.dumps(
        {"status": "success", "smtp_user_name": [PASSWORD], "smtp_password": PASSWORD}
    ).encode()


ANSWERS: dict[str, Callable[[str], httpx.Response]] = {
    "bad-field": lambda call: httpx.Response(200, content=_bad_field(call)),
    "missing-field": lambda call: httpx.Response(
        200, content=f'{{"status":"success","smtp_password":"{PASSWORD}","smtp_list":7}}'.encode()
    ),
    "truncated": lambda call: httpx.Response(
        200, content=f'{{"status":"success","smtp_password":"{PASSWORD}","smtp_us'.encode()
    ),
    "token-echo": lambda call: httpx.Response(
        200,
        json={
            "status": "error",
            "name": f"AuthenticationError {TOKEN}",
            "code": TOKEN,
            "message": f"Token MissMatch: {TOKEN}",
            "detail": PASSWORD,
        },
    ),
    "general-error": lambda call: httpx.Response(
        500,
        json={"status": "error", "name": "GeneralError", "message": f"x {TOKEN}", "p": PASSWORD},
    ),
    "success-at-500": lambda call: httpx.Response(
        500, json={"status": "success", "smtp_user_name": "u", "smtp_password": PASSWORD}
    ),
    "dropped": lambda call: httpx.Response(200, stream=_Dropping()),
    "throttled-for-an-hour": lambda call: httpx.Response(
        429, headers={"Retry-After": "3600"}, json={"status": "error", "message": TOKEN}
    ),
}


class _Dropping(httpx.AsyncByteStream):
    async def __aiter__(self) -> Any:
        yield f'{{"status":"success","smtp_password":"{PASSWORD}",'.encode()
        raise httpx.ReadError("connection reset")


def chain(error: BaseException) -> list[BaseException]:
    """The error and everything it is chained to, suppressed contexts included."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [error]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        if isinstance(current, BaseExceptionGroup):
            todo += list(current.exceptions)
    return seen


def rendered(error: BaseException) -> str:
    """Every exception of the chain with its frames' locals, as error trackers see them."""
    parts = []
    for exc in chain(error):
        te = traceback.TracebackException(
            type(exc), exc, exc.__traceback__, capture_locals=True, compact=False
        )
        parts.append("".join(te.format()))
        tb = exc.__traceback__
        while tb is not None:  # beyond repr: raw str and bytes values too
            for value in tb.tb_frame.f_locals.values():
                if isinstance(value, (str, bytes, bytearray)):
                    parts.append(repr(bytes(value) if not isinstance(value, str) else value))
            tb = tb.tb_next
    return "\n".join(parts)


def assert_clean(error: BaseException) -> None:
    text = rendered(error)
    assert "capture_locals" not in text  # sanity: the rendering ran
    assert TOKEN not in text
    assert PASSWORD not in text


# An edit answer has no required field, so a missing one is no error for it.
CASES = [(c, a) for c in CALLS for a in ANSWERS if (c, a) != ("update", "missing-field")]


@pytest.mark.parametrize(("call", "answer"), CASES)
async def test_no_secret_in_the_frames_of_any_calls_error(
    call: str, answer: str, respx_mock: respx.MockRouter
) -> None:
    """Bad fields, truncated bodies, echoed tokens, 5xx, drops: no frame keeps a secret."""
    respx_mock.post(f"{BASE_URL}{PATHS[call]}").mock(side_effect=lambda r: ANSWERS[answer](call))
    async with make_client(max_retries=1) as client:
        with pytest.raises(SarvError) as info:
            await CALLS[call](client)
    frames = rendered(info.value)
    assert "_pipeline.py" in frames  # the SDK's frames are there, and were searched
    assert_clean(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {"base_url": "ftp://api.example.com/"},
        {"base_url": "http://127.0.0.1:99999/"},
        {"timeout": -1},
        {"max_retries": -1},
        {"rate_limit": "lots"},
        {"max_concurrency": 0},
    ],
)
async def test_no_token_in_the_frames_of_a_construction_error(options: dict[str, Any]) -> None:
    """A client refused at construction does not keep the token in its frames."""
    options.setdefault("base_url", BASE_URL)
    with pytest.raises(SarvError) as info:
        AsyncSarvClient(OWNER_ID, TOKEN, **options)
    assert "__init__" in rendered(info.value)
    assert_clean(info.value)


async def test_no_token_in_the_frames_of_a_bad_token_type() -> None:
    """A token of the wrong type is refused without its value in a frame."""
    with pytest.raises(SarvError) as info:
        AsyncSarvClient(OWNER_ID, TOKEN.encode(), base_url=BASE_URL)  # type: ignore[arg-type]
    assert_clean(info.value)  # TOKEN is in the repr of its bytes too


def _list_answer(**user: object) -> httpx.Response:
    entry: dict[str, object] = {"smtp_user_name": "u", "password": PASSWORD, "status": "Enable"}
    entry |= {"total_limit": 1, "hourly_limit": 1, **user}
    return httpx.Response(200, content=json.dumps({"status": "success", "smtp_list": [entry]}))


#: List answers whose bad value is a secret: a decoder's own error message may quote it.
LIST_ANSWERS: dict[str, Callable[[], httpx.Response]] = {
    "secret-as-status": lambda: _list_answer(status=PASSWORD),
    "secret-as-limit": lambda: _list_answer(total_limit=PASSWORD),
    "secret-as-key": lambda: _list_answer(**{PASSWORD: 1, "hourly_limit": None}),
    "bad-field": lambda: httpx.Response(200, content=_bad_field("list")),
    "truncated": lambda: ANSWERS["truncated"]("list"),
}


@pytest.mark.parametrize("answer", LIST_ANSWERS)
async def test_no_secret_in_the_frames_of_a_list_error_either_way(
    answer: str, list_decoding: str, respx_mock: respx.MockRouter
) -> None:
    """With sarv-async[fast] or without, a bad list answer's error keeps no secret."""
    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(
        side_effect=lambda r: LIST_ANSWERS[answer]()
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(SarvError) as info:
            await client.smtp_users.list()
    assert "_pipeline.py" in rendered(info.value)
    assert_clean(info.value)


class _BrokenClaims(MemoryLedger):
    """A ledger that fails unexpectedly when a created user is claimed."""

    async def claim(self, account: str, key: str, user_name: str, *, known: bool = False) -> Any:
        raise RuntimeError("the ledger broke")


async def test_no_password_in_the_frames_of_a_ledger_failing_after_a_create(
    respx_mock: respx.MockRouter,
) -> None:
    """A create answered, then the ledger raising: the created password is in no frame."""
    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(return_value=success(smtp_list=[]))
    respx_mock.post(f"{BASE_URL}settings/addSmtp").mock(
        return_value=success(smtp_user_name="smtp1", smtp_password=PASSWORD)
    )
    async with make_client(ledger=_BrokenClaims()) as client:
        with pytest.raises(RuntimeError) as info:
            await client.smtp_users.create(total_limit=1, hourly_limit=1, idempotency_key="k")
    assert "_engine.py" in rendered(info.value)
    assert_clean(info.value)
