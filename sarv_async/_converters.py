"""The one cattrs converter: request bodies out, typed answers in.

Requests are unstructured with unset optional fields left out (never sent as
null). Answers are read tolerantly, as the API's own documents disagree: list
entries carry ``password`` or ``smtp_password``; numbers come as JSON numbers or
numeric strings; ``status`` as ``"Enable"``/``"Disable"`` (any case) or ``1``/``0``;
unknown keys are ignored, and so are nulls (a default applies, as for an absent key).
What cannot be read raises `UnexpectedResponseError`
with the path of the bad value, never a cattrs exception.

A well-formed answer (the documented shape, exact types) takes a fast path: readers
precomputed per model (`._fast_read`), registered as the models' cattrs hooks. Any
surprise sends that value down the tolerant path, so both read every answer alike.
The converter, and cattrs with it, is built on first use, not at import.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

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

if TYPE_CHECKING:
    import cattrs

    from ._fast_read import Spellings

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


#: The password's second name: the docs' sample says ``password``, their table ``smtp_password``.
_ALIASES = {"smtp_password": "password"}

#: The status spellings the fast path reads too (each is one the tolerant path reads alike).
_STATUS_SPELLINGS: dict[Hashable, SmtpUserStatus] = {
    spelling: status
    for alias, status in _STATUS_ALIASES.items()
    for spelling in (
        (alias, int(alias)) if alias.isdigit() else (alias, alias.capitalize(), alias.upper())
    )
}


_SPELLINGS: Spellings = {SmtpUserStatus: _STATUS_SPELLINGS}


def _make_converter(*, fast: bool = True) -> cattrs.Converter:
    """The converter; ``fast=False`` leaves out the fast path (tests compare the two)."""
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn
    from cattrs.preconf.json import make_converter

    from ._fast_read import make_reader

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
        tolerant = _tolerant(make_dict_structure_fn(model, converter))
        # Returning None on a value of another type, rather than raising, keeps a list
        # whose every user has one (say numbers as strings) as cheap as the tolerant path.
        reader = (
            make_reader(model, aliases=_ALIASES, spellings=_SPELLINGS, or_none=True)
            if fast
            else None
        )
        converter.register_structure_hook(
            model, tolerant if reader is None else _fast_first(reader, tolerant)
        )

    read_list = make_dict_structure_fn(SmtpUserList, converter)
    read_user = make_reader(SmtpUser, aliases=_ALIASES, spellings=_SPELLINGS) if fast else None
    if [field.name for field in attrs.fields(SmtpUserList)] != ["smtp_list", "message"]:
        read_user = None  # the fast path below builds exactly these two fields

    def structure_list(value: Any, _: type[SmtpUserList]) -> SmtpUserList:
        if type(value) is dict and read_user is not None:
            users = value.get("smtp_list")
            message = value.get("message", "")
            if type(users) is list and type(message) is str:
                try:
                    return SmtpUserList([read_user(user) for user in users], message)
                except Exception:
                    # A first user already odd: the server spells every user its own way
                    # (say numbers as strings), and the tolerant path alone is cheaper.
                    # Otherwise each user below still tries its fast reader first.
                    if not _reads_fast(read_user, users[0]):
                        return _get_converter(fast=False).structure(value, SmtpUserList)
        # An account with no users may come back as null, or (PHP) as an empty object.
        if isinstance(value, dict):
            users = value.get("smtp_list")
            if "smtp_list" not in value:
                _no_users_elsewhere(value)
            if users is None:
                value = {**value, "smtp_list": []}
            elif isinstance(users, dict):
                value = {**value, "smtp_list": list(users.values())}
        return read_list(value, SmtpUserList)

    converter.register_structure_hook(SmtpUserList, structure_list)
    return converter


class _WrongShape(ValueError):
    """The answer has another shape than the documented one; the message says which."""


def _no_users_elsewhere(answer: dict[str, Any]) -> None:
    """Refuse a list answer whose users (an array, an object) are under another key.

    Without ``smtp_list`` the account has no users, unless the users are elsewhere: then
    ``[]`` would be a wrong answer, not an empty one.
    """
    for key, item in answer.items():
        if isinstance(item, (list, dict)):
            raise _WrongShape(
                f"no 'smtp_list', but {'an array' if isinstance(item, list) else 'an object'} "
                f"under {server_text(repr(key))}"
            )


def _fast_first(
    fast: Callable[[Any], T | None], tolerant: Callable[[Any, type[T]], T]
) -> Callable[[Any, type[T]], T]:
    """Read with ``fast``; on any surprise, read the same value with ``tolerant``."""

    def structure(value: Any, cls: type[T]) -> T:
        try:
            result = fast(value)
        except Exception:
            result = None
        return tolerant(value, cls) if result is None else result

    return structure


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


def _reads_fast(read: Callable[[Any], object], value: object) -> bool:
    try:
        read(value)
    except Exception:
        return False
    return True


_converters: dict[bool, cattrs.Converter] = {}


def _get_converter(*, fast: bool = True) -> cattrs.Converter:
    """The converter, built on first use (two threads may both build it: harmless).

    ``fast=False``: the one without the fast path, for lists odd from their first user.
    """
    converter = _converters.get(fast)
    if converter is None:
        converter = _converters[fast] = _make_converter(fast=fast)
    return converter


def unstructure_request(request: SarvRequest[Any]) -> dict[str, Any]:
    """The request's body fields, with unset optional fields left out."""
    body: dict[str, Any] = _get_converter().unstructure(request)
    return body


def structure_response(
    data: dict[str, Any],
    response_type: type[T],
    *,
    status_code: int,
    converter: cattrs.Converter | None = None,
) -> T:
    """Read a success answer into ``response_type``, or raise `UnexpectedResponseError`.

    ``converter`` defaults to the SDK's own (tests compare it with others). The error is
    raised outside the ``except`` block and after ``data`` is dropped, so neither its
    context (cattrs' exception and frames) nor this frame holds the answer.
    """
    try:
        return (converter or _get_converter()).structure(
            {key: value for key, value in data.items() if value is not None}, response_type
        )
    except Exception as exc:  # cattrs' errors are translated here, at one boundary.
        import cattrs

        messages = (
            cattrs.transform_error(exc, path="$")
            if isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError))
            else [str(exc) if isinstance(exc, _WrongShape) else f"{type(exc).__name__} @ $"]
        )
    del data
    raise UnexpectedResponseError(
        server_text(f"the answer does not fit {response_type.__name__}: {'; '.join(messages)}"),
        status_code=status_code,
    )
