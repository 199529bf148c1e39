"""The provider pool replaces clients without pulling one from under a call in flight."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from fake_kube import FakeKube

from storage_token.api.provider import ProviderSpec
from storage_token.runtime import provider_pool
from storage_token.runtime.provider_pool import ProviderPool


class SlowClient:
    kind = "b2"

    def __init__(self) -> None:
        self.closed = False
        self.release = asyncio.Event()

    async def check(self) -> str:
        await self.release.wait()
        if self.closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        return "ok"

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[SlowClient]:
    clients: list[SlowClient] = []

    def build(*_: Any, **__: Any) -> SlowClient:
        clients.append(SlowClient())
        return clients[-1]

    monkeypatch.setattr(provider_pool, "build_provider", build)
    return clients


def credentials(kube: FakeKube, key: str) -> None:
    kube.create_namespace("team-a")
    body = {
        "metadata": {"name": "creds", "namespace": "team-a"},
        "stringData": {"applicationKeyId": "id", "applicationKey": key},
    }
    if kube.get("Secret", "team-a", "creds") is None:
        kube.create({"apiVersion": "v1", "kind": "Secret", **body})
    else:
        encoded = base64.b64encode(key.encode()).decode()
        kube.update("Secret", "team-a", "creds", {"data": {"applicationKey": encoded}})


SPEC = ProviderSpec(
    kind="StorageProvider",
    name="b2",
    namespace="team-a",
    type="b2",
    endpoint="https://b2.invalid",
    credentials_secret="creds",
)


async def test_a_rotated_credential_waits_for_the_call_in_flight(built: list[SlowClient]) -> None:
    kube = FakeKube()
    credentials(kube, "first")
    pool = ProviderPool(kube)  # type: ignore[arg-type]
    handle = await pool.get(SPEC)
    running = asyncio.create_task(handle.call(lambda p: p.check(), "check"))
    await asyncio.sleep(0)
    credentials(kube, "second")  # the account key is rotated while a call runs
    pool.invalidate("team-a", "creds")
    replaced = await pool.get(SPEC)
    assert replaced is not handle and len(built) == 2
    assert not built[0].closed, "the old client was closed under a running call"
    built[0].release.set()
    assert await running == "ok"
    assert built[0].closed, "the old client is closed once its last call ended"
    await pool.aclose()


async def test_a_metadata_only_change_keeps_the_client(built: list[SlowClient]) -> None:
    kube = FakeKube()
    credentials(kube, "same")
    pool = ProviderPool(kube)  # type: ignore[arg-type]
    handle = await pool.get(SPEC)
    secret = kube.get("Secret", "team-a", "creds")
    assert secret is not None
    await kube.set_secret_finalizers("team-a", "creds", ["x/y"], secret["metadata"]["resourceVersion"])
    pool.invalidate("team-a", "creds")
    assert await pool.get(SPEC) is handle
    assert len(built) == 1
    await pool.aclose()
