"""sarv-async: the asynchronous Python SDK for the Sarv / SendClean SMTP-user API.

::

    from sarv_async import AsyncSarvClient

    async with AsyncSarvClient(owner_id="...", token="...", app_domain="tes.example.com") as c:
        creds = await c.smtp_users.create(total_limit=100, hourly_limit=10)
"""

from ._client import AsyncSarvClient as AsyncSarvClient
from ._client import AsyncSendCleanClient as AsyncSendCleanClient
from ._client import ClientState as ClientState
from ._config import InsecureHTTPWarning as InsecureHTTPWarning
from ._exceptions import APIConnectionError as APIConnectionError
from ._exceptions import APIError as APIError
from ._exceptions import APITimeoutError as APITimeoutError
from ._exceptions import AuthenticationError as AuthenticationError
from ._exceptions import GeneralError as GeneralError
from ._exceptions import LedgerError as LedgerError
from ._exceptions import OutcomeUnknownError as OutcomeUnknownError
from ._exceptions import RateLimitError as RateLimitError
from ._exceptions import SarvError as SarvError
from ._exceptions import StoreUnavailableError as StoreUnavailableError
from ._exceptions import UnexpectedResponseError as UnexpectedResponseError
from ._exceptions import ValidationError as ValidationError
from ._ledger import Ledger as Ledger
from ._ledger import LedgerEntry as LedgerEntry
from ._ledger_redis import RedisLedger as RedisLedger
from ._ledger_sqlite import SqliteLedger as SqliteLedger
from ._limiter import RateLimiter as RateLimiter
from ._limiter import SlidingWindowLimiter as SlidingWindowLimiter
from ._limiter_redis import RedisRateLimiter as RedisRateLimiter
from ._models import SmtpCredentials as SmtpCredentials
from ._models import SmtpUser as SmtpUser
from ._models import SmtpUserList as SmtpUserList
from ._models import SmtpUserStatus as SmtpUserStatus
from ._models import UpdateSmtpUserResponse as UpdateSmtpUserResponse
from ._provision import Provisioning as Provisioning
from ._provision import ProvisionOutcome as ProvisionOutcome
from ._provision import ProvisionResult as ProvisionResult
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
from ._version import __version__ as __version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncSarvClient",
    "AsyncSendCleanClient",
    "AuthenticationError",
    "Backoff",
    "ClientState",
    "CreateSmtpUserRequest",
    "GeneralError",
    "InsecureHTTPWarning",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "ListSmtpUsersRequest",
    "OutcomeUnknownError",
    "ProvisionOutcome",
    "ProvisionResult",
    "ProvisionSummary",
    "Provisioning",
    "RateLimitError",
    "RateLimiter",
    "RateWindow",
    "RedisLedger",
    "RedisRateLimiter",
    "ResetSmtpPasswordRequest",
    "SarvError",
    "SarvRequest",
    "SlidingWindowLimiter",
    "SmtpCredentials",
    "SmtpUser",
    "SmtpUserList",
    "SmtpUserStatus",
    "SmtpUsers",
    "SqliteLedger",
    "StoreUnavailableError",
    "UnexpectedResponseError",
    "UpdateSmtpUserRequest",
    "UpdateSmtpUserResponse",
    "ValidationError",
    "__version__",
    "parse_rate_limit",
]

# Tracebacks and reprs say `sarv_async.AsyncSarvClient`, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("sarv_async._"):
        _obj.__module__ = __name__
del _name, _obj
