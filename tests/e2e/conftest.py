"""Session fixtures for tests that need a real Kubernetes API server.

By default a local etcd + kube-apiserver + kube-controller-manager is built
(once, cached) and started for the session. `STO_KUBECONFIG` (or
`KUBECONFIG`) naming an existing cluster's kubeconfig runs the same tests
against that cluster instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import (
    apply_crds,
    apply_provider,
    create_token,
    delete_namespace,
    metrics_text,
    scan_for_key_material,
    wait_condition,
)
from kubernetes import client, config

from storage_token.dev.cluster.controlplane import ClusterAccess, LocalControlPlane, existing_cluster, free_port
from storage_token.dev.sandbox import Emulators, OperatorProcess

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterAccess]:
    found = existing_cluster()
    if found is not None:
        yield found
        return
    with LocalControlPlane() as plane:
        yield plane.access


@pytest.fixture(scope="session")
def api(cluster: ClusterAccess) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    apply_crds(api_client, REPO / "crds")
    yield api_client
    api_client.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    delete_namespace(api, name)


OPERATOR_NAMESPACE = "sto-e2e-system"


@pytest.fixture(scope="session")
def emulators() -> Iterator[Emulators]:
    started = Emulators.start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def operator(
    cluster: ClusterAccess, api: client.ApiClient, emulators: Emulators, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator as a process for the whole session (tests that kill it start their own)."""
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=OPERATOR_NAMESPACE)))
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(
        cluster.kubeconfig,
        log_path,
        cluster_id="e2e",
        operator_namespace=OPERATOR_NAMESPACE,
        metrics_port=free_port(),
        # Routine events on, so the suite sees (and the leak scan reads) every event the operator can post.
        env={
            "STO_SWEEP_INTERVAL": "5s",
            "STO_SWEEP_MIN_AGE": "20s",
            "STO_PROVIDER_RECHECK_INTERVAL": "30s",
            "STO_ROUTINE_EVENTS": "true",
        },
    ).start()
    yield process
    # Nothing secret escapes, whatever ran: checked once every test of the session is done, with one
    # token issued now so the haystack surely holds keys' events (test namespaces are gone by then).
    if cluster.binaries is not None and process.alive():
        last = f"e2e-scan-{uuid.uuid4().hex[:6]}"
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=last)))
        apply_provider(api, emulators, "b2", last, "b2")
        create_token(api, last, "scanned", providerRef={"name": "b2"}, permissions=["read"])
        wait_condition(api, last, "scanned", "True")
        logs = sorted(tmp_path_factory.getbasetemp().rglob("*.log"))
        scan_for_key_material(cluster, emulators, logs, metrics_text(process))
        delete_namespace(api, last)
    process.stop()
    delete_namespace(api, OPERATOR_NAMESPACE)
