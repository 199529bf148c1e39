"""Revoke on adoption, on a real API server and kube-controller-manager; the test plays the kubelet.

The controller manager turns each restart into a new ReplicaSet and its Pods; nothing runs them, so the
test marks the new ReplicaSet's Pods Ready through the status subresource, as a kubelet would. It
proves: the old key stays live while any target still rolls out, goes within 5 s of the last one
finishing, and goes at maxRevokeDelay when a rollout is stuck.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from e2e_support import (
    apply_provider,
    condition,
    consumer_deployment,
    create_token,
    events_for,
    get_token,
    patch_token,
    wait_condition,
    wait_for,
)
from kubernetes import client

from storage_token.api.times import parse_time
from storage_token.dev.sandbox import Emulators

pytestmark = pytest.mark.usefixtures("operator")
REVISION = "deployment.kubernetes.io/revision"


def play_kubelet(api: client.ApiClient, namespace: str, name: str) -> bool:
    """Mark every Pod of the Deployment's newest ReplicaSet Ready; True once the rollout is complete."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    deployment = apps.read_namespaced_deployment(name, namespace)
    revision = (deployment.metadata.annotations or {}).get(REVISION)
    newest = [
        rs
        for rs in apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items
        if any(o.uid == deployment.metadata.uid for o in rs.metadata.owner_references or ())
        and (rs.metadata.annotations or {}).get(REVISION) == revision
    ]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = [{"type": t, "status": "True", "lastTransitionTime": now} for t in ("Ready", "ContainersReady")]
    for pod in core.list_namespaced_pod(namespace, label_selector=f"app={name}").items:
        mine = any(o.uid in {rs.metadata.uid for rs in newest} for o in pod.metadata.owner_references or ())
        if mine and not any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ()):
            core.patch_namespaced_pod_status(
                pod.metadata.name, namespace, {"status": {"phase": "Running", "conditions": ready}}
            )
    return rolled_out(api, namespace, name)


def rolled_out(api: client.ApiClient, namespace: str, name: str) -> bool:
    found = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    status, desired = found.status, found.spec.replicas
    return bool(
        (status.observed_generation or 0) >= found.metadata.generation
        and (status.updated_replicas or 0) == desired
        and (status.ready_replicas or 0) == desired
        and (status.available_replicas or 0) == desired
        and (status.replicas or 0) == desired
    )


def settle(api: client.ApiClient, namespace: str, name: str) -> None:
    wait_for(lambda: play_kubelet(api, namespace, name), 60, f"Deployment {name} rolled out", interval=0.5)


def rotate(api: client.ApiClient, emulators: Emulators, namespace: str, workloads: list[str], **spec: Any) -> str:
    """A token restarting `workloads`, issued once the workloads run, then renewed; the old key id."""
    apps = client.AppsV1Api(api)
    for workload in workloads:
        apps.create_namespaced_deployment(namespace, consumer_deployment(workload, replicas=2))
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(
        api,
        namespace,
        "app",
        providerRef={"name": "b2"},
        permissions=["read"],
        restartTargets=[{"kind": "Deployment", "name": w} for w in workloads],
        **spec,
    )
    old = str(wait_condition(api, namespace, "app", "True", "Issued")["status"]["keyId"])
    for workload in workloads:
        settle(api, namespace, workload)
    patch_token(api, namespace, "app", {"metadata": {"annotations": {"storagetoken.dev/renew": "now"}}})
    wait_for(lambda: get_token(api, namespace, "app")["status"].get("revision") == 2, 60, "the renewal")
    return old


def restarted(api: client.ApiClient, namespace: str, name: str) -> bool:
    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    return "storagetoken.dev/restartedAt" in (deployment.spec.template.metadata.annotations or {})


def rollout(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return dict(get_token(api, namespace, "app")["status"].get("rollout") or {})


def test_the_old_key_goes_within_5s_of_the_last_target_finishing_and_not_before(
    api: client.ApiClient, namespace: str, emulators: Emulators
) -> None:
    old = rotate(api, emulators, namespace, ["web", "worker"], revokeGracePeriod="0s", maxRevokeDelay="10m")
    wait_for(lambda: restarted(api, namespace, "web") and restarted(api, namespace, "worker"), 60, "both restarted")
    settle(api, namespace, "web")
    wait_for(lambda: rollout(api, namespace).get("progress") == "1/2", 30, "web adopted")
    # worker still rolls: for a while the old key must stay, queued and live.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert old in emulators.live_keys("b2"), "the old key was revoked while worker was still rolling out"
        time.sleep(0.5)
    status = get_token(api, namespace, "app")["status"]
    assert [p["keyId"] for p in status["pendingRevocations"]] == [old]
    assert condition(get_token(api, namespace, "app"), "ConsumersUpdated")["reason"] == "RolloutInProgress"

    # Measured from the moment the test starts marking worker's Pods ready: an upper bound on the time
    # from the rollout's completion (the controller manager's update of its status) to the revocation.
    finished = time.monotonic()
    settle(api, namespace, "worker")
    wait_for(lambda: old not in emulators.live_keys("b2"), 10, "the old key revoked", interval=0.1)
    elapsed = time.monotonic() - finished
    print(f"revoked {elapsed:.2f}s after the last target finished")
    assert elapsed <= 5, f"revoked {elapsed:.1f}s after the last target finished"
    token = get_token(api, namespace, "app")
    assert condition(token, "ConsumersUpdated")["reason"] == "AllConsumersSwitched"
    assert token["status"]["rollout"]["progress"] == "2/2"
    assert token["status"]["keyId"] in emulators.live_keys("b2")
    assert any(reason == "ConsumersSwitched" for _, reason, _ in events_for(api, namespace, "app"))


def test_a_stuck_rollout_is_revoked_at_max_revoke_delay(
    api: client.ApiClient, namespace: str, emulators: Emulators
) -> None:
    old = rotate(api, emulators, namespace, ["web"], revokeGracePeriod="2s", maxRevokeDelay="25s")
    status = get_token(api, namespace, "app")["status"]
    due = parse_time(status["pendingRevocations"][0]["dueAt"])
    issued = parse_time(status["issuedAt"])
    assert due is not None and issued is not None
    assert abs((due - issued).total_seconds() - 25) <= 1, (due, issued)
    wait_for(lambda: restarted(api, namespace, "web"), 60, "web restarted")
    # Nobody marks the new Pods ready: the rollout is stuck. The old key lives until the ceiling...
    while (due - datetime.now(UTC)).total_seconds() > 1:
        assert old in emulators.live_keys("b2"), "revoked before maxRevokeDelay though the rollout never finished"
        time.sleep(0.5)
    # ...and goes at it.
    wait_for(lambda: old not in emulators.live_keys("b2"), 15, "the old key revoked at maxRevokeDelay", interval=0.1)
    late = (datetime.now(UTC) - due).total_seconds()
    print(f"revoked {late:.2f}s after maxRevokeDelay")
    assert late <= 5, f"revoked {late:.1f}s after maxRevokeDelay"
    assert not rolled_out(api, namespace, "web")
    # The provider revokes first, then status says so.
    token = wait_for(
        lambda: (
            (t := get_token(api, namespace, "app"))
            and condition(t, "ConsumersUpdated").get("reason") == "MaxRevokeDelayReached"
            and t
        ),
        10,
        "ConsumersUpdated=False MaxRevokeDelayReached",
    )
    assert token["status"]["rollout"]["progress"] == "0/1"
    assert any(reason == "RevokedBeforeAdoption" for _, reason, _ in events_for(api, namespace, "app"))
