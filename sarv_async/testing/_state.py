"""The emulator's memory: accounts, their SMTP users, rate windows and counters.

Everything sits behind one `threading.Lock`: the server thread changes it while
tests read it from theirs. Each method takes the lock once, so every API call is
applied atomically. An account only ever sees and changes its own users.
"""

from __future__ import annotations

import bisect
import collections
import hmac
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs

from .._rate_spec import RateWindow
from ._rate_windows import RateWindows

__all__ = [
    "DEMO_OWNER_ID",
    "DEMO_TOKEN",
    "HOUR",
    "EmulatorState",
    "SmtpMessage",
    "SmtpRefusal",
    "SmtpStatus",
    "SmtpUserRecord",
    "new_password",
]

#: The account an emulator has when none is given (not a secret: it only opens the emulator).
DEMO_OWNER_ID = "demo"
"""The owner id of the emulator's default account."""
DEMO_TOKEN = "demo-token"  # noqa: S105 - a well-known demo credential, by design
"""The token of the emulator's default account (a well-known demo value, not a secret)."""

SmtpStatus = Literal["Enable", "Disable"]
#: Why the SMTP side refuses a login or a message.
SmtpRefusal = Literal["unknown", "disabled", "hourly_limit", "total_limit"]

#: The rolling window of a user's ``hourly_limit``, in seconds of the emulator's clock.
HOUR = 3600.0

_PASSWORD_ALPHABET = string.ascii_lowercase + string.digits
_PASSWORD_LENGTH = 10
_FIRST_USER_NUMBER = 10001


@attrs.define
class SmtpUserRecord:
    """One SMTP user as the server stores it."""

    name: str
    password: str = attrs.field(repr=False)
    total_limit: int
    hourly_limit: int
    status: SmtpStatus = "Enable"
    #: When each message this user sent arrived (the emulator's clock), oldest first.
    sent: list[float] = attrs.field(factory=list, repr=False)

    def listed(self) -> dict[str, Any]:
        """The user as a list entry shows it (the documents' sample calls it ``password``)."""
        return {
            "smtp_user_name": self.name,
            "password": self.password,
            "status": self.status,
            "total_limit": self.total_limit,
            "hourly_limit": self.hourly_limit,
        }


@attrs.frozen
class SmtpMessage:
    """A message the emulator's SMTP server accepted (never a password)."""

    #: The SMTP user that logged in and sent it.
    smtp_user_name: str
    #: The envelope sender (``MAIL FROM``).
    mail_from: str
    #: The envelope recipients (``RCPT TO``), in the order given.
    rcpt_to: list[str]
    #: The message as received after ``DATA``, headers and body.
    content: bytes = attrs.field(repr=lambda content: f"<{len(content)} bytes>")


