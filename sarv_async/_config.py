"""Where a client's credentials and base URL come from, and the plain-HTTP rule."""

from __future__ import annotations

import ipaddress
import os
import re
import warnings
from collections.abc import Callable, Mapping

import attrs
import httpx

from ._exceptions import ValidationError

__all__ = [
    "SARV",
    "SENDCLEAN",
    "Brand",
    "InsecureHTTPWarning",
    "Secret",
    "Settings",
    "from_environment",
    "resolve",
    "resolve_redis_url",
]


class InsecureHTTPWarning(UserWarning):
    """The client was told to send the token over plain ``http://`` to a remote host."""


class Secret:
    """A string that never shows in a ``repr`` or ``str``; ``reveal()`` gives it back."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@attrs.frozen
class Brand:
    """A branding of the platform: its name, environment prefixes and default base URL."""

    name: str
    env_prefixes: tuple[str, ...]
    default_base_url: str | None = None


SARV = Brand("Sarv", ("SARV",))
SENDCLEAN = Brand("SendClean", ("SENDCLEAN", "SARV"), "https://api.sendclean.net/v1.0/")


@attrs.frozen
class Settings:
    """A client's resolved account and endpoint."""

    owner_id: str
    token: Secret
    base_url: httpx.URL


def resolve(
    brand: Brand,
    *,
    owner_id: str | int | None,
    token: Secret | None,
    app_domain: str | None,
    base_url: str | httpx.URL | None,
    allow_insecure_http: bool,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Fill what was not given from the environment; refuse what is missing or unsafe.

    Explicit arguments win over the environment; ``base_url`` wins over ``app_domain``.
    The token is only ever held in a `Secret` here, so no frame of an error raised
    while resolving holds it as a plain local.
    """

    def from_env(name: str) -> str | None:
        return from_environment(brand, name, environ)

    owner_id = _given_owner_id(owner_id) or from_env("OWNER_ID")
    token = _given_secret(token) or _env_secret(from_env)
    missing = [name for name, value in (("owner_id", owner_id), ("token", token)) if not value]

    url: str | httpx.URL | None = base_url
    if url is None and app_domain is not None:
        url = _from_app_domain(app_domain)
    if url is None:
        env_url, env_domain = from_env("BASE_URL"), from_env("APP_DOMAIN")
        if env_url:
            url = env_url
        elif env_domain:
            url = _from_app_domain(env_domain)
        else:
            url = brand.default_base_url
    if url is None:
        missing.append("app_domain or base_url")

    if missing:
        variables = ", ".join(
            " or ".join(f"{brand.env_prefixes[0]}_{part.upper()}" for part in name.split(" or "))
            for name in missing
        )
        raise ValidationError(
            f"missing {' and '.join(missing)}: pass {'it' if len(missing) == 1 else 'them'} "
            f"to {brand.name} client or set {variables}",
            field=missing[0].split()[0],
        )
    assert owner_id is not None
    assert token is not None
    assert url is not None
    return Settings(
        owner_id=owner_id,
        token=token,
        base_url=_check_base_url(url, allow_insecure_http=allow_insecure_http),
    )


def _given_secret(token: Secret | None) -> Secret | None:
    """The token argument, stripped, or None if empty; its value never bound to a local."""
    if token is None:
        return None
    if not isinstance(token.reveal(), str):
        raise ValidationError(
            f"token must be a string, got a {type(token.reveal()).__name__}", field="token"
        )
    return Secret(token.reveal().strip()) if token.reveal().strip() else None


def _env_secret(from_env: Callable[[str], str | None]) -> Secret | None:
    return Secret(from_env("TOKEN") or "") if from_env("TOKEN") else None


def resolve_redis_url(
    brand: Brand, redis_url: str | None, *, environ: Mapping[str, str] | None = None
) -> str | None:
    """The Redis URL that shares an account's rate budget: the argument, else ``SARV_REDIS_URL``.

    ``""`` given explicitly means no Redis, whatever the environment says.
    """
    if redis_url is not None:
        if not isinstance(redis_url, str):
            raise ValidationError(
                f"redis_url must be a string, got a {type(redis_url).__name__}", field="redis_url"
            )
        return redis_url.strip() or None
    return from_environment(brand, "REDIS_URL", environ)


def from_environment(
    brand: Brand, name: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """The brand's ``{PREFIX}_{name}`` variable (first prefix first), if set and not blank."""
    env = os.environ if environ is None else environ
    for prefix in brand.env_prefixes:
        value = env.get(f"{prefix}_{name}", "").strip()
        if value:
            return value
    return None


def _given(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(
            f"{field} must be a string, got a {type(value).__name__}", field=field
        )
    return value.strip() or None


def _given_owner_id(value: object) -> str | None:
    """The owner id as the API's canonical string: an integer becomes its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValidationError(
                f"owner_id must be a positive integer or a string, got {value}", field="owner_id"
            )
        return str(value)
    if value is not None and not isinstance(value, str):
        raise ValidationError(
            f"owner_id must be a string or an integer, got a {type(value).__name__}",
            field="owner_id",
        )
    return _given(value, "owner_id")


def _from_app_domain(app_domain: str) -> str:
    domain = _given(app_domain, "app_domain")
    if domain is None or not _is_host_name(domain):
        raise ValidationError(
            "app_domain must be a bare domain such as 'tes.example.com' "
            "(give a full URL as base_url instead)",
            field="app_domain",
        )
    return f"https://api.{domain}/v1.0/"


def _check_base_url(value: str | httpx.URL, *, allow_insecure_http: bool) -> httpx.URL:
    problem: str | None
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        problem = f"is not a valid URL: {exc}"
    else:
        problem = _url_problem(url)
    if problem:
        raise ValidationError(f"base_url {problem}", field="base_url")
    if not url.raw_path.endswith(b"/"):
        url = url.copy_with(raw_path=url.raw_path + b"/")
    if url.scheme == "http" and not is_loopback(url.host):
        if not allow_insecure_http:
            raise ValidationError(
                f"refusing plain http:// to {url.host}: the token travels in the request body; "
                "use https, or pass allow_insecure_http=True if you must",
                field="base_url",
            )
        warnings.warn(
            f"sending the API token over plain http:// to {url.host}",
            InsecureHTTPWarning,
            stacklevel=4,
        )
    return url


#: One label of a host name; compiled on first use (by `re`'s cache), not at import.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"


def _url_problem(url: httpx.URL) -> str | None:
    """What makes ``url`` unusable as a base URL, or None."""
    if url.scheme not in ("http", "https") or not url.raw_host:
        return "must be an absolute http(s) URL such as 'https://api.example.com/v1.0/'"
    if url.userinfo:
        return "must not carry a user name or password (the token goes in the body)"
    if url.query or url.fragment:
        return "must not carry a query or fragment"
    if url.port is not None and not 1 <= url.port <= 65535:
        return f"has port {url.port}, outside 1-65535"
    host = url.raw_host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not _is_host_name(host):
            return f"has no valid host name ({host[:100]!r})"
    return None


def _is_host_name(host: str) -> bool:
    """Whether ``host`` is a DNS host name: dot-separated letters, digits and inner hyphens."""
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return len(host) <= 253 and all(re.fullmatch(_LABEL, label) for label in labels)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
