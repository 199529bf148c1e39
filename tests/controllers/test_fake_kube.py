"""FakeKube keeps the API server's semantics the controllers rely on, and keeps up with `Kube`."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from fake_kube import FakeKube, Invalid, merge_patch

from storage_token.kube.api import Conflict, Kube, NamespaceTerminating

TOKEN: dict[str, Any] = {
    "apiVersion": "storagetoken.dev/v1alpha1",
    "kind": "StorageToken",
    "metadata": {"name": "app", "namespace": "ns"},
    "spec": {"providerRef": {"name": "p"}, "permissions": ["read"], "buckets": ["b"]},
}


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.create_namespace("ns")
    return fake


def test_every_kube_method_exists_with_the_same_parameters() -> None:
    for name, method in inspect.getmembers(Kube, inspect.iscoroutinefunction):
        if name.startswith("_"):
            continue
        fake = getattr(FakeKube, name, None)
        assert fake is not None, f"FakeKube lacks Kube.{name}"
        assert list(inspect.signature(fake).parameters) == list(inspect.signature(method).parameters), name


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(target, {"a": {"b": None, "c": [3]}, "e": {"f": None}}) == {"a": {"c": [3]}, "d": 1, "e": {}}


async def test_create_sets_server_fields_and_crd_defaults(kube: FakeKube) -> None:
    created = kube.create(TOKEN)
    meta = created["metadata"]
    assert meta["uid"] and meta["resourceVersion"].isdigit() and meta["generation"] == 1 and meta["creationTimestamp"]
    assert created["spec"]["duration"] == "24h" and created["spec"]["deletionPolicy"] == "Revoke"
    with pytest.raises(Conflict):
        kube.create(TOKEN)


async def test_generation_moves_with_the_spec_only(kube: FakeKube) -> None:
    kube.create(TOKEN)
    status = await kube.patch_status("StorageToken", "ns", "app", {"status": {"revision": 1}})
    assert status is not None and status["metadata"]["generation"] == 1
    labelled = await kube.patch_object("StorageToken", "ns", "app", {"metadata": {"labels": {"x": "y"}}})
    assert labelled is not None and labelled["metadata"]["generation"] == 1 and labelled["status"] == {"revision": 1}
    changed = await kube.patch_object("StorageToken", "ns", "app", {"spec": {"duration": "2h"}})
    assert changed is not None and changed["metadata"]["generation"] == 2


async def test_status_patches_touch_status_only_and_main_patches_never_status(kube: FakeKube) -> None:
    kube.create(TOKEN)
    written = await kube.patch_status(
        "StorageToken", "ns", "app", {"status": {"keyId": "k"}, "spec": {"duration": "9h"}}
    )
    assert written is not None and written["spec"]["duration"] == "24h"
    written = await kube.patch_object("StorageToken", "ns", "app", {"status": {"keyId": "other"}})
    assert written is not None and written["status"] == {"keyId": "k"}


async def test_a_stale_resource_version_conflicts_and_a_no_op_write_changes_nothing(kube: FakeKube) -> None:
    created = kube.create(TOKEN)
    version = created["metadata"]["resourceVersion"]
    await kube.patch_status("StorageToken", "ns", "app", {"status": {"keyId": "k"}})
    with pytest.raises(Conflict):
        await kube.patch_object("StorageToken", "ns", "app", {"metadata": {"resourceVersion": version}})
    current = kube.get("StorageToken", "ns", "app")
    assert current is not None
    again = await kube.patch_status("StorageToken", "ns", "app", {"status": {"keyId": "k"}})
    assert again is not None and again["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]


async def test_finalizers_hold_a_deleted_object_and_the_secret_goes_with_its_owner(kube: FakeKube) -> None:
    token = kube.create({**TOKEN, "metadata": {**TOKEN["metadata"], "finalizers": ["f"]}})
    secret = {
        "kind": "Secret",
        "metadata": {
            "name": "app",
            "namespace": "ns",
            "ownerReferences": [{"kind": "StorageToken", "name": "app", "uid": token["metadata"]["uid"]}],
        },
        "stringData": {"k": "v"},
    }
    assert await kube.create_secret("ns", secret) is not None
    kube.delete("StorageToken", "ns", "app")
    held = kube.get("StorageToken", "ns", "app")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    with pytest.raises(Invalid):
        await kube.patch_object("StorageToken", "ns", "app", {"metadata": {"finalizers": ["f", "g"]}})
    await kube.patch_object("StorageToken", "ns", "app", {"metadata": {"finalizers": []}})
    assert kube.get("StorageToken", "ns", "app") is None
    assert kube.get("Secret", "ns", "app") is None


async def test_secret_preconditions(kube: FakeKube) -> None:
    created = await kube.create_secret("ns", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert created is not None and created["data"] == {"k": "dg=="}
    stale = {**created, "metadata": {**created["metadata"], "resourceVersion": "1"}}
    with pytest.raises(Conflict):
        await kube.replace_secret("ns", "s", stale)
    with pytest.raises(Conflict):
        await kube.delete_secret("ns", "s", uid="another-uid")
    await kube.delete_secret("ns", "s", uid=created["metadata"]["uid"])
    assert await kube.get_secret("ns", "s") is None


async def test_a_terminating_namespace_refuses_new_objects_and_goes_once_empty(kube: FakeKube) -> None:
    kube.create({**TOKEN, "metadata": {**TOKEN["metadata"], "finalizers": ["f"]}})
    kube.delete_namespace("ns")
    with pytest.raises(NamespaceTerminating):
        await kube.create_secret("ns", {"metadata": {"name": "s"}})
    assert kube.get("StorageToken", "ns", "app") is not None  # held by its finalizer
    await kube.patch_object("StorageToken", "ns", "app", {"metadata": {"finalizers": None}})
    assert await kube.get_namespace("ns") is None


async def test_watchers_see_every_change_and_faults_fire_once(kube: FakeKube) -> None:
    seen: list[str] = []
    kube.watch(lambda event, body: seen.append(f"{event} {body['kind']}"))
    kube.fail_next("patch_status", RuntimeError("boom"), after=True)
    kube.create(TOKEN)
    with pytest.raises(RuntimeError):
        await kube.patch_status("StorageToken", "ns", "app", {"status": {"keyId": "k"}})
    assert (kube.get("StorageToken", "ns", "app") or {})["status"] == {"keyId": "k"}  # applied, then failed
    await kube.patch_status("StorageToken", "ns", "app", {"status": {"keyId": "k2"}})
    kube.delete("StorageToken", "ns", "app")
    assert seen == ["ADDED StorageToken", "MODIFIED StorageToken", "MODIFIED StorageToken", "DELETED StorageToken"]
