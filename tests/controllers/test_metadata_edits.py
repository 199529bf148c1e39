"""Editing only spec.secret.labels/annotations rewrites the Secret around the same key: no new key (#14)."""

from __future__ import annotations

from typing import Any

from harness import Harness

from storage_token.controllers.gather import legacy_spec_hash

NS, NAME = "team-a", "app"


def issued_count(h: Harness, provider_type: str) -> int:
    return len(h.emulators.issued_secrets(provider_type))


def metadata(h: Harness) -> dict[str, Any]:
    secret = h.secret(NS, NAME)
    assert secret is not None
    return secret["metadata"]


async def test_label_and_annotation_edits_keep_the_key(harness: Harness, provider_type: str) -> None:
    h = harness
    provider = await h.create_provider(provider_type)
    await h.create_token(
        NS, NAME, provider, secret={"labels": {"team": "a", "tier": "web"}, "annotations": {"owner": "alice"}}
    )
    await h.reconcile_token(NS, NAME)
    before = h.status(NS, NAME)
    creates = issued_count(h, provider_type)
    data = h.secret(NS, NAME)["data"]  # type: ignore[index]

    await h.update_spec(
        NS, NAME, {"secret": {"labels": {"team": "b", "tier": None, "new": "yes"}, "annotations": {"owner": "bob"}}}
    )

    after = h.status(NS, NAME)
    assert issued_count(h, provider_type) == creates, "a label-only edit created a key at the provider"
    assert (after["keyId"], after["revision"]) == (before["keyId"], before["revision"])
    labels, annotations = metadata(h)["labels"], metadata(h)["annotations"]
    assert labels["team"] == "b" and labels["new"] == "yes" and "tier" not in labels
    assert annotations["owner"] == "bob"
    assert h.secret(NS, NAME)["data"] == data  # type: ignore[index]
    assert h.condition(NS, NAME)["status"] == "True"
    assert after.get("observedGeneration") == h.token(NS, NAME)["metadata"]["generation"]  # type: ignore[index]
    h.check_invariants()


async def test_a_template_edit_still_rotates(harness: Harness) -> None:
    """The key bytes go into the Secret only at issuance: a new layout needs a new key."""
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, reconcile=True)
    creates = issued_count(h, "b2")
    await h.update_spec(NS, NAME, {"secret": {"template": {"data": {"x": "{{ keyName }}"}}}})
    assert issued_count(h, "b2") == creates + 1


async def test_a_status_recorded_under_the_legacy_hash_is_not_a_spec_change(harness: Harness) -> None:
    """Upgrading from a version that hashed labels too re-issues nothing (and records the new hash)."""
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, secret={"labels": {"team": "a"}}, reconcile=True)
    token = h.token(NS, NAME)
    assert token is not None
    legacy = legacy_spec_hash(token["spec"])
    await h.kube.patch_status("StorageToken", NS, NAME, {"status": {"specHash": legacy}})
    assert h.status(NS, NAME)["specHash"] == legacy != token["status"]["specHash"]
    creates = issued_count(h, "b2")

    await h.reconcile_token(NS, NAME)
    assert issued_count(h, "b2") == creates
    assert h.status(NS, NAME)["specHash"] != legacy

    await h.update_spec(NS, NAME, {"secret": {"labels": {"team": "b"}}})
    assert issued_count(h, "b2") == creates
    assert metadata(h)["labels"]["team"] == "b"
