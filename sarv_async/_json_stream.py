"""Read a JSON object in pieces, handing over the items of its one big array as they end.

`ItemStream` takes an answer's bytes chunk by chunk. The items of the array under one
top-level key come back as soon as each is whole, so an answer of 100,000 users is never
in memory at once: only the text of the item being read is. Every other top-level value
is decoded whole and kept in `ItemStream.fields` (they are small: status, message).

It reads what `json.loads` reads, with three differences, all on answers no server
should send: it needs UTF-8 (a BOM or another encoding is `NotStreamable` before any
item, and the caller reads the answer whole), it refuses the array's key twice
(``json.loads`` keeps the last), and it refuses a value (an item, a field) that is not
whole after `MAX_HELD` characters, as it would hold all of it: an endless one would
take the memory. Anything else invalid or cut short raises `ValueError`.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

__all__ = ["MAX_HELD", "ItemStream", "NotStreamable", "ValueTooLong"]

#: The most text held for one value not yet whole: a user is a few hundred characters.
MAX_HELD = 1 << 20

_DECODE = json.JSONDecoder().raw_decode
_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER_PART = re.compile(r"[0-9eE+\-.]*")

# States: what the next token must be.
_START, _KEY, _NEXT_KEY, _COLON, _VALUE, _AFTER_VALUE, _FIRST_ITEM, _ITEM, _AFTER_ITEM, _END = (
    range(10)
)


class NotStreamable(ValueError):
    """The answer is not a UTF-8 JSON object (as far as read): read it whole instead."""


class ValueTooLong(ValueError):
    """A value is not whole after `MAX_HELD` characters."""


class ItemStream:
    """Items of the array at ``key`` of a JSON object fed as bytes; the other fields kept."""

    def __init__(self, key: str) -> None:
        self._key = key
        self._text = ""
        self._pos = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")("surrogatepass")  # as json.loads
        self._state = _START
        self._field = ""
        #: Decode the value at the position again only once this much text is there.
        self._retry_len = 0
        #: Whether the array's items were handed over (else its value is in ``fields``).
        self.streamed = False
        #: The object's other top-level fields, complete once `close` returned.
        self.fields: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> list[Any]:
        """Take the next bytes; return the items they completed."""
        self._text = self._text[self._pos :] + self._decode_utf8(chunk, final=False)
        self._pos = 0
        items = self._advance(final=False)
        if len(self._text) - self._pos > MAX_HELD:
            self._retry_len = 0  # the value may be whole by now: try it before refusing it
            items += self._advance(final=False)
            if len(self._text) - self._pos > MAX_HELD:
                raise ValueTooLong(f"a value not whole after {MAX_HELD:,} characters")
        return items

    def close(self) -> list[Any]:
        """The body ended: return the last items; `ValueError` if it is not a whole object."""
        self._text = self._text[self._pos :] + self._decode_utf8(b"", final=True)
        self._pos = 0
        items = self._advance(final=True)
        if self._state != _END:
            raise ValueError("the JSON text ends before its object does")
        if self._pos != len(self._text):
            raise ValueError("extra data after the JSON object")
        return items

    def _advance(self, *, final: bool) -> list[Any]:
        items: list[Any] = []
        text = self._text
        while True:
            pos = self._pos = _SPACE.match(text, self._pos).end()  # type: ignore[union-attr]
            if pos == len(text):
                return items
            char = text[pos]
            state = self._state
            if state == _START:
                if char != "{":
                    raise NotStreamable("not a JSON object")
                self._pos, self._state = pos + 1, _KEY
            elif state in (_KEY, _NEXT_KEY):
                if char == "}" and state == _KEY:
                    self._pos, self._state = pos + 1, _END
                    continue
                if char != '"':
                    self._fail("a field name")
                decoded = self._decode(final)
                if decoded is None:
                    return items
                self._field, self._state = decoded[0], _COLON
            elif state == _COLON:
                if char != ":":
                    self._fail("':'")
                self._pos, self._state = pos + 1, _VALUE
            elif state == _VALUE:
                if self._field == self._key and char == "[":
                    if self.streamed:
                        raise ValueError(
                            f"invalid JSON here: the field {self._key!r} appears twice"
                        )
                    self.streamed = True
                    self.fields.pop(self._key, None)
                    self._pos, self._state = pos + 1, _FIRST_ITEM
                    continue
                decoded = self._decode(final)
                if decoded is None:
                    return items
                if self._field == self._key and self.streamed:
                    raise ValueError(f"JSON with the field {self._key!r} twice")
                self.fields[self._field] = decoded[0]
                self._state = _AFTER_VALUE
            elif state == _AFTER_VALUE:
                if char == ",":
                    self._pos, self._state = pos + 1, _NEXT_KEY
                elif char == "}":
                    self._pos, self._state = pos + 1, _END
                else:
                    self._fail("',' or '}'")
            elif state in (_FIRST_ITEM, _ITEM):
                if char == "]" and state == _FIRST_ITEM:
                    self._pos, self._state = pos + 1, _AFTER_VALUE
                    continue
                decoded = self._decode(final)
                if decoded is None:
                    return items
                items.append(decoded[0])
                self._state = _AFTER_ITEM
            elif state == _AFTER_ITEM:
                if char == ",":
                    self._pos, self._state = pos + 1, _ITEM
                elif char == "]":
                    self._pos, self._state = pos + 1, _AFTER_VALUE
                else:
                    self._fail("',' or ']'")
            else:  # _END: only space may follow, and close() says so
                if final:
                    return items
                raise ValueError("extra data after the JSON object")

    def _decode(self, final: bool) -> tuple[Any] | None:
        """The value at the position (in a 1-tuple), moving past it; None if not all here.

        A value that ends where the text ends may go on in the next chunk, so it counts
        as whole only at the end; so does a number followed only by what may go on it
        (``1.5e`` reads as 1.5 but may be ``1.5e3``). After a failed try the text must double
        before the next, so a value spread over many chunks is decoded a bounded number
        of times, not once per chunk.
        """
        text, pos = self._text, self._pos
        if not final and len(text) - pos < self._retry_len:
            return None
        try:
            value, end = _DECODE(text, pos)
        except json.JSONDecodeError as exc:
            if final:
                raise ValueError(f"invalid JSON: {exc.msg}") from None
            end = len(text)
        except RecursionError:  # as json.loads: nested too deeply to read
            raise ValueError("invalid JSON: nested too deeply") from None
        if not final and (end >= len(text) or _cut_number(value, text, end)):
            self._retry_len = 2 * (len(text) - pos)
            return None
        self._retry_len = 0
        self._pos = end
        return (value,)

    def _decode_utf8(self, data: bytes, *, final: bool) -> str:
        try:
            return self._utf8.decode(data, final)
        except UnicodeDecodeError:
            self._fail("UTF-8")
            raise  # pragma: no cover - _fail raised

    def _fail(self, wanted: str) -> None:
        """Raise: `NotStreamable` if no item was handed over yet, else `ValueError`."""
        message = f"invalid JSON: expected {wanted}"
        if not self.streamed and self._state != _END:
            raise NotStreamable(message)
        raise ValueError(message)


def _cut_number(value: Any, text: str, end: int) -> bool:
    """Whether ``value``, read up to ``end``, is a number the text may not have finished."""
    if type(value) is not int and type(value) is not float:
        return False
    return _NUMBER_PART.match(text, end).end() == len(text)  # type: ignore[union-attr]
