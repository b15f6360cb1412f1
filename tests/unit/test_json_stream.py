"""`ItemStream` reads what `json.loads` reads, however the bytes are cut into chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarv_async import _json_stream
from sarv_async._json_stream import ItemStream, NotStreamable

KEY = "smtp_list"

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
users = st.fixed_dictionaries(
    {
        "smtp_user_name": st.text(),
        "password": st.text(),
        "status": st.sampled_from(["Enable", "Disable", "enable", 1]),
        "total_limit": st.integers() | st.text(max_size=4),
        "hourly_limit": st.integers(),
    }
)


def stream(body: bytes, cuts: list[int]) -> tuple[list[Any], ItemStream]:
    """Feed ``body`` cut at ``cuts``; the items and the stream once closed."""
    reader = ItemStream(KEY)
    items: list[Any] = []
    start = 0
    for cut in [*sorted({min(max(cut, 0), len(body)) for cut in cuts}), len(body)]:
        items += reader.feed(body[start:cut])
        start = cut
    items += reader.close()
    return items, reader


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[dict[str, Any], bytes, list[int]]:
    fields = draw(st.dictionaries(st.text().filter(lambda k: k != KEY), values, max_size=4))
    fields[KEY] = draw(st.lists(users | values, max_size=20))
    order = draw(st.permutations(list(fields)))
    document = {key: fields[key] for key in order}
    text = json.dumps(
        document,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 0, 2])),
        separators=draw(st.sampled_from([None, (",", ":"), (" , ", " : ")])),
    )
    body = text.encode()
    cuts = draw(st.lists(st.integers(0, len(body)), max_size=30))
    return document, body, cuts


@pytest.mark.slow
@given(envelopes())
@settings(max_examples=300)
def test_items_and_fields_are_what_json_loads_reads(
    case: tuple[dict[str, Any], bytes, list[int]],
) -> None:
    document, body, cuts = case
    items, reader = stream(body, cuts)
    assert items == document[KEY]
    assert reader.streamed
    assert reader.fields == {key: value for key, value in document.items() if key != KEY}


@pytest.mark.slow
@given(envelopes(), st.data())
def test_a_body_cut_short_is_an_error(
    case: tuple[dict[str, Any], bytes, list[int]], data: st.DataObject
) -> None:
    _, body, cuts = case
    end = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(ValueError, match="JSON"):
        stream(body[:end], cuts)


@pytest.mark.slow
@given(st.binary(max_size=60) | st.text(max_size=60).map(str.encode), st.data())
def test_any_bytes_read_alike_or_refused(body: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    try:
        expected = json.loads(body)
    except ValueError:
        expected = None
    try:
        items, reader = stream(body, cuts)
    except NotStreamable:
        return  # read whole instead: json.loads decides
    except ValueError:
        assert not isinstance(expected, dict) or KEY in expected
        return
    assert isinstance(expected, dict)
    read = dict(reader.fields)
    if reader.streamed:
        read[KEY] = items
    assert read == expected


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b'{"status":"success","smtp_list":null}', {"status": "success", KEY: None}),
        (b'{"smtp_list":{},"message":"x"}', {KEY: {}, "message": "x"}),
        (b'{"smtp_list":7}', {KEY: 7}),
        (b" {}\n", {}),
    ],
)
def test_a_key_that_holds_no_array_is_a_field(body: bytes, fields: dict[str, Any]) -> None:
    items, reader = stream(body, [3, 9])
    assert items == []
    assert not reader.streamed
    assert reader.fields == fields


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1} x',
        b'{"a":1,}',
        b'{"smtp_list":[1,]}',
        b'{"smtp_list":[1 2]}',
        b'{"smtp_list":[1],"smtp_list":[2]}',
        b'{"smtp_list":[1],"smtp_list":null}',
        b'{"smtp_list":[{"a":"\xff"}]}',
        b'{"smtp_list":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}",  # RecursionError in json
    ],
    ids=lambda body: repr(body[:40]),
)
def test_invalid_json_is_an_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="JSON"):
        stream(body, [5, 12])


@pytest.mark.parametrize("body", [b'\xef\xbb\xbf{"a":1}', '{"a":1}'.encode("utf-16"), b"[1]"])
def test_what_is_not_a_utf8_object_is_read_whole(body: bytes) -> None:
    with pytest.raises(NotStreamable):
        stream(body, [1])


def test_a_multibyte_character_cut_in_two_is_read_whole() -> None:
    body = json.dumps({KEY: [{"n": "é😀"}]}, ensure_ascii=False).encode()
    for cut in range(len(body)):
        assert stream(body, [cut])[0] == [{"n": "é😀"}]


def test_a_value_in_many_chunks_is_decoded_a_few_times_not_once_per_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = 0
    decode = _json_stream._DECODE

    def counting(text: str, pos: int) -> tuple[Any, int]:
        nonlocal runs
        runs += 1
        return decode(text, pos)

    monkeypatch.setattr(_json_stream, "_DECODE", counting)
    reader = ItemStream(KEY)
    body = json.dumps({"message": "x" * 1_000_000, KEY: []}).encode()
    for start in range(0, len(body), 1000):
        reader.feed(body[start : start + 1000])
    reader.close()
    assert runs < 50  # 1,000 chunks
    assert reader.fields["message"] == "x" * 1_000_000


def test_a_value_whole_within_the_held_bound_is_read() -> None:
    """A value of almost MAX_HELD characters is read, however its chunks fell."""
    name = "x" * (_json_stream.MAX_HELD - 100)
    body = json.dumps({KEY: [{"n": name}], "message": "ok"}).encode()
    items, reader = stream(body, list(range(0, len(body), 4096)))
    assert items == [{"n": name}]
    assert reader.fields == {"message": "ok"}


def test_a_value_that_never_ends_is_refused_once_past_the_held_bound() -> None:
    """An endless item is refused after MAX_HELD characters held, not read until memory ends."""
    reader = ItemStream(KEY)
    reader.feed(b'{"smtp_list":[{"n":"')
    fed = 0
    refused: ValueError | None = None
    while refused is None and fed < 4 * _json_stream.MAX_HELD:
        fed += 65536
        try:
            reader.feed(b"x" * 65536)
        except ValueError as exc:
            refused = exc
    assert str(refused) == "a value not whole after 1,048,576 characters"
    assert _json_stream.MAX_HELD <= fed < _json_stream.MAX_HELD + 65536
