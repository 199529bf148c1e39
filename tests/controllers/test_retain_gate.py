"""deletionPolicy: Retain gated by the provider's policy.allowRetain, end to end in the controller tier (#14)."""

from __future__ import annotations

from typing import Any

from harness import Harness

NS, NAME = "team-a", "app"


def strict_policy(h: Harness, provider_type: str, **extra: Any) -> dict[str, Any]:
    """The harness's usual test ceiling, without allowRetain unless `extra` says so."""
    return {
        "allowedBuckets": h.emulators.buckets(provider_type),
        "minManualRenewInterval": "0s",
        "minRenewalInterval": "0s",
        **extra,
    }


async def test_a_token_asking_retain_is_refused_before_any_provider_call(harness: Harness, provider_type: str) -> None:
    h = harness
    provider = await h.create_provider(provider_type, policy=strict_policy(h, provider_type))
    await h.create_token(NS, NAME, provider, deletionPolicy="Retain", reconcile=True)

    ready = h.condition(NS, NAME)
    assert ready["status"] == "False" and ready["reason"] == "PolicyViolation", ready
    assert "policy.allowRetain" in ready["message"]
    assert h.keys_at_provider(provider_type, live_only=False) == [], "a key was created for a refused token"
    assert h.secret(NS, NAME) is None
    h.check_invariants()


async def test_switching_to_retain_and_deleting_at_once_still_revokes(harness: Harness, provider_type: str) -> None:
    """The edit never reconciled (the tenant deletes straight after): deletion asks the provider's policy too."""
    h = harness
    provider = await h.create_provider(provider_type, policy=strict_policy(h, provider_type))
    await h.create_token(NS, NAME, provider, reconcile=True)
    key_id = h.status(NS, NAME)["keyId"]
    assert key_id in h.live_key_ids(provider_type)

    await h.update_spec(NS, NAME, {"deletionPolicy": "Retain"}, reconcile=False)
    assert await h.delete_token(NS, NAME) is None

    assert key_id not in h.live_key_ids(provider_type), "a key outlived its token against the provider's policy"
    h.check_invariants()


async def test_retain_where_the_provider_allows_it_keeps_the_key(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2", policy=strict_policy(h, "b2", allowRetain=True))
    await h.create_token(NS, NAME, provider, deletionPolicy="Retain", reconcile=True)
    key_id = h.status(NS, NAME)["keyId"]
    assert await h.delete_token(NS, NAME) is None
    assert key_id in h.live_key_ids("b2")
    h.check_invariants(allowed={str(key_id)})
