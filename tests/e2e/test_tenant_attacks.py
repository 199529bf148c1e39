"""Each attack of #14, made by a tenant through `kubectl apply` as its own ServiceAccount, on a real API server.

The tenant's ServiceAccount may only read and write StorageTokens in its namespace (what a platform
grants a team). While each attack runs, another tenant's short-lived token must keep renewing and
the operator process must stay up: no tenant can take the operator down, starve its neighbours,
exceed its ceiling, or read a key byte back from a condition or an event.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import (
    GROUP,
    VERSION,
    apply_provider,
    condition,
    consumer_deployment,
    create_token,
    delete_namespace,
    events_for,
    get_token,
    wait_condition,
    wait_for,
)
from kubernetes import client

from storage_token.dev.cluster.binaries import ensure_binaries
from storage_token.dev.cluster.controlplane import ClusterAccess
from storage_token.dev.sandbox import Emulators, OperatorProcess

VICTIM_TOKEN = "neighbour"
# A minute-long key renewed 50 s before it expires: one renewal about every 10 s to watch for.
VICTIM_SPEC = {"duration": "1m", "renewBefore": "50s", "revokeGracePeriod": "5s"}
RENEW_ANNOTATION = "storagetoken.dev/renew"
RESTART_ANNOTATION = "storagetoken.dev/restartedAt"


@dataclass(frozen=True)
class Tenant:
    namespace: str
    kubeconfig: Path
    kubectl: Path

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        argv = [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", "--namespace", self.namespace, *args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=60)

    def apply(self, name: str, **spec: Any) -> subprocess.CompletedProcess[str]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StorageToken", "metadata": {"name": name}, "spec": spec}
        return self.run("apply", "-f", "-", stdin=json.dumps(body))


def tenant_kubeconfig(cluster: ClusterAccess, api: client.ApiClient, namespace: str, path: Path) -> Path:
    """A kubeconfig for a ServiceAccount of `namespace` that may only read and write StorageTokens there.

    get/list/watch/create/update/patch: `kubectl apply` reads before it writes, `annotate` patches.
    """
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="tenant"))
    )
    rule = client.V1PolicyRule(
        api_groups=[GROUP],
        resources=["storagetokens"],
        verbs=["get", "list", "watch", "create", "update", "patch"],
    )
    rbac.create_namespaced_role(namespace, client.V1Role(metadata=client.V1ObjectMeta(name="tenant"), rules=[rule]))
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="tenant"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="tenant"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="tenant", namespace=namespace)],
        ),
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = core.create_namespaced_service_account_token("tenant", namespace, request).status.token
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sto", "cluster": server}],
                "users": [{"name": "tenant", "user": {"token": token}}],
                "contexts": [{"name": "sto", "context": {"cluster": "sto", "user": "tenant", "namespace": namespace}}],
                "current-context": "sto",
            }
        )
    )
    path.chmod(0o600)
    return path


def new_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="module")
def victim(api: client.ApiClient, emulators: Emulators, operator: OperatorProcess) -> Iterator[str]:
    """Another tenant's namespace with a token renewing every ~10 s for the whole module."""
    namespace = new_namespace(api, "victim")
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(api, namespace, VICTIM_TOKEN, providerRef={"name": "b2"}, permissions=["read"], **VICTIM_SPEC)
    wait_condition(api, namespace, VICTIM_TOKEN, "True", timeout=90)
    yield namespace
    delete_namespace(api, namespace)


@pytest.fixture(scope="module")
def tenant(
    cluster: ClusterAccess,
    api: client.ApiClient,
    emulators: Emulators,
    operator: OperatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Tenant]:
    """The attacker: a namespace whose platform-made providers are `open` (the emulators' generous test
    ceiling, read and list only) and `strict` (the minting limits a platform would set)."""
    namespace = new_namespace(api, "attacker")
    apply_provider(api, emulators, "b2", namespace, "open", policy={"allowedPermissions": ["read", "list"]})
    apply_provider(
        api,
        emulators,
        "b2",
        namespace,
        "strict",
        policy={
            "allowedBuckets": ["demo-b2-logs"],
            "minRenewalInterval": "5m",
            "minManualRenewInterval": "10m",
            "maxLiveKeys": 3,
        },
    )
    path = tenant_kubeconfig(cluster, api, namespace, tmp_path_factory.mktemp("tenant") / "kubeconfig")
    binaries = cluster.binaries or ensure_binaries()
    yield Tenant(namespace, path, binaries.kubectl)
    delete_namespace(api, namespace)


def revision(api: client.ApiClient, namespace: str, name: str) -> int:
    return int((get_token(api, namespace, name).get("status") or {}).get("revision") or 0)


