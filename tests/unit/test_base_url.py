"""A base URL that cannot be reached is refused when the client is made, naming base_url."""

from __future__ import annotations

import os

import httpx
import pytest

from sarv_async import AsyncSarvClient, AsyncSendCleanClient, ValidationError
from sarv_async._cli import main
from tests.helpers import OWNER_ID, TOKEN

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/v1.0/",
        "http://127.0.0.1:65536/",
        "http://127.0.0.1:-1/",
        "http://127.0.0.1:0/",
        "https://api.example.com:0/",
        "https://exa mple.com/",
        "https://api.exa_mple.com/",
        "https://api..example.com/",
        "https://user:pass@api.example.com/",
        "https:///v1.0/",
        "https://-api.example.com/",
        "https://[::1/",
        "file:///etc/passwd",
        "api.example.com/v1.0/",
        "https://api.example.com/v1.0/?x=1",
    ],
)
async def test_unusable_base_urls_are_refused_at_construction(url: str) -> None:
    """Ports out of 1-65535, odd hosts, credentials in the URL: ValidationError(field=base_url)."""
    with pytest.raises(ValidationError) as info:
        AsyncSarvClient(OWNER_ID, TOKEN, base_url=url)
    assert info.value.field == "base_url"
    assert "base_url" in str(info.value)
    assert "user:pass" not in str(info.value)  # credentials in a URL are not echoed


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1.0/",
        "https://api.example.com:443/v1.0/",
        "http://127.0.0.1:65535/v1.0/",
        "http://127.0.0.1:1/",
        "http://[::1]:8080/v1.0/",
        "http://localhost:7278/v1.0/",
        "https://api.us1-mta1.sendclean.net/v1.0",
        "https://xn--bcher-kva.example/v1.0/",
        "https://10.0.0.1:8443/",
    ],
)
async def test_usable_base_urls_are_kept(url: str) -> None:
    """Ordinary hosts, IP literals, ports 1-65535 and IDNA names pass."""
    async with AsyncSarvClient(OWNER_ID, TOKEN, base_url=url) as client:
        assert client.base_url == httpx.URL(url if url.endswith("/") else url + "/")


async def test_a_bad_base_url_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SENDCLEAN_BASE_URL is checked like the argument."""
    monkeypatch.setenv("SENDCLEAN_BASE_URL", "https://api.sendclean.net:99999/v1.0/")
    with pytest.raises(ValidationError) as info:
        AsyncSendCleanClient(OWNER_ID, TOKEN)
    assert info.value.field == "base_url"


def test_the_cli_prints_one_error_line_for_a_bad_port(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--base-url http://127.0.0.1:99999/`` is one ``error:`` line, no traceback."""
    monkeypatch.setenv("SARV_OWNER_ID", OWNER_ID)
    monkeypatch.setenv("SARV_TOKEN", TOKEN)
    code = main(["--base-url", "http://127.0.0.1:99999/v1.0/", "smtp", "list"])
    out, err = capsys.readouterr()
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "base_url" in lines[0] or "port" in lines[0]
    assert "Traceback" not in err + out
    assert TOKEN not in err + out
    assert os.environ["SARV_TOKEN"] == TOKEN
