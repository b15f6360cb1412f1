"""sarv-async: the asynchronous Python SDK for the Sarv / SendClean SMTP-user API.

```python
from sarv_async import AsyncSarvClient

async with AsyncSarvClient(owner_id="...", token="...", app_domain="tes.example.com") as c:
    creds = await c.smtp_users.create(total_limit=100, hourly_limit=10)
```

Names load on first use: ``import sarv_async`` alone (as the bundled pytest plugin does
in every test run) imports neither httpx nor attrs, cattrs or anyio. Type checkers see
every name through the imports below.
"""

import importlib
import sys
import typing

from ._exceptions import APIConnectionError as APIConnectionError
from ._exceptions import APIError as APIError
from ._exceptions import APITimeoutError as APITimeoutError
from ._exceptions import AuthenticationError as AuthenticationError
from ._exceptions import GeneralError as GeneralError
from ._exceptions import LedgerError as LedgerError
from ._exceptions import LedgerLostError as LedgerLostError
from ._exceptions import OutcomeUnknownError as OutcomeUnknownError
from ._exceptions import RateLimitError as RateLimitError
from ._exceptions import SarvError as SarvError
from ._exceptions import StoreUnavailableError as StoreUnavailableError
from ._exceptions import UnexpectedResponseError as UnexpectedResponseError
from ._exceptions import ValidationError as ValidationError
from ._version import __version__ as __version__

if typing.TYPE_CHECKING:
    from ._client import AsyncSarvClient as AsyncSarvClient
    from ._client import AsyncSendCleanClient as AsyncSendCleanClient
    from ._client import ClientState as ClientState
    from ._config import InsecureHTTPWarning as InsecureHTTPWarning
    from ._ledger import Begin as Begin
    from ._ledger import Claim as Claim
    from ._ledger import Decision as Decision
    from ._ledger import EntryState as EntryState
    from ._ledger import Ledger as Ledger
    from ._ledger import LedgerEntry as LedgerEntry
    from ._ledger_memory import MemoryLedger as MemoryLedger
    from ._ledger_redis import RedisLedger as RedisLedger
    from ._ledger_sqlite import SqliteLedger as SqliteLedger
    from ._limiter import CountedSend as CountedSend
    from ._limiter import RateLimiter as RateLimiter
    from ._limiter import SlidingWindowLimiter as SlidingWindowLimiter
    from ._limiter_redis import RedisRateLimiter as RedisRateLimiter
    from ._models import SmtpCredentials as SmtpCredentials
    from ._models import SmtpUser as SmtpUser
    from ._models import SmtpUserList as SmtpUserList
    from ._models import SmtpUserStatus as SmtpUserStatus
    from ._models import UpdateSmtpUserResponse as UpdateSmtpUserResponse
    from ._provision import AnyProvisionResult as AnyProvisionResult
    from ._provision import NotProvisioned as NotProvisioned
    from ._provision import ProgressCallback as ProgressCallback
    from ._provision import Provisioned as Provisioned
    from ._provision import Provisioning as Provisioning
    from ._provision import ProvisionOutcome as ProvisionOutcome
    from ._provision import ProvisionResult as ProvisionResult
    from ._provision import ProvisionSpec as ProvisionSpec
    from ._provision import ProvisionSummary as ProvisionSummary
    from ._rate_spec import RateWindow as RateWindow
    from ._rate_spec import parse_rate_limit as parse_rate_limit
    from ._requests import CreateSmtpUserRequest as CreateSmtpUserRequest
    from ._requests import ListSmtpUsersRequest as ListSmtpUsersRequest
    from ._requests import ResetSmtpPasswordRequest as ResetSmtpPasswordRequest
    from ._requests import SarvRequest as SarvRequest
    from ._requests import UpdateSmtpUserRequest as UpdateSmtpUserRequest
    from ._resources import SmtpUsers as SmtpUsers
    from ._retry import Backoff as Backoff
    from ._sync import SarvClient as SarvClient
    from ._sync import SendCleanClient as SendCleanClient
    from ._sync import SyncProvisioning as SyncProvisioning
    from ._sync import SyncSmtpUsers as SyncSmtpUsers

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AnyProvisionResult",
    "AsyncSarvClient",
    "AsyncSendCleanClient",
    "AuthenticationError",
    "Backoff",
    "Begin",
    "Claim",
    "ClientState",
    "CountedSend",
    "CreateSmtpUserRequest",
    "Decision",
    "EntryState",
    "GeneralError",
    "InsecureHTTPWarning",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerLostError",
    "ListSmtpUsersRequest",
    "MemoryLedger",
    "NotProvisioned",
    "OutcomeUnknownError",
    "ProgressCallback",
    "ProvisionOutcome",
    "ProvisionResult",
    "ProvisionSpec",
    "ProvisionSummary",
    "Provisioned",
    "Provisioning",
    "RateLimitError",
    "RateLimiter",
    "RateWindow",
    "RedisLedger",
    "RedisRateLimiter",
    "ResetSmtpPasswordRequest",
    "SarvClient",
    "SarvError",
    "SarvRequest",
    "SendCleanClient",
    "SlidingWindowLimiter",
    "SmtpCredentials",
    "SmtpUser",
    "SmtpUserList",
    "SmtpUserStatus",
    "SmtpUsers",
    "SqliteLedger",
    "StoreUnavailableError",
    "SyncProvisioning",
    "SyncSmtpUsers",
    "UnexpectedResponseError",
    "UpdateSmtpUserRequest",
    "UpdateSmtpUserResponse",
    "ValidationError",
    "__version__",
    "parse_rate_limit",
]

