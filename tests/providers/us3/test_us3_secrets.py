"""Key material never shows up in log records, exception text or reprs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from storage_token.dev.emulators.us3 import US3Emulator
from storage_token.providers.base import KeySpec
from storage_token.providers.errors import ProviderError
from storage_token.providers.retry import RetryPolicy
from storage_token.providers.us3 import UFileToken, US3Provider

PUBLIC_KEY = "ops@example.com"
PRIVATE_KEY = "acc0unt-pr1vate-key-that-must-not-leak"
FAST = RetryPolicy(attempts=5, base_delay=0.001, max_delay=0.005)


@pytest.fixture
def emulator() -> Iterator[US3Emulator]:
    server = US3Emulator({PUBLIC_KEY: PRIVATE_KEY}, {"photos": "cn-bj2"}, token_limit=2)
    server.start()
    yield server
    server.stop()


def spec(name: str, **kwargs: object) -> KeySpec:
    options: dict[str, object] = {"permissions": ("read",), "duration_seconds": 600, "buckets": ("photos",)}
    options.update(kwargs)
    return KeySpec(name=name, **options)  # type: ignore[arg-type]


async def test_a_full_run_with_faults_and_errors_leaks_nothing(
    emulator: US3Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    provider = US3Provider(
        emulator.url, PUBLIC_KEY, PRIVATE_KEY, region="cn-bj2", retry=FAST, timeout=1.0, allow_insecure=True
    )
    texts: list[str] = [repr(provider)]
    secrets = {PRIVATE_KEY}

    emulator.faults.inject("lose_response", "CreateUFileToken")
    emulator.faults.inject("retcode", "DescribeUFileToken", retcode=150)
    first = await provider.issue(spec("st-1"))
    emulator.faults.inject("status", "CreateUFileToken", status=503)
    second = await provider.issue(spec("st-2"))
    secrets |= {first.secret_access_key, second.secret_access_key}
    recovered = await provider.recover("st-1")
    assert recovered is not None
    texts += [repr(first), repr(second), repr(recovered), str(first), repr(await provider.list_keys())]
    texts.append(repr(UFileToken(token_id="t", token_name="n", region="r", public_key="p", private_key=PRIVATE_KEY)))

    wrong_key = US3Provider(emulator.url, PUBLIC_KEY, "wrong-" + PRIVATE_KEY, retry=FAST, allow_insecure=True)
    failures: list[ProviderError] = []
    for attempt in (
        lambda: provider.issue(spec("st-3")),  # token limit
        lambda: provider.issue(spec("st-4", buckets=("missing",))),
        wrong_key.check,
        lambda: provider.issue(spec("st-5", permissions=("bogus",))),
    ):
        with pytest.raises(ProviderError) as caught:
            await attempt()
        failures.append(caught.value)
    await wrong_key.aclose()
    texts += [str(e) for e in failures] + [repr(e) for e in failures]

    await provider.revoke(first.key_id)
    await provider.revoke(second.key_id)
    await provider.aclose()

    records = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    assert any("us3" in m for m in records)  # the client did log
    for secret in secrets:
        for text in records + texts:
            assert secret not in text


async def test_a_server_message_echoing_the_account_key_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"RetCode": 171, "Message": f"bad signature for key {PRIVATE_KEY}"})

    provider = US3Provider("https://api.example.test", PUBLIC_KEY, PRIVATE_KEY, transport=httpx.MockTransport(handler))
    with pytest.raises(ProviderError) as caught:
        await provider.check()
    assert PRIVATE_KEY not in str(caught.value)
    assert "bad signature for key ***" in str(caught.value)
    await provider.aclose()


async def test_transport_errors_do_not_chain_the_request(emulator: US3Emulator) -> None:
    # The signed request body rides on httpx exceptions; we raise `from None` so tracebacks don't carry it.
    emulator.faults.inject("lose_response", "DescribeUFileToken", times=None)
    provider = US3Provider(emulator.url, PUBLIC_KEY, PRIVATE_KEY, retry=RetryPolicy(attempts=1), allow_insecure=True)
    with pytest.raises(ProviderError) as caught:
        await provider.list_keys()
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    await provider.aclose()
