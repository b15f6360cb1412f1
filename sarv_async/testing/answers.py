"""The API's answers as `httpx.Response` objects, for respx (or any httpx mock).

```python
import respx
from sarv_async.testing import answers

with respx.mock:
    respx.post(answers.url("list", client.base_url)).mock(
        return_value=answers.list_answer([answers.user("smtp1", password="pw")])
    )
    users = await client.smtp_users.list()
```

Each builder gives the wire format the API (and the emulator) sends, so a mock answers
what the server would: a list answer's users under ``smtp_list``, error envelopes with
HTTP 200 (as the API sends them) unless ``status`` says otherwise, a 429 with
``Retry-After``. `url` joins a call's path to a base URL: `sarv_base_url` gives a Sarv
account's, `SENDCLEAN_BASE_URL` is the SendClean brand's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import httpx

from .._models import SmtpUser, SmtpUserStatus
from .._requests import (
    CreateSmtpUserRequest,
    ListSmtpUsersRequest,
    ResetSmtpPasswordRequest,
    UpdateSmtpUserRequest,
)

__all__ = [
    "SENDCLEAN_BASE_URL",
    "Call",
    "ErrorKind",
    "create_answer",
    "error_answer",
    "list_answer",
    "rate_limit_answer",
    "reset_password_answer",
    "sarv_base_url",
    "update_answer",
    "url",
    "user",
]

#: The SendClean brand's base URL (`AsyncSendCleanClient`'s default). A Sarv account's is
#: ``https://api.{app_domain}/v1.0/``.
SENDCLEAN_BASE_URL = "https://api.sendclean.net/v1.0/"

#: A call, by the name of its `smtp_users` method.
Call = Literal["create", "update", "reset_password", "list"]
#: The kinds of the API's error envelope.
ErrorKind = Literal["ValidationError", "AuthenticationError", "GeneralError"]

_PATHS: dict[str, str] = {
    "create": CreateSmtpUserRequest.path,
    "update": UpdateSmtpUserRequest.path,
    "reset_password": ResetSmtpPasswordRequest.path,
    "list": ListSmtpUsersRequest.path,
}


def sarv_base_url(app_domain: str) -> str:
    """A Sarv account's base URL, from its TES app domain: ``https://api.{app_domain}/v1.0/``."""
    return f"https://api.{app_domain}/v1.0/"


def url(call: Call, base_url: str | httpx.URL) -> str:
    """The URL ``call`` is POSTed to: e.g. ``url("list", client.base_url)``."""
    if call not in _PATHS:
        raise ValueError(f"call must be one of {sorted(_PATHS)}, got {call!r}")
    return str(httpx.URL(str(base_url)).join(_PATHS[call]))


def user(
    smtp_user_name: str,
    *,
    password: str = "password1",
    total_limit: int = 100,
    hourly_limit: int = 10,
    status: SmtpUserStatus | str = SmtpUserStatus.ENABLE,
) -> SmtpUser:
    """An `SmtpUser`, with defaults for what a test does not care about."""
    return SmtpUser(
        smtp_user_name=smtp_user_name,
        smtp_password=password,
        status=SmtpUserStatus(status),
        total_limit=total_limit,
        hourly_limit=hourly_limit,
    )


def _success(**fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"status": "success", **fields})


def list_answer(users: Iterable[SmtpUser], *, message: str | None = None) -> httpx.Response:
    """The list call's answer holding ``users`` (each password under ``password``)."""
    fields: dict[str, Any] = {} if message is None else {"message": message}
    return _success(
        smtp_list=[
            {
                "smtp_user_name": one.smtp_user_name,
                "password": one.smtp_password,
                "status": one.status.value,
                "total_limit": one.total_limit,
                "hourly_limit": one.hourly_limit,
            }
            for one in users
        ],
        **fields,
    )


def create_answer(
    smtp_user_name: str = "smtp1",
    smtp_password: str = "password1",
    *,
    message: str = "SMTP User Created",
) -> httpx.Response:
    """The create call's answer: the new user's name and password."""
    return _success(message=message, smtp_user_name=smtp_user_name, smtp_password=smtp_password)


def reset_password_answer(
    smtp_user_name: str, smtp_password: str = "password2", *, message: str = "Password Reset"
) -> httpx.Response:
    """The reset-password call's answer: the user's name and new password."""
    return _success(message=message, smtp_user_name=smtp_user_name, smtp_password=smtp_password)


def update_answer(message: str = "SMTP User Updated") -> httpx.Response:
    """The update (edit) call's answer: a message."""
    return _success(message=message)


def error_answer(
    kind: ErrorKind,
    message: str | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """The API's error envelope of ``kind``, with HTTP 200 (as the API sends it) by default.

    ``error_answer("AuthenticationError")`` is a wrong token ("Token MissMatch");
    ``error_answer("ValidationError", "total_limit is required")`` a refused argument;
    ``error_answer("GeneralError", status=500)`` a server failure.
    """
    if kind not in ("ValidationError", "AuthenticationError", "GeneralError"):
        raise ValueError(f"kind must be an error kind of the API, got {kind!r}")
    if message is None:
        message = {
            "ValidationError": "invalid parameters",
            "AuthenticationError": "Token MissMatch",
            "GeneralError": "something went wrong",
        }[kind]
    return httpx.Response(
        status,
        json={"status": "error", "code": -1, "name": kind, "message": message},
        headers=dict(headers or {}),
    )


def rate_limit_answer(retry_after: int = 1) -> httpx.Response:
    """HTTP 429 with ``Retry-After`` (whole seconds), as the API answers over its rate limit."""
    seconds = str(retry_after)
    return httpx.Response(
        429,
        json={
            "status": "error",
            "code": -1,
            "name": "RateLimitError",
            "message": f"rate limit exceeded; retry after {seconds} s",
        },
        headers={"Retry-After": seconds},
    )
