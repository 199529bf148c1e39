"""The test cluster is the real thing: schema validation, RBAC and garbage collection run in the API server."""

from __future__ import annotations

import json
import subprocess

import pytest
from e2e_support import GROUP, VERSION, service_account_client, storage_token, wait_gone
from kubernetes import client
from kubernetes.client.rest import ApiException

from storage_token.dev.cluster.controlplane import ClusterAccess


def create_token(api: client.ApiClient, namespace: str, body: dict[str, object]) -> dict[str, object]:
    result: dict[str, object] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "storagetokens", body
    )
    return result


def test_crds_apply_and_serve_defaults(api: client.ApiClient, namespace: str) -> None:
    created = create_token(api, namespace, storage_token("defaults", providerRef={"name": "p"}, permissions=["read"]))
    spec = created["spec"]
    assert isinstance(spec, dict)
    assert spec["duration"] == "24h"
    assert spec["deletionPolicy"] == "Revoke"
    assert spec["providerRef"]["kind"] == "StorageProvider"
    assert spec["revokeGracePeriod"] == "5m"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"providerRef": {"name": "p"}, "permissions": ["admin"]},
            'Unsupported value: "admin"',
            id="an unknown permission is refused by the enum",
        ),
        pytest.param(
            {"providerRef": {"name": "p"}, "permissions": ["read"], "renewBefore": "1h", "renewBeforePercentage": 20},
            "renewBefore and renewBeforePercentage are mutually exclusive",
            id="renewBefore and a percentage together are refused by a CEL rule",
        ),
        pytest.param(
            {"providerRef": {"name": "p"}, "permissions": ["read"], "duration": "1h", "renewBefore": "2h"},
            "renewBefore must be shorter than duration",
            id="renewBefore longer than the duration is refused",
        ),
        pytest.param(
            {"providerRef": {"name": "p"}, "permissions": ["read"], "duration": "30000h"},
            "duration must be between 1m and 24000h",
            id="a duration beyond 1000 days is refused",
        ),
        pytest.param(
            {"providerRef": {"name": "p"}, "permissions": ["read"], "prefixes": ["logs/"]},
            "prefixes need at least one bucket",
            id="a prefix without a bucket is refused",
        ),
        pytest.param(
            {"permissions": ["read"]},
            "spec.providerRef: Required value",
            id="a token without a provider is refused",
        ),
    ],
)
def test_schema_violations_are_rejected_with_their_message(
    api: client.ApiClient, namespace: str, spec: dict[str, object], message: str
) -> None:
    with pytest.raises(ApiException) as caught:
        create_token(api, namespace, storage_token("bad", **spec))
    assert caught.value.status == 422
    assert message in json.loads(caught.value.body)["message"]


def test_us3_provider_without_region_is_rejected(api: client.ApiClient, namespace: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StorageProvider",
        "metadata": {"name": "us3"},
        "spec": {"type": "us3", "credentialsSecretRef": {"name": "creds"}},
    }
    with pytest.raises(ApiException) as caught:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "storageproviders", body
        )
    assert caught.value.status == 422
    assert "us3 providers need a region" in json.loads(caught.value.body)["message"]


def test_service_account_without_rights_is_forbidden(api: client.ApiClient, namespace: str) -> None:
    outsider = service_account_client(api, namespace, "nobody")
    try:
        with pytest.raises(ApiException) as caught:
            client.CustomObjectsApi(outsider).list_namespaced_custom_object(GROUP, VERSION, namespace, "storagetokens")
        assert caught.value.status == 403
        assert f"system:serviceaccount:{namespace}:nobody" in caught.value.body
        with pytest.raises(ApiException) as caught:
            client.CoreV1Api(outsider).list_namespaced_secret(namespace)
        assert caught.value.status == 403
    finally:
        outsider.close()


def test_owned_object_is_garbage_collected_with_its_owner(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid, controller=True
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="owned", owner_references=[reference]), string_data={"a": "b"}
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)

    wait_gone(lambda: core.read_namespaced_secret("owned", namespace), 60, "the owned Secret to be garbage-collected")


def test_kubectl_explain_reads_the_field_descriptions(cluster: ClusterAccess, api: client.ApiClient) -> None:
    if cluster.binaries is None:
        pytest.skip("kubectl comes with the local control plane")
    out = subprocess.run(
        [str(cluster.binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}", "explain", "storagetoken.spec.duration"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Requested lifetime of each key" in out
