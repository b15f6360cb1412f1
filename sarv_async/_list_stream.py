"""Read the whole account without holding it: the list answer's users, a batch at a time.

`UserStream` is the `AnswerReader` of a list call: it reads the answer as it arrives
(`ItemStream`) and hands the users to a consumer in batches of one chunk's worth, so the
call's memory is one chunk and one batch, however many users the account has. Each user
is read as `list` reads it (the fast path, else the tolerant one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ._converters import structure_response
from ._exceptions import SarvError, UnexpectedResponseError
from ._json_stream import ItemStream, NotStreamable, ValueTooLong
from ._models import SmtpUser
from ._requests import ListSmtpUsersRequest

__all__ = ["OnAnswer", "OnUsers", "UserStream"]

#: What takes each batch of users (awaited before more of the answer is read).
OnUsers = Callable[[list[SmtpUser]], Awaitable[None]]
#: Told that an answer starts: the users handed over before came from a failed attempt.
OnAnswer = Callable[[], object]


class UserStream:
    """Hands the users of a list answer to ``on_users`` as they arrive."""

    __slots__ = ("_on_answer", "_on_users", "error", "fields", "streamed")

    def __init__(self, on_users: OnUsers, on_answer: OnAnswer | None = None) -> None:
        self._on_users = on_users
        self._on_answer = on_answer
        self.fields: dict[str, Any] | None = None
        self.streamed = False
        self.error: SarvError | None = None

    async def read(self, status: int, body: AsyncIterator[bytes]) -> bytes | None:
        """Read ``body``, a list answer's (see `AnswerReader.read`)."""
        self.fields, self.streamed, self.error = None, False, None
        if self._on_answer is not None:
            self._on_answer()
        return await self._read(ItemStream("smtp_list"), body, status)

    async def _read(
        self,
        items: ItemStream,
        chunks: AsyncIterator[bytes],
        status: int,
    ) -> bytes | None:
        head: list[bytes] | None = []  # kept until the first user: to read whole if need be
        last = False
        while not last:
            chunk = await anext(chunks, None)
            last = chunk is None
            if head is not None and chunk is not None:
                head.append(chunk)
            try:
                found = items.close() if chunk is None else items.feed(chunk)
            except NotStreamable:
                assert head is not None
                return b"".join(head) + b"".join([chunk async for chunk in chunks])
            except ValueError as exc:
                # Only this reason is told: it says why a list of users fails to read.
                reason = f" ({exc})" if isinstance(exc, ValueTooLong) else ""
                self.error = UnexpectedResponseError(
                    f"POST {ListSmtpUsersRequest.path} answered HTTP {status} with invalid "
                    f"JSON{reason}",
                    status_code=status,
                )
                return None
            if items.streamed:
                head = None
            if found:
                users = _users(found, status)
                if isinstance(users, UnexpectedResponseError):
                    self.error = users
                    return None
                error = await self._hand_over(users)
                if error is not None:
                    # Raised from here, without the answer's text and items in its frames.
                    del found, chunk, head, users
                    raise error
        self.fields, self.streamed = items.fields, items.streamed
        return None

    async def _hand_over(self, users: list[SmtpUser]) -> BaseException | None:
        """Give ``users`` to the consumer; what it raised, without its frames."""
        try:
            await self._on_users(users)
        except BaseException as exc:  # re-raised by the caller
            return exc.with_traceback(None)
        return None


def _users(items: list[Any], status: int) -> list[SmtpUser] | UnexpectedResponseError:
    """The users ``items`` stand for, or the error of the first that stands for none."""
    try:
        return [structure_response(item, SmtpUser, status_code=status) for item in items]
    except UnexpectedResponseError as exc:
        return exc.with_traceback(None)
