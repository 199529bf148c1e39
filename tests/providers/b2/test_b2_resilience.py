"""`B2Provider` under faults: token expiry, 429/503, timeouts and lost answers on the non-idempotent create."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from storage_token.dev.emulators.b2 import B2Emulator
from storage_token.providers.b2 import B2Provider
from storage_token.providers.base import KeySpec
from storage_token.providers.errors import (
    BadRequestError,
    CredentialsError,
    QuotaExceededError,
    RetryableError,
)
from storage_token.providers.retry import RetryPolicy

MASTER_ID, MASTER_KEY = "000beef0000000000000001", "K000masterSecretForResilienceTests"
NAME = "sto-c1-ns-app-1234abcd-r3"
POLICY = RetryPolicy(attempts=4, base_delay=0.01, factor=2.0, max_delay=30.0, jitter=0.5)


class Sleeps:
    """Records the back-off instead of waiting (or waits for real when `real`)."""

    def __init__(self, real: float = 0.0) -> None:
        self.waits: list[float] = []
        self.real = real

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            await asyncio.sleep(self.real)


@pytest.fixture
def emulator() -> Iterator[B2Emulator]:
    with B2Emulator({MASTER_ID: MASTER_KEY}, ["photos", "logs"], auth_token_ttl=600) as running:
        assert isinstance(running, B2Emulator)
        yield running


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def provider(emulator: B2Emulator, sleeps: Sleeps) -> AsyncIterator[B2Provider]:
    client = B2Provider(
        MASTER_ID, MASTER_KEY, endpoint=emulator.url, retry=POLICY, timeout=5, sleep=sleeps, allow_insecure=True
    )
    yield client
    await client.aclose()


def spec(**changes: object) -> KeySpec:
    values: dict[str, object] = {"name": NAME, "permissions": ("read",), "duration_seconds": 3600}
    values.update(changes)
    return KeySpec(**values)  # type: ignore[arg-type]


def authorizes(url: str, key_id: str, key: str) -> bool:
    basic = base64.b64encode(f"{key_id}:{key}".encode()).decode()
    with httpx.Client(timeout=5) as http:
        answer = http.get(f"{url}/b2api/v4/b2_authorize_account", headers={"Authorization": f"Basic {basic}"})
    return answer.status_code == 200


# -- authorization ------------------------------------------------------------------------------
async def test_b2_expired_token_is_renewed_once(emulator: B2Emulator, provider: B2Provider) -> None:
    await provider.check()
    emulator.clock.advance(601)
    assert await provider.list_keys() == []
    assert emulator.count("b2_authorize_account") == 2
    assert emulator.count("b2_list_keys", "expired_auth_token") == 1


async def test_b2_revoked_tokens_are_renewed_once(emulator: B2Emulator, provider: B2Provider) -> None:
    await provider.check()
    emulator.expire_tokens()
    await provider.issue(spec())
    assert emulator.count("b2_authorize_account") == 2
    assert len(emulator.keys_named(NAME)) == 1


async def test_b2_token_refused_twice_is_a_credentials_error(emulator: B2Emulator, provider: B2Provider) -> None:
    await provider.check()
    emulator.faults.inject("status", "b2_list_keys", status=401, times=2)
    with pytest.raises(CredentialsError):
        await provider.list_keys()
    assert emulator.count("b2_authorize_account") == 2  # the first one and exactly one renewal
    assert emulator.count("b2_list_keys") == 2


async def test_b2_wrong_account_key_is_a_credentials_error_without_retries(emulator: B2Emulator) -> None:
    client = B2Provider(MASTER_ID, "not-the-key", endpoint=emulator.url, retry=POLICY, allow_insecure=True)
    try:
        with pytest.raises(CredentialsError):
            await client.check()
    finally:
        await client.aclose()
    assert emulator.count("b2_authorize_account") == 1


# -- transient errors -------------------------------------------------------------------------------
async def test_b2_429_waits_as_long_as_retry_after_says(
    emulator: B2Emulator, provider: B2Provider, sleeps: Sleeps
) -> None:
    emulator.faults.inject("status", "b2_list_keys", status=429, retry_after=7, times=2)
    await provider.list_keys()
    assert sleeps.waits == [7.0, 7.0]


async def test_b2_429_on_authorize_is_retried(emulator: B2Emulator, provider: B2Provider, sleeps: Sleeps) -> None:
    emulator.faults.inject("status", "b2_authorize_account", status=429, retry_after=0.5)
    await provider.check()
    assert sleeps.waits == [0.5]


async def test_b2_503_backs_off_exponentially_with_jitter(
    emulator: B2Emulator, provider: B2Provider, sleeps: Sleeps
) -> None:
    emulator.faults.inject("status", "b2_list_keys", status=503, times=3)
    await provider.list_keys()
    assert len(sleeps.waits) == 3
    for attempt, wait in enumerate(sleeps.waits, start=1):
        full = POLICY.base_delay * POLICY.factor ** (attempt - 1)
        assert full * (1 - POLICY.jitter) <= wait <= full


async def test_b2_retries_give_up_with_a_retryable_error(emulator: B2Emulator, provider: B2Provider) -> None:
    emulator.faults.inject("status", "b2_list_keys", status=503, times=None)
    with pytest.raises(RetryableError) as raised:
        await provider.list_keys()
    assert raised.value.code == "service_unavailable"
    assert emulator.count("b2_list_keys") == POLICY.attempts


# -- the create is never retried blind --------------------------------------------------------------------
async def test_b2_lost_answer_after_create_leaves_exactly_one_working_key(
    emulator: B2Emulator, provider: B2Provider
) -> None:
    emulator.faults.inject("lose_response", "b2_create_key")
    key = await provider.issue(spec(buckets=("photos",)))
    (stored,) = emulator.keys_named(NAME)
    assert stored["applicationKeyId"] == key.key_id
    assert emulator.count("b2_create_key", "lost") == 1 and emulator.count("b2_create_key", "ok") == 2
    assert emulator.count("b2_delete_key", "ok") == 1
    assert authorizes(emulator.url, key.key_id, key.secret_access_key)


async def test_b2_lost_answer_on_a_multi_bucket_create(emulator: B2Emulator, provider: B2Provider) -> None:
    emulator.faults.inject("lose_response", "b2_create_key")
    key = await provider.issue(spec(buckets=("photos", "logs")))
    assert [k["applicationKeyId"] for k in emulator.keys_named(NAME)] == [key.key_id]
    assert emulator.version_count("b2_delete_key", 4) == 1 and emulator.version_count("b2_delete_key", 3) == 0


async def test_b2_create_that_timed_out_but_happened_is_cleaned_up(emulator: B2Emulator) -> None:
    # The answer comes after the client gave up; the back-off (0.6 s) outlasts the server's delay (0.4 s).
    emulator.faults.inject("latency", "b2_create_key", latency=0.4)
    client = B2Provider(
        MASTER_ID,
        MASTER_KEY,
        endpoint=emulator.url,
        retry=POLICY,
        timeout=0.2,
        sleep=Sleeps(real=0.6),
        allow_insecure=True,
    )
    try:
        key = await client.issue(spec())
    finally:
        await client.aclose()
    assert [k["applicationKeyId"] for k in emulator.keys_named(NAME)] == [key.key_id]
    assert emulator.count("b2_create_key", "ok") == 2 and emulator.count("b2_delete_key", "ok") == 1
    assert authorizes(emulator.url, key.key_id, key.secret_access_key)


async def test_b2_create_timeout_without_effect_creates_once(emulator: B2Emulator) -> None:
    emulator.faults.inject("timeout", "b2_create_key", latency=0.3)
    client = B2Provider(
        MASTER_ID, MASTER_KEY, endpoint=emulator.url, retry=POLICY, timeout=0.1, sleep=Sleeps(), allow_insecure=True
    )
    try:
        key = await client.issue(spec())
    finally:
        await client.aclose()
    assert [k["applicationKeyId"] for k in emulator.keys_named(NAME)] == [key.key_id]
    assert emulator.count("b2_delete_key") == 0
    for _ in range(50):  # the server thread counts the timeout once its delay is over
        if emulator.count("b2_create_key", "timeout"):
            break
        await asyncio.sleep(0.02)
    assert emulator.count("b2_create_key", "timeout") == 1


async def test_b2_503_on_create_looks_before_creating_again(emulator: B2Emulator, provider: B2Provider) -> None:
    emulator.faults.inject("status", "b2_create_key", status=503)
    await provider.issue(spec())
    assert len(emulator.keys_named(NAME)) == 1
    # The second try listed both API versions before it created.
    assert emulator.version_count("b2_list_keys", 3) == 1 and emulator.version_count("b2_list_keys", 4) == 1


async def test_b2_refused_create_is_not_retried(emulator: B2Emulator, provider: B2Provider) -> None:
    emulator.faults.inject("status", "b2_create_key", status=400)
    with pytest.raises(BadRequestError):
        await provider.issue(spec())
    assert emulator.count("b2_create_key") == 1 and emulator.count("b2_list_keys") == 0


async def test_b2_create_that_keeps_failing_leaves_at_most_one_key_for_recover(
    emulator: B2Emulator, provider: B2Provider
) -> None:
    emulator.faults.inject("lose_response", "b2_create_key", times=None)
    with pytest.raises(RetryableError):
        await provider.issue(spec())
    assert len(emulator.keys_named(NAME)) == 1  # every try removed the previous one
    emulator.faults.clear()
    assert await provider.recover(NAME) is None
    assert emulator.keys_named(NAME) == []


# -- answers the emulator doesn't give (mock transport) -------------------------------------------------
def _authorize_body() -> dict[str, Any]:
    return {
        "accountId": "acc",
        "authorizationToken": "tok",
        "apiInfo": {
            "storageApi": {"apiUrl": "https://api.test", "allowed": {"capabilities": ["writeKeys", "readFiles"]}}
        },
    }


def _mock(create: list[httpx.Response], calls: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        call = request.url.path.rsplit("/", 1)[-1]
        calls.append(call)
        if call == "b2_authorize_account":
            return httpx.Response(200, json=_authorize_body())
        if call == "b2_create_key":
            return create.pop(0)
        if call == "b2_list_keys":
            return httpx.Response(200, json={"keys": [], "nextApplicationKeyId": None})
        return httpx.Response(404, json={"status": 404, "code": "not_found", "message": call})

    return httpx.MockTransport(handler)


async def test_b2_cap_exceeded_is_a_quota_error_and_not_retried() -> None:
    calls: list[str] = []
    answer = httpx.Response(403, json={"status": 403, "code": "transaction_cap_exceeded", "message": "cap"})
    client = B2Provider("id", "key", endpoint="https://auth.test", transport=_mock([answer], calls), retry=POLICY)
    try:
        with pytest.raises(QuotaExceededError):
            await client.issue(spec())
    finally:
        await client.aclose()
    assert calls == ["b2_authorize_account", "b2_create_key"]


async def test_b2_create_answer_without_secret_is_resolved_by_name() -> None:
    calls: list[str] = []
    key = {"applicationKeyId": "k1", "keyName": NAME, "capabilities": ["readFiles"], "expirationTimestamp": None}
    answers = [httpx.Response(200, json=key), httpx.Response(200, json={**key, "applicationKey": "fresh-secret"})]
    client = B2Provider(
        "id", "key", endpoint="https://auth.test", transport=_mock(answers, calls), retry=POLICY, sleep=Sleeps()
    )
    try:
        issued = await client.issue(spec())
    finally:
        await client.aclose()
    assert issued.secret_access_key == "fresh-secret" and issued.not_after is None
    assert calls == ["b2_authorize_account", "b2_create_key", "b2_list_keys", "b2_list_keys", "b2_create_key"]


async def test_b2_non_json_error_still_maps_by_status() -> None:
    calls: list[str] = []
    client = B2Provider(
        "id",
        "key",
        endpoint="https://auth.test",
        transport=_mock([httpx.Response(502, text="<html>bad gateway</html>")] * 4, calls),
        retry=POLICY,
        sleep=Sleeps(),
    )
    try:
        with pytest.raises(RetryableError) as raised:
            await client.issue(spec())
    finally:
        await client.aclose()
    assert raised.value.code == 502 and json.dumps(calls).count("b2_create_key") == POLICY.attempts
