"""restartTargets restarts only workloads that consume the token's Secret or opt in (review M6)."""

from __future__ import annotations

from typing import Any

from harness import Harness

from storage_token.policy.consumers import RESTART_OPT_IN

NS, NAME = "team-a", "app"
RESTARTED = "storagetoken.dev/restartedAt"


def deployment(name: str, pod: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
        "spec": {"template": {"metadata": {}, "spec": pod}},
    }


def container(**reads: Any) -> dict[str, Any]:
    return {"name": "c", "image": "app:1", **reads}


CONSUMERS = {
    "by-volume": {"containers": [container()], "volumes": [{"name": "s", "secret": {"secretName": NAME}}]},
    "by-projection": {
        "containers": [container()],
        "volumes": [{"name": "p", "projected": {"sources": [{"secret": {"name": NAME}}]}}],
    },
    "by-env-from": {"containers": [container(envFrom=[{"secretRef": {"name": NAME}}])]},
    "by-init-env": {
        "containers": [container()],
        "initContainers": [
            container(env=[{"name": "K", "valueFrom": {"secretKeyRef": {"name": NAME, "key": "accessKeyId"}}}])
        ],
    },
}


def restarted(h: Harness, name: str) -> bool:
    body = h.kube.get("Deployment", NS, name)
    assert body is not None
    return RESTARTED in ((body["spec"]["template"].get("metadata") or {}).get("annotations") or {})


async def test_only_consumers_and_opted_in_workloads_are_restarted(harness: Harness) -> None:
    h = harness
    h.kube.create_namespace(NS)
    for name, pod in CONSUMERS.items():
        h.kube.create(deployment(name, pod))
    h.kube.create(deployment("bystander", {"containers": [container(envFrom=[{"secretRef": {"name": "other"}}])]}))
    h.kube.create(deployment("opted-in", {"containers": [container()]}, {RESTART_OPT_IN: f"x, {NAME}"}))
    names = [*CONSUMERS, "bystander", "opted-in", "absent"]
    provider = await h.create_provider("b2")
    await h.create_token(
        NS, NAME, provider, duration="24h", restartTargets=[{"kind": "Deployment", "name": n} for n in names]
    )
    await h.reconcile_token(NS, NAME)
    await h.renew(NS, NAME)
    assert h.status(NS, NAME)["revision"] == 2
    h.advance(h.settings.restart_min_interval)  # the restart waits one interval for other rotations to join
    await h.reconcile_token(NS, NAME)

    for name in [*CONSUMERS, "opted-in"]:
        assert restarted(h, name), f"{name} reads the Secret (or opted in) and was not restarted"
    assert not restarted(h, "bystander"), "a workload that doesn't use the Secret was restarted"
    events = {(e["reason"], e["message"].split(":")[0]) for e in h.kube.events}
    assert ("RestartRefused", "not restarting Deployment bystander") in events
    assert ("RestartFailed", "could not restart Deployment absent") in events
