"""Crash safety and drift: the operator killed mid-issuance, restarted, keys vanishing at the provider, orphans.

These tests run their own operator process and pause the session's one meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import (
    apply_provider,
    create_token,
    delete_at_provider,
    get_token,
    live_keys_named,
    secret_data,
    wait_condition,
    wait_for,
)
from kubernetes import client

from storage_token.api.naming import install_digest, key_prefix, uid8
from storage_token.dev.cluster.controlplane import ClusterAccess
from storage_token.dev.sandbox import Emulators, OperatorProcess
from storage_token.providers.b2 import B2Provider
from storage_token.providers.base import KeySpec

CLUSTER_ID = "recovery"


@pytest.fixture(autouse=True)
def no_fault_outlives_its_test(emulators: Emulators) -> Iterator[None]:
    """A fault that a failing test never hit would otherwise meet the session's later tests."""
    yield
    emulators.b2.faults.clear()
    emulators.us3.faults.clear()


@pytest.fixture
def own_operator(cluster: ClusterAccess, operator: OperatorProcess, tmp_path: Path) -> Iterator[OperatorProcess]:
    """A private operator (the session one paused) that tests may kill and restart."""
    operator.stop()
    mine = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "operator.log",
        cluster_id=CLUSTER_ID,
        operator_namespace=operator.operator_namespace,
        env={"STO_SWEEP_INTERVAL": "3s", "STO_SWEEP_MIN_AGE": "5s"},
    )
    try:
        yield mine.start()
    finally:
        mine.stop()
        operator.start()


def keys_named(emulators: Emulators, prefix: str) -> dict[str, str]:
    """Live B2 keys whose name starts with `prefix`: id -> name."""
    return live_keys_named(emulators.b2, prefix)


