"""``attempt_timeout``: its default, its validation, and how `with_options` carries it."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from sarv_async import ValidationError
from tests.helpers import make_client

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (1.0, 3.0),
        (httpx.Timeout(30.0, connect=5.0), 65.0),
        (httpx.Timeout(10.0, connect=1.0, read=2.0, write=3.0, pool=99.0), 6.0),
        (httpx.Timeout(5.0, read=None), None),
    ],
)
async def test_the_default_is_connect_plus_write_plus_read(
    given: float | httpx.Timeout, expected: float | None
) -> None:
    """Each phase once; no default deadline when a phase is unbounded."""
    async with make_client(timeout=given) as client:
        assert client.attempt_timeout == expected


async def test_the_client_default_is_65_seconds() -> None:
    """With the default timeout (connect 5 s, 30 s else) an attempt ends within 65 s."""
    async with make_client() as client:
        assert client.attempt_timeout == 65.0


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, True, "5"])
async def test_bad_values_are_refused_naming_the_field(value: Any) -> None:
    """Zero, negative, NaN, infinite, bool, str: ValidationError naming attempt_timeout."""
    with pytest.raises(ValidationError) as info:
        make_client(attempt_timeout=value)
    assert info.value.field == "attempt_timeout"
    async with make_client() as client:
        with pytest.raises(ValidationError) as info:
            client.with_options(attempt_timeout=value)
        assert info.value.field == "attempt_timeout"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": httpx.Timeout(5.0, read=math.inf)}, "timeout"),
        ({"max_retry_after": math.nan}, "max_retry_after"),
        ({"max_retry_after": math.inf}, "max_retry_after"),
    ],
)
async def test_nan_and_infinity_are_refused(kwargs: dict[str, Any], field: str) -> None:
    """Non-finite timeouts and pauses would hang or disable the client: refused up front."""
    with pytest.raises(ValidationError) as info:
        make_client(**kwargs)
    assert info.value.field == field


async def test_with_options_follows_the_timeout_unless_set_explicitly() -> None:
    """A derived deadline follows a new timeout; an explicit one stays."""
    async with make_client(timeout=1.0) as client:
        assert client.with_options(timeout=2.0).attempt_timeout == 6.0
        pinned = client.with_options(attempt_timeout=0.5)
        assert pinned.attempt_timeout == 0.5
        assert pinned.with_options(timeout=10.0).attempt_timeout == 0.5
        assert client.attempt_timeout == 3.0
    async with make_client(timeout=1.0, attempt_timeout=9.0) as client:
        assert client.with_options(timeout=2.0).attempt_timeout == 9.0
