"""Bad arguments raise ValidationError naming the field, before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from sarv_async import (
    CreateSmtpUserRequest,
    SmtpUserStatus,
    UpdateSmtpUserRequest,
    ValidationError,
)
from tests.helpers import make_client

pytestmark = pytest.mark.anyio

BAD_LIMITS: list[Any] = [0, -1, 2**63, 1.0, 2.5, True, False, "10", None, [1]]


@pytest.mark.parametrize("value", BAD_LIMITS)
@pytest.mark.parametrize("field", ["total_limit", "hourly_limit"])
@pytest.mark.respx(assert_all_called=False)
async def test_create_refuses_limits_that_are_not_positive_ints(
    field: str, value: Any, respx_mock: respx.MockRouter
) -> None:
    """create() refuses zero, negatives, floats, bools and strings, naming the field."""
    route = respx_mock.route()
    limits = {"total_limit": 10, "hourly_limit": 1, field: value}
    async with make_client() as client:
        with pytest.raises(ValidationError) as info:
            await client.smtp_users.create(**limits)
    assert info.value.field == field
    assert field in str(info.value)
    assert info.value.status_code is None
    assert not route.called


@pytest.mark.parametrize("value", [0, -5, 2**63, 1.5, True, "3"])
@pytest.mark.parametrize("field", ["total_limit", "hourly_limit"])
def test_update_refuses_bad_limits(field: str, value: Any) -> None:
    """UpdateSmtpUserRequest refuses limits that are not positive ints."""
    with pytest.raises(ValidationError) as info:
        UpdateSmtpUserRequest("smtp1", **{field: value})
    assert info.value.field == field


@pytest.mark.parametrize("name", ["", "   ", None, 42, b"smtp1"])
def test_user_name_must_be_a_non_empty_string(name: Any) -> None:
    """A missing, blank or non-string smtp_user_name is refused."""
    with pytest.raises(ValidationError) as info:
        UpdateSmtpUserRequest(name, hourly_limit=1)
    assert info.value.field == "smtp_user_name"


@pytest.mark.parametrize("status", ["enabled?", "On", 1, True, ""])
def test_status_must_be_enable_or_disable(status: Any) -> None:
    """Only Enable and Disable (enum members or their names as strings) are statuses."""
    with pytest.raises(ValidationError, match="status") as info:
        UpdateSmtpUserRequest("smtp1", status=status)
    assert info.value.field == "status"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Enable", SmtpUserStatus.ENABLE),
        ("Disable", SmtpUserStatus.DISABLE),
        ("disable", SmtpUserStatus.DISABLE),
        (SmtpUserStatus.ENABLE, SmtpUserStatus.ENABLE),
    ],
)
def test_status_accepts_the_enum_and_its_strings(given: Any, expected: SmtpUserStatus) -> None:
    """The two documented strings (in any case) and the enum are accepted."""
    assert UpdateSmtpUserRequest("smtp1", status=given).status is expected


def test_update_with_nothing_to_change_is_refused() -> None:
    """An update naming no change is refused rather than sent."""
    with pytest.raises(ValidationError, match="nothing to update"):
        UpdateSmtpUserRequest("smtp1")


@pytest.mark.respx(assert_all_called=False)
async def test_wrapper_methods_validate_before_sending(respx_mock: respx.MockRouter) -> None:
    """update() and reset_password() validate locally; no request leaves."""
    route = respx_mock.route()
    async with make_client() as client:
        with pytest.raises(ValidationError):
            await client.smtp_users.update("smtp1")
        with pytest.raises(ValidationError):
            await client.smtp_users.reset_password("")
    assert not route.called


def test_validation_error_is_a_value_error() -> None:
    """Local validation errors can be caught as ValueError too."""
    with pytest.raises(ValueError, match="total_limit"):
        CreateSmtpUserRequest(total_limit=0, hourly_limit=1)
