"""Where the command line keeps state between runs: the ledger of every create."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from ._output import CliError

__all__ = ["LEDGER_VARIABLE", "default_ledger_path", "ledger_location", "ledger_path"]

#: The environment variable naming the ledger file (as for the SDK's clients).
LEDGER_VARIABLE = "SARV_LEDGER"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def default_ledger_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/sarv-async/ledger.sqlite3`` (default ``~/.local/state``).

    One file per user, shared by every run on the host, so that any run sees what every
    other run created. Its directory is created, readable by the user alone.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME", "").strip()
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "sarv-async" / "ledger.sqlite3"


def ledger_path(
    option: str | None, environ: Mapping[str, str] | None = None, *, redis_url: str | None = None
) -> str:
    """The ledger to use: ``--ledger``, else ``SARV_LEDGER``, else the Redis that
    ``redis_url`` names (shared by every host, like the rate budget), else the default file.

    A Redis URL is kept as it is; a path is made absolute. The default's directory is
    created (mode 0700) if missing.
    """
    env = os.environ if environ is None else environ
    given = (option or "").strip() or env.get(LEDGER_VARIABLE, "").strip()
    if given.startswith(_REDIS_SCHEMES):
        return given
    if given:
        return os.path.abspath(os.path.expanduser(given))
    if redis_url:
        return redis_url
    path = default_ledger_path(env)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"cannot create {path.parent} for the ledger: {exc.strerror}; "
            f"pass --ledger PATH or set {LEDGER_VARIABLE}"
        ) from None
    return str(path)


def ledger_location(ledger: str) -> str:
    """A ledger as `ledger_path` gives it, fit to print: a Redis URL without its password."""
    if not ledger.startswith(_REDIS_SCHEMES):
        return ledger
    parts = urllib.parse.urlsplit(ledger)
    if parts.password is None:
        return ledger
    netloc = parts.netloc.rpartition("@")[2]
    user = urllib.parse.unquote(parts.username or "")
    shown = f"{user}:***@{netloc}" if user else f":***@{netloc}"
    return urllib.parse.urlunsplit(parts._replace(netloc=shown))
