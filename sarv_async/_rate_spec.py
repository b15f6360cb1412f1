"""Parse the rate-limit notation shared by the client and the emulator.

``"60/minute;3600/hour;50000/day"`` is three windows at once; every one of them
must hold. A window is ``COUNT/PERIOD`` where PERIOD is an optional whole number
followed by a unit: ``second``, ``minute``, ``hour`` or ``day`` (singular, plural
or the one-letter form), so ``"5/10s"`` is five requests in any ten seconds.
"""

from __future__ import annotations

import re

import attrs

__all__ = ["RateWindow", "format_rate_limit", "parse_rate_limit"]

_UNITS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}

#: Compiled on first use (by `re`'s cache), not at import.
_WINDOW = r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)\s*$"


@attrs.frozen
class RateWindow:
    """At most ``limit`` requests in any ``period`` seconds."""

    limit: int
    period: float

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


def parse_rate_limit(spec: str) -> tuple[RateWindow, ...]:
    """Parse ``"60/minute;3600/hour"`` into windows; raise `ValueError` naming the bad part."""
    if not isinstance(spec, str):
        raise TypeError(f"rate_limit must be a string like '60/minute', not {type(spec).__name__}")
    windows: list[RateWindow] = []
    for part in spec.split(";"):
        if not part.strip():
            continue
        match = re.match(_WINDOW, part.lower())
        if match is None:
            raise ValueError(
                f"rate_limit: cannot read {part.strip()!r}; expected COUNT/UNIT such as "
                "'60/minute' (units: second, minute, hour, day)"
            )
        count, multiplier, unit = match.groups()
        if unit not in _UNITS:
            raise ValueError(
                f"rate_limit: unknown unit {unit!r} in {part.strip()!r} "
                "(units: second, minute, hour, day)"
            )
        period = float(multiplier or 1) * _UNITS[unit]
        if int(count) <= 0 or period <= 0:
            raise ValueError(f"rate_limit: {part.strip()!r} must allow at least one request")
        windows.append(RateWindow(limit=int(count), period=period))
    if not windows:
        raise ValueError("rate_limit: empty specification; use None to switch pacing off")
    return tuple(sorted(windows, key=lambda w: w.period))


def format_rate_limit(windows: tuple[RateWindow, ...]) -> str:
    """The inverse of `parse_rate_limit`, for messages and reprs."""
    return ";".join(str(w) for w in windows)
