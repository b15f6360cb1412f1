"""The options of clients and provisioning runs: defaults, and one check per rule.

Each check returns the value (as the type it stands for) or raises `ValidationError`
naming the option, before anything is sent.
"""

from __future__ import annotations

import math

from ._exceptions import ValidationError

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_SETTLE_DELAY",
    "non_negative_int",
    "positive_int",
    "settle_delay",
]

#: How many times a key proven not created is created again.
DEFAULT_MAX_ROUNDS = 3
#: Seconds to wait before a reconciling list, so that a create the server was still
#: processing when the client gave up on it has landed by then.
DEFAULT_SETTLE_DELAY = 5.0


def positive_int(value: object, field: str) -> int:
    """``value`` if it is an ``int`` of at least 1."""
    if type(value) is not int or value < 1:
        raise ValidationError(f"{field} must be a positive integer, got {value!r}", field=field)
    return value


def non_negative_int(value: object, field: str) -> int:
    """``value`` if it is an ``int`` of at least 0."""
    if type(value) is not int or value < 0:
        raise ValidationError(f"{field} must be a non-negative integer, got {value!r}", field=field)
    return value


def settle_delay(value: object, field: str = "settle_delay") -> float:
    """``value`` as seconds if it is a finite, non-negative number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValidationError(f"{field} must be non-negative seconds, got {value!r}", field=field)
    return float(value)
