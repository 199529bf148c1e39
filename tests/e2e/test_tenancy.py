"""Multi-tenancy: namespace rules for providers, policy ceilings (also when they narrow later),
forbidden capabilities and hostile templates never reach the provider."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import OPERATOR_NAMESPACE
from e2e_support import (
    GROUP,
    VERSION,
    apply_provider,
    condition,
    create_token,
    delete_namespace,
    get_token,
    secret_data,
    wait_condition,
    wait_event,
    wait_for,
    wait_gone,
)
from kubernetes import client
from kubernetes.client.rest import ApiException

from storage_token.dev.sandbox import Emulators

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def other_namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"tenant": "blue"}))
    )
    yield name
    delete_namespace(api, name)


@pytest.fixture
def cluster_provider(api: client.ApiClient, emulators: Emulators) -> Iterator[Any]:
    """Factory: a ClusterStorageProvider (credentials in the operator's namespace), removed afterwards."""
    created: list[str] = []
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)

    def make(**extra: Any) -> str:
        name = f"shared-{uuid.uuid4().hex[:6]}"
        core.create_namespaced_secret(OPERATOR_NAMESPACE, emulators.credentials_secret("b2", name, OPERATOR_NAMESPACE))
        custom.create_cluster_custom_object(
            GROUP, VERSION, "clusterstorageproviders", emulators.provider("b2", name, None, name, **extra)
        )
        created.append(name)

        def ready() -> bool:
            body = custom.get_cluster_custom_object(GROUP, VERSION, "clusterstorageproviders", name)
            return condition(body, "Ready").get("status") == "True"

        wait_for(ready, 60, f"ClusterStorageProvider {name} Ready")
        return name

    yield make
    for name in created:
        try:
            custom.delete_cluster_custom_object(GROUP, VERSION, "clusterstorageproviders", name)
            core.delete_namespaced_secret(name, OPERATOR_NAMESPACE)
        except ApiException as error:
            if error.status != 404:
                raise


def test_a_cluster_provider_serves_only_the_namespaces_it_names(
    api: client.ApiClient, namespace: str, other_namespace: str, cluster_provider: Any
) -> None:
    shared = cluster_provider(namespaces=[namespace])
    ref = {"kind": "ClusterStorageProvider", "name": shared}
    create_token(api, namespace, "app", providerRef=ref, permissions=["read"])
    create_token(api, other_namespace, "app", providerRef=ref, permissions=["read"])
    wait_condition(api, namespace, "app", "True", "Issued")
    token = wait_condition(api, other_namespace, "app", "False", "NamespaceNotAllowed")
    assert other_namespace in condition(token, "Ready")["message"]


def test_a_cluster_provider_admits_namespaces_by_label(
    api: client.ApiClient, namespace: str, other_namespace: str, cluster_provider: Any
) -> None:
    shared = cluster_provider(namespaceSelector={"matchLabels": {"tenant": "blue"}})
    ref = {"kind": "ClusterStorageProvider", "name": shared}
    create_token(api, other_namespace, "app", providerRef=ref, permissions=["read"])
    create_token(api, namespace, "app", providerRef=ref, permissions=["read"])
    wait_condition(api, other_namespace, "app", "True", "Issued")
    wait_condition(api, namespace, "app", "False", "NamespaceNotAllowed")


