"""The account options every API command takes, where the token comes from, and the client.

Each option falls back to an environment variable: ``SARV_OWNER_ID``, ``SARV_BASE_URL``,
``SARV_APP_DOMAIN``, ``SARV_BRAND``, ``SARV_REDIS_URL`` (for the SendClean brand,
``SENDCLEAN_*`` is read before ``SARV_*``). The token comes from, in order: ``--token``,
``--token-file``, ``SARV_TOKEN`` (``SENDCLEAN_TOKEN``), then a hidden prompt when stdin is
a terminal.
"""

from __future__ import annotations

import argparse
import getpass
import math
import os
import sys
from collections.abc import Mapping
from typing import Any

import attrs

from .._checks import DEFAULT_SETTLE_DELAY
from .._client import AsyncSarvClient, AsyncSendCleanClient
from .._config import SARV, SENDCLEAN, Brand, Secret
from .._exceptions import ValidationError
from .._rate_spec import parse_rate_limit
from .._requests import MAX_LIMIT
from ._files import is_private
from ._output import EXIT_USAGE, CliError, print_warning
from ._state import ledger_path

__all__ = [
    "BRANDS",
    "ClientConfig",
    "add_connection_options",
    "add_ledger_option",
    "add_settle_delay_option",
    "client_config",
    "client_options",
    "limit",
    "positive_int",
    "rate_limit",
    "rate_limit_setting",
    "stdin_is_terminal",
]

#: ``--brand`` choices: the platform's brandings.
BRANDS: dict[str, tuple[Brand, type[AsyncSarvClient]]] = {
    "sarv": (SARV, AsyncSarvClient),
    "sendclean": (SENDCLEAN, AsyncSendCleanClient),
}
_BRAND_VARIABLE = "SARV_BRAND"


