"""Where credentials and the base URL come from, and the plain-HTTP rule."""

from __future__ import annotations

import warnings

import httpx
import pytest

from sarv_async import (
    AsyncSarvClient,
    AsyncSendCleanClient,
    Backoff,
    InsecureHTTPWarning,
    ValidationError,
)


def test_app_domain_builds_the_documented_base_url() -> None:
    """app_domain gives https://api.{app_domain}/v1.0/."""
    client = AsyncSarvClient("o", "t", app_domain="tes.example.com")
    assert client.base_url == "https://api.tes.example.com/v1.0/"
    assert isinstance(client.base_url, httpx.URL)


def test_base_url_wins_over_app_domain_and_gets_a_trailing_slash() -> None:
    """base_url wins over app_domain; a missing trailing slash is added so paths join."""
    client = AsyncSarvClient("o", "t", app_domain="ignored.example", base_url="https://x.test/v1.0")
    assert client.base_url == "https://x.test/v1.0/"


def test_everything_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SARV_OWNER_ID, SARV_TOKEN and SARV_APP_DOMAIN fill what was not passed."""
    monkeypatch.setenv("SARV_OWNER_ID", "env-owner")
    monkeypatch.setenv("SARV_TOKEN", "env-token")
    monkeypatch.setenv("SARV_APP_DOMAIN", "env.example.com")
    client = AsyncSarvClient()
    assert client.owner_id == "env-owner"
    assert client.base_url == "https://api.env.example.com/v1.0/"
    assert client._shared.pipeline._token.reveal() == "env-token"


def test_env_base_url_wins_over_env_app_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    """SARV_BASE_URL wins over SARV_APP_DOMAIN."""
    monkeypatch.setenv("SARV_BASE_URL", "https://base.example/v1.0/")
    monkeypatch.setenv("SARV_APP_DOMAIN", "domain.example")
    assert AsyncSarvClient("o", "t").base_url == "https://base.example/v1.0/"


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An argument beats its environment variable."""
    monkeypatch.setenv("SARV_OWNER_ID", "env-owner")
    monkeypatch.setenv("SARV_BASE_URL", "https://env.example/v1.0/")
    client = AsyncSarvClient("arg-owner", "t", app_domain="arg.example")
    assert client.owner_id == "arg-owner"
    assert client.base_url == "https://api.arg.example/v1.0/"


def test_missing_settings_are_named() -> None:
    """With nothing given or set, the error names each missing setting and its variable."""
    with pytest.raises(ValidationError) as info:
        AsyncSarvClient()
    message = str(info.value)
    for expected in ("owner_id", "token", "app_domain or base_url", "SARV_OWNER_ID", "SARV_TOKEN"):
        assert expected in message
    assert info.value.field == "owner_id"


def test_missing_token_alone_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing token is reported as the token, and only it."""
    monkeypatch.setenv("SARV_OWNER_ID", "o")
    with pytest.raises(ValidationError, match="missing token") as info:
        AsyncSarvClient(app_domain="x.example")
    assert info.value.field == "token"
    assert "owner_id" not in str(info.value)


def test_sendclean_has_a_default_base_url() -> None:
    """AsyncSendCleanClient needs no base URL: it defaults to SendClean's public one."""
    client = AsyncSendCleanClient("o", "t")
    assert client.base_url == "https://api.sendclean.net/v1.0/"


def test_sendclean_reads_its_own_variables_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """AsyncSendCleanClient reads SENDCLEAN_* before SARV_*."""
    monkeypatch.setenv("SENDCLEAN_OWNER_ID", "sc-owner")
    monkeypatch.setenv("SARV_OWNER_ID", "sarv-owner")
    monkeypatch.setenv("SARV_TOKEN", "sarv-token")
    monkeypatch.setenv("SENDCLEAN_BASE_URL", "https://api.us1-mta1.sendclean.net/v1.0")
    client = AsyncSendCleanClient()
    assert client.owner_id == "sc-owner"
    assert client.base_url == "https://api.us1-mta1.sendclean.net/v1.0/"


def test_sarv_client_ignores_sendclean_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """AsyncSarvClient does not read SENDCLEAN_* variables."""
    monkeypatch.setenv("SENDCLEAN_TOKEN", "t")
    with pytest.raises(ValidationError, match="token"):
        AsyncSarvClient("o", app_domain="x.example")


