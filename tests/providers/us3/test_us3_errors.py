"""Every RetCode, HTTP status and transport failure lands in the right error class.

The API answers through `httpx.MockTransport` here: the mapping is a pure
translation, no server needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import parse_qsl

import httpx
import pytest

from storage_token.dev.emulators.us3 import signature_ok
from storage_token.providers.errors import (
    BadRequestError,
    CredentialsError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RetryableError,
)
from storage_token.providers.retry import RetryPolicy
from storage_token.providers.us3 import US3Provider
from storage_token.providers.us3.api import US3Api

PUBLIC_KEY = "someone@example.com"
PRIVATE_KEY = "account-private-key-0123456789abcdef"

Handler = Callable[[httpx.Request], httpx.Response]


def fingerprint(public_key: str) -> str:
    """How check() names an account: never the public key itself."""
    return "pk-" + hashlib.sha256(public_key.encode()).hexdigest()[:12]


def api(handler: Handler) -> US3Api:
    return US3Api("https://api.example.test", PUBLIC_KEY, PRIVATE_KEY, transport=httpx.MockTransport(handler))


def answer(retcode: int, message: str = "", **extra: object) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"Action": "DescribeUFileTokenResponse", "RetCode": retcode, "Message": message, **extra}
        )

    return handler


RETCODES = [
    pytest.param(150, RetryableError, id="150 service unavailable is retryable"),
    pytest.param(153, RetryableError, id="153 rate limited is retryable"),
    pytest.param(15004, RetryableError, id="15004 retry later is retryable"),
    pytest.param(15005, RetryableError, id="15005 is retryable"),
    pytest.param(15006, RetryableError, id="15006 is retryable"),
    pytest.param(15007, RetryableError, id="15007 is retryable"),
    pytest.param(160, BadRequestError, id="160 action missing is a bad request"),
    pytest.param(161, BadRequestError, id="161 action unknown is a bad request"),
    pytest.param(170, CredentialsError, id="170 signature missing is a credentials error"),
    pytest.param(171, CredentialsError, id="171 signature wrong is a credentials error"),
    pytest.param(172, CredentialsError, id="172 unknown user is a credentials error"),
    pytest.param(174, CredentialsError, id="174 unknown account key is a credentials error"),
    pytest.param(292, BadRequestError, id="292 unknown project is a config error"),
    pytest.param(294, BadRequestError, id="294 IP rejected is a config error"),
    pytest.param(299, PermissionDeniedError, id="299 IAM check failed is a permission error"),
    pytest.param(15002, BadRequestError, id="15002 missing parameter is a bad request"),
    pytest.param(15017, BadRequestError, id="15017 invalid parameter is a bad request"),
    pytest.param(15018, BadRequestError, id="15018 out-of-range parameter is a bad request"),
    pytest.param(15037, PermissionDeniedError, id="15037 no permission is a permission error"),
    pytest.param(15038, QuotaExceededError, id="15038 token limit is a quota error"),
    pytest.param(15039, BadRequestError, id="15039 missing bucket is a config error"),
    pytest.param(15040, NotFoundError, id="15040 token not found is not-found"),
    pytest.param(15052, BadRequestError, id="15052 bucket bound to a token is a bad request"),
    pytest.param(4242, ProviderError, id="an unknown RetCode is a plain provider error"),
]


@pytest.mark.parametrize(("retcode", "error_class"), RETCODES)
async def test_retcode_maps_to_error_kind_and_keeps_the_message(retcode: int, error_class: type[ProviderError]) -> None:
    client = api(answer(retcode, f"server says {retcode}"))
    with pytest.raises(ProviderError) as caught:
        await client.call("DescribeUFileToken", {})
    assert type(caught.value) is error_class
    assert caught.value.code == retcode
    assert caught.value.message == f"server says {retcode}"
    assert caught.value.provider == "us3"
    assert caught.value.call == "DescribeUFileToken"
    assert f"server says {retcode}" in str(caught.value)
    await client.aclose()


STATUSES = [
    pytest.param(429, RetryableError, id="429 is retryable"),
    pytest.param(500, RetryableError, id="500 is retryable"),
    pytest.param(502, RetryableError, id="502 is retryable"),
    pytest.param(503, RetryableError, id="503 is retryable"),
    pytest.param(401, CredentialsError, id="401 is a credentials error"),
    pytest.param(403, PermissionDeniedError, id="403 is a permission error"),
    pytest.param(400, BadRequestError, id="400 is a bad request"),
    pytest.param(404, BadRequestError, id="404 means a wrong endpoint, a config error"),
]


@pytest.mark.parametrize(("status", "error_class"), STATUSES)
async def test_http_status_maps_to_error_kind(status: int, error_class: type[ProviderError]) -> None:
    client = api(lambda request: httpx.Response(status, text="<html>oops</html>"))
    with pytest.raises(ProviderError) as caught:
        await client.call("DescribeUFileToken", {})
    assert type(caught.value) is error_class
    assert caught.value.code == status
    await client.aclose()


async def test_retry_after_is_read_from_a_429() -> None:
    client = api(lambda request: httpx.Response(429, headers={"Retry-After": "7"}, json={"Message": "slow down"}))
    with pytest.raises(RetryableError) as caught:
        await client.call("DescribeUFileToken", {})
    assert caught.value.retry_after == 7.0
    assert caught.value.message == "slow down"
    await client.aclose()


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")],
    ids=["connection refused", "read timeout", "connection dropped before the answer"],
)
async def test_transport_failures_are_retryable(failure: httpx.TransportError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    client = api(handler)
    with pytest.raises(RetryableError) as caught:
        await client.call("CreateUFileToken", {"TokenName": "x"})
    assert caught.value.call == "CreateUFileToken"
    assert "api.example.test" in str(caught.value)
    await client.aclose()


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>proxy page</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"Action": "DescribeUFileTokenResponse"}),
    ],
    ids=["an HTML page", "a JSON list", "an object without RetCode"],
)
async def test_a_malformed_answer_is_a_provider_error(response: httpx.Response) -> None:
    client = api(lambda request: response)
    with pytest.raises(ProviderError) as caught:
        await client.call("DescribeUFileToken", {})
    assert type(caught.value) is ProviderError
    await client.aclose()


async def test_requests_are_signed_form_posts_to_the_endpoint() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"RetCode": 0, "DataSet": []})

    client = api(handler)
    await client.describe_tokens(region="cn-bj2", project_id="org-1", token_name="n")
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.example.test"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(parse_qsl(request.content.decode()))
    assert form["Action"] == "DescribeUFileToken"
    assert form["Region"] == "cn-bj2" and form["ProjectId"] == "org-1" and form["TokenName"] == "n"
    assert form["PublicKey"] == PUBLIC_KEY
    assert "TokenId" not in form  # None sends nothing
    assert signature_ok(form, PRIVATE_KEY)
    await client.aclose()


async def test_retryable_errors_are_retried_honouring_retry_after() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(200, json={"RetCode": 150, "Message": "busy"}),
            httpx.Response(200, json={"RetCode": 0, "DataSet": []}),
        ]
    )
    provider = US3Provider(
        "https://api.example.test",
        PUBLIC_KEY,
        PRIVATE_KEY,
        transport=httpx.MockTransport(lambda request: next(answers)),
        retry=RetryPolicy(attempts=3, base_delay=0.001),
        project_id="org-1",  # configured: no GetProjectList in the way
    )
    info = await provider.check()
    assert info.provider == "us3" and info.account_id == fingerprint(PUBLIC_KEY)
    await provider.aclose()


async def test_non_retryable_errors_are_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json={"RetCode": 171, "Message": "Signature verification failed"})

    provider = US3Provider("https://api.example.test", PUBLIC_KEY, PRIVATE_KEY, transport=httpx.MockTransport(handler))
    with pytest.raises(CredentialsError):
        await provider.check()
    assert calls == 1
    await provider.aclose()


async def test_retries_give_up_after_the_policy_attempts() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    provider = US3Provider(
        "https://api.example.test",
        PUBLIC_KEY,
        PRIVATE_KEY,
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=3, base_delay=0.001),
    )
    with pytest.raises(RetryableError):
        await provider.list_keys()
    assert calls == 3
    await provider.aclose()


@pytest.mark.parametrize("endpoint", ["not a url", "ftp://api.example.test", "http://[::1"], ids=str)
def test_an_unusable_endpoint_is_refused_when_built(endpoint: str) -> None:
    with pytest.raises(BadRequestError, match=r"not an http\(s\) URL"):
        US3Provider(
            endpoint, PUBLIC_KEY, PRIVATE_KEY, retry=RetryPolicy(attempts=3, base_delay=0.001), allow_insecure=True
        )
