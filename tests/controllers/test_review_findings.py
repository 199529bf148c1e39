"""Findings of the attacker review of the lifecycle rebuild, one test each (all failed before their fix)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from harness import AFTER_CREATE, AFTER_SECRET, Crash, Harness

from storage_token.api.provider import ProviderSpec
from storage_token.controllers.tokens import ABANDON_ANNOTATION
from storage_token.providers.b2 import B2Provider
from storage_token.providers.base import KeySpec

NS, NAME = "team-a", "app"


# -- no token can make a worker spin ----------------------------------------------------------------
async def test_a_backing_off_renewal_past_its_time_is_not_reconciled_in_a_loop(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="24h")
    await h.reconcile_token(NS, NAME)
    h.advance(hours=17)  # past the renewal time, then every create fails
    h.emulators.emulator("b2").faults.inject("status", "b2_create_key", status=503, times=None)
    await h.reconcile_token(NS, NAME)
    h.advance(seconds=1)
    for _ in range(3):  # any event during the backoff (provider Ready again, a Secret event, a resync)
        token = h.token(NS, NAME)
        assert token is not None
        outcome = await h.operator.tokens.reconcile(token)
        assert outcome.wakeup is not None and outcome.wakeup > h.now


async def test_an_expired_key_with_a_failing_provider_backs_off_instead_of_spinning(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="1h")
    await h.reconcile_token(NS, NAME)
    h.emulators.emulator("b2").faults.inject("status", "b2_create_key", status=503, times=None)
    h.advance(hours=2)
    delays = []
    for _ in range(4):
        token = h.token(NS, NAME)
        assert token is not None
        outcome = await h.operator.tokens.reconcile(token)
        assert outcome.wakeup is not None
        delays.append((outcome.wakeup - h.now).total_seconds())
    assert min(delays) > 0, delays


# -- an intent is resolved at the provider it was asked of ----------------------------------------
async def test_deleting_after_a_provider_switch_revokes_the_interrupted_key(harness: Harness) -> None:
    h = harness
    first, second = await h.create_provider("b2"), await h.create_provider("us3")
    await h.create_token(NS, NAME, first, duration="24h")
    await h.reconcile_token(NS, NAME)
    h.arm_crash(AFTER_CREATE, token=NAME)
    h.kube.update("StorageToken", NS, NAME, {"spec": {"providerRef": second.ref, "buckets": ["us3-data"]}})
    await h.reconcile_until_crash(NS, NAME)
    assert len(h.live_key_ids("us3")) == 1
    await h.restart()
    assert await h.delete_token(NS, NAME) is None
    assert h.live_key_ids("us3") == set() and h.live_key_ids("b2") == set()


async def test_switching_provider_after_an_interrupted_issue_revokes_the_first_key(harness: Harness) -> None:
    h = harness
    await h.restart(sweep_min_age=timedelta(0))
    first, second = await h.create_provider("b2"), await h.create_provider("us3")
    await h.create_token(NS, NAME, first, duration="24h")
    h.arm_crash(AFTER_CREATE, token=NAME)
    await h.reconcile_until_crash(NS, NAME)
    interrupted = h.live_key_ids("b2")
    assert len(interrupted) == 1
    await h.restart(sweep_min_age=timedelta(0))
    await h.update_spec(NS, NAME, {"providerRef": second.ref, "buckets": ["us3-data"]})
    await h.reconcile_all()
    assert h.status(NS, NAME)["provider"] == second.label
    assert not interrupted & h.live_key_ids("b2"), "the first provider's key of the interrupted intent lives on"
    h.check_invariants()


# -- tenants can't escape a revocation or mint at will --------------------------------------------
async def test_abandon_keys_never_skips_a_revocation_the_provider_can_do(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="24h", revokeGracePeriod="1h")
    await h.reconcile_token(NS, NAME)
    key = h.status(NS, NAME)["keyId"]
    h.kube.update(provider.kind, NS, provider.name, {"spec": {"policy": {"allowedBuckets": ["nothing-*"]}}})
    await h.reconcile_all()
    assert h.condition(NS, NAME)["reason"] == "PolicyViolation"
    h.kube.update("StorageToken", NS, NAME, {"metadata": {"annotations": {ABANDON_ANNOTATION: "true"}}})
    assert await h.delete_token(NS, NAME) is None
    assert key not in h.live_key_ids("b2"), "abandon-keys let an over-ceiling key outlive its token"


async def test_spec_edits_are_rate_limited_like_renewals(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2", policy={"allowedBuckets": ["*"]})  # the default limits
    await h.create_token(NS, NAME, provider, duration="24h", revokeGracePeriod="0s")
    await h.reconcile_token(NS, NAME)
    for attempt in range(30):
        # A template edit needs a new key (label-only edits need none: test_metadata_edits).
        await h.update_spec(NS, NAME, {"secret": {"template": {"data": {"edit": f"{{{{ keyName }}}}{attempt}"}}}})
    assert h.status(NS, NAME)["revision"] == 1, "template edits minted keys"
    assert h.condition(NS, NAME, "Issuing")["reason"] == "RenewalRateLimited"
    h.advance(minutes=5, seconds=1)
    await h.reconcile_token(NS, NAME)
    assert h.status(NS, NAME)["revision"] == 2, "the edit takes effect once the interval passed"


# -- no Secret keeps a revoked key ----------------------------------------------------------------
@pytest.mark.parametrize("provider_type", ["b2", "us3"])
async def test_an_intent_given_up_while_blocked_takes_its_secret_along(harness: Harness, provider_type: str) -> None:
    h = harness
    provider = await h.create_provider(provider_type)
    await h.create_token(NS, NAME, provider, duration="24h")
    h.arm_crash(AFTER_SECRET, token=NAME)
    await h.reconcile_until_crash(NS, NAME)
    assert h.secret(NS, NAME) is not None
    await h.restart()
    h.kube.update(provider.kind, NS, provider.name, {"spec": {"policy": {"allowedBuckets": ["nothing-*"]}}})
    await h.reconcile_all()
    assert h.condition(NS, NAME)["reason"] == "PolicyViolation"
    h.check_invariants()


async def test_a_renamed_secrets_old_copy_goes_with_its_key_after_a_crash(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="24h", revokeGracePeriod="5m", secret={"name": "s1"})
    await h.reconcile_token(NS, NAME)
    # The crash comes right after the status recorded the new key, before the old Secret was deleted.
    h.kube.fail_next(
        "patch_status",
        Crash("after-final-status"),
        after=True,
        when=lambda a: bool((a["patch"].get("status") or {}).get("keyId")),
    )
    h.kube.update("StorageToken", NS, NAME, {"spec": {"secret": {"name": "s2"}}})
    with pytest.raises(Crash):
        await h.reconcile_token(NS, NAME)
    await h.restart()
    await h.reconcile_all()
    h.advance(minutes=6)
    await h.reconcile_all()
    assert h.secret(NS, "s1") is None, "the old Secret holds the revoked key"
    assert h.secret(NS, "s2") is not None
    h.check_invariants()


# -- the sweep ------------------------------------------------------------------------------------
async def test_a_lagging_listing_never_makes_a_live_current_key_missing(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="24h")
    await h.reconcile_token(NS, NAME)
    key = h.status(NS, NAME)["keyId"]
    h.advance(hours=1)
    body = h.provider(provider)
    assert body is not None
    handle = await h.operator.manager.pool.get(ProviderSpec.parse(body))
    original = handle.client.list_keys

    async def lagging(prefix: str = "") -> list[Any]:
        return [k for k in await original(prefix) if k.key_id != key]  # the listing misses the key

    handle.client.list_keys = lagging  # type: ignore[method-assign]
    await h.sweep()
    assert h.status(NS, NAME)["keyId"] == key, "a live key was declared missing and replaced"
    assert key in h.live_key_ids("b2")


async def test_a_duplicate_with_a_recorded_name_but_another_id_is_swept(harness: Harness) -> None:
    h = harness
    await h.restart(sweep_min_age=timedelta(0))
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="24h")
    await h.reconcile_token(NS, NAME)
    status = h.status(NS, NAME)
    emulator = h.emulators.emulator("b2")
    account = h.emulators.credentials("b2")
    client = B2Provider(
        account["applicationKeyId"], account["applicationKey"], endpoint=emulator.url, allow_insecure=True
    )
    try:  # a second key under the recorded name, as a lost create response would leave
        duplicate = (
            await client.issue(KeySpec(name=status["keyName"], permissions=("read",), duration_seconds=3600))
        ).key_id
    finally:
        await client.aclose()
    h.advance(minutes=1)
    await h.sweep()
    assert duplicate not in h.live_key_ids("b2"), "the sweep exempted a duplicate by its name"
    assert status["keyId"] in h.live_key_ids("b2")