def test_killed_during_a_create_the_intent_is_resolved_without_a_leaked_key(
    api: client.ApiClient, namespace: str, emulators: Emulators, own_operator: OperatorProcess
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    # The create reaches the provider and is applied, but the operator dies before it hears back.
    slow = emulators.b2.faults.inject("latency", "b2_create_key", latency=3.0, times=1)
    create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
    intent = wait_for(lambda: (get_token(api, namespace, "app").get("status") or {}).get("intent"), 30, "the intent")
    wait_for(lambda: slow.hits == 1, 30, "the create to reach the provider")
    own_operator.kill()
    prefix = f"{own_operator.key_prefix}{namespace}-app-"
    wait_for(lambda: keys_named(emulators, prefix), 10, "the interrupted create to land at the provider")
    own_operator.start()
    token = wait_condition(api, namespace, "app", "True", "Issued")
    status = token["status"]
    assert status.get("intent") is None
    assert status["keyName"] == intent["keyName"], "the intended name is reused, not a new one"
    live = keys_named(emulators, prefix)
    assert list(live) == [status["keyId"]], f"exactly the recorded key is live, got {live}"
    assert secret_data(api, namespace, "app")["accessKeyId"] == status["keyId"]


def test_a_restart_rebuilds_schedules_without_reissuing_healthy_tokens(
    api: client.ApiClient, namespace: str, emulators: Emulators, own_operator: OperatorProcess
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    for name in ("one", "two", "three"):
        create_token(api, namespace, name, providerRef={"name": "b2"}, permissions=["read"])
    before = {name: wait_condition(api, namespace, name, "True")["status"] for name in ("one", "two", "three")}
    own_operator.stop()
    own_operator.start()
    # Prove the new process is reconciling: a new token gets its key.
    create_token(api, namespace, "four", providerRef={"name": "b2"}, permissions=["read"])
    wait_condition(api, namespace, "four", "True")
    for name, status in before.items():
        live = keys_named(emulators, f"{own_operator.key_prefix}{namespace}-{name}-")
        assert list(live) == [status["keyId"]], f"{name} was re-issued: {live}"
    for name, status in before.items():
        now = get_token(api, namespace, name)["status"]
        assert (now["keyId"], now["revision"], now["renewalTime"]) == (
            status["keyId"],
            status["revision"],
            status["renewalTime"],
        )


def test_a_key_deleted_at_the_provider_is_reissued(
    api: client.ApiClient, namespace: str, emulators: Emulators, own_operator: OperatorProcess
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
    first = wait_condition(api, namespace, "app", "True")["status"]
    assert delete_at_provider(emulators.b2, first["keyId"])
    second = wait_for(
        lambda: (s := get_token(api, namespace, "app")["status"]).get("revision") == 2 and s, 30, "a re-issue"
    )
    assert second["keyId"] != first["keyId"]
    assert secret_data(api, namespace, "app")["accessKeyId"] == second["keyId"]


def test_the_sweep_revokes_leftovers_of_this_install_only(
    api: client.ApiClient, namespace: str, emulators: Emulators, own_operator: OperatorProcess
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
    token = wait_condition(api, namespace, "app", "True")
    kept = token["status"]["keyId"]
    mine = own_operator.key_prefix

    async def make(name: str) -> str:
        provider = B2Provider(*emulators.b2_account, endpoint=emulators.b2.url, allow_insecure=True)
        try:
            return (await provider.issue(KeySpec(name=name, permissions=("read",), duration_seconds=3600))).key_id
        finally:
            await provider.aclose()

    # A leftover of an interrupted issuance of this very token: nothing references it.
    orphan = asyncio.run(make(f"{mine}{namespace}-app-{uid8(token['metadata']['uid'])}-r99"))
    untouchable = {
        "a key of a token that no longer exists (retained, or its finalizer removed by hand)": asyncio.run(
            make(f"{mine}{namespace}-gone-deadbeef-r1")
        ),
        "a key of another install whose cluster id starts the same": asyncio.run(
            make(f"{key_prefix(install_digest(CLUSTER_ID + '-eu-1', 'x'))}{namespace}-app-deadbeef-r1")
        ),
        "a human's key in the old naming scheme": asyncio.run(make(f"sto-{CLUSTER_ID}-{namespace}-app-deadbeef-r1")),
        "a key with this install's prefix but not its shape": asyncio.run(make(f"{mine}handmade")),
    }
    wait_for(lambda: orphan not in emulators.live_keys("b2"), 40, "the orphan to be revoked")
    time.sleep(4)  # at least one more sweep
    live = emulators.live_keys("b2")
    assert kept in live, "a referenced key survives the sweep"
    for what, key_id in untouchable.items():
        assert key_id in live, f"the sweep revoked {what}"


def live_names(emulators: Emulators, kind: str, prefix: str) -> dict[str, str]:
    """Live keys at emulator `kind` whose name starts with `prefix`: id -> name."""
    return live_keys_named(emulators.b2 if kind == "b2" else emulators.us3, prefix)


@pytest.mark.parametrize(("kind", "create_call"), [("b2", "b2_create_key"), ("us3", "CreateUFileToken")])
def test_a_create_response_lost_after_the_key_was_made_leaves_exactly_the_recorded_key(
    api: client.ApiClient, namespace: str, emulators: Emulators, operator: OperatorProcess, kind: str, create_call: str
) -> None:
    """The provider applies the create but the answer never arrives: B2 deletes by name and issues
    again, US3 adopts the token found by name; either way one key is live and it is the recorded one."""
    apply_provider(api, emulators, kind, namespace, kind)
    lost = emulators.b2 if kind == "b2" else emulators.us3
    fault = lost.faults.inject("lose_response", create_call, times=1)
    buckets = ["demo-us3-data"] if kind == "us3" else []
    create_token(api, namespace, "app", providerRef={"name": kind}, permissions=["read"], buckets=buckets)
    status = wait_condition(api, namespace, "app", "True", "Issued")["status"]
    assert fault.hits == 1
    live = live_names(emulators, kind, f"{operator.key_prefix}{namespace}-app-")
    assert list(live) == [status["keyId"]], f"exactly the recorded key is live, got {live}"


def test_killed_after_the_secret_write_the_key_in_the_secret_is_kept(
    api: client.ApiClient, namespace: str, emulators: Emulators, own_operator: OperatorProcess
) -> None:
    """The crash came after the Secret was written but before the status recorded the key: the intent
    is still there, yet the Secret already holds that revision's key. It is kept, not deleted and
    re-issued (a B2 key's secret can't be read again, but the Secret has it)."""
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
    status = wait_condition(api, namespace, "app", "True", "Issued")["status"]
    token_keys = status["keyName"].rsplit("-r", 1)[0] + "-r"  # this token's keys, any revision
    own_operator.stop()
    # Rebuild the crash state: the intent for the key the Secret holds, as if the last write never came.
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        "storagetoken.dev",
        "v1alpha1",
        namespace,
        "storagetokens",
        "app",
        {"status": {"intent": {"keyName": status["keyName"], "revision": status["revision"]}}},
    )
    own_operator.start()
    healed = wait_for(lambda: (s := get_token(api, namespace, "app")["status"]).get("intent") is None and s, 30, "")
    assert healed["keyId"] == status["keyId"]
    assert healed["revision"] == status["revision"]
    keys_of_app = set(keys_named(emulators, token_keys))
    assert keys_of_app == {status["keyId"]}, "the key in the Secret was revoked or another one issued"
    assert secret_data(api, namespace, "app")["accessKeyId"] == status["keyId"]