#: Where each name loaded on first use lives (the imports above, for type checkers).
_LAZY: dict[str, str] = {
    "AsyncSarvClient": "._client",
    "AsyncSendCleanClient": "._client",
    "ClientState": "._client",
    "InsecureHTTPWarning": "._config",
    "Ledger": "._ledger",
    "LedgerEntry": "._ledger",
    "Begin": "._ledger",
    "Claim": "._ledger",
    "Decision": "._ledger",
    "EntryState": "._ledger",
    "MemoryLedger": "._ledger_memory",
    "SqliteLedger": "._ledger_sqlite",
    "RedisLedger": "._ledger_redis",
    "RedisRateLimiter": "._limiter_redis",
    "RateLimiter": "._limiter",
    "CountedSend": "._limiter",
    "SlidingWindowLimiter": "._limiter",
    "SmtpCredentials": "._models",
    "SmtpUser": "._models",
    "SmtpUserList": "._models",
    "SmtpUserStatus": "._models",
    "UpdateSmtpUserResponse": "._models",
    "NotProvisioned": "._provision",
    "AnyProvisionResult": "._provision",
    "ProgressCallback": "._provision",
    "ProvisionSpec": "._provision",
    "Provisioned": "._provision",
    "Provisioning": "._provision",
    "ProvisionOutcome": "._provision",
    "ProvisionResult": "._provision",
    "ProvisionSummary": "._provision",
    "RateWindow": "._rate_spec",
    "parse_rate_limit": "._rate_spec",
    "CreateSmtpUserRequest": "._requests",
    "ListSmtpUsersRequest": "._requests",
    "ResetSmtpPasswordRequest": "._requests",
    "SarvRequest": "._requests",
    "UpdateSmtpUserRequest": "._requests",
    "SmtpUsers": "._resources",
    "Backoff": "._retry",
    "SarvClient": "._sync",
    "SendCleanClient": "._sync",
    "SyncProvisioning": "._sync",
    "SyncSmtpUsers": "._sync",
}


def _publish(names: typing.Iterable[str]) -> None:
    """Rename ``names`` to this module (tracebacks say ``sarv_async.X``) and bind them here."""
    found = {name: globals().get(name) for name in names}
    for name, home in _LAZY.items():
        module = sys.modules.get(__name__ + home)
        if name not in globals() and module is not None and hasattr(module, name):
            found[name] = getattr(module, name)
    # String annotations are read in the module that __module__ names: resolve them first.
    for value in found.values():
        if isinstance(value, type) and hasattr(value, "__attrs_attrs__"):
            _resolve_types(value)
    for name, value in found.items():
        if getattr(value, "__module__", "").startswith(__name__ + "._"):
            value.__module__ = __name__
        globals()[name] = value


def _resolve_types(cls: type) -> None:
    import attrs

    try:
        attrs.resolve_types(cls)
    except NameError:  # a name imported for type checkers only: left to the class's users
        return


if not typing.TYPE_CHECKING:

    def __getattr__(name: str) -> typing.Any:
        home = _LAZY.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        importlib.import_module(home, __name__)
        _publish(())  # this name, and every other one whose module is now loaded
        return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# The exceptions are loaded now, as they are light, so tracebacks name them
# sarv_async.X whichever module raises them.
_publish(name for name in __all__ if name not in _LAZY and name != "__version__")
