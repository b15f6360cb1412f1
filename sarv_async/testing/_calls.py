"""The four API calls: check the parameters as the PHP backend would, apply, answer.

Limits are accepted as JSON integers or strings of ASCII digits (PHP takes both);
booleans, floats, zero and negatives are refused. A key whose value is ``null``
counts as not given (PHP's ``isset``). ``status`` must be exactly ``"Enable"`` or
``"Disable"``. Unknown keys are ignored. An edit is checked whole before any of
it is applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from ._state import EmulatorState, SmtpStatus

__all__ = [
    "CALLS",
    "CallError",
    "Handler",
    "add_smtp",
    "call_name",
    "edit_smtp",
    "list_smtp",
    "reset_smtp_password",
]

_DIGITS = re.compile(r"[0-9]{1,19}")
_CALL_PATH = re.compile(r"/?(?:v1\.0/)?(?:settings/)?([A-Za-z]+)/?")
_MAX_LIMIT = 2**63 - 1  # PHP_INT_MAX
_STATUSES = ("Enable", "Disable")


class CallError(Exception):
    """An error answer of the API: its kind (``"ValidationError"``, ...) and message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def _invalid(message: str) -> CallError:
    return CallError("ValidationError", message)


def _limit(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    if number is None or not 0 < number <= _MAX_LIMIT:
        raise _invalid(f"{key} must be a positive integer")
    return number


def _required_limit(body: Mapping[str, Any], key: str) -> int:
    number = _limit(body, key)
    if number is None:
        raise _invalid(f"{key} is required")
    return number


def _user_name(body: Mapping[str, Any]) -> str:
    value = body.get("smtp_user_name")
    if value is None or value == "":
        raise _invalid("smtp_user_name is required")
    if not isinstance(value, str):
        raise _invalid("smtp_user_name must be a string")
    return value


def _status(body: Mapping[str, Any]) -> SmtpStatus | None:
    value = body.get("status")
    if value is None:
        return None
    if value not in _STATUSES:
        raise _invalid("status must be either 'Enable' or 'Disable'")
    return cast("SmtpStatus", value)


def _unknown_user() -> CallError:
    return _invalid("smtp_user_name does not match any SMTP user of this account")


def add_smtp(state: EmulatorState, owner_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``settings/addSmtp``: create an SMTP user."""
    total = _required_limit(body, "total_limit")
    hourly = _required_limit(body, "hourly_limit")
    user = state.add_user(owner_id, total, hourly)
    return {
        "status": "success",
        "message": "SMTP User Created",
        "smtp_user_name": user.name,
        "smtp_password": user.password,
    }


def edit_smtp(state: EmulatorState, owner_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``settings/editSmtp``: change a user's limits or status."""
    name = _user_name(body)
    total = _limit(body, "total_limit")
    hourly = _limit(body, "hourly_limit")
    status = _status(body)
    found = state.edit_user(owner_id, name, total_limit=total, hourly_limit=hourly, status=status)
    if not found:
        raise _unknown_user()
    return {"status": "success", "message": "SMTP User Updated"}


def reset_smtp_password(
    state: EmulatorState, owner_id: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """``settings/resetSmtpPassword``: give a user a new password."""
    name = _user_name(body)
    password = state.reset_password(owner_id, name)
    if password is None:
        raise _unknown_user()
    return {
        "status": "success",
        "message": "password reseted",
        "smtp_user_name": name,
        "smtp_password": password,
    }


def list_smtp(state: EmulatorState, owner_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``settings/listSmtp``: every user of the account, passwords included."""
    return {"status": "success", "smtp_list": state.list_users(owner_id)}


Handler = Callable[[EmulatorState, str, Mapping[str, Any]], dict[str, Any]]

#: The calls by name, as they appear after ``settings/`` in the path.
CALLS: dict[str, Handler] = {
    "addSmtp": add_smtp,
    "editSmtp": edit_smtp,
    "resetSmtpPassword": reset_smtp_password,
    "listSmtp": list_smtp,
}


def call_name(path: str) -> str:
    """The call a path names: ``"addSmtp"`` from ``"addSmtp"``, ``"settings/addSmtp"``, ...

    Raise `ValueError` for anything that is not one of the four calls.
    """
    match = _CALL_PATH.fullmatch(path)
    name = match.group(1) if match else ""
    if name not in CALLS:
        raise ValueError(f"unknown API call {path!r}; expected one of {', '.join(CALLS)}")
    return name
