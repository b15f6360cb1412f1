"""The ``sarv_async`` logger: silent by default, switched on by ``SARV_LOG`` or your config.

A `logging.NullHandler` keeps Python's last-resort handler from printing the SDK's
records when the application configured no logging. ``SARV_LOG=debug`` (every call:
method, path, status, duration, attempt) or ``SARV_LOG=info`` (retries, calls whose
outcome is unknown, reconciliation) adds a stderr handler without any code, as
``OPENAI_LOG`` does for OpenAI's SDK. Records never carry a body, a token or a password,
at any level.

Levels: DEBUG for each call; INFO for what the SDK handles or reports by raising (a
retry, a create it did not repeat and raised `OutcomeUnknownError` for, a provisioning
run reconciling lost answers); WARNING only for what nobody else will tell you.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["ENV_VARIABLE", "env_handler", "logger"]

#: The variable that switches the SDK's logging on: ``debug``, ``info`` or ``warning``.
ENV_VARIABLE = "SARV_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

logger = logging.getLogger("sarv_async")
logger.addHandler(logging.NullHandler())


def _from_environment() -> logging.Handler | None:
    value = os.environ.get(ENV_VARIABLE, "").strip()
    if not value:
        return None
    level = _LEVELS.get(value.lower())
    if level is None:
        print(
            f"sarv_async: {ENV_VARIABLE}={value!r} is not one of {', '.join(_LEVELS)}; ignored",
            file=sys.stderr,
        )
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


#: The stderr handler ``SARV_LOG`` installed, if it did.
env_handler = _from_environment()
