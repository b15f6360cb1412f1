"""The emulator's memory: accounts, their SMTP users, rate windows and counters.

Everything sits behind one `threading.Lock`: the server thread changes it while
tests read it from theirs. Each method takes the lock once, so every API call is
applied atomically. An account only ever sees and changes its own users.
"""

from __future__ import annotations

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
    "EmulatorState",
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

    def listed(self) -> dict[str, Any]:
        """The user as a list entry shows it (the documents' sample calls it ``password``)."""
        return {
            "smtp_user_name": self.name,
            "password": self.password,
            "status": self.status,
            "total_limit": self.total_limit,
            "hourly_limit": self.hourly_limit,
        }


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

    @property
    def rate_limit(self) -> tuple[RateWindow, ...]:
        """The windows every account is held to (empty: no limit)."""
        return self._rate.windows

    # Authentication and pacing.

    def authenticate(self, owner_id: object, token: object) -> str | None:
        """The account when ``owner_id`` and ``token`` are strings that match, else ``None``."""
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
            }

    def reset(self) -> None:
        """Forget every user, counter and rate window (user names are never reused)."""
        with self.lock:
            for users in self._users.values():
                users.clear()
            self._rate.clear()
            self._requests.clear()
            self._responses.clear()
            self._faults.clear()
            self._dropped = 0
