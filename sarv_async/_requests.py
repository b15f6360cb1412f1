"""One attrs class per API call: its arguments, its path, its answer type, its safety.

Arguments are checked when a request is built, so a bad one raises
`ValidationError` naming the field before anything is sent.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import attrs

from ._exceptions import ValidationError
from ._models import SmtpCredentials, SmtpUserList, SmtpUserStatus, UpdateSmtpUserResponse

__all__ = [
    "MAX_LIMIT",
    "CreateSmtpUserRequest",
    "ListSmtpUsersRequest",
    "ResetSmtpPasswordRequest",
    "SarvRequest",
    "UpdateSmtpUserRequest",
]

ResponseT = TypeVar("ResponseT")

#: The largest limit the API accepts: its backend's integer (PHP_INT_MAX, 2**63 - 1).
MAX_LIMIT = 2**63 - 1


class SarvRequest(Generic[ResponseT]):
    """The base of request classes, for `AsyncSarvClient.send`.

    Subclasses say where they go (``path``, relative to the base URL), what they
    answer (``response_type``) and whether sending them twice is harmless
    (``safe_to_repeat``): only safe requests are retried after a failure that
    may have reached the server.
    """

    __slots__ = ()

    path: ClassVar[str]
    response_type: ClassVar[type[Any]]
    safe_to_repeat: ClassVar[bool]


def _positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.default is None:
        return
    if type(value) is not int or value <= 0:
        raise ValidationError(
            f"{attribute.name} must be a positive integer, got {_describe(value)}",
            field=attribute.name,
        )
    if value > MAX_LIMIT:
        shown = str(value) if value.bit_length() <= 128 else "a larger number"  # str() has a cap
        raise ValidationError(
            f"{attribute.name} must be at most {MAX_LIMIT} (the API's largest integer), "
            f"got {shown}",
            field=attribute.name,
        )


def _user_name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            f"{attribute.name} must be a non-empty string, got {_describe(value)}",
            field=attribute.name,
        )


def _describe(value: object) -> str:
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    if isinstance(value, str):
        return "an empty string" if not value.strip() else repr(value)
    return f"a {type(value).__name__}"


def _to_status(value: SmtpUserStatus | str | None) -> SmtpUserStatus | None:
    if value is None or isinstance(value, SmtpUserStatus):
        return value
    if isinstance(value, str):
        for status in SmtpUserStatus:
            if value.strip().lower() == status.value.lower():
                return status
    raise ValidationError(
        f"status must be 'Enable' or 'Disable', got {_describe(value)}", field="status"
    )


@attrs.frozen
class CreateSmtpUserRequest(SarvRequest[SmtpCredentials]):
    """Add an SMTP user with the given quotas (``settings/addSmtp``).

    Never repeated once it may have reached the server: the API has no
    idempotency key, so a repeat would create a second user.
    """

    path: ClassVar[str] = "settings/addSmtp"
    response_type: ClassVar[type[SmtpCredentials]] = SmtpCredentials
    safe_to_repeat: ClassVar[bool] = False

    total_limit: int = attrs.field(validator=_positive_int)
    hourly_limit: int = attrs.field(validator=_positive_int)


@attrs.frozen
class UpdateSmtpUserRequest(SarvRequest[UpdateSmtpUserResponse]):
    """Change an SMTP user's quotas or status (``settings/editSmtp``); unset fields are kept."""

    path: ClassVar[str] = "settings/editSmtp"
    response_type: ClassVar[type[UpdateSmtpUserResponse]] = UpdateSmtpUserResponse
    safe_to_repeat: ClassVar[bool] = True

    smtp_user_name: str = attrs.field(validator=_user_name)
    total_limit: int | None = attrs.field(default=None, validator=_positive_int, kw_only=True)
    hourly_limit: int | None = attrs.field(default=None, validator=_positive_int, kw_only=True)
    status: SmtpUserStatus | None = attrs.field(default=None, converter=_to_status, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.total_limit is None and self.hourly_limit is None and self.status is None:
            raise ValidationError("nothing to update: give total_limit, hourly_limit or status")


@attrs.frozen
class ResetSmtpPasswordRequest(SarvRequest[SmtpCredentials]):
    """Give an SMTP user a new password (``settings/resetSmtpPassword``)."""

    path: ClassVar[str] = "settings/resetSmtpPassword"
    response_type: ClassVar[type[SmtpCredentials]] = SmtpCredentials
    # A repeat only sets yet another new password; the last answer holds the one in force.
    safe_to_repeat: ClassVar[bool] = True

    smtp_user_name: str = attrs.field(validator=_user_name)


@attrs.frozen
class ListSmtpUsersRequest(SarvRequest[SmtpUserList]):
    """List every SMTP user of the account, with passwords (``settings/listSmtp``)."""

    path: ClassVar[str] = "settings/listSmtp"
    response_type: ClassVar[type[SmtpUserList]] = SmtpUserList
    safe_to_repeat: ClassVar[bool] = True