@pytest.mark.parametrize(
    "url",
    ["http://api.example.com/v1.0/", "http://master.us.sarv.email:7279/v1.0/", "http://10.0.0.5/"],
)
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    """A plain http:// base URL to a non-loopback host is refused: the token is in the body."""
    with pytest.raises(ValidationError, match="http://") as info:
        AsyncSarvClient("o", "t", base_url=url)
    assert info.value.field == "base_url"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8025/v1.0/", "http://localhost:8025/", "http://[::1]:8025/v1.0/"]
)
def test_plain_http_to_loopback_is_allowed_silently(url: str) -> None:
    """Loopback (an emulator, a tunnel) may use plain http:// without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AsyncSarvClient("o", "t", base_url=url)


def test_allow_insecure_http_warns() -> None:
    """allow_insecure_http=True lets plain http:// through, with an InsecureHTTPWarning."""
    with pytest.warns(InsecureHTTPWarning, match="api.example.com"):
        client = AsyncSarvClient(
            "o", "t", base_url="http://api.example.com:7278/v1.0/", allow_insecure_http=True
        )
    assert client.base_url == "http://api.example.com:7278/v1.0/"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_url": "ftp://x.example/"}, "base_url"),
        ({"base_url": "/v1.0/"}, "base_url"),
        ({"base_url": "https://x.example/?a=1"}, "base_url"),
        ({"app_domain": "https://tes.example.com"}, "app_domain"),
        ({"app_domain": "tes.example.com", "timeout": "slow"}, "timeout"),
        ({"app_domain": "tes.example.com", "timeout": 0}, "timeout"),
        ({"app_domain": "tes.example.com", "max_retries": -1}, "max_retries"),
        ({"app_domain": "tes.example.com", "max_retries": 1.5}, "max_retries"),
        ({"app_domain": "tes.example.com", "max_concurrency": 0}, "max_concurrency"),
        ({"app_domain": "tes.example.com", "rate_limit": "sixty a minute"}, "rate_limit"),
        ({"app_domain": "tes.example.com", "max_retry_after": -1}, "max_retry_after"),
    ],
)
def test_bad_options_name_their_field(kwargs: dict[str, object], field: str) -> None:
    """Each bad option raises ValidationError naming that option."""
    with pytest.raises(ValidationError) as info:
        AsyncSarvClient("o", "t", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("owner_id", [4.2, b"42", ["42"], True])
def test_owner_id_must_be_a_string_or_an_integer(owner_id: object) -> None:
    """An owner_id that is neither a string nor an integer is refused by name."""
    with pytest.raises(ValidationError) as info:
        AsyncSarvClient(owner_id, "t", app_domain="x.example")  # type: ignore[arg-type]
    assert info.value.field == "owner_id"


@pytest.mark.parametrize("owner_id", [0, -12345])
def test_an_integer_owner_id_must_be_positive(owner_id: int) -> None:
    """An integer owner_id names an account only when positive; refused before any call."""
    with pytest.raises(ValidationError, match="owner_id must be a positive") as info:
        AsyncSarvClient(owner_id, "t", app_domain="x.example")
    assert info.value.field == "owner_id"


def test_an_integer_owner_id_is_held_as_its_digits() -> None:
    """AsyncSarvClient(12345, ...) names the account that "12345" names (the official
    clients hold the id as a number)."""
    for client in (
        AsyncSarvClient(12345, "t", app_domain="x.example"),
        AsyncSendCleanClient(owner_id=12345, token="t"),
    ):
        assert client.owner_id == "12345"


def test_timeout_accepts_seconds_or_httpx_timeout() -> None:
    """timeout takes seconds (for every phase) or an httpx.Timeout as is."""
    assert AsyncSarvClient("o", "t", app_domain="x.example", timeout=3).timeout == httpx.Timeout(
        3.0
    )
    custom = httpx.Timeout(10.0, connect=1.0)
    assert AsyncSarvClient("o", "t", app_domain="x.example", timeout=custom).timeout is custom


def test_default_timeout_is_connect_5_read_30() -> None:
    """The default timeout connects within 5 s and reads within 30 s."""
    timeout = AsyncSarvClient("o", "t", app_domain="x.example").timeout
    assert (timeout.connect, timeout.read) == (5.0, 30.0)


def test_backoff_refuses_negative_values() -> None:
    """Backoff options must be non-negative."""
    with pytest.raises(ValidationError) as info:
        Backoff(initial=-1)
    assert info.value.field == "initial"
