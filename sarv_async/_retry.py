"""When to try a call again, and how long to wait first."""

from __future__ import annotations

import email.utils
import enum
import math
import random
import re
import time

import attrs

from ._exceptions import ValidationError

__all__ = ["MAX_HEADER_PAUSE", "Backoff", "Failure", "parse_retry_after"]

#: The longest pause a ``Retry-After`` header is believed for: the API's longest window is
#: a day. Anything longer (``1e308``, the year 9999) is a broken header, read as absent.
MAX_HEADER_PAUSE = 86_400.0

#: delta-seconds (RFC 9110), with the fraction some servers add; compiled on first use.
_DELTA_SECONDS = r"[0-9]{1,12}(?:\.[0-9]{1,9})?"


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
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not 0 <= value < math.inf  # refuses NaN too
    ):
        raise ValidationError(
            f"{attribute.name} must be a finite non-negative number, got {value!r}",
            field=attribute.name,
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
    """Seconds to wait per a ``Retry-After`` header (seconds or HTTP date); None if unusable.

    Unusable, and so read as absent: anything but plain decimal seconds or an HTTP date
    (``-5``, ``nan``, ``inf``, ``1e308``, ``soon``), a date in the past, and a pause longer
    than `MAX_HEADER_PAUSE`.
    """
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(_DELTA_SECONDS, value):
        seconds = float(value)
    else:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
        if seconds < 0:  # a date in the past
            return None
    if not 0 <= seconds <= MAX_HEADER_PAUSE:
        return None
    return seconds
