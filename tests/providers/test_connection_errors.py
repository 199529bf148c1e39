"""A provider that can't be reached is named by host: never its credentials, path or query string."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from storage_token.providers.b2 import B2Provider
from storage_token.providers.endpoints import host_of
from storage_token.providers.errors import RetryableError
from storage_token.providers.retry import RetryPolicy
from storage_token.providers.us3.api import US3Api

ONCE = RetryPolicy(attempts=1)
KEY_ID, KEY = "000feed0000000000000001", "K000accountKeyNeverInMessages"
FAILURES: list[Callable[[], httpx.TransportError]] = [
    lambda: httpx.ConnectError("[Errno 111] Connection refused"),
    lambda: httpx.ConnectTimeout("timed out"),
    lambda: httpx.ReadTimeout("timed out"),
    lambda: httpx.RemoteProtocolError("peer closed connection"),
]
IDS = ["refused", "connect timeout", "read timeout", "dropped"]


def failing(make: Callable[[], httpx.TransportError]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise make()

    return httpx.MockTransport(handler)


def assert_names_only_the_host(error: RetryableError, host: str) -> None:
    text = str(error)
    assert host in text
    for leak in ("user", "hunter2", "?", "token=", "/b2api", KEY):
        assert leak not in text, text


@pytest.mark.parametrize("make", FAILURES, ids=IDS)
async def test_b2_authorize_names_the_endpoint_host(make: Callable[[], httpx.TransportError]) -> None:
    provider = B2Provider(
        KEY_ID, KEY, endpoint="https://user:hunter2@api.example.test:8443/?token=x", transport=failing(make), retry=ONCE
    )
    with pytest.raises(RetryableError) as caught:
        await provider.check()
    assert caught.value.call == "b2_authorize_account"
    assert_names_only_the_host(caught.value, "api.example.test:8443")
    await provider.aclose()


async def test_b2_calls_after_authorizing_name_the_api_host_the_account_was_given() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/b2_authorize_account"):
            return httpx.Response(
                200,
                json={
                    "accountId": "acc1",
                    "authorizationToken": "tok-secret",
                    "apiInfo": {"storageApi": {"apiUrl": "https://api005.example.test", "capabilities": ["listKeys"]}},
                },
            )
        raise httpx.ConnectError("refused")

    provider = B2Provider(
        KEY_ID, KEY, endpoint="https://api.example.test", transport=httpx.MockTransport(handler), retry=ONCE
    )
    with pytest.raises(RetryableError) as caught:
        await provider.list_keys()
    assert "connection to api005.example.test failed" in str(caught.value)
    assert "tok-secret" not in str(caught.value)
    await provider.aclose()


@pytest.mark.parametrize("make", FAILURES, ids=IDS)
async def test_us3_names_the_endpoint_host(make: Callable[[], httpx.TransportError]) -> None:
    api = US3Api("https://user:hunter2@api.example.test:8443/?token=x", "pub", KEY, transport=failing(make))
    with pytest.raises(RetryableError) as caught:
        await api.call("DescribeUFileToken", {})
    assert_names_only_the_host(caught.value, "api.example.test:8443")
    await api.aclose()


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://api.ucloud.cn", "api.ucloud.cn"),
        ("https://API.Example.test:443/path?q=1#f", "api.example.test:443"),
        ("http://u:p@127.0.0.1:41455/s3", "127.0.0.1:41455"),
        ("http://[::1]:8080/", "[::1]:8080"),
        ("https://host:notaport/", "(unreadable URL)"),
        ("not a url", "(no host)"),
    ],
)
def test_host_of(url: str, host: str) -> None:
    assert host_of(url) == host
