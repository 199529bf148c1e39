"""No key material in log records, exception messages or reprs, whatever happens."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from storage_token.dev.emulators.b2 import B2Emulator
from storage_token.providers.b2 import B2Provider
from storage_token.providers.base import KeySpec
from storage_token.providers.errors import CredentialsError, ProviderError, RetryableError
from storage_token.providers.retry import RetryPolicy

MASTER_ID, MASTER_KEY = "000cafe0000000000000001", "K000masterSecretThatMustNeverLeak"
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)


@pytest.fixture
def emulator() -> Iterator[B2Emulator]:
    with B2Emulator({MASTER_ID: MASTER_KEY}, ["photos", "logs"]) as running:
        assert isinstance(running, B2Emulator)
        yield running


def _leaks(text: str, secrets: set[str]) -> list[str]:
    return [s for s in secrets if s and s in text]


async def test_b2_no_secret_in_logs_errors_or_reprs(emulator: B2Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = B2Provider(MASTER_ID, MASTER_KEY, endpoint=emulator.url, retry=FAST, allow_insecure=True)
    errors: list[BaseException] = []
    issued = []
    try:
        await client.check()
        emulator.faults.inject("lose_response", "b2_create_key")
        emulator.faults.inject("status", "b2_list_keys", status=429, retry_after=0.001)
        issued.append(await client.issue(KeySpec("leak-a", ("read",), 3600, buckets=("photos",))))
        issued.append(await client.issue(KeySpec("leak-b", ("write",), 3600, buckets=("photos", "logs"))))
        emulator.expire_tokens()
        await client.list_keys()
        emulator.faults.inject("status", "b2_create_key", status=503, times=None)
        with pytest.raises(RetryableError) as retryable:
            await client.issue(KeySpec("leak-c", ("read",), 3600))
        errors.append(retryable.value)
        emulator.faults.clear()
        await client.recover("leak-c")
        await client.revoke(issued[0].key_id)
    finally:
        await client.aclose()
    wrong = B2Provider(MASTER_ID, MASTER_KEY + "-wrong", endpoint=emulator.url, retry=FAST, allow_insecure=True)
    try:
        with pytest.raises(CredentialsError) as refused:
            await wrong.check()
        errors.append(refused.value)
    finally:
        await wrong.aclose()

    with emulator.lock:
        tokens = set(emulator.store.tokens)
    secrets = {MASTER_KEY, MASTER_KEY + "-wrong", *tokens, *(k.secret_access_key for k in issued)}
    assert len(tokens) >= 2 and len(issued) == 2
    for record in caplog.records:
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        assert not _leaks(text, secrets), record.getMessage()
    for error in errors:
        assert not _leaks(f"{error} {error!r} {error.args!r}", secrets)
    for key in issued:
        assert not _leaks(repr(key), secrets)
    assert not _leaks(repr(client) + repr(client._api), secrets)
    assert any(r.name == "storage_token.providers.b2" for r in caplog.records)  # it did log


async def test_b2_server_message_echoing_the_key_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        message = f"bad key {MASTER_KEY}"
        return httpx.Response(401, json={"status": 401, "code": "unauthorized", "message": message})

    client = B2Provider(MASTER_ID, MASTER_KEY, endpoint="https://auth.test", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(ProviderError) as raised:
            await client.check()
    finally:
        await client.aclose()
    assert MASTER_KEY not in str(raised.value) and "***" in str(raised.value)
