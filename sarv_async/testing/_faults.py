"""Faults: the ways an API call fails from the client's point of view.

============================  ==================================================  ========
kind                          what the client sees                                applied?
============================  ==================================================  ========
``drop_before``               the connection drops, no answer                     no
``drop_after_apply``          the connection drops, no answer                     **yes**
``gateway_page``              an HTML 502 or 503 page from a "gateway"            no
``general_error``             a ``GeneralError`` envelope, HTTP 200               no
``truncated_json``            HTTP 200, the answer's JSON cut short               **yes**
============================  ==================================================  ========

The SMTP server has faults of its own, only ever queued (``inject_fault``), never drawn
at random, and met only by the SMTP step they name:

============================  ==================================================
kind                          what the SMTP client sees
============================  ==================================================
``smtp_unavailable``          ``421 4.3.2`` on connecting, then the connection closes
``smtp_auth_transient``       ``454 4.7.0`` to AUTH (a temporary failure; retry later)
``smtp_drop_after_data``      the message is accepted and kept, then the connection
                              drops before the answer to DATA
============================  ==================================================

"Applied" means the call ran: a change took effect, or for a call that changes
nothing (list) or fails validation, its answer was computed and then lost.

Faults only meet authenticated API calls with a JSON body that passed the rate
limit (they were counted against it). Queued faults (`FaultPlan.inject`) come
first, in order; otherwise each call meets a fault with probability ``rate``, its
kind drawn uniformly, from a generator seeded with ``seed``.
"""

from __future__ import annotations

import random
import threading
from typing import Literal, cast, get_args

import attrs

from ._calls import call_name

__all__ = [
    "FAULT_KINDS",
    "SMTP_FAULT_KINDS",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "SmtpFaultKind",
    "gateway_page",
    "truncate",
]

FaultKind = Literal[
    "drop_before", "drop_after_apply", "gateway_page", "general_error", "truncated_json"
]
"""The faults `Emulator.inject_fault` takes (see the emulator's page for what each does)."""
#: Every fault kind, in the order random draws pick from.
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
"""Every `FaultKind`, in order."""

SmtpFaultKind = Literal["smtp_unavailable", "smtp_auth_transient", "smtp_drop_after_data"]
"""The faults of the SMTP server `Emulator.inject_fault` takes (queued, never drawn at random)."""
SMTP_FAULT_KINDS: tuple[SmtpFaultKind, ...] = get_args(SmtpFaultKind)
"""Every `SmtpFaultKind`, in order."""

_GATEWAY_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}


@attrs.frozen
class Fault:
    """A fault a request meets; ``gateway_status`` is the HTTP status of a gateway page."""

    kind: FaultKind
    gateway_status: int = 502


@attrs.define
class _Queued:
    kind: FaultKind | SmtpFaultKind
    call: str | None
    remaining: int


class FaultPlan:
    """Decides which API calls meet a fault; thread-safe."""

    def __init__(self, rate: float = 0.0, seed: int | None = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault_rate must be a probability between 0 and 1, got {rate!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an integer or None, got {seed!r}")
        self.rate = float(rate)
        self.seed = seed
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311 - test faults, not cryptography
        self._queue: list[_Queued] = []

    def inject(
        self, kind: FaultKind | SmtpFaultKind, path: str | None = None, count: int = 1
    ) -> None:
        """Make the next ``count`` calls (to ``path`` only, when given) meet a ``kind`` fault.

        An SMTP kind is met by the next ``count`` times its SMTP step comes; it takes no
        ``path``.
        """
        if kind not in FAULT_KINDS and kind not in SMTP_FAULT_KINDS:
            expected = ", ".join((*FAULT_KINDS, *SMTP_FAULT_KINDS))
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {expected}")
        if kind in SMTP_FAULT_KINDS and path is not None:
            raise ValueError(f"{kind} is a fault of the SMTP server; it takes no path")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        call = None if path is None else call_name(path)
        with self._lock:
            self._queue.append(_Queued(kind, call, count))

    def draw(self, call: str) -> Fault | None:
        """The fault a call to ``call`` (``"addSmtp"``, ...) meets now, if any."""
        with self._lock:
            kind = self._take_queued(call)
            if kind is None and self.rate and self._random.random() < self.rate:
                kind = self._random.choice(FAULT_KINDS)
            if kind is None:
                return None
            if kind == "gateway_page":
                return Fault(kind, self._random.choice(tuple(_GATEWAY_REASONS)))
            return Fault(kind)

    def draw_smtp(self, kind: SmtpFaultKind) -> bool:
        """Whether the SMTP step that ``kind`` names meets that fault now (queued only)."""
        with self._lock:
            for index, queued in enumerate(self._queue):
                if queued.kind == kind:
                    self._consume(index, queued)
                    return True
            return False

    def _take_queued(self, call: str) -> FaultKind | None:
        for index, queued in enumerate(self._queue):
            if queued.kind in SMTP_FAULT_KINDS:
                continue
            if queued.call is None or queued.call == call:
                self._consume(index, queued)
                return cast("FaultKind", queued.kind)
        return None

    def _consume(self, index: int, queued: _Queued) -> None:
        queued.remaining -= 1
        if not queued.remaining:
            del self._queue[index]

    def reset(self) -> None:
        """Drop queued faults and restart the random draws from the seed."""
        with self._lock:
            self._queue.clear()
            self._random = random.Random(self.seed)  # noqa: S311 - as above


def gateway_page(status: int) -> bytes:
    """The HTML page a gateway in front of the API answers with."""
    title = f"{status} {_GATEWAY_REASONS.get(status, 'Bad Gateway')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def truncate(body: bytes) -> bytes:
    """The first half of ``body``: a JSON object cut anywhere before its end never parses."""
    return body[: max(1, len(body) // 2)]
