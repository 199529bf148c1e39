"""A provider's request budget is shared fairly between namespaces; the most urgent work goes first (#14).

These run the Manager's real workers, work queue and token bucket over FakeKube and the emulators
(the rest of this tier drives reconciles by hand): the property is about who waits behind whom.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from harness import Harness, ProviderInfo

from storage_token.runtime.ratelimit import TokenBucket, claiming

NOISY, QUIET = "noisy", "quiet"
NOISY_TOKENS = 200
RATE = 50.0  # provider calls per second: the bucket, not the CPU, is what the namespaces share


def minting_policy(h: Harness) -> dict[str, Any]:
    """A ceiling that lets a tenant mint as fast as it likes (the attack the fairness has to contain)."""
    return {
        "allowedBuckets": h.emulators.buckets("b2"),
        "minDuration": "1m",
        "minRenewalInterval": "0s",
        "minManualRenewInterval": "0s",
        "maxLiveKeys": 10_000,
    }


async def shared_provider(h: Harness, rate: float = RATE) -> ProviderInfo:
    return await h.create_provider(
        "b2",
        name="shared",
        cluster=True,
        namespaces=[NOISY, QUIET, "busy"],
        policy=minting_policy(h),
        rateLimit={"requestsPerSecond": rate, "burst": 1},
    )


@contextlib.asynccontextmanager
async def running_workers(h: Harness) -> AsyncIterator[None]:
    workers = h.operator.manager._token_workers
    workers.start()
    try:
        yield
    finally:
        await workers.stop()


async def drain(h: Harness) -> None:
    """Empty the Manager's queue of what the set-up's watch events queued (reconciled by hand already)."""
    queue = h.operator.manager.token_queue
    while len(queue):
        queue.done(await queue.get())


def revisions(h: Harness, namespace: str) -> int:
    return sum(int((t.get("status") or {}).get("revision") or 0) for t in h.kube.list_of("StorageToken", namespace))


async def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return predicate()


async def test_a_minting_namespace_cannot_hold_back_another_namespaces_renewal() -> None:
    h = await Harness.start(workers=8)
    try:
        provider = await shared_provider(h)
        await h.create_token(QUIET, "app", provider, duration="1h", reconcile=True)
        assert h.status(QUIET, "app")["revision"] == 1
        h.advance(minutes=50)  # quiet's key renews at 2/3 of its hour: due now, expiring in 10 minutes
        await drain(h)
        for i in range(NOISY_TOKENS):  # all due at once: first issues of 1m keys renewed at 95%
            await h.create_token(NOISY, f"t{i:03}", provider, duration="1m", renewBeforePercentage=95)

        async def renew_loop() -> None:
            """The tenant's `kubectl annotate storagetoken.dev/renew=$(date +%s%N)` loop, on every issued token."""
            stamp = 0
            while True:
                for token in h.kube.list_of("StorageToken", NOISY):
                    if (token.get("status") or {}).get("keyId"):
                        stamp += 1
                        await h.renew(NOISY, token["metadata"]["name"], value=str(stamp), reconcile=False)
                    await asyncio.sleep(0.002)

        async with running_workers(h):
            loop = asyncio.create_task(renew_loop())
            try:
                # Every worker is busy with the noisy namespace and the bucket is contended.
                assert await wait_for(lambda: revisions(h, NOISY) >= 20, 30)
                before = revisions(h, NOISY)
                started = time.monotonic()
                h.operator.manager.token_queue.add((QUIET, "app"))  # quiet's renewal timer fires
                renewed = await wait_for(lambda: h.status(QUIET, "app").get("revision") == 2, 30)
                elapsed = time.monotonic() - started
                noisy_meanwhile = revisions(h, NOISY) - before
            finally:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
        assert renewed, "the quiet namespace's renewal never ran"
        # Served first-come-first-served it would wait for the ~180 noisy issuances queued before it.
        # Fairly, it waits for the reconciles already in flight (one per worker) and a turn or two.
        workers = h.settings.workers
        assert noisy_meanwhile <= 2 * workers + 4, (noisy_meanwhile, elapsed)
        assert elapsed < (2 * workers + 4) * 3 / RATE + 2, (noisy_meanwhile, elapsed)
    finally:
        await h.close()


async def test_a_key_near_expiry_overtakes_fresh_issuance() -> None:
    h = await Harness.start(workers=1)
    try:
        provider = await shared_provider(h)
        await h.create_token("busy", "expiring", provider, duration="1h", reconcile=True)
        h.advance(minutes=56)  # expires in 4 minutes
        await drain(h)
        order: list[str] = []
        manager = h.operator.manager
        reconcile = manager.tokens.reconcile

        async def recording(body: dict[str, Any]) -> Any:
            order.append(body["metadata"]["name"])
            return await reconcile(body)

        manager.tokens.reconcile = recording
        for i in range(30):  # queued first, due first
            await h.create_token("busy", f"fresh{i:02}", provider, duration="1h")
        h.advance(seconds=1)
        manager.token_queue.add(("busy", "expiring"))  # its renewal comes due after they were queued
        async with running_workers(h):
            assert await wait_for(lambda: h.status("busy", "expiring").get("revision") == 2, 30)
        assert order[0] == "expiring", order[:5]
    finally:
        await h.close()


async def test_the_bucket_takes_lanes_in_turn_and_the_soonest_deadline_first() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    bucket = TokenBucket(rate=10.0, burst=1, clock=lambda: now[0], sleep=sleep)
    await bucket.acquire("x", 0.0)  # the burst: nothing queues behind it yet
    served: list[str] = []

    async def call(lane: str, deadline: float, label: str) -> None:
        with claiming(lane, deadline):
            await bucket.acquire()
        served.append(label)

    calls = [asyncio.create_task(call(NOISY, float(100 + i), f"n{i}")) for i in range(50)]
    await asyncio.sleep(0)
    calls += [
        asyncio.create_task(call(QUIET, 500.0, "q-late")),
        asyncio.create_task(call(QUIET, 10.0, "q-soon")),
        asyncio.create_task(call(NOISY, 1.0, "n-urgent")),
    ]
    await asyncio.gather(*calls)
    # Noisy's most urgent call overtakes its own backlog, but not the other lane's turns.
    assert served.index("q-soon") <= 2, served[:6]
    assert served.index("q-late") <= 4, served[:6]
    assert served.index("n-urgent") <= 2, served[:6]
    assert now[0] == pytest.approx(53 / 10.0)  # fairness spends no more of the budget


async def test_a_cancelled_waiter_gives_up_its_place_without_spending_budget() -> None:
    bucket = TokenBucket(rate=20.0, burst=1)
    await bucket.acquire("a", 0.0)
    waiting = asyncio.create_task(bucket.acquire("a", 0.0))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    started = time.monotonic()
    await asyncio.wait_for(bucket.acquire("b", 0.0), 1)
    assert time.monotonic() - started < 0.1 + timedelta(seconds=0).total_seconds()
    assert bucket.waiting() == {}
