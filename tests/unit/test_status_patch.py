"""Typed status writes: every field lands under a name the CRD declares, and reads back as written."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from storage_token.api.status_patch import UNSET, Failure, ProviderStatusPatch, StatusPatch, camel
from storage_token.api.token import Intent, PendingRevocation, TokenStatus

CRDS = Path(__file__).resolve().parents[2] / "crds"
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def status_schema(kind: str) -> dict[str, Any]:
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
            return dict(version["schema"]["openAPIV3Schema"]["properties"]["status"])
    raise LookupError(kind)


@pytest.mark.parametrize(
    ("patch_type", "kinds"),
    [(StatusPatch, ["StorageToken"]), (ProviderStatusPatch, ["StorageProvider", "ClusterStorageProvider"])],
)
def test_every_patch_field_is_a_status_field_of_the_crd(patch_type: type, kinds: list[str]) -> None:
    for kind in kinds:
        declared = set(status_schema(kind)["properties"])
        written = {camel(f.name) for f in fields(patch_type)}
        assert written <= declared, f"{kind}: {sorted(written - declared)} not in the CRD"


def test_nested_values_use_the_names_the_crd_declares() -> None:
    props = status_schema("StorageToken")["properties"]
    pending = PendingRevocation("k1", "n1", NOW, "B2/b2", NOW, 1, "e", "s", awaiting_rollout=2, not_before=NOW)
    assert set(pending.to_status()) <= set(props["pendingRevocations"]["items"]["properties"])
    assert set(Intent("n", 2, NOW, "h", "B2/b2").to_status()) <= set(props["intent"]["properties"])
    assert set(StatusPatch(last_failure=Failure(NOW, "r", "m")).to_status()["lastFailure"]) <= set(
        props["lastFailure"]["properties"]
    )


def test_unset_fields_are_not_written_and_none_removes_one() -> None:
    assert StatusPatch().to_status() == {} and not StatusPatch()
    patch = StatusPatch(key_id=None, revision=3)
    assert patch and patch.to_status() == {"keyId": None, "revision": 3}
    patch.intent = UNSET
    assert "intent" not in patch.to_status()


def test_a_written_status_reads_back_as_written() -> None:
    pending = [
        PendingRevocation("old", "sto-old", NOW + timedelta(minutes=5), "StorageProvider/b2", NOW + timedelta(hours=1)),
        PendingRevocation("older", "sto-older", NOW, "StorageProvider/b2", NOW, 2, "503", "app", 4, NOW),
    ]
    intent = Intent("sto-next", 5, NOW, "hash", "StorageProvider/b2")
    written = StatusPatch(
        provider_type="b2",
        provider="StorageProvider/b2",
        secret_name="app",
        key_id="k4",
        key_name="sto-4",
        issued_at=NOW,
        not_after=NOW + timedelta(hours=1),
        renewal_time=NOW + timedelta(minutes=40),
        next_renewal_window=NOW + timedelta(minutes=30),
        revision=4,
        spec_hash="hash",
        intent=intent,
        failed_attempts=2,
        next_attempt=NOW + timedelta(seconds=30),
        handled_renew_request="r1",
        pending_revocations=pending,
        observed_generation=7,
    ).to_status()

    read = TokenStatus.parse(written)

    assert read == TokenStatus(
        key_id="k4",
        key_name="sto-4",
        secret_name="app",
        provider_type="b2",
        provider="StorageProvider/b2",
        handled_renew_request="r1",
        not_after=NOW + timedelta(hours=1),
        issued_at=NOW,
        renewal_time=NOW + timedelta(minutes=40),
        next_renewal_window=NOW + timedelta(minutes=30),
        revision=4,
        spec_hash="hash",
        intent=intent,
        failed_attempts=2,
        next_attempt=NOW + timedelta(seconds=30),
        pending_revocations=tuple(pending),
        observed_generation=7,
    )
    assert "awaitingRollout" not in written["pendingRevocations"][0]  # only while one waits for a rollout
    assert written["pendingRevocations"][1]["awaitingRollout"] == 4


def test_a_later_patch_wins_field_by_field_and_leaves_the_rest() -> None:
    first = StatusPatch(revision=2, key_name="k2", pending_revocations=[])
    later = StatusPatch(revision=3, key_id=None)
    merged = first.then(later)
    assert merged.to_status() == {"revision": 3, "keyName": "k2", "keyId": None, "pendingRevocations": []}
    assert first.then(StatusPatch()).to_status() == first.to_status()


def test_applied_to_is_what_the_merge_patch_would_leave() -> None:
    before = {"keyId": "a", "keyName": "k1", "rollout": {"revision": 1, "completedAt": "x"}, "revision": 1}
    patch = StatusPatch(key_id=None, revision=2, rollout=Intent("k2", 2, NOW, spec_hash="h"))
    after = patch.applied_to(before)
    # None removes, scalars replace, objects merge key by key (RFC 7386), the input stays as it was
    assert "keyId" not in after and after["revision"] == 2 and after["keyName"] == "k1"
    assert after["rollout"]["completedAt"] == "x" and after["rollout"]["keyName"] == "k2"
    assert before["keyId"] == "a" and "keyName" not in before["rollout"]