def add_connection_options(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """Add the account options to ``parser``.

    They are accepted before the command (``sarv-async --owner-id X smtp list``) and after
    it; a ``nested`` parser (a subcommand's) leaves unset what it was not given, so it
    does not undo a value given before the command.
    """
    default: Any = argparse.SUPPRESS if nested else None
    group = parser.add_argument_group(
        "account options",
        "Each falls back to its SARV_* variable (SENDCLEAN_* first for --brand sendclean).",
    )
    group.add_argument(
        "--owner-id", default=default, metavar="ID", help="the account's owner id (SARV_OWNER_ID)"
    )
    group.add_argument(
        "--app-domain",
        default=default,
        metavar="DOMAIN",
        help="the account's TES app domain; the API is https://api.DOMAIN/v1.0/ (SARV_APP_DOMAIN)",
    )
    group.add_argument(
        "--base-url",
        default=default,
        metavar="URL",
        help="the API's base URL, instead of --app-domain (SARV_BASE_URL)",
    )
    group.add_argument(
        "--brand",
        default=default,
        choices=tuple(BRANDS),
        help="sendclean reads SENDCLEAN_* first and defaults to https://api.sendclean.net/v1.0/ "
        "(SARV_BRAND; default: sarv)",
    )
    group.add_argument(
        "--token-file",
        default=default,
        metavar="PATH",
        help="read the API token from the first line of PATH ('-': stdin); "
        "otherwise SARV_TOKEN, else a hidden prompt on a terminal",
    )
    group.add_argument(
        "--token",
        default=default,
        metavar="TOKEN",
        help="the API token itself; avoid it: a command line shows in shell history and to "
        "other users through ps. Prefer SARV_TOKEN, --token-file or the prompt",
    )
    group.add_argument(
        "--redis-url",
        default=default,
        metavar="URL",
        help="share the account's rate budget and 429 pauses with every process using this "
        "Redis, e.g. redis://localhost:6379/0 (SARV_REDIS_URL; prefer the variable if the URL "
        "holds a password)",
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=argparse.SUPPRESS if nested else False,
        help="allow a plain http:// base URL on another host (the token would travel unencrypted)",
    )


@attrs.frozen
class ClientConfig:
    """What a client needs, resolved from options, environment and prompt."""

    brand: str
    owner_id: str
    token: Secret
    app_domain: str | None
    base_url: str | None
    allow_insecure_http: bool
    #: Shares the rate budget between processes (``--redis-url``, ``SARV_REDIS_URL``).
    redis_url: str | None = attrs.field(default=None, repr=False)

    def client(self, **options: Any) -> AsyncSarvClient:
        """A new client of the brand, with ``options`` such as ``rate_limit``."""
        _, cls = BRANDS[self.brand]
        try:
            return cls(
                self.owner_id,
                self.token.reveal(),
                app_domain=self.app_domain,
                base_url=self.base_url,
                allow_insecure_http=self.allow_insecure_http,
                redis_url=self.redis_url or "",  # "": resolved here, not from os.environ
                **options,
            )
        except ValidationError as exc:
            if "allow_insecure_http=True" in exc.message:  # say it the command line's way
                message = exc.message.replace("allow_insecure_http=True", "--allow-insecure-http")
                raise CliError(message, exit_code=EXIT_USAGE) from None
            raise


def client_options(args: argparse.Namespace, config: ClientConfig) -> dict[str, Any]:
    """The client's options from a command's ``--ledger``, ``--rate-limit`` and
    ``--concurrency`` (those it has; each checked by its argparse type already)."""
    options: dict[str, Any] = {}
    if hasattr(args, "ledger"):
        options["ledger"] = ledger_path(args.ledger, redis_url=config.redis_url)
    if getattr(args, "rate_limit", None) is not None:
        options["rate_limit"] = rate_limit_setting(args.rate_limit)
    if getattr(args, "concurrency", None) is not None:
        options["max_concurrency"] = args.concurrency
    return options


def client_config(
    args: argparse.Namespace, *, environ: Mapping[str, str] | None = None
) -> ClientConfig:
    """Resolve the account options; prompt for the token if need be and possible.

    Raises `CliError` naming the option and the variable for whatever is missing.
    """
    env = os.environ if environ is None else environ
    brand_name = args.brand or env.get(_BRAND_VARIABLE, "").strip().lower() or "sarv"
    if brand_name not in BRANDS:
        raise CliError(
            f"{_BRAND_VARIABLE}={brand_name!r} is not a brand; expected one of {', '.join(BRANDS)}",
            exit_code=EXIT_USAGE,
        )
    brand, _ = BRANDS[brand_name]
    variable = brand.env_prefixes[0]

    owner_id = _text(args.owner_id) or _from_env(env, brand, "OWNER_ID")
    if owner_id is None:
        raise CliError(
            f"missing owner id: pass --owner-id or set {variable}_OWNER_ID", exit_code=EXIT_USAGE
        )
    has_endpoint = (
        _text(args.base_url)
        or _text(args.app_domain)
        or _from_env(env, brand, "BASE_URL")
        or _from_env(env, brand, "APP_DOMAIN")
        or brand.default_base_url
    )
    if not has_endpoint:
        raise CliError(
            "missing endpoint: pass --app-domain or --base-url, "
            f"or set {variable}_APP_DOMAIN or {variable}_BASE_URL",
            exit_code=EXIT_USAGE,
        )
    token = _token(args, env, brand, owner_id)
    return ClientConfig(
        brand=brand_name,
        owner_id=owner_id,
        token=Secret(token),
        app_domain=args.app_domain,
        base_url=args.base_url,
        allow_insecure_http=bool(args.allow_insecure_http),
        redis_url=_text(getattr(args, "redis_url", None)) or _from_env(env, brand, "REDIS_URL"),
    )


def _token(args: argparse.Namespace, env: Mapping[str, str], brand: Brand, owner_id: str) -> str:
    variable = f"{brand.env_prefixes[0]}_TOKEN"
    if args.token is not None and args.token_file is not None:
        raise CliError("give --token or --token-file, not both", exit_code=EXIT_USAGE)
    if args.token is not None:
        token = _text(args.token)
        if token is None:
            raise CliError("--token is empty", exit_code=EXIT_USAGE)
        return token
    if args.token_file is not None:
        return _read_token_file(args.token_file)
    token = _from_env(env, brand, "TOKEN")
    if token is not None:
        return token
    if not stdin_is_terminal():
        raise CliError(
            f"missing token: set {variable}, pass --token-file PATH, "
            "or run in a terminal to be prompted",
            exit_code=EXIT_USAGE,
        )
    try:
        token = _text(getpass.getpass(f"{brand.name} API token for {owner_id}: "))
    except EOFError:
        token = None
    if token is None:
        raise CliError("no token entered", exit_code=EXIT_USAGE)
    return token


def stdin_is_terminal() -> bool:
    """Whether a person can be asked for the token."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stdin
        return False


def _read_token_file(path: str) -> str:
    try:
        if path == "-":
            text = sys.stdin.readline()
        else:
            with open(path, encoding="utf-8") as file:
                text = file.readline()
    except OSError as exc:
        raise CliError(
            f"cannot read the token file {path}: {exc.strerror}", exit_code=EXIT_USAGE
        ) from None
    except UnicodeDecodeError:
        raise CliError(f"the token file {path} is not UTF-8 text", exit_code=EXIT_USAGE) from None
    token = _text(text)
    if token is None:
        raise CliError(f"the token file {path} is empty", exit_code=EXIT_USAGE)
    if path != "-" and not is_private(path):
        print_warning(f"the token file {path} is readable by others; chmod 600 it")
    return token


def _from_env(env: Mapping[str, str], brand: Brand, name: str) -> str | None:
    for prefix in brand.env_prefixes:
        value = _text(env.get(f"{prefix}_{name}"))
        if value is not None:
            return value
    return None


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip() or None


def positive_int(text: str) -> int:
    """An argparse type: a positive whole number."""
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit() or int(stripped) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(stripped)


def limit(text: str) -> int:
    """An argparse type: a sending limit, a positive whole number the API accepts."""
    stripped = text.strip().lstrip("0") or "0"
    short = len(stripped) <= len(str(MAX_LIMIT))  # int() of a long number is slow, or refused
    if short and stripped.isascii() and stripped.isdigit() and 0 < int(stripped) <= MAX_LIMIT:
        return int(stripped)
    raise argparse.ArgumentTypeError(
        f"expected a whole number from 1 to {MAX_LIMIT} (the API's largest), got {text!r}"
    )


def probability(text: str, *, below_one: bool = False) -> float:
    """An argparse type: a probability from 0 to 1 (strictly below 1 with ``below_one``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0.0 <= value < 1.0 if below_one else 0.0 <= value <= 1.0):
        bound = "below 1" if below_one else "1"
        raise argparse.ArgumentTypeError(f"expected a probability from 0 to {bound}, got {text!r}")
    return value


def seconds(text: str, *, unit: str = "seconds") -> float:
    """An argparse type: a finite number of seconds (or another ``unit``), zero or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected zero or more {unit}, got {text!r}")
    return value


def rate_limit(text: str) -> str:
    """An argparse type: a rate-limit spec such as ``20/second``, or ``none``."""
    if text.strip().lower() in ("none", "off"):
        return "none"
    try:
        parse_rate_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def rate_limit_setting(value: str) -> str | None:
    """The client's ``rate_limit`` for a parsed ``--rate-limit`` (``None``: no pacing)."""
    return None if value == "none" else value


def add_settle_delay_option(parser: argparse.ArgumentParser) -> None:
    """``--settle-delay``, for commands that create."""
    parser.add_argument(
        "--settle-delay",
        type=seconds,
        default=DEFAULT_SETTLE_DELAY,
        metavar="SECONDS",
        help="wait this long before listing the account to settle calls whose answer was "
        "lost, so a create the server was still processing has landed (default: %(default)s)",
    )


def add_ledger_option(parser: argparse.ArgumentParser) -> None:
    """``--ledger``, for commands that create."""
    parser.add_argument(
        "--ledger",
        metavar="PATH",
        help="the ledger recording every create, a file or a redis:// URL (SARV_LEDGER; "
        "default: the --redis-url Redis if given, else "
        "$XDG_STATE_HOME/sarv-async/ledger.sqlite3, one per user)",
    )
