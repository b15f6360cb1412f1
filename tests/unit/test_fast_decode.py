"""``sarv-async[fast]``: msgspec decodes a list answer only when it reads it as without msgspec.

The reference is the path of an install without the extra: ``json.loads``, the envelope
check, and the tolerant cattrs path alone (no fast reader either). For any answer the
msgspec decoder gives up (None) or gives exactly that reference's users and message,
with exact types. Well-formed answers, in either password spelling, are its own.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sarv_async import SmtpUser, SmtpUserList, SmtpUserStatus, UnexpectedResponseError
from sarv_async._converters import _make_converter, structure_response
from sarv_async._fast_decode import ListDecoder, list_decoder
from tests.helpers import BASE_URL, make_client
from tests.unit.test_fast_read import user_entries, well_formed

TOLERANT = _make_converter(fast=False)


@pytest.fixture(scope="module")
def decode() -> ListDecoder:
    """The msgspec decoder (msgspec is in the tests group: its absence fails)."""
    decoder = list_decoder()
    assert decoder is not None
    return decoder


def reference(body: bytes) -> object:
    """What an install without msgspec makes of a 200 answer: the list, or a failure."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(data, dict) or data.get("status") != "success":
        return "no success envelope"
    try:
        return structure_response(data, SmtpUserList, status_code=200, converter=TOLERANT)
    except UnexpectedResponseError as exc:
        return str(exc)


def assert_exact(answer: SmtpUserList) -> None:
    """The decoder's objects are the SDK's classes with exact field types."""
    assert type(answer) is SmtpUserList
    assert type(answer.message) is str
    assert type(answer.smtp_list) is list
    for user in answer.smtp_list:
        assert type(user) is SmtpUser
        assert type(user.smtp_user_name) is str
        assert type(user.smtp_password) is str
        assert type(user.status) is SmtpUserStatus
        assert type(user.total_limit) is int
        assert type(user.hourly_limit) is int


def check(decode: ListDecoder, body: bytes) -> SmtpUserList | None:
    answer = decode(body)
    if answer is not None:
        assert_exact(answer)
        assert answer == reference(body)
    return answer


envelopes = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["success", "error", "Success", None, 1]),
        "message": st.one_of(st.none(), st.text(max_size=4), st.just(3)),
        "name": st.just("GeneralError"),
        "password": st.text(max_size=3),
    },
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.lists(user_entries(), max_size=5), st.none(), st.just({}), st.just("x")),
    envelopes,
    st.booleans(),
    st.booleans(),
)
def test_any_list_answer_decodes_as_without_msgspec_or_not_at_all(
    decode: ListDecoder, users: object, envelope: dict[str, Any], compact: bool, ascii_: bool
) -> None:
    """Any shape, any spelling, any JSON formatting: the reference's answer, or None."""
    data = {**envelope, "smtp_list": users}
    separators = (",", ":") if compact else (", ", ": ")
    check(decode, json.dumps(data, separators=separators, ensure_ascii=ascii_).encode())


@pytest.mark.parametrize("spelling", ["password", "smtp_password"])
@pytest.mark.parametrize("extra", [{}, {"id": 7, "note": None, "tags": [1, {"a": "b"}]}])
def test_well_formed_answers_are_the_decoders_in_both_spellings(
    decode: ListDecoder, spelling: str, extra: dict[str, Any]
) -> None:
    """The docs' sample (``password``) and table (``smtp_password``) spellings, extra keys."""
    users = []
    for i in range(50):
        user = {**well_formed(i), **extra}
        user[spelling] = user.pop("password")
        users.append(user)
    body = json.dumps({"status": "success", "message": "", "smtp_list": users}).encode()
    answer = check(decode, body)
    assert answer is not None
    assert [user.smtp_password for user in answer.smtp_list] == [f"{i:010x}" for i in range(50)]


def _user(**changes: object) -> str:
    return json.dumps({**well_formed(1), **changes})


