"""The one cattrs converter: request bodies out, typed answers in.

Requests are unstructured with unset optional fields left out (never sent as
null). Answers are read tolerantly, as the API's own documents disagree: list
entries carry ``password`` or ``smtp_password``; numbers come as JSON numbers or
numeric strings; ``status`` as ``"Enable"``/``"Disable"`` (any case) or ``1``/``0``;
unknown keys are ignored, and so are nulls (a default applies, as for an absent key).
What cannot be read raises `UnexpectedResponseError`
with the path of the bad value, never a cattrs exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn
from cattrs.preconf.json import make_converter

from ._exceptions import UnexpectedResponseError
from ._models import SmtpCredentials, SmtpUser, SmtpUserList, SmtpUserStatus
from ._requests import (
    CreateSmtpUserRequest,
    ListSmtpUsersRequest,
    ResetSmtpPasswordRequest,
    SarvRequest,
    UpdateSmtpUserRequest,
)
from ._text import server_text

__all__ = ["structure_response", "unstructure_request"]

T = TypeVar("T")

_STATUS_ALIASES: dict[str, SmtpUserStatus] = {
    "enable": SmtpUserStatus.ENABLE,
    "enabled": SmtpUserStatus.ENABLE,
    "1": SmtpUserStatus.ENABLE,
    "disable": SmtpUserStatus.DISABLE,
    "disabled": SmtpUserStatus.DISABLE,
    "0": SmtpUserStatus.DISABLE,
}


def _structure_int(value: object, _: type[int]) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ValueError("not an integer")


def _structure_str(value: object, _: type[str]) -> str:
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    raise ValueError("not a string")


def _structure_status(value: object, _: type[SmtpUserStatus]) -> SmtpUserStatus:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        status = _STATUS_ALIASES.get(str(value).strip().lower())
        if status is not None:
            return status
    raise ValueError("not 'Enable' or 'Disable'")


def _make_converter() -> cattrs.Converter:
    converter = make_converter()
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(SmtpUserStatus, _structure_status)

    for request_type in (
        CreateSmtpUserRequest,
        UpdateSmtpUserRequest,
        ResetSmtpPasswordRequest,
        ListSmtpUsersRequest,
    ):
        converter.register_unstructure_hook(
            request_type,
            make_dict_unstructure_fn(request_type, converter, _cattrs_omit_if_default=True),
        )

    converter.register_unstructure_hook(SmtpUserStatus, lambda status: status.value)

    for model in (SmtpUser, SmtpCredentials):
        converter.register_structure_hook(
            model, _tolerant(make_dict_structure_fn(model, converter))
        )

    read_list = make_dict_structure_fn(SmtpUserList, converter)

    def structure_list(value: Any, _: type[SmtpUserList]) -> SmtpUserList:
        # An account with no users may come back as null, or (PHP) as an empty object.
        if isinstance(value, dict):
            users = value.get("smtp_list")
            if users is None:
                value = {**value, "smtp_list": []}
            elif isinstance(users, dict):
                value = {**value, "smtp_list": list(users.values())}
        return read_list(value, SmtpUserList)

    converter.register_structure_hook(SmtpUserList, structure_list)
    return converter


def _tolerant(read: Callable[[Any, type[T]], T]) -> Callable[[Any, type[T]], T]:
    """Read an object whose password may be called ``password`` and whose nulls mean "absent"."""

    def structure(value: Any, cls: type[T]) -> T:
        if isinstance(value, dict):
            # PHP back ends send null for what they did not set; a default then applies.
            value = {key: item for key, item in value.items() if item is not None}
            # The docs' sample says ``password``, their table ``smtp_password``.
            if "smtp_password" not in value and "password" in value:
                value["smtp_password"] = value["password"]
        return read(value, cls)

    return structure


_converter = _make_converter()


def unstructure_request(request: SarvRequest[Any]) -> dict[str, Any]:
    """The request's body fields, with unset optional fields left out."""
    body: dict[str, Any] = _converter.unstructure(request)
    return body


def structure_response(data: dict[str, Any], response_type: type[T], *, status_code: int) -> T:
    """Read a success answer into ``response_type``, or raise `UnexpectedResponseError`.

    The error is raised outside the ``except`` block and after ``data`` is dropped, so
    neither its context (cattrs' exception and frames) nor this frame holds the answer.
    """
    try:
        return _converter.structure(
            {key: value for key, value in data.items() if value is not None}, response_type
        )
    except Exception as exc:  # cattrs' errors are translated here, at one boundary.
        messages = (
            cattrs.transform_error(exc, path="$")
            if isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError))
            else [f"{type(exc).__name__} @ $"]
        )
    del data
    raise UnexpectedResponseError(
        server_text(f"the answer does not fit {response_type.__name__}: {'; '.join(messages)}"),
        status_code=status_code,
    )
