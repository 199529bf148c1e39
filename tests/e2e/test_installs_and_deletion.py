"""Two installs sharing one provider account, and deletions in any order (design invariants 1, 4 and 6).

Each test here pauses the session operator and runs its own, so nothing else reconciles its namespaces.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import (
    GROUP,
    VERSION,
    apply_provider,
    create_token,
    custom,
    get_token,
    patch_token,
    wait_condition,
    wait_for,
    wait_gone,
)
from kubernetes import client

from storage_token.dev.cluster.controlplane import ClusterAccess
from storage_token.dev.sandbox import Emulators, OperatorProcess

SWEEPING = {"STO_SWEEP_INTERVAL": "2s", "STO_SWEEP_MIN_AGE": "1s"}


@pytest.fixture
def paused(operator: OperatorProcess) -> Iterator[None]:
    operator.stop()
    try:
        yield
    finally:
        operator.start()


def new_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def start_operator(cluster: ClusterAccess, tmp_path: Path, name: str, watch: str, cluster_id: str) -> OperatorProcess:
    return OperatorProcess(
        cluster.kubeconfig,
        tmp_path / f"{name}.log",
        cluster_id=cluster_id,
        operator_namespace=watch,  # each install's own namespace, watched by it alone
        extra_args=[f"--namespace={watch}"],
        env=SWEEPING,
    ).start()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("prod", "prod-eu-1", id="cluster ids prod and prod-eu-1"),
        pytest.param("", "", id="two namespaced installs with the default (derived) cluster id"),
    ],
)
def test_two_installs_on_one_account_never_sweep_each_others_keys(
    api: client.ApiClient,
    cluster: ClusterAccess,
    emulators: Emulators,
    paused: None,
    tmp_path: Path,
    first: str,
    second: str,
) -> None:
    # Namespaces whose names make the old prefix scheme collide: "eu-1-…" under "prod" reads as "prod-eu-1-…".
    namespaces = [new_namespace(api, "prod"), new_namespace(api, "eu-1")]
    operators = [
        start_operator(cluster, tmp_path, "first", namespaces[0], first),
        start_operator(cluster, tmp_path, "second", namespaces[1], second),
    ]
    try:
        keys = {}
        for namespace in namespaces:
            apply_provider(api, emulators, "b2", namespace, "b2")  # the same emulator account for both
            create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
            keys[namespace] = wait_condition(api, namespace, "app", "True", "Issued")["status"]["keyId"]
        time.sleep(8)  # several sweeps of each install, each seeing the other's key at the same account
        live = emulators.live_keys("b2")
        for namespace, key_id in keys.items():
            assert key_id in live, f"the key of {namespace} was revoked by the other install"
            now = get_token(api, namespace, "app")["status"]
            assert now["keyId"] == key_id and now["revision"] == 1, f"{namespace}'s token was re-issued"
        names = {get_token(api, ns, "app")["status"]["keyName"] for ns in namespaces}
        assert len({name[: len("sto-0123456789-")] for name in names}) == 2, f"one install identity: {names}"
    finally:
        for process in operators:
            process.stop()
        for namespace in namespaces:
            client.CoreV1Api(api).delete_namespace(namespace)


def test_deleting_the_namespace_revokes_every_key_before_the_provider_goes(
    api: client.ApiClient, cluster: ClusterAccess, emulators: Emulators, paused: None, tmp_path: Path
) -> None:
    namespace = new_namespace(api, "gone")
    process = start_operator(cluster, tmp_path, "ns-delete", namespace, "nsdel")
    try:
        apply_provider(api, emulators, "b2", namespace, "b2")
        create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"], revokeGracePeriod="1h")
        first = wait_condition(api, namespace, "app", "True", "Issued")["status"]["keyId"]
        patch_token(api, namespace, "app", {"metadata": {"annotations": {"storagetoken.dev/renew": "now"}}})
        second = wait_for(
            lambda: (s := get_token(api, namespace, "app")["status"]).get("revision") == 2 and s["keyId"], 30, "r2"
        )
        assert {first, second} <= emulators.live_keys("b2"), "the replaced key waits out its hour of grace"
        client.CoreV1Api(api).delete_namespace(namespace)
        wait_gone(lambda: client.CoreV1Api(api).read_namespace(namespace), 90, "the namespace to go")
        live = emulators.live_keys("b2")
        assert first not in live and second not in live, "a key outlived its namespace"
    finally:
        process.stop()


def test_kubectl_delete_f_in_file_order_waits_for_the_revocation(
    api: client.ApiClient, cluster: ClusterAccess, emulators: Emulators, paused: None, tmp_path: Path
) -> None:
    """README's own example file lists the provider and its Secret before the token."""
    namespace = new_namespace(api, "order")
    process = start_operator(cluster, tmp_path, "file-order", namespace, "order")
    try:
        apply_provider(api, emulators, "b2", namespace, "b2")
        create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
        key = wait_condition(api, namespace, "app", "True", "Issued")["status"]["keyId"]
        core, objects = client.CoreV1Api(api), custom(api)
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "storageproviders", "b2")
        core.delete_namespaced_secret("b2-credentials", namespace)
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "storagetokens", "app")
        wait_gone(lambda: get_token(api, namespace, "app"), 60, "the token's finalizer to be released")
        assert key not in emulators.live_keys("b2"), "the token went without its key being revoked"
        wait_gone(
            lambda: objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "storageproviders", "b2"),
            60,
            "the provider to be released once no token needs it",
        )
        wait_gone(lambda: core.read_namespaced_secret("b2-credentials", namespace), 60, "the credentials to go")
    finally:
        process.stop()
        client.CoreV1Api(api).delete_namespace(namespace)