#: Bodies a byte-level decoder could misread; each must decode as the reference or not at all.
SURPRISES = {
    "both spellings: the table's wins": (
        f'{{"status":"success","smtp_list":[{_user(smtp_password="t")}]}}'
    ),
    "table spelling null": f'{{"status":"success","smtp_list":[{_user(smtp_password=None)}]}}',
    "duplicate key: the last wins": '{"status":"success","smtp_list":[{"smtp_user_name":"a",'
    '"password":"p","status":"Enable","total_limit":1,"hourly_limit":2,"total_limit":9}]}',
    "duplicate status: error last": '{"status":"success","status":"error"}',
    "duplicate status: success last": '{"status":"error","status":"success"}',
    "escaped key": '{"status":"success","smtp_list":[{"smtp_user_name":"a","p\\u0061ssword":'
    '"p","status":"Enable","total_limit":1,"hourly_limit":2}]}',
    "lone surrogate": f'{{"status":"success","smtp_list":[{_user(smtp_user_name="x")}]}}'.replace(
        '"x"', '"\\ud800"'
    ),
    "NaN limit": f'{{"status":"success","smtp_list":[{_user()}]}}'.replace("1001", "NaN"),
    "float limit": f'{{"status":"success","smtp_list":[{_user()}]}}'.replace("1001", "1001.0"),
    "exponent limit": f'{{"status":"success","smtp_list":[{_user()}]}}'.replace("1001", "1e3"),
    "huge limit": f'{{"status":"success","smtp_list":[{_user()}]}}'.replace("1001", "9" * 30),
    "bool limit": f'{{"status":"success","smtp_list":[{_user(total_limit=True)}]}}',
    "status spelled 1": f'{{"status":"success","smtp_list":[{_user(status=1)}]}}',
    "trailing garbage": '{"status":"success","smtp_list":[]} x',
    "top-level array": '[{"status":"success"}]',
    "error envelope": '{"status":"error","name":"GeneralError","message":"no"}',
    "no status": '{"smtp_list":[]}',
    "no smtp_list": '{"status":"success","message":"none"}',
    "users under another key": f'{{"status":"success","data":[{_user()}]}}',
    "smtp_list an object": f'{{"status":"success","smtp_list":{{"1":{_user()}}}}}',
}


@pytest.mark.parametrize("body", SURPRISES.values(), ids=SURPRISES.keys())
def test_surprises_decode_as_without_msgspec_or_not_at_all(decode: ListDecoder, body: str) -> None:
    check(decode, body.encode())


@pytest.mark.parametrize(
    "raw", [b"\n", b"\t", b"\x01", b"\x7f", b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xc2\xa0"]
)
def test_raw_bytes_in_a_string_decode_as_without_msgspec_or_not_at_all(
    decode: ListDecoder, raw: bytes
) -> None:
    """Control characters, invalid UTF-8, an encoded surrogate: as the stdlib reads them."""
    body = f'{{"status":"success","smtp_list":[{_user(smtp_user_name="aXb")}]}}'.encode()
    check(decode, body.replace(b"X", raw))
    check(decode, b'{"status":"success",' + raw + b'"smtp_list":[]}')


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf" + b'{"status":"success","smtp_list":[]}',
        '{"status":"success","smtp_list":[]}'.encode("utf-16"),
        b'{"status":"success","smtp_list":[' * 3000,
    ],
    ids=["utf-8-bom", "utf-16", "deeply-nested"],
)
def test_bodies_msgspec_cannot_read_are_left_to_the_stdlib(
    decode: ListDecoder, body: bytes
) -> None:
    """A BOM, UTF-16 (both of which json.loads detects) or absurd nesting: not decoded."""
    assert decode(body) is None


@pytest.mark.anyio
async def test_a_well_formed_list_call_skips_json_loads(
    list_decoding: str, respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """list() takes the msgspec path when installed, the stdlib's when not, and reads alike."""
    answer = {"status": "success", "smtp_list": [well_formed(i) for i in range(3)]}
    respx_mock.post(f"{BASE_URL}settings/listSmtp").mock(
        return_value=httpx.Response(200, content=json.dumps(answer).encode())
    )
    expected = reference(json.dumps(answer).encode())
    loads = json.loads
    calls: list[object] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return loads(*args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    async with make_client() as client:
        users = await client.smtp_users.list()
    assert isinstance(expected, SmtpUserList)
    assert users == expected.smtp_list
    assert len(calls) == (0 if list_decoding == "msgspec" else 1)
