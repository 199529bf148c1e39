"""deletionPolicy: Retain only where the provider allows it (policy.allowRetain, default false) (#14)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml

from storage_token.api.provider import Ceiling
from storage_token.api.token import ProviderRef, SecretSpec, TokenSpec
from storage_token.policy.ceiling import ceiling_violation, retain_allowed

CRDS = Path(__file__).resolve().parents[2] / "crds"


def token(deletion_policy: str) -> TokenSpec:
    return TokenSpec(
        provider_ref=ProviderRef("StorageProvider", "p"),
        permissions=("read",),
        duration=timedelta(hours=1),
        secret=SecretSpec(name="s"),
        buckets=("data",),
        deletion_policy=deletion_policy,
    )


def test_retain_is_refused_by_default_with_a_reason_naming_the_policy_field() -> None:
    ceiling = Ceiling.parse({"allowedBuckets": ["*"]})
    message = ceiling_violation(token("Retain"), ceiling, "b2")
    assert message.startswith("spec.deletionPolicy:") and "policy.allowRetain" in message
    assert not retain_allowed(token("Retain"), ceiling)
    assert ceiling_violation(token("Revoke"), ceiling, "b2") == ""


def test_retain_is_admitted_only_when_the_provider_says_so_explicitly() -> None:
    assert (
        ceiling_violation(token("Retain"), Ceiling.parse({"allowedBuckets": ["*"], "allowRetain": True}), "us3") == ""
    )
    assert retain_allowed(token("Retain"), Ceiling.parse({"allowedBuckets": ["*"], "allowRetain": True}))
    # Only a real boolean true opens it: a string that a lax client sent stays closed.
    assert not Ceiling.parse({"allowRetain": "true"}).allow_retain
    assert not retain_allowed(token("Revoke"), Ceiling.parse({"allowRetain": True}))


def test_unknown_deletion_policies_fail_closed_too() -> None:
    assert "deletionPolicy" in ceiling_violation(token("Orphan"), Ceiling.parse({"allowedBuckets": ["*"]}), "b2")


def test_both_provider_crds_carry_allow_retain_defaulting_to_false() -> None:
    for name in ("storagetoken.dev_storageproviders.yaml", "storagetoken.dev_clusterstorageproviders.yaml"):
        crd = yaml.safe_load((CRDS / name).read_text())
        policy = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["policy"]
        field = policy["properties"]["allowRetain"]
        assert field["type"] == "boolean" and field["default"] is False, name
        assert Ceiling().allow_retain is False
