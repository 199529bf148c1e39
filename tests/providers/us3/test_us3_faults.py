"""Faults the emulator injects and how the client rides them out.

The rule under test above all: CreateUFileToken is never retried blind. After
a lost answer, a timeout or a retryable error the client looks the token up by
name first, so one intent ends with exactly one token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from storage_token.dev.emulators.us3 import US3Emulator
from storage_token.providers.base import KeySpec
from storage_token.providers.errors import RetryableError
from storage_token.providers.retry import RetryPolicy
from storage_token.providers.us3 import US3Provider

PUBLIC_KEY = "ops@example.com"
PRIVATE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)
CREATE, DESCRIBE, DELETE = "CreateUFileToken", "DescribeUFileToken", "DeleteUFileToken"


@pytest.fixture(scope="module")
def server() -> Iterator[US3Emulator]:
    emulator = US3Emulator({PUBLIC_KEY: PRIVATE_KEY}, {"photos": "cn-bj2"})
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(server: US3Emulator) -> US3Emulator:
    server.reset()
    return server


@pytest.fixture
async def provider(emulator: US3Emulator) -> AsyncIterator[US3Provider]:
    client = US3Provider(
        emulator.url,
        PUBLIC_KEY,
        PRIVATE_KEY,
        region="cn-bj2",
        retry=FAST,
        timeout=2.0,
        now=emulator.clock.now,
        allow_insecure=True,
    )
    yield client
    await client.aclose()


def spec(name: str = "st-ns-app-1") -> KeySpec:
    return KeySpec(name=name, permissions=("read", "write"), duration_seconds=3600, buckets=("photos",))


def only_token(emulator: US3Emulator, name: str) -> str:
    tokens = [t for t in emulator.store.tokens.values() if t.token_name == name]
    assert len(tokens) == 1, f"expected exactly one token named {name}, found {len(tokens)}"
    return tokens[0].token_id


async def test_latency_slows_but_does_not_fail(provider: US3Provider, emulator: US3Emulator) -> None:
    emulator.faults.inject("latency", DESCRIBE, latency=0.3)
    started = time.monotonic()
    assert await provider.list_keys() == []
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("retcode", [150, 153, 15004, 15005, 15006, 15007])
async def test_retryable_retcodes_on_create_are_retried_then_succeed(
    provider: US3Provider, emulator: US3Emulator, retcode: int
) -> None:
    emulator.faults.inject("retcode", CREATE, retcode=retcode, times=2)
    issued = await provider.issue(spec())
    assert issued.key_id == only_token(emulator, "st-ns-app-1")
    assert emulator.count(CREATE, "fault-retcode") == 2
    assert emulator.count(CREATE, "ok") == 1
    # Each retry looked for the token by name before creating again.
    assert emulator.count(DESCRIBE) >= 2


@pytest.mark.parametrize("retcode", [150, 153])
async def test_retryable_retcodes_on_describe_and_delete_are_retried(
    provider: US3Provider, emulator: US3Emulator, retcode: int
) -> None:
    issued = await provider.issue(spec())
    emulator.faults.inject("retcode", [DESCRIBE, DELETE], retcode=retcode, times=2)
    assert [k.key_id for k in await provider.list_keys()] == [issued.key_id]
    emulator.faults.inject("retcode", DELETE, retcode=retcode, times=1)
    await provider.revoke(issued.key_id)
    assert emulator.store.tokens == {}


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_http_5xx_on_create_is_retried_without_duplicates(
    provider: US3Provider, emulator: US3Emulator, status: int
) -> None:
    emulator.faults.inject("status", CREATE, status=status, times=2)
    issued = await provider.issue(spec())
    assert issued.key_id == only_token(emulator, "st-ns-app-1")


async def test_429_with_retry_after_is_honoured(emulator: US3Emulator) -> None:
    client = US3Provider(
        emulator.url, PUBLIC_KEY, PRIVATE_KEY, retry=RetryPolicy(base_delay=0.001, max_delay=5), allow_insecure=True
    )
    emulator.faults.inject("status", DESCRIBE, status=429, retry_after=0.3, times=1)
    started = time.monotonic()
    await client.list_keys()
    assert time.monotonic() - started >= 0.3
    await client.aclose()


async def test_lost_response_after_create_adopts_the_token_it_made(
    provider: US3Provider, emulator: US3Emulator
) -> None:
    emulator.faults.inject("lose_response", CREATE, times=1)
    issued = await provider.issue(spec())
    token_id = only_token(emulator, "st-ns-app-1")
    assert issued.key_id == token_id
    assert issued.secret_access_key == emulator.store.tokens[token_id].private_key
    assert emulator.count(CREATE, "lost") == 1
    # The base counts a lost answer as "ok" (applied) and "lost" (dropped): one create applied, no second one.
    assert emulator.count(CREATE, "ok") == 1


async def test_lost_responses_on_create_and_the_lookup_still_end_with_one_token(
    provider: US3Provider, emulator: US3Emulator
) -> None:
    emulator.faults.inject("lose_response", CREATE, times=1)
    emulator.faults.inject("lose_response", DESCRIBE, times=1)
    issued = await provider.issue(spec())
    assert issued.key_id == only_token(emulator, "st-ns-app-1")


async def test_timeout_on_create_that_applied_nothing_creates_once(
    provider: US3Provider, emulator: US3Emulator
) -> None:
    emulator.faults.inject("timeout", CREATE, latency=0.1, times=1)
    issued = await provider.issue(spec())
    assert issued.key_id == only_token(emulator, "st-ns-app-1")
    assert emulator.count(CREATE, "timeout") == 1


async def test_client_timeout_is_retryable(emulator: US3Emulator) -> None:
    client = US3Provider(
        emulator.url, PUBLIC_KEY, PRIVATE_KEY, region="cn-bj2", retry=FAST, timeout=0.2, allow_insecure=True
    )
    emulator.faults.inject("timeout", DESCRIBE, latency=0.5, times=1)
    assert await client.list_keys() == []
    await client.aclose()


async def test_a_create_that_lands_after_the_client_gave_up_is_cleaned_up_by_recover(
    emulator: US3Emulator,
) -> None:
    """Known limit of name lookups: a slow create can land after the lookup; recover() repairs it."""
    client = US3Provider(
        emulator.url,
        PUBLIC_KEY,
        PRIVATE_KEY,
        region="cn-bj2",
        retry=FAST,
        timeout=0.2,
        now=emulator.clock.now,
        allow_insecure=True,
    )
    emulator.faults.inject("latency", CREATE, latency=0.6, times=1)
    issued = await client.issue(spec())
    await asyncio.sleep(0.8)  # the slow first create lands now
    assert len([t for t in emulator.store.tokens.values() if t.token_name == "st-ns-app-1"]) == 2
    recovered = await client.recover("st-ns-app-1")
    assert recovered is not None
    assert list(emulator.store.tokens) == [recovered.key_id]
    assert recovered.key_id in {issued.key_id, *emulator.store.tokens}
    await client.aclose()


async def test_lost_response_on_delete_still_revokes(provider: US3Provider, emulator: US3Emulator) -> None:
    issued = await provider.issue(spec())
    emulator.faults.inject("lose_response", DELETE, times=1)
    await provider.revoke(issued.key_id)
    assert emulator.store.tokens == {}
    assert emulator.count(DELETE, "lost") == 1
    assert emulator.count(DELETE, "15040") == 1  # the retry found it gone: success


async def test_5xx_on_delete_is_retried(provider: US3Provider, emulator: US3Emulator) -> None:
    issued = await provider.issue(spec())
    emulator.faults.inject("status", DELETE, status=503, times=2)
    await provider.revoke(issued.key_id)
    assert emulator.store.tokens == {}


async def test_persistent_outage_gives_up_with_a_retryable_error_and_no_token(
    provider: US3Provider, emulator: US3Emulator
) -> None:
    emulator.faults.inject("retcode", CREATE, retcode=150, times=None)
    with pytest.raises(RetryableError) as caught:
        await provider.issue(spec())
    assert caught.value.code == 150
    assert emulator.count(CREATE, "fault-retcode") == FAST.attempts
    assert emulator.store.tokens == {}


async def test_faults_can_be_probabilistic_and_issuing_stays_exactly_once(
    provider: US3Provider, emulator: US3Emulator
) -> None:
    emulator.faults.inject("lose_response", CREATE, times=None, probability=0.5)
    emulator.faults.inject("retcode", DESCRIBE, retcode=153, times=None, probability=0.3)
    client = US3Provider(
        emulator.url,
        PUBLIC_KEY,
        PRIVATE_KEY,
        region="cn-bj2",
        retry=RetryPolicy(attempts=30, base_delay=0.001, max_delay=0.005),
        now=emulator.clock.now,
        allow_insecure=True,
    )
    names = [f"st-chaos-{i}" for i in range(10)]
    issued = [await client.issue(spec(name)) for name in names]
    for name, key in zip(names, issued, strict=True):
        assert key.key_id == only_token(emulator, name)
    await client.aclose()
