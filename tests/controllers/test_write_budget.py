"""API writes per issuance and per rotation: at most 4 each by default (#13), and what routine events add."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from harness import Harness

from storage_token.api.times import parse_time

NS, NAME = "team-a", "app"
WRITES = {
    "patch_status",
    "patch_object",
    "create_secret",
    "replace_secret",
    "delete_secret",
    "set_secret_finalizers",
    "create_event",
}


def writes_since(h: Harness, start: int) -> Counter[str]:
    """The token's own writes: it, its Secret, its events (not the provider's credential rechecks)."""
    return Counter(
        c.method
        for c in h.kube.calls[start:]
        if c.method in WRITES and c.args.get("kind", "StorageToken") == "StorageToken"
    )


async def issue_then_rotate(h: Harness, provider_type: str) -> tuple[Counter[str], Counter[str]]:
    provider = await h.create_provider(provider_type)
    mark = len(h.kube.calls)
    await h.create_token(NS, NAME, provider, duration="1h", revokeGracePeriod="1m")
    await h.reconcile_token(NS, NAME)
    issuance = writes_since(h, mark)
    first = h.status(NS, NAME)
    renews_at = parse_time(str(first["renewalTime"]))
    assert renews_at is not None

    mark = len(h.kube.calls)
    await h.run_until(renews_at)  # the rotation, then its grace, then the old key's revocation
    await h.run_until(h.now + timedelta(minutes=2))
    rotation = writes_since(h, mark)
    after = h.status(NS, NAME)
    assert after["revision"] == 2 and after["pendingRevocations"] == []
    assert first["keyId"] not in h.live_key_ids(provider_type)
    h.check_invariants()
    return issuance, rotation


async def test_an_issuance_and_a_rotation_cost_four_writes_each(harness: Harness, provider_type: str) -> None:
    issuance, rotation = await issue_then_rotate(harness, provider_type)

    # finalizer, intent, Secret, the issued key in status
    assert issuance == Counter({"patch_object": 1, "patch_status": 2, "create_secret": 1}), issuance
    # intent, Secret, the new key in status, the old key's revocation in status
    assert rotation == Counter({"patch_status": 3, "replace_secret": 1}), rotation
    assert harness.kube.events_for(NAME, NS) == []


@pytest.mark.parametrize("provider_type", ["b2"])
async def test_routine_events_are_posted_when_asked_for(provider_type: str) -> None:
    h = await Harness.start(routine_events=True)
    try:
        issuance, rotation = await issue_then_rotate(h, provider_type)
    finally:
        await h.close()

    assert sum(issuance.values()) == 5 and sum(rotation.values()) == 6
    assert [reason for reason, _ in h.kube.events_for(NAME, NS)] == ["Issued", "Renewed", "Revoked"]


async def test_a_repair_is_always_posted_with_its_reason(harness: Harness, provider_type: str) -> None:
    provider = await harness.create_provider(provider_type)
    await harness.create_token(NS, NAME, provider)
    await harness.reconcile_token(NS, NAME)
    assert harness.kube.events_for(NAME, NS) == []  # the first issue is routine

    harness.kube.delete("Secret", NS, NAME)
    await harness.reconcile_token(NS, NAME)

    (reason, message), *_ = harness.kube.events_for(NAME, NS)
    assert reason == "Renewed" and "SecretMissing" in message
    assert "(SecretMissing)" in str(harness.condition(NS, NAME, "Issuing")["message"])


async def test_only_the_read_before_a_first_key_may_come_from_the_watch_cache(
    harness: Harness, provider_type: str
) -> None:
    """Before a first key the Secret read only looks for one in the way, and a create that races a
    stale answer fails anyway; once a key is recorded or intended, every read is the latest."""
    provider = await harness.create_provider(provider_type)
    mark = len(harness.kube.calls)
    await harness.create_token(NS, NAME, provider, duration="1h", revokeGracePeriod="1m")
    await harness.reconcile_token(NS, NAME)
    reads = [c.args["any_version"] for c in harness.kube.calls[mark:] if c.method == "get_secret"]
    assert reads[0] is True and not any(reads[1:]), reads  # the gather's read, then reads after the key

    mark = len(harness.kube.calls)
    renews_at = parse_time(str(harness.status(NS, NAME)["renewalTime"]))
    assert renews_at is not None
    await harness.run_until(renews_at + timedelta(minutes=2))
    later = [c.args["any_version"] for c in harness.kube.calls[mark:] if c.method == "get_secret"]
    assert later and not any(later)


async def test_a_stale_absent_answer_costs_one_key_revoked_and_leaves_the_foreign_secret_alone(
    harness: Harness, provider_type: str
) -> None:
    """The watch cache has not seen a foreign Secret yet: the key is made, the create fails, the next
    (latest) read finds the conflict, and the key goes; the foreign Secret is never written."""
    h = harness
    provider = await h.create_provider(provider_type)
    h.kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": NAME, "namespace": NS}, "data": {}})
    foreign = h.secret(NS, NAME)
    h.kube.stale_secret_reads[(NS, NAME)] = None
    await h.create_token(NS, NAME, provider, duration="1h")
    await h.reconcile_token(NS, NAME)
    h.advance(minutes=6)
    await h.reconcile_all()

    assert not h.kube.stale_secret_reads, "the stale answer was never asked for"
    assert h.condition(NS, NAME)["reason"] == "SecretConflict"
    assert h.live_key_ids(provider_type) == set()
    assert h.secret(NS, NAME) == foreign
    h.check_invariants()


async def test_a_stale_foreign_answer_only_delays_the_first_key(harness: Harness, provider_type: str) -> None:
    h = harness
    provider = await h.create_provider(provider_type)
    gone = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": NAME, "namespace": NS}, "data": {}}
    h.kube.stale_secret_reads[(NS, NAME)] = gone  # deleted a moment ago; the watch cache still has it
    await h.create_token(NS, NAME, provider, duration="1h")
    await h.reconcile_token(NS, NAME)

    assert not h.kube.stale_secret_reads, "the stale answer was never asked for"
    assert "SecretConflict" in [reason for reason, _ in h.kube.events_for(NAME, NS)]  # blocked first, then
    assert h.condition(NS, NAME)["status"] == "True", h.status(NS, NAME)  # issued on the next, latest read
    assert len(h.live_key_ids(provider_type)) == 1
    h.check_invariants()
