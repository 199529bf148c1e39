"""kubectl finds each kind by its own names: the CRDs' category must not shadow any of them.

The category used to be `storagetoken`, the StorageToken singular: kubectl expands a
category before it resolves a resource name, so `kubectl get storagetoken` listed all
three kinds and `kubectl describe storagetoken NAME` looked NAME up in each of them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from e2e_support import GROUP, VERSION, custom, storage_token
from kubernetes import client

from storage_token.dev.cluster.controlplane import ClusterAccess

REPO = Path(__file__).resolve().parents[2]
NAME = "same-name"  # a token, a provider and a cluster provider all called this


@pytest.fixture
def same_named(api: client.ApiClient, namespace: str) -> Iterator[str]:
    objects = custom(api)
    objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "storagetokens",
        storage_token(NAME, providerRef={"name": NAME}, permissions=["read"]),
    )
    provider = {"type": "b2", "credentialsSecretRef": {"name": "absent"}}
    objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "storageproviders",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StorageProvider", "metadata": {"name": NAME}, "spec": provider},
    )
    cluster_name = f"{NAME}-{namespace}"
    objects.create_cluster_custom_object(
        GROUP,
        VERSION,
        "clusterstorageproviders",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterStorageProvider",
            "metadata": {"name": cluster_name},
            "spec": provider,
        },
    )
    yield namespace
    objects.delete_cluster_custom_object(GROUP, VERSION, "clusterstorageproviders", cluster_name)


def kubectl(cluster: ClusterAccess, *args: str) -> subprocess.CompletedProcess[str]:
    if cluster.binaries is None:
        pytest.skip("kubectl comes with the local control plane")
    argv = [str(cluster.binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def kinds_listed(result: subprocess.CompletedProcess[str]) -> set[str]:
    assert result.returncode == 0, result.stderr
    return {item["kind"] for item in yaml.safe_load(result.stdout)["items"]}


def test_no_category_collides_with_a_resource_name() -> None:
    names: set[str] = set()
    categories: set[str] = set()
    for path in sorted((REPO / "crds").glob("*.yaml")):
        spec_names = yaml.safe_load(path.read_text())["spec"]["names"]
        names |= {spec_names["plural"], spec_names["singular"], spec_names["kind"].lower(), *spec_names["shortNames"]}
        categories |= set(spec_names.get("categories") or ())
    assert categories and not categories & names


@pytest.mark.parametrize("resource", ["storagetoken", "storagetokens", "stok", f"storagetoken.{GROUP}"])
def test_get_by_a_token_name_lists_only_tokens(cluster: ClusterAccess, same_named: str, resource: str) -> None:
    assert kinds_listed(kubectl(cluster, "get", resource, "-n", same_named, "-o", "yaml")) == {"StorageToken"}


def test_describe_storagetoken_describes_the_token(cluster: ClusterAccess, same_named: str) -> None:
    result = kubectl(cluster, "describe", "storagetoken", NAME, "-n", same_named)
    assert result.returncode == 0, result.stderr
    # One object described (top-level "Kind:" lines start at column 0), and it is the token.
    kinds = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.startswith("Kind:")]
    assert kinds == ["StorageToken"]


def test_the_category_lists_all_three_kinds(cluster: ClusterAccess, same_named: str) -> None:
    listed = kinds_listed(kubectl(cluster, "get", "storage-tokens", "-n", same_named, "-o", "yaml"))
    assert listed == {"StorageToken", "StorageProvider", "ClusterStorageProvider"}
