"""`secret.keepPrevious`: the Secret also holds the replaced key pair until that key is revoked, never after."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from harness import Harness, ProviderInfo, ProviderKey
from invariants import violations

from storage_token.controllers.secret_writer import ANNOTATION_PREVIOUS_KEY_ID_HASH, key_id_hash
from storage_token.kube.api import Conflict

NS, NAME = "team-a", "app"
GRACE = timedelta(minutes=2)


def data(h: Harness) -> dict[str, str]:
    secret = h.secret(NS, NAME)
    assert secret is not None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def annotations(h: Harness) -> dict[str, str]:
    secret = h.secret(NS, NAME)
    assert secret is not None
    return dict(secret["metadata"].get("annotations") or {})


def key(h: Harness, provider: str, key_id: str) -> ProviderKey:
    return next(k for k in h.keys_at_provider(provider, live_only=False) if k.key_id == key_id)


async def rotated(h: Harness, provider: ProviderInfo, preset: str = "default", **spec: Any) -> ProviderKey:
    """A keepPrevious token, issued and renewed once; the key it replaced."""
    secret = {"keepPrevious": True, "template": {"preset": preset}}
    await h.create_token(NS, NAME, provider, duration="24h", revokeGracePeriod="2m", secret=secret, **spec)
    await h.reconcile_token(NS, NAME)
    old = key(h, provider.type, h.status(NS, NAME)["keyId"])
    await h.renew(NS, NAME)
    return old


async def test_the_secret_keeps_the_previous_pair_until_it_is_revoked(harness: Harness, provider_type: str) -> None:
    h = harness
    provider = await h.create_provider(provider_type)
    old = await rotated(h, provider)
    new = key(h, provider_type, h.status(NS, NAME)["keyId"])
    held = data(h)
    assert (held["accessKeyId"], held["secretAccessKey"]) == (new.access_key_id, new.secret)
    assert (held["previousAccessKeyId"], held["previousSecretAccessKey"]) == (old.access_key_id, old.secret)
    assert annotations(h)[ANNOTATION_PREVIOUS_KEY_ID_HASH] == key_id_hash(old.key_id)
    await h.reconcile_token(NS, NAME)  # the Secret is ours and intact: no drift repair, no new key
    assert h.status(NS, NAME)["revision"] == 2
    h.check_invariants()

    await h.run_until(h.now + GRACE)
    assert old.key_id not in h.live_key_ids(provider_type)
    held = data(h)
    assert "previousAccessKeyId" not in held and "previousSecretAccessKey" not in held
    assert held["accessKeyId"] == new.access_key_id
    assert ANNOTATION_PREVIOUS_KEY_ID_HASH not in annotations(h)
    await h.reconcile_token(NS, NAME)
    assert h.status(NS, NAME)["revision"] == 2, "the rewritten Secret was taken for drift"
    h.check_invariants()


@pytest.mark.parametrize(
    ("preset", "names"),
    [
        ("aws", ("AWS_ACCESS_KEY_ID_PREVIOUS", "AWS_SECRET_ACCESS_KEY_PREVIOUS")),
        ("rclone", ("rclone-previous.conf",)),
        ("s3cmd", (".s3cfg-previous",)),
    ],
)
async def test_each_preset_keeps_it_under_its_documented_names(
    harness: Harness, preset: str, names: tuple[str, ...]
) -> None:
    h = harness
    provider = await h.create_provider("b2")
    old = await rotated(h, provider, preset)
    held = data(h)
    kept = " ".join(held[name] for name in names)
    assert old.access_key_id in kept and old.secret in kept
    await h.run_until(h.now + GRACE)
    assert not set(names) & set(data(h))
    h.check_invariants()


async def test_without_keep_previous_only_the_current_pair_is_held(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="24h")
    await h.reconcile_token(NS, NAME)
    old = key(h, "b2", h.status(NS, NAME)["keyId"])
    await h.renew(NS, NAME)
    assert old.secret not in " ".join(data(h).values())
    assert ANNOTATION_PREVIOUS_KEY_ID_HASH not in annotations(h)


async def test_a_secret_that_moved_delays_the_revocation_instead_of_keeping_a_revoked_key(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("us3")
    old = await rotated(h, provider)
    h.advance(GRACE)
    h.kube.fail_next("replace_secret", Conflict("the Secret changed"))
    await h.reconcile_token(NS, NAME)
    assert old.key_id in h.live_key_ids("us3"), "revoked while the Secret still held it"
    assert data(h)["previousAccessKeyId"] == old.access_key_id
    h.check_invariants()
    await h.run_until(h.now + timedelta(seconds=30))
    assert old.key_id not in h.live_key_ids("us3")
    assert "previousAccessKeyId" not in data(h)
    h.check_invariants()


async def test_a_dead_previous_key_is_never_carried(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    secret = {"keepPrevious": True}
    await h.create_token(NS, NAME, provider, duration="24h", secret=secret)
    await h.reconcile_token(NS, NAME)
    gone = h.status(NS, NAME)["keyId"]
    h.advance(minutes=11)  # older than the sweep's minimum age
    h.emulators.delete_key("b2", gone)  # revoked out of band
    await h.sweep()
    assert h.status(NS, NAME)["keyId"] != gone
    assert "previousAccessKeyId" not in data(h)
    h.check_invariants()


async def test_previous_key_waits_for_the_rollout_with_restart_targets(harness: Harness) -> None:
    h = harness
    h.kube.create_namespace(NS)
    pod = {"containers": [{"name": "c", "image": "a", "envFrom": [{"secretRef": {"name": NAME}}]}]}
    workload = {"template": {"metadata": {}, "spec": pod}, "replicas": 1}
    h.kube.create({"kind": "Deployment", "metadata": {"name": "web", "namespace": NS}, "spec": workload})
    provider = await h.create_provider("b2")
    old = await rotated(h, provider, restartTargets=[{"kind": "Deployment", "name": "web"}])
    await h.run_until(h.now + timedelta(minutes=10))
    assert data(h)["previousAccessKeyId"] == old.access_key_id  # still rolling: both pairs stay
    body = h.kube.get("Deployment", NS, "web")
    assert body is not None
    generation = body["metadata"]["generation"]
    h.kube.set_workload_status(
        "Deployment",
        NS,
        "web",
        {
            "observedGeneration": generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        },
    )
    await h.reconcile_token(NS, NAME)
    assert old.key_id not in h.live_key_ids("b2")
    assert "previousAccessKeyId" not in data(h)
    h.check_invariants()


async def test_the_invariants_catch_a_secret_keeping_a_revoked_previous_key(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("us3")
    old = await rotated(h, provider)
    assert not violations(h.kube, h.emulators, h.now, prefix=h.prefix)
    h.emulators.delete_key("us3", old.key_id)  # revoked while the Secret still keeps it
    found = violations(h.kube, h.emulators, h.now, prefix=h.prefix)
    assert any("previous key pair" in v and "no live key" in v for v in found), found


async def test_a_label_edit_while_the_pair_is_kept_still_removes_it_before_the_revocation(harness: Harness) -> None:
    """The metadata-only rewrite (labels changed, key kept) must keep what marks the previous pair,
    or the revocation step can't find the pair and the Secret keeps a revoked key (attacker review)."""
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="24h", revokeGracePeriod="10m", secret={"keepPrevious": True})
    await h.reconcile_token(NS, NAME)
    old = h.status(NS, NAME)["keyId"]
    await h.renew(NS, NAME)
    await h.update_spec(NS, NAME, {"secret": {"keepPrevious": True, "labels": {"team": "x"}}})
    await h.reconcile_token(NS, NAME)
    assert h.secret(NS, NAME)["metadata"]["labels"]["team"] == "x"  # type: ignore[index]
    assert annotations(h)[ANNOTATION_PREVIOUS_KEY_ID_HASH] == key_id_hash(old)
    await h.run_until(h.now + timedelta(minutes=11))
    assert old not in h.live_key_ids("b2")
    assert "previousAccessKeyId" not in data(h)
    h.check_invariants()