class Watch:
    """The attack's bystanders: the operator process and the victim's renewals."""

    def __init__(self, api: client.ApiClient, operator: OperatorProcess, victim: str) -> None:
        self.api, self.operator, self.victim = api, operator, victim
        self.start = revision(api, victim, VICTIM_TOKEN)

    def still_fine(self, renewals: int = 1, timeout: float = 60) -> None:
        """The operator is up and the victim renewed `renewals` more times (its key never lapsed)."""
        wanted = self.start + renewals
        wait_for(
            lambda: revision(self.api, self.victim, VICTIM_TOKEN) >= wanted or not self.operator.alive(),
            timeout,
            f"the neighbour's token to renew to revision {wanted}",
        )
        assert self.operator.alive(), "the operator died during the attack"
        token = get_token(self.api, self.victim, VICTIM_TOKEN)
        assert condition(token, "Ready").get("status") == "True", token.get("status")
        assert revision(self.api, self.victim, VICTIM_TOKEN) >= wanted


@pytest.fixture
def watch(api: client.ApiClient, operator: OperatorProcess, victim: str) -> Watch:
    assert operator.alive()
    return Watch(api, operator, victim)


def refused(api: client.ApiClient, namespace: str, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
    token = wait_condition(api, namespace, name, "False", reason, timeout=timeout)
    assert not (token.get("status") or {}).get("keyId"), "a refused token holds a key"
    return token


BOMBS = {
    "memory": "{% set s = 'a' * 65536 %}{{ [s] * 4096 }}",
    "cpu": "{% set a1=[1]*4096 %}{% set a2=[1]*4096 %}{% set b=[a1]*4096 %}{% set c=[a2]*4096 %}"
    "{{ [b]*4096 == [c]*4096 }}",
    "nested": "{% set a=[1]*4096 %}{% set b=[a]*4096 %}{{ [b]*4096 }}",
    "many-keys": "{% for a in [0]*3000 %}{% for b in [0]*14 %}{% endfor %}{% endfor %}",
}


def test_template_bombs(api: client.ApiClient, tenant: Tenant, watch: Watch) -> None:
    for kind, source in BOMBS.items():
        data = {f"k{i}": source for i in range(32)} if kind == "many-keys" else {"x": source}
        applied = tenant.apply(
            f"bomb-{kind}",
            providerRef={"name": "open"},
            permissions=["read"],
            secret={"template": {"data": data}},
        )
        assert applied.returncode == 0, applied.stderr
    for kind in BOMBS:
        token = refused(api, tenant.namespace, f"bomb-{kind}", "TemplateError")
        assert (
            "limit" in condition(token, "Ready")["message"].lower() or "exceed" in condition(token, "Ready")["message"]
        ), condition(token, "Ready")
    watch.still_fine(renewals=2)


def test_raw_capabilities_do_not_escalate(
    api: client.ApiClient, tenant: Tenant, emulators: Emulators, watch: Watch
) -> None:
    applied = tenant.apply(
        "escalate",
        providerRef={"name": "open"},
        permissions=["read"],
        buckets=["demo-b2-data"],
        rawCapabilities=["writeFiles", "deleteFiles", "writeFileRetentions"],
    )
    assert applied.returncode == 0, applied.stderr
    token = refused(api, tenant.namespace, "escalate", "PolicyViolation")
    assert "rawCapabilities" in condition(token, "Ready")["message"]
    watch.still_fine()


def test_no_account_wide_key_past_the_ceiling(api: client.ApiClient, tenant: Tenant, watch: Watch) -> None:
    applied = tenant.apply("everything", providerRef={"name": "strict"}, permissions=["read"], duration="1h")
    assert applied.returncode == 0, applied.stderr
    token = refused(api, tenant.namespace, "everything", "PolicyViolation")
    assert "spec.buckets" in condition(token, "Ready")["message"]
    # A literal wildcard never gets past admission (US3 would read it as "every bucket").
    star = tenant.apply("star", providerRef={"name": "strict"}, permissions=["read"], buckets=["*"])
    assert star.returncode != 0 and "wildcard" in star.stderr, star.stderr
    # Nor a bucket outside the ceiling, nor a key that outlives the token.
    other = tenant.apply("other", providerRef={"name": "strict"}, permissions=["read"], buckets=["demo-b2-data"])
    assert other.returncode == 0, other.stderr
    refused(api, tenant.namespace, "other", "PolicyViolation")
    kept = tenant.apply(
        "kept", providerRef={"name": "strict"}, permissions=["read"], buckets=["demo-b2-logs"], deletionPolicy="Retain"
    )
    assert kept.returncode == 0, kept.stderr
    assert "allowRetain" in condition(refused(api, tenant.namespace, "kept", "PolicyViolation"), "Ready")["message"]
    watch.still_fine()


def test_unbounded_minting(api: client.ApiClient, tenant: Tenant, watch: Watch) -> None:
    fast = tenant.apply(
        "fast",
        providerRef={"name": "strict"},
        permissions=["read"],
        buckets=["demo-b2-logs"],
        duration="1m",
        renewBeforePercentage=95,
        revokeGracePeriod="10s",
    )
    assert fast.returncode == 0, fast.stderr
    assert (
        "renewal interval" in condition(refused(api, tenant.namespace, "fast", "PolicyViolation"), "Ready")["message"]
    )

    looped = tenant.apply("looped", providerRef={"name": "strict"}, permissions=["read"], buckets=["demo-b2-logs"])
    assert looped.returncode == 0, looped.stderr
    wait_condition(api, tenant.namespace, "looped", "True", timeout=60)
    for i in range(30):  # kubectl annotate storagetoken.dev/renew=$(date +%s%N) --overwrite, in a loop
        annotated = tenant.run(
            "annotate", "storagetoken", "looped", f"{RENEW_ANNOTATION}={time.time_ns()}-{i}", "--overwrite"
        )
        assert annotated.returncode == 0, annotated.stderr
    time.sleep(5)
    status = get_token(api, tenant.namespace, "looped").get("status") or {}
    # policy.minManualRenewInterval 10m: the first issue stands, the loop is held back, not minted.
    assert int(status.get("revision") or 0) == 1, status
    assert len(status.get("pendingRevocations") or ()) == 0
    issuing = condition(get_token(api, tenant.namespace, "looped"), "Issuing")
    assert issuing.get("reason") == "RenewalRateLimited", issuing
    watch.still_fine(renewals=2)


def test_huge_labels_are_refused_at_admission(api: client.ApiClient, tenant: Tenant, watch: Watch) -> None:
    attempts = {
        "labels": {"labels": {f"l{i}": "x" for i in range(60_000)}},
        "long": {"annotations": {"a": "y" * 5000}},
        "wide": {"annotations": {f"a{i}": "y" * 4000 for i in range(20)}},
        "badkey": {"labels": {"bad key!": "x"}},
    }
    for name, secret in attempts.items():
        applied = tenant.apply(name, providerRef={"name": "open"}, permissions=["read"], secret=secret)
        assert applied.returncode != 0, f"{name} was admitted"
        assert "spec.secret" in applied.stderr or "Too long" in applied.stderr, applied.stderr[-2000:]
        listed = tenant.run("get", "storagetoken", name)
        assert listed.returncode != 0 and "NotFound" in listed.stderr, listed.stdout
    watch.still_fine()


def test_no_key_material_in_template_errors(
    api: client.ApiClient, tenant: Tenant, emulators: Emulators, watch: Watch
) -> None:
    # Passes the rehearsal (placeholder keys are zeros), fails on the real key with an error that would
    # quote a name computed from it.
    source = "{% if secretAccessKey[4:8] != '0000' %}{{ [1] | select(secretAccessKey) | list }}{% endif %}"
    reversed_ = "{% if secretAccessKey[4:8] != '0000' %}{{ [1] | map(secretAccessKey | reverse) | list }}{% endif %}"
    for name, template in (("leak", source), ("leak-reversed", reversed_)):
        applied = tenant.apply(
            name, providerRef={"name": "open"}, permissions=["read"], secret={"template": {"data": {"x": template}}}
        )
        assert applied.returncode == 0, applied.stderr
    for name in ("leak", "leak-reversed"):
        wait_for(
            lambda name=name: (get_token(api, tenant.namespace, name).get("status") or {}).get("failedAttempts"),
            60,
            f"{name}'s render on a real key to fail",
        )
    # Every key secret either emulator ever handed out (their control surface never shows secrets).
    secrets = emulators.issued_secrets()
    assert secrets
    for name in ("leak", "leak-reversed"):
        token = get_token(api, tenant.namespace, name)
        texts = [json.dumps(token.get("status") or {})] + [m for _, _, m in events_for(api, tenant.namespace, name)]
        for secret in secrets:
            for piece in {secret, secret[1:], secret[::-1], secret[4:], secret[:-1]}:
                assert all(piece not in text for text in texts), f"key material of {name} in status or events"
        assert not (token.get("status") or {}).get("keyId"), "the key of a failed render was kept"
    watch.still_fine()


def test_restart_targets_are_no_deputy(api: client.ApiClient, tenant: Tenant, watch: Watch) -> None:
    # The platform's Deployment: it does not read the token's Secret, and the tenant can't patch it.
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(tenant.namespace, consumer_deployment("platform-db", secret="unrelated"))
    applied = tenant.apply(
        "deputy",
        providerRef={"name": "open"},
        permissions=["read"],
        restartTargets=[{"kind": "Deployment", "name": "platform-db"}],
    )
    assert applied.returncode == 0, applied.stderr
    wait_condition(api, tenant.namespace, "deputy", "True", timeout=60)
    rotated = tenant.run("annotate", "storagetoken", "deputy", f"{RENEW_ANNOTATION}=now", "--overwrite")
    assert rotated.returncode == 0, rotated.stderr
    wait_for(lambda: revision(api, tenant.namespace, "deputy") >= 2, 60, "the deputy token to rotate")
    time.sleep(3)
    template = apps.read_namespaced_deployment("platform-db", tenant.namespace).spec.template
    assert RESTART_ANNOTATION not in (template.metadata.annotations or {}), (
        "the operator restarted a workload for the tenant"
    )
    # The tenant itself may not touch workloads: the operator did not do it on its behalf either.
    denied = tenant.run("rollout", "restart", "deployment/platform-db")
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    watch.still_fine()