def test_a_namespaced_provider_is_invisible_from_other_namespaces(
    api: client.ApiClient, namespace: str, other_namespace: str, emulators: Emulators
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(api, other_namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
    token = wait_condition(api, other_namespace, "app", "False", "ProviderNotFound")
    assert f"in namespace '{other_namespace}'" in condition(token, "Ready")["message"]


def test_a_narrowed_ceiling_revokes_keys_now_out_of_bounds(
    api: client.ApiClient, namespace: str, emulators: Emulators
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2", policy={"allowedBuckets": ["demo-b2-*"]})
    create_token(
        api,
        namespace,
        "app",
        providerRef={"name": "b2"},
        permissions=["read"],
        buckets=["demo-b2-data"],
        revokeGracePeriod="2s",
    )
    key_id = wait_condition(api, namespace, "app", "True", "Issued")["status"]["keyId"]
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "storageproviders", "b2", {"spec": {"policy": {"allowedBuckets": ["demo-b2-logs"]}}}
    )
    token = wait_condition(api, namespace, "app", "False", "PolicyViolation")
    assert "spec.buckets: 'demo-b2-data' not allowed" in condition(token, "Ready")["message"]
    assert wait_event(api, namespace, "app", "PolicyViolation", containing="is revoked at")[0] == "Warning"
    wait_for(lambda: key_id not in emulators.live_keys("b2"), 30, "the out-of-bounds key to be revoked")

    wait_gone(lambda: secret_data(api, namespace, "app"), 30, "the Secret holding the revoked key to be deleted")
    assert not get_token(api, namespace, "app")["status"].get("keyId")


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        ({"rawCapabilities": ["writeKeys"]}, "InvalidSpec", "writeKeys can manage the account"),
        ({"rawCapabilities": ["deleteBuckets"]}, "InvalidSpec", "deleteBuckets can manage the account"),
        (
            {"secret": {"template": {"data": {"leak": "{{ ''.__class__.__mro__ }}"}}}},
            "TemplateError",
            "leak",
        ),
        (
            {"secret": {"template": {"data": {"env": "{{ environ }}"}}}},
            "TemplateError",
            "env",
        ),
    ],
    ids=["writeKeys", "deleteBuckets", "template reaching Python internals", "template reaching the environment"],
)
def test_forbidden_requests_never_reach_the_provider(
    api: client.ApiClient, namespace: str, emulators: Emulators, spec: dict[str, Any], reason: str, message: str
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    creates = emulators.b2.count("b2_create_key")
    create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"], **spec)
    token = wait_condition(api, namespace, "app", "False", reason)
    assert message in condition(token, "Ready")["message"]
    assert emulators.b2.count("b2_create_key") == creates


@pytest.mark.parametrize(
    ("policy", "spec", "field"),
    [
        ({"allowedBuckets": ["demo-b2-logs"]}, {"buckets": ["demo-b2-data"]}, "spec.buckets"),
        (
            {"allowedBuckets": ["demo-b2-*"], "allowedPrefixes": ["team-a/*"]},
            {"buckets": ["demo-b2-data"], "prefixes": ["team-b/"]},
            "spec.prefixes",
        ),
        ({"allowedPermissions": ["read", "list"]}, {"permissions": ["read", "delete"]}, "spec.permissions"),
        ({"maxDuration": "1h"}, {"duration": "2h"}, "spec.duration"),
    ],
    ids=["bucket outside the ceiling", "prefix outside the ceiling", "permission outside", "duration over the max"],
)
def test_a_token_beyond_the_ceiling_is_refused_naming_the_field(
    api: client.ApiClient,
    namespace: str,
    emulators: Emulators,
    policy: dict[str, Any],
    spec: dict[str, Any],
    field: str,
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2", policy=policy)
    creates = emulators.b2.count("b2_create_key")
    create_token(api, namespace, "greedy", providerRef={"name": "b2"}, **{"permissions": ["read"], **spec})
    token = wait_condition(api, namespace, "greedy", "False", "PolicyViolation")
    assert condition(token, "Ready")["message"].startswith(field)
    assert emulators.b2.count("b2_create_key") == creates


def test_credentials_are_never_read_from_a_foreign_namespace(
    api: client.ApiClient, namespace: str, other_namespace: str, emulators: Emulators
) -> None:
    """A StorageProvider names a Secret that exists only in another namespace; a ClusterStorageProvider
    names one that exists only in the token's namespace: neither is read."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespaced_secret(other_namespace, emulators.credentials_secret("b2", "stolen", other_namespace))
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "storageproviders", emulators.provider("b2", "b2", namespace, "stolen")
    )
    core.create_namespaced_secret(namespace, emulators.credentials_secret("b2", "local-only", namespace))
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "clusterstorageproviders",
        emulators.provider("b2", f"foreign-{namespace}", None, "local-only", namespaces=[namespace]),
    )
    try:
        for kind, plural, where, name in (
            ("StorageProvider", "storageproviders", namespace, "b2"),
            ("ClusterStorageProvider", "clusterstorageproviders", None, f"foreign-{namespace}"),
        ):

            def missing(plural: str = plural, where: str | None = where, name: str = name) -> bool:
                body = (
                    custom.get_namespaced_custom_object(GROUP, VERSION, where, plural, name)
                    if where
                    else custom.get_cluster_custom_object(GROUP, VERSION, plural, name)
                )
                return condition(body, "Ready").get("reason") == "CredentialsSecretMissing"

            wait_for(missing, 30, f"{kind} {name} Ready=False CredentialsSecretMissing")
        create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
        wait_condition(api, namespace, "app", "False", "ProviderNotReady")
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "clusterstorageproviders", f"foreign-{namespace}")
