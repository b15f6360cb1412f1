"""Test helpers: a faithful local emulator of the SMTP-user API.

```python
from sarv_async.testing import Emulator

with Emulator() as emu:                  # or: async with Emulator() as emu:
    async with emu.client() as client:
        creds = await client.smtp_users.create(total_limit=100, hourly_limit=10)
    assert emu.users()[0]["smtp_user_name"] == creds.smtp_user_name
```

``Emulator(smtp=True)`` also serves SMTP for the users it created (`Emulator.messages`
returns `SmtpMessage` records). The emulator needs uvicorn (and, for SMTP, aiosmtpd and
trustme): ``pip install 'sarv-async[emulator]'``. pytest users get
the ``sarv_emulator`` fixture from the bundled plugin. Names load on first use, so
importing this package (as the pytest plugin does in every run) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._faults import FAULT_KINDS as FAULT_KINDS
    from ._faults import SMTP_FAULT_KINDS as SMTP_FAULT_KINDS
    from ._faults import FaultKind as FaultKind
    from ._faults import SmtpFaultKind as SmtpFaultKind
    from ._server import Emulator as Emulator
    from ._state import DEMO_OWNER_ID as DEMO_OWNER_ID
    from ._state import DEMO_TOKEN as DEMO_TOKEN
    from ._state import SmtpMessage as SmtpMessage

__all__ = [
    "DEMO_OWNER_ID",
    "DEMO_TOKEN",
    "FAULT_KINDS",
    "SMTP_FAULT_KINDS",
    "Emulator",
    "FaultKind",
    "SmtpFaultKind",
    "SmtpMessage",
]

_HOMES = {
    "DEMO_OWNER_ID": "._state",
    "DEMO_TOKEN": "._state",
    "FAULT_KINDS": "._faults",
    "SMTP_FAULT_KINDS": "._faults",
    "FaultKind": "._faults",
    "SmtpFaultKind": "._faults",
    "SmtpMessage": "._state",
    "Emulator": "._server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
