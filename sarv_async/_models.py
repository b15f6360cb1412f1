"""What the API answers: SMTP users, their status, and each call's response."""

from __future__ import annotations

import enum

import attrs

__all__ = [
    "SmtpCredentials",
    "SmtpUser",
    "SmtpUserList",
    "SmtpUserStatus",
    "UpdateSmtpUserResponse",
]


def _hidden(_: object) -> str:
    return "'***'"


class SmtpUserStatus(enum.StrEnum):
    """Whether an SMTP user may send mail."""

    ENABLE = "Enable"
    DISABLE = "Disable"


@attrs.frozen
class SmtpCredentials:
    """An SMTP user's name and password, as returned by create and reset-password.

    ``smtp_password`` is a plain attribute; only the ``repr`` hides it.
    """

    smtp_user_name: str
    smtp_password: str = attrs.field(repr=_hidden)
    message: str = ""


@attrs.frozen
class SmtpUser:
    """One SMTP user of the account, as the list call returns it."""

    smtp_user_name: str
    smtp_password: str = attrs.field(repr=_hidden)
    status: SmtpUserStatus
    total_limit: int
    hourly_limit: int


@attrs.frozen
class SmtpUserList:
    """The list call's answer: every SMTP user of the account."""

    smtp_list: list[SmtpUser] = attrs.field(factory=list)
    message: str = ""


@attrs.frozen
class UpdateSmtpUserResponse:
    """The edit call's answer: the server's message."""

    message: str = ""
