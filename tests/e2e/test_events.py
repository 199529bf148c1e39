"""Events are best effort: posted where they can land, dropped quietly where a namespace is going away,
and a real refusal is reported once as a warning (never an exception into the reconcile)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from e2e_support import delete_namespace, events_for, service_account_client, wait_for
from kubernetes import client

from storage_token.kube.api import Kube
from storage_token.kube.events import EventRecorder


def about(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "storagetoken.dev/v1alpha1",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
    }


def record(api: client.ApiClient, obj: dict[str, Any], reason: str) -> None:
    async def post() -> None:
        kube = Kube(api)
        try:
            await EventRecorder(kube, home_namespace="default").record(obj, "StorageToken", reason, "a message")
        finally:
            await kube.aclose()

    asyncio.run(post())


def test_an_event_lands_on_its_object(api: client.ApiClient, namespace: str) -> None:
    record(api, about(namespace, "app"), "Issued")
    assert ("Normal", "Issued", "a message") in events_for(api, namespace, "app")


def test_an_event_into_a_terminating_namespace_is_dropped_without_a_warning(
    api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    core = client.CoreV1Api(api)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # A finalizer on a ConfigMap holds the namespace in Terminating while the test posts.
    holder = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="holder", finalizers=["storagetoken.dev/test-hold"]))
    core.create_namespaced_config_map(name, holder)
    try:
        delete_namespace(api, name)
        wait_for(lambda: core.read_namespace(name).status.phase == "Terminating", 30, "the namespace terminating")
        with caplog.at_level(logging.DEBUG, logger="storage_token.kube.events"):
            record(api, about(name, "app"), "CredentialsSecretMissing")
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert "namespace terminating" in caplog.text
    finally:
        core.patch_namespaced_config_map("holder", name, {"metadata": {"finalizers": None}})


def test_a_refused_event_is_one_warning(
    api: client.ApiClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = service_account_client(api, namespace, "nobody")  # no RoleBinding: may not create events
    try:
        with caplog.at_level(logging.WARNING, logger="storage_token.kube.events"):
            record(nobody, about(namespace, "app"), "Issued")
    finally:
        nobody.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "could not post event Issued" in warnings[0]
    assert "403" in warnings[0]
    assert not events_for(api, namespace, "app")
