"""The invariant checks themselves: each one catches the state it is about (else the matrix proves nothing)."""

from __future__ import annotations

import base64
import copy

from harness import Harness
from invariants import violations

from storage_token.api.provider import ProviderSpec
from storage_token.providers.base import KeySpec

NS, NAME = "team-a", "app"


async def settled(h: Harness, provider_type: str) -> dict[str, object]:
    provider = await h.create_provider(provider_type)
    await h.create_token(NS, NAME, provider, revokeGracePeriod="5m")
    await h.reconcile_token(NS, NAME)
    assert violations(h.kube, h.emulators, h.now, prefix=h.prefix) == []
    return h.status(NS, NAME)


async def issue_unrecorded_key(h: Harness, provider_type: str, name: str) -> str:
    """A key created at the provider behind the operator's back (as a lost create would leave it)."""
    provider = next(p for p in h.kube.list_of("StorageProvider") if p["spec"]["type"] == provider_type)
    spec = ProviderSpec.parse(provider)
    handle = await h.operator.pool.get(spec)
    bucket = h.emulators.buckets(provider_type)[0]
    key = KeySpec(name=name, permissions=("read",), duration_seconds=3600, buckets=(bucket,))
    issued = await handle.client.issue(key)
    return str(issued.key_id)


async def test_an_unreferenced_key_under_the_prefix_breaks_invariant_1(harness: Harness, provider_type: str) -> None:
    await settled(harness, provider_type)
    leaked = await issue_unrecorded_key(harness, provider_type, f"{harness.prefix}team-a-app-0000abcd-r9")

    found = violations(harness.kube, harness.emulators, harness.now, prefix=harness.prefix)

    assert any(v.startswith("(1)") and leaked in v for v in found), found
    assert violations(harness.kube, harness.emulators, harness.now, prefix=harness.prefix, allowed={leaked}) == []


async def test_keys_of_other_installs_are_not_this_installs_business(harness: Harness, provider_type: str) -> None:
    await settled(harness, provider_type)
    await issue_unrecorded_key(harness, provider_type, "someone-elses-key")

    assert violations(harness.kube, harness.emulators, harness.now, prefix=harness.prefix) == []


async def test_a_secret_holding_a_revoked_key_breaks_invariant_2(harness: Harness, provider_type: str) -> None:
    status = await settled(harness, provider_type)
    harness.emulators.delete_key(provider_type, str(status["keyId"]))

    found = violations(harness.kube, harness.emulators, harness.now, prefix=harness.prefix)

    assert any(v.startswith("(2)") and "revoked" in v for v in found), found
    assert any(v.startswith("(3)") and "not live" in v for v in found), found


async def test_a_secret_holding_an_expired_key_breaks_invariant_2(harness: Harness, provider_type: str) -> None:
    await settled(harness, provider_type)
    harness.advance(hours=2)  # past notAfter, without reconciling

    found = violations(harness.kube, harness.emulators, harness.now, prefix=harness.prefix)

    # B2 forgets expired keys (so: revoked); US3 keeps them listed as expired.
    assert any(v.startswith("(2)") for v in found), found


async def test_a_secret_relabelled_with_another_keys_hash_breaks_invariant_2(
    harness: Harness, provider_type: str
) -> None:
    await settled(harness, provider_type)
    secret = harness.secret(NS, NAME)
    assert secret is not None
    edited = copy.deepcopy(secret)
    edited["metadata"]["annotations"]["storagetoken.dev/key-id-hash"] = "0" * 16
    await harness.kube.replace_secret(NS, NAME, edited)

    found = violations(harness.kube, harness.emulators, harness.now, prefix=harness.prefix)

    assert any("annotation names another key" in v for v in found), found


async def test_a_second_live_key_past_its_revocation_breaks_invariant_3(harness: Harness, provider_type: str) -> None:
    await settled(harness, provider_type)
    await harness.renew(NS, NAME)
    assert violations(harness.kube, harness.emulators, harness.now, prefix=harness.prefix) == []  # within grace

    harness.advance(minutes=6)  # due, but nobody reconciled

    found = violations(harness.kube, harness.emulators, harness.now, prefix=harness.prefix)
    assert any(v.startswith("(3)") and "besides the current key" in v for v in found), found


async def test_a_secret_with_the_key_inside_a_file_is_still_seen(harness: Harness, provider_type: str) -> None:
    status = await settled(harness, provider_type)
    secret = harness.secret(NS, NAME)
    assert secret is not None
    raw = base64.b64decode(secret["data"]["secretAccessKey"]).decode()
    edited = copy.deepcopy(secret)
    edited["data"] = {"rclone.conf": base64.b64encode(f"[remote]\nsecret_access_key = {raw}\n".encode()).decode()}
    await harness.kube.replace_secret(NS, NAME, edited)
    harness.emulators.delete_key(provider_type, str(status["keyId"]))

    found = violations(harness.kube, harness.emulators, harness.now, prefix=harness.prefix)

    assert any(v.startswith("(2)") and "revoked" in v for v in found), found
