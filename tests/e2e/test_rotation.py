"""Rotation reaches consumers, and a provider outage leaves the current key in place while backing off."""

from __future__ import annotations

import pytest
from e2e_support import (
    apply_provider,
    condition,
    consumer_deployment,
    create_token,
    get_token,
    patch_token,
    secret_data,
    wait_condition,
    wait_for,
)
from kubernetes import client

from storage_token.dev.sandbox import Emulators

pytestmark = pytest.mark.usefixtures("operator")


def test_a_rotation_restarts_the_listed_workloads_and_changes_the_reloader_annotation(
    api: client.ApiClient, namespace: str, emulators: Emulators
) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, consumer_deployment("web"))
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(
        api,
        namespace,
        "app",
        providerRef={"name": "b2"},
        permissions=["read"],
        restartTargets=[{"kind": "Deployment", "name": "web"}],
    )
    wait_condition(api, namespace, "app", "True", "Issued")
    core = client.CoreV1Api(api)
    before = core.read_namespaced_secret("app", namespace).metadata.annotations["storagetoken.dev/key-id-hash"]
    assert not (apps.read_namespaced_deployment("web", namespace).spec.template.metadata.annotations or {})
    patch_token(api, namespace, "app", {"metadata": {"annotations": {"storagetoken.dev/renew": "go"}}})
    wait_for(lambda: get_token(api, namespace, "app")["status"].get("revision") == 2, 60, "the renewal")

    def restarted() -> str | None:
        annotations = apps.read_namespaced_deployment("web", namespace).spec.template.metadata.annotations or {}
        return annotations.get("storagetoken.dev/restartedAt")

    assert wait_for(restarted, 30, "the Deployment's pod template to be annotated")
    after = core.read_namespaced_secret("app", namespace).metadata.annotations["storagetoken.dev/key-id-hash"]
    assert after != before


def test_a_provider_outage_keeps_the_current_key_and_backs_off_until_it_recovers(
    api: client.ApiClient, namespace: str, emulators: Emulators
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
    first = wait_condition(api, namespace, "app", "True", "Issued")["status"]
    outage = emulators.b2.faults.inject("status", "b2_create_key", status=503, times=None)
    try:
        patch_token(api, namespace, "app", {"metadata": {"annotations": {"storagetoken.dev/renew": "during-outage"}}})
        token = wait_for(
            lambda: (
                (t := get_token(api, namespace, "app"))
                and condition(t, "Issuing").get("reason") == "ProviderUnavailable"
                and t
            ),
            90,
            "Issuing=False ProviderUnavailable",
        )
        status = token["status"]
        assert status["failedAttempts"] >= 1
        assert status["nextAttempt"] > status["lastFailure"]["time"]
        assert status["lastFailure"]["reason"] == "ProviderUnavailable"
        # The Secret still holds a valid key, so Ready stays True (no alert for a harmless outage).
        ready = condition(token, "Ready")
        assert ready["status"] == "True", ready
        assert "renewal failing (ProviderUnavailable)" in ready["message"]
        assert "the current key stays in the Secret" in ready["message"]
        assert secret_data(api, namespace, "app")["accessKeyId"] == first["keyId"]
    finally:
        emulators.b2.faults.clear()
    assert outage.hits >= 1
    recovered = wait_for(
        lambda: (s := get_token(api, namespace, "app")["status"]).get("revision") == 2 and s, 120, "the renewal"
    )
    assert condition(get_token(api, namespace, "app"), "Issuing")["reason"] == "Issued"
    assert recovered["failedAttempts"] == 0
    assert secret_data(api, namespace, "app")["accessKeyId"] == recovered["keyId"]
