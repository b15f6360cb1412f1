"""When to try a call again, and how long to wait first."""

from __future__ import annotations

import email.utils
import enum
import math
import random
import time

import attrs

from ._exceptions import ValidationError

__all__ = ["Backoff", "Failure", "parse_retry_after"]


class Failure(enum.Enum):
    """What a failed attempt tells about repeating the call."""

    #: The request never reached the server: repeating any call is harmless.
    NOT_SENT = "not sent"
    #: HTTP 429: the server refused the call; repeat it after the pause.
    THROTTLED = "throttled"
    #: The request may have reached the server: repeat only calls safe to repeat.
    MAYBE_APPLIED = "maybe applied"
    #: A definite answer: repeating would not change it.
    FINAL = "final"


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValidationError(
            f"{attribute.name} must be a non-negative number, got {value!r}", field=attribute.name
        )


@attrs.frozen
class Backoff:
    """Exponential backoff with jitter: ``initial * 2**(retry-1)``, capped, +/- ``jitter``."""

    initial: float = attrs.field(default=0.5, validator=_non_negative)
    maximum: float = attrs.field(default=8.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.25, validator=_non_negative)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        base = min(self.maximum, self.initial * 2.0 ** min(retry - 1, 62))
        spread = base * self.jitter
        return max(0.0, base + random.uniform(-spread, spread))  # noqa: S311 - not crypto


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait per a ``Retry-After`` header (seconds or HTTP date); None if unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