def new_password() -> str:
    """A random password shaped like the API's: ten lowercase letters and digits."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(_PASSWORD_LENGTH))


class EmulatorState:
    """Accounts, users, rate windows and counters, changed only under `lock`."""

    def __init__(
        self,
        accounts: Mapping[str, str],
        rate_limit: Sequence[RateWindow] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = threading.Lock()
        self._tokens = dict(accounts)
        self._users: dict[str, dict[str, SmtpUserRecord]] = {owner: {} for owner in accounts}
        self._rate = RateWindows(rate_limit, clock=clock)
        # Names stay unique for the emulator's whole life, across accounts and resets.
        self._next_number = _FIRST_USER_NUMBER
        self._requests: collections.Counter[str] = collections.Counter()
        self._responses: collections.Counter[str] = collections.Counter()
        self._faults: collections.Counter[str] = collections.Counter()
        self._dropped = 0
        self._clock = clock
        self._messages: list[SmtpMessage] = []

    @property
    def rate_limit(self) -> tuple[RateWindow, ...]:
        """The windows every account is held to (empty: no limit)."""
        return self._rate.windows

    # Authentication and pacing.

    def authenticate(self, owner_id: object, token: object) -> str | None:
        """The account when ``owner_id`` and ``token`` match, else ``None``.

        ``owner_id`` is a string, or a JSON integer naming the account whose id is its
        digits (the official clients send ``12345`` as a number); ``token`` a string.
        """
        if isinstance(owner_id, int) and not isinstance(owner_id, bool):
            owner_id = str(owner_id)
        if not isinstance(owner_id, str) or not isinstance(token, str):
            return None
        expected = self._tokens.get(owner_id)
        if expected is None or not hmac.compare_digest(expected.encode(), token.encode()):
            return None
        return owner_id

    def admit(self, owner_id: str) -> float | None:
        """Count a request against the account's rate windows, or return the seconds to wait."""
        with self.lock:
            return self._rate.admit(owner_id)

    # The four calls.

    def add_user(self, owner_id: str, total_limit: int, hourly_limit: int) -> SmtpUserRecord:
        """Create an enabled user with a fresh name and password; return a copy of it."""
        with self.lock:
            name = f"smtp{self._next_number}"
            self._next_number += 1
            user = SmtpUserRecord(name, new_password(), total_limit, hourly_limit)
            self._users[owner_id][name] = user
            return attrs.evolve(user)

    def edit_user(
        self,
        owner_id: str,
        name: str,
        *,
        total_limit: int | None = None,
        hourly_limit: int | None = None,
        status: SmtpStatus | None = None,
    ) -> bool:
        """Change what is given of the account's user ``name``; ``False`` if it has none such."""
        with self.lock:
            user = self._users[owner_id].get(name)
            if user is None:
                return False
            if total_limit is not None:
                user.total_limit = total_limit
            if hourly_limit is not None:
                user.hourly_limit = hourly_limit
            if status is not None:
                user.status = status
            return True

    def reset_password(self, owner_id: str, name: str) -> str | None:
        """Give the account's user ``name`` a new password and return it; ``None`` if unknown."""
        with self.lock:
            user = self._users[owner_id].get(name)
            if user is None:
                return None
            user.password = new_password()
            return user.password

    def list_users(self, owner_id: str) -> list[dict[str, Any]]:
        """The account's users as list entries, oldest first."""
        with self.lock:
            return [user.listed() for user in self._users[owner_id].values()]

    # The SMTP side.

    def _smtp_user(self, name: str) -> SmtpUserRecord | None:
        for users in self._users.values():
            user = users.get(name)
            if user is not None:
                return user
        return None

    def smtp_login(self, name: str, password: str) -> SmtpRefusal | None:
        """Why ``name`` may not log in with ``password`` now, or ``None`` if it may."""
        with self.lock:
            user = self._smtp_user(name)
            if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
                return "unknown"
            if user.status != "Enable":
                return "disabled"
            return None

    def _refusal(self, user: SmtpUserRecord | None, now: float) -> SmtpRefusal | None:
        if user is None:
            return "unknown"
        if user.status != "Enable":
            return "disabled"
        if len(user.sent) >= user.total_limit:
            return "total_limit"
        within = len(user.sent) - bisect.bisect_right(user.sent, now - HOUR)
        if within >= user.hourly_limit:
            return "hourly_limit"
        return None

    def smtp_may_send(self, name: str) -> SmtpRefusal | None:
        """Why the user ``name`` may not send a message now, or ``None`` if it may."""
        with self.lock:
            return self._refusal(self._smtp_user(name), self._clock())

    def smtp_accept(self, message: SmtpMessage) -> SmtpRefusal | None:
        """Count and keep ``message`` against its user's limits, or say why it is refused."""
        with self.lock:
            now = self._clock()
            user = self._smtp_user(message.smtp_user_name)
            refusal = self._refusal(user, now)
            if refusal is not None:
                return refusal
            assert user is not None
            user.sent.append(now)
            self._messages.append(message)
            return None

    def messages(self) -> list[SmtpMessage]:
        """The messages accepted so far, in arrival order."""
        with self.lock:
            return list(self._messages)

    # Counters.

    def record_request(self, path: str) -> None:
        """Count a request to ``path``."""
        with self.lock:
            self._requests[path] += 1

    def record_response(self, status: int) -> None:
        """Count an answer with HTTP ``status``."""
        with self.lock:
            self._responses[str(status)] += 1

    def record_fault(self, kind: str) -> None:
        """Count a fault met by a request."""
        with self.lock:
            self._faults[kind] += 1

    def record_drop(self) -> None:
        """Count a connection dropped instead of answered."""
        with self.lock:
            self._dropped += 1

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters, JSON-ready."""
        with self.lock:
            return {
                "requests": dict(self._requests),
                "responses": dict(self._responses),
                "faults": sum(self._faults.values()),
                "faults_by_kind": dict(self._faults),
                "dropped": self._dropped,
                "users": sum(len(users) for users in self._users.values()),
                "users_by_account": {owner: len(users) for owner, users in self._users.items()},
                "messages": len(self._messages),
            }

    def reset(self) -> None:
        """Forget every user, message, counter and rate window (user names are never reused)."""
        with self.lock:
            for users in self._users.values():
                users.clear()
            self._rate.clear()
            self._requests.clear()
            self._responses.clear()
            self._faults.clear()
            self._dropped = 0
            self._messages.clear()
