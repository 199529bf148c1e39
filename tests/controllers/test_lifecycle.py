"""A StorageToken's life against both providers: issue, rotate, re-scope, drift, delete."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from harness import Harness, ProviderInfo

from storage_token.api.times import parse_time

NS, NAME = "team-a", "app"


async def issued(h: Harness, provider_type: str, **spec: Any) -> tuple[ProviderInfo, dict[str, object]]:
    provider = await h.create_provider(provider_type)
    await h.create_token(NS, NAME, provider, **spec)
    await h.reconcile_token(NS, NAME)
    return provider, h.status(NS, NAME)


def secret_access_key_id(h: Harness) -> str:
    secret = h.secret(NS, NAME)
    assert secret is not None
    return base64.b64decode(secret["data"]["accessKeyId"]).decode()


def access_key_of(h: Harness, provider_type: str, key_id: str) -> str:
    return next(k.access_key_id for k in h.keys_at_provider(provider_type) if k.key_id == key_id)


async def test_first_issue_puts_the_one_live_key_in_the_secret(harness: Harness, provider_type: str) -> None:
    _, status = await issued(harness, provider_type)

    assert harness.condition(NS, NAME)["status"] == "True"
    assert harness.live_key_ids(provider_type) == {status["keyId"]}
    assert secret_access_key_id(harness) == access_key_of(harness, provider_type, str(status["keyId"]))
    assert "intent" not in status
    harness.check_invariants()


async def test_a_settled_token_reconciles_without_writing(harness: Harness, provider_type: str) -> None:
    await issued(harness, provider_type)
    writes = harness.kube.write_count

    await harness.reconcile_token(NS, NAME)

    assert harness.kube.write_count == writes


async def test_renew_annotation_rotates_then_revokes_the_old_key_after_the_grace(
    harness: Harness, provider_type: str
) -> None:
    _, before = await issued(harness, provider_type, revokeGracePeriod="5m")

    await harness.renew(NS, NAME)
    after = harness.status(NS, NAME)
    assert after["keyId"] != before["keyId"] and after["revision"] == 2
    assert [p["keyId"] for p in after["pendingRevocations"]] == [before["keyId"]]
    assert harness.live_key_ids(provider_type) == {before["keyId"], after["keyId"]}  # within the grace
    assert secret_access_key_id(harness) == access_key_of(harness, provider_type, str(after["keyId"]))
    harness.check_invariants()

    harness.advance(minutes=5, seconds=1)
    await harness.reconcile_token(NS, NAME)

    assert harness.live_key_ids(provider_type) == {after["keyId"]}
    assert harness.status(NS, NAME)["pendingRevocations"] == []
    harness.check_invariants()


async def test_keys_rotate_on_time_for_hours_with_one_live_key_outside_the_grace(
    harness: Harness, provider_type: str
) -> None:
    _, first = await issued(harness, provider_type, duration="1h", revokeGracePeriod="2m")
    renews_at = parse_time(str(first["renewalTime"]))
    assert renews_at is not None

    await harness.run_until(harness.now + timedelta(hours=4))

    status = harness.status(NS, NAME)
    assert int(status["revision"]) >= 5  # renewed at about 2/3 of each hour
    assert harness.live_key_ids(provider_type) == {status["keyId"]}
    assert harness.condition(NS, NAME)["status"] == "True"
    harness.check_invariants()


async def test_a_scope_change_issues_a_new_key_and_retires_the_old_one(harness: Harness, provider_type: str) -> None:
    _, before = await issued(harness, provider_type, revokeGracePeriod="1m")

    await harness.update_spec(NS, NAME, {"permissions": ["read", "list", "write"]})

    after = harness.status(NS, NAME)
    assert after["keyId"] != before["keyId"] and after["observedGeneration"] == 2
    harness.check_invariants()
    harness.advance(minutes=2)
    await harness.reconcile_token(NS, NAME)
    assert harness.live_key_ids(provider_type) == {after["keyId"]}
    harness.check_invariants()


async def test_a_deleted_secret_is_written_again(harness: Harness, provider_type: str) -> None:
    await issued(harness, provider_type, revokeGracePeriod="1m")
    harness.kube.delete("Secret", NS, NAME)

    await harness.reconcile_token(NS, NAME)

    assert harness.secret(NS, NAME) is not None
    harness.advance(minutes=2)
    await harness.reconcile_token(NS, NAME)
    assert harness.live_key_ids(provider_type) == {harness.status(NS, NAME)["keyId"]}
    harness.check_invariants()


async def test_a_key_revoked_at_the_provider_is_replaced_after_the_sweep_notices(
    harness: Harness, provider_type: str
) -> None:
    _, before = await issued(harness, provider_type)
    harness.emulators.delete_key(provider_type, str(before["keyId"]))

    await harness.sweep()
    assert harness.status(NS, NAME)["keyId"] == before["keyId"], "a key issued moments ago may not be listed yet"
    harness.advance(harness.settings.sweep_min_age, seconds=1)
    await harness.sweep()

    after = harness.status(NS, NAME)
    assert after["keyId"] != before["keyId"]
    assert harness.live_key_ids(provider_type) == {after["keyId"]}
    harness.check_invariants()


async def test_deleting_a_token_revokes_its_keys_and_the_secret_goes_with_it(
    harness: Harness, provider_type: str
) -> None:
    await issued(harness, provider_type, revokeGracePeriod="5m")
    await harness.renew(NS, NAME)  # a current key and a pending revocation
    assert len(harness.live_key_ids(provider_type)) == 2

    assert await harness.delete_token(NS, NAME) is None

    assert harness.live_key_ids(provider_type) == set()
    assert harness.secret(NS, NAME) is None
    harness.check_invariants()


async def test_a_deleted_token_s_secret_goes_before_its_key_is_revoked(harness: Harness, provider_type: str) -> None:
    # The namespace (or the token) is torn down: no Secret may hold the key once it is revoked.
    _, status = await issued(harness, provider_type)
    await harness.delete_token(NS, NAME, reconcile=False)
    harness.crash_on_provider_call("revoke", when="before")

    await harness.reconcile_until_crash(NS, NAME)

    assert harness.secret(NS, NAME) is None
    assert status["keyId"] in harness.live_key_ids(provider_type)  # the revoke was about to happen
    await harness.restart()
    assert await harness.reconcile_token(NS, NAME) is None
    assert harness.live_key_ids(provider_type) == set()


async def test_deleting_a_retained_token_keeps_its_current_key(harness: Harness, provider_type: str) -> None:
    _, status = await issued(harness, provider_type, deletionPolicy="Retain")

    assert await harness.delete_token(NS, NAME) is None

    assert harness.live_key_ids(provider_type) == {status["keyId"]}
    assert harness.secret(NS, NAME) is None  # garbage-collected with its owner
    harness.check_invariants(allowed={str(status["keyId"])})


async def test_the_grace_period_counts_from_the_secret_write_not_the_reconciles_start(
    harness: Harness, provider_type: str
) -> None:
    """Under load the provider call and the Secret write take time; the old key's floor must not shrink."""
    h = harness
    provider = await h.create_provider(provider_type)
    await h.create_token("team-a", "slow", provider, duration="24h", revokeGracePeriod="1m", reconcile=True)
    written = h.slow_secret_writes(1.4)  # the write lands mid-second
    await h.renew("team-a", "slow")
    pending = h.status("team-a", "slow")["pendingRevocations"]
    assert written and len(pending) == 1
    due = parse_time(pending[0]["dueAt"])
    assert due is not None and due >= written[0] + timedelta(minutes=1), (due, written[0])
