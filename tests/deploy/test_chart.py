"""The Helm chart: lints, renders in every mode, refuses bad values, and grants exactly the RBAC it documents."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_support import CHART, REPO, Render, run_helm

FULLNAME = "sto-storage-token-operator"
GROUP = "storagetoken.dev"

# The least-privilege contract: (apiGroup, resource) -> verbs. A change here is a change of what the
# operator may do in the cluster, so it has to be deliberate (and explained in templates/rbac.yaml).
NAMESPACED_RULES = {
    (GROUP, "storagetokens"): {"get", "list", "watch", "patch"},
    (GROUP, "storagetokens/status"): {"get", "patch"},
    (GROUP, "storageproviders"): {"get", "list", "watch", "patch"},
    (GROUP, "storageproviders/status"): {"get", "patch"},
    ("", "secrets"): {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("", "events"): {"create"},
    ("apps", "deployments"): {"get", "list", "watch", "patch"},  # watched: a finished rollout revokes the old key
    ("apps", "statefulsets"): {"get", "list", "watch", "patch"},  # watched: a finished rollout revokes the old key
    ("apps", "daemonsets"): {"get", "list", "watch", "patch"},  # watched: a finished rollout revokes the old key
}
CLUSTER_RULES = {
    (GROUP, "clusterstorageproviders"): {"get", "list", "watch", "patch"},
    (GROUP, "clusterstorageproviders/status"): {"get", "patch"},
    ("", "namespaces"): {"get"},
}


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [obj for obj in of_kind(objects, kind) if name is None or obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """A role's rules flattened to (apiGroup, resource) -> verbs."""
    result: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules") or ():
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                result.setdefault((group, resource), set()).update(rule["verbs"])
    return result


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objects, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container(objects)["env"] if "value" in item}


# -- lint ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sets",
    [
        pytest.param([], id="defaults"),
        pytest.param(["watchNamespaces={team-a,team-b}"], id="namespaced"),
        pytest.param(["replicas=2"], id="two replicas electing a leader"),
        # Monitoring on needs the Prometheus Operator's API, which lint can't be told of: test_monitoring_crds.py
    ],
)
def test_helm_lint_passes_strictly(helm: str, sets: list[str]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for value in sets:
        args += ["--set", value]
    proc = run_helm(helm, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


# -- defaults: cluster-wide, one replica ------------------------------------------------------------


def test_defaults_render_a_cluster_wide_standalone_operator(render: Render) -> None:
    objects = render()
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["namespace"] == "sto-system"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME
    values = env(objects)
    assert values["STO_CLUSTER_ID"] == ""  # derived from the cluster (kube-system's uid) at start-up
    assert values["STO_INSTALL_ID"] == "sto-system/sto"  # <release namespace>/<release name>
    assert values["STO_OPERATOR_NAMESPACE"] == "sto-system"
    assert values["STO_WATCH_NAMESPACES"] == ""
    assert values["STO_LOG_FORMAT"] == "json"
    assert values["STO_LOG_LEVEL"] == "INFO"
    assert values["STO_WORKERS"] == "32"
    assert "STO_LEADER_ELECTION_LEASE" not in values
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "sto-system"}]
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]


def test_the_image_has_no_registry_host_and_defaults_to_the_app_version(render: Render) -> None:
    objects = render()
    assert container(objects)["image"] == "storage-token-operator:0.1.0"
    assert container(objects)["imagePullPolicy"] == "IfNotPresent"
    objects = render("image.repository=registry.example/sto", "image.tag=1.2.3", "image.pullPolicy=Always")
    assert container(objects)["image"] == "registry.example/sto:1.2.3"
    assert container(objects)["imagePullPolicy"] == "Always"


def test_the_pod_is_locked_down_and_probed(render: Render) -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    operator = container(objects)
    security = operator["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    ports = {port["name"]: port["containerPort"] for port in operator["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator["resources"]["requests"] and operator["resources"]["limits"]
    assert {"name": "tmp", "mountPath": "/tmp"} in operator["volumeMounts"]


def test_values_reach_the_environment(render: Render) -> None:
    objects = render(
        "clusterId=prod-eu-1",
        "logFormat=plain",
        "logLevel=DEBUG",
        "workers=4",
        "timing.sweepInterval=15m",
        "timing.sweepMinAge=20m",
        "timing.providerRecheckInterval=1h",
        "healthPort=9000",
        namespace="ops",
    )
    values = env(objects)
    assert values["STO_CLUSTER_ID"] == "prod-eu-1"
    assert values["STO_OPERATOR_NAMESPACE"] == "ops"
    assert values["STO_LOG_FORMAT"] == "plain"
    assert values["STO_LOG_LEVEL"] == "DEBUG"
    assert values["STO_WORKERS"] == "4"
    assert values["STO_SWEEP_INTERVAL"] == "15m"
    assert values["STO_SWEEP_MIN_AGE"] == "20m"
    assert values["STO_PROVIDER_RECHECK_INTERVAL"] == "1h"
    assert values["STO_HEALTH_PORT"] == "9000"
    assert {"name": "health", "containerPort": 9000, "protocol": "TCP"} in container(objects)["ports"]


def test_scheduling_values_reach_the_pod(render: Render) -> None:
    objects = render(
        "nodeSelector.pool=system",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "priorityClassName=system-cluster-critical",
        "podAnnotations.team=storage",
    )
    template = one(objects, "Deployment")["spec"]["template"]
    assert template["spec"]["nodeSelector"] == {"pool": "system"}
    assert template["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert template["spec"]["priorityClassName"] == "system-cluster-critical"
    assert template["metadata"]["annotations"] == {"team": "storage"}


# -- RBAC ------------------------------------------------------------------------------------------


def test_cluster_wide_rbac_is_exactly_the_documented_rules(render: Render) -> None:
    role = one(render(), "ClusterRole")
    assert grants(role) == NAMESPACED_RULES | CLUSTER_RULES


def test_namespaced_mode_grants_per_namespace_roles_and_only_cluster_reads(render: Render) -> None:
    objects = render("watchNamespaces={team-a,team-b}")
    assert env(objects)["STO_WATCH_NAMESPACES"] == "team-a,team-b"
    cluster_role = one(objects, "ClusterRole")
    assert grants(cluster_role) == CLUSTER_RULES
    assert ("", "secrets") not in grants(cluster_role)
    for namespace in ("team-a", "team-b"):
        role = next(r for r in of_kind(objects, "Role") if r["metadata"]["namespace"] == namespace)
        assert grants(role) == NAMESPACED_RULES
        binding = next(b for b in of_kind(objects, "RoleBinding") if b["metadata"]["namespace"] == namespace)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
        assert binding["subjects"][0]["namespace"] == "sto-system"
    # ClusterStorageProvider credentials are read (never listed) in the operator's namespace,
    # and events about cluster-scoped objects are posted there.
    credentials = one(objects, "Role", f"{FULLNAME}-credentials")
    assert credentials["metadata"]["namespace"] == "sto-system"
    assert grants(credentials) == {("", "secrets"): {"get", "patch"}, ("", "events"): {"create"}}
    assert not [r for r in of_kind(objects, "Role") if r["metadata"]["namespace"] == "default"]
    assert [b["metadata"]["name"] for b in of_kind(objects, "ClusterRoleBinding")] == [f"{FULLNAME}-cluster"]


def test_namespaced_mode_watching_its_own_namespace_needs_no_extra_roles(render: Render) -> None:
    objects = render("watchNamespaces={sto-system,default}")
    names = sorted((r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(objects, "Role"))
    assert names == [("default", FULLNAME), ("sto-system", FULLNAME)]


def test_workload_restarts_can_be_left_out_of_rbac(render: Render) -> None:
    role = one(render("rbac.restartWorkloads=false"), "ClusterRole")
    assert not [key for key in grants(role) if key[0] == "apps"]


def test_rbac_can_be_left_to_the_user(render: Render) -> None:
    objects = render("rbac.create=false", "watchNamespaces={a}")
    assert not [obj for obj in objects if obj["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]


@pytest.mark.parametrize(
    "sets",
    [
        pytest.param([], id="defaults"),
        pytest.param(["watchNamespaces={a,b}"], id="namespaced"),
        pytest.param(["replicas=3"], id="leader election cluster-wide"),
        pytest.param(["replicas=2", "watchNamespaces={a}"], id="leader election namespaced"),
    ],
)
def test_no_role_has_a_wildcard(render: Render, sets: list[str]) -> None:
    roles = [obj for obj in render(*sets) if obj["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['kind']} {role['metadata']['name']}: {field} {rule[field]}"
            assert "resourceNames" not in rule or "*" not in rule["resourceNames"]
            assert "nonResourceURLs" not in rule


# -- leader election (replicas > 1) --------------------------------------------------------------


def lease_role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Role", f"{FULLNAME}-leader-election")


def test_two_replicas_elect_a_leader_through_one_lease(render: Render) -> None:
    objects = render("replicas=2")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }  # a new pod waits for the lease as a standby
    assert env(objects)["STO_LEADER_ELECTION_LEASE"] == FULLNAME
    role = lease_role(objects)
    assert role["metadata"]["namespace"] == "sto-system"  # the Lease lives in the operator's namespace
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [FULLNAME],
            "verbs": ["get", "update"],
        },
    ]
    binding = one(objects, "RoleBinding", f"{FULLNAME}-leader-election")
    assert binding["subjects"][0]["name"] == FULLNAME
    assert grants(one(objects, "ClusterRole")) == NAMESPACED_RULES | CLUSTER_RULES  # nothing more cluster-wide
    assert not of_kind(objects, "CustomResourceDefinition")


def test_leader_election_in_namespaced_mode_and_with_one_replica(render: Render) -> None:
    objects = render("replicas=2", "watchNamespaces={a,b}", "leaderElection.leaseName=sto-leader")
    assert env(objects)["STO_LEADER_ELECTION_LEASE"] == "sto-leader"
    assert lease_role(objects)["rules"][1]["resourceNames"] == ["sto-leader"]
    single = render("leaderElection.enabled=true")
    assert env(single)["STO_LEADER_ELECTION_LEASE"] == FULLNAME
    assert one(single, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not [r for r in of_kind(render(), "Role") if r["metadata"]["name"].endswith("leader-election")]


# -- monitoring ----------------------------------------------------------------------------------


def test_metrics_service_on_by_default_and_monitoring_objects_off(render: Render) -> None:
    objects = render()
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert not of_kind(objects, "ServiceMonitor") and not of_kind(objects, "PrometheusRule")
    assert not of_kind(render("metrics.enabled=false"), "Service")


def test_service_monitor_and_alerts(render: Render) -> None:
    objects = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prom",
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.alertLabels.team=storage",
        extra=("--api-versions", "monitoring.coreos.com/v1"),
    )
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    service_labels = one(objects, "Service")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    rules = {r["alert"]: r for r in one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert set(rules) == {
        "StorageTokenExpiringWithoutRenewal",
        "StorageTokenIssuanceFailing",
        "StorageTokenRevocationsPending",
        "StorageTokenWatchDown",
    }
    expiring = rules["StorageTokenExpiringWithoutRenewal"]["expr"]
    assert "storage_token_token_expiry_timestamp_seconds - time() < 600" in expiring
    assert "storage_token_token_renewal_timestamp_seconds < time()" in expiring
    failing = rules["StorageTokenIssuanceFailing"]["expr"]
    assert failing == 'increase(storage_token_issuances_total{result="failure"}[15m]) > 0'
    pending = rules["StorageTokenRevocationsPending"]
    assert (pending["expr"], pending["for"]) == ("storage_token_pending_revocations > 0", "30m")
    down = rules["StorageTokenWatchDown"]
    assert (down["expr"], down["for"], down["labels"]["severity"]) == (
        "storage_token_token_watch_up == 0",
        "5m",
        "critical",
    )
    assert all(rule["labels"]["team"] == "storage" for rule in rules.values())
    # Prometheus templating survives Helm's: the annotations still hold {{ $labels... }}.
    assert "{{ $labels.namespace }}" in rules["StorageTokenRevocationsPending"]["annotations"]["summary"]


# -- CRDs ------------------------------------------------------------------------------------------


def test_crds_come_from_the_chart_crds_directory_and_can_be_skipped(render: Render) -> None:
    with_crds = of_kind(render(extra=("--include-crds",)), "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in with_crds) == sorted(
        f"{path.name.split('_', 1)[1].removesuffix('.yaml')}.{GROUP}" for path in (REPO / "crds").glob("*.yaml")
    )
    assert not of_kind(render(extra=("--skip-crds",)), "CustomResourceDefinition")


# -- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        pytest.param("replicas=-1", "/replicas", id="negative replicas"),
        pytest.param("logFormat=xml", "/logFormat", id="an unknown log format"),
        pytest.param("logLevel=CHATTY", "/logLevel", id="an unknown log level"),
        pytest.param("clusterId=" + "a" * 64, "/clusterId", id="a cluster id over 63 characters"),
        pytest.param("clusterId=-prod", "/clusterId", id="a cluster id starting with a dash"),
        pytest.param("clusterId=prod eu", "/clusterId", id="a cluster id outside A-Za-z0-9._-"),
        pytest.param("watchNamespaces={Team-A}", "/watchNamespaces/0", id="a namespace that is no DNS label"),
        pytest.param("workers=0", "/workers", id="no workers"),
        pytest.param("image.pullPolicy=Sometimes", "/image/pullPolicy", id="an unknown pull policy"),
        pytest.param("timing.sweepInterval=ten minutes", "/timing/sweepInterval", id="a duration Go can't parse"),
        pytest.param("metrics.service.port=70000", "/metrics/service/port", id="a port out of range"),
        pytest.param("replica=2", "additional properties", id="a misspelt value"),
        pytest.param("leaderElection.leaseName=Not_A_Name", "/leaderElection/leaseName", id="a bad Lease name"),
    ],
)
def test_bad_values_fail_through_the_schema(helm: str, value: str, complaint: str) -> None:
    proc = run_helm(helm, "template", "sto", str(CHART), "--set", value)
    assert proc.returncode != 0, f"{value} rendered"
    assert "schema" in proc.stderr and complaint in proc.stderr, proc.stderr


def test_the_health_port_may_not_take_the_metrics_port(helm: str) -> None:
    proc = run_helm(helm, "template", "sto", str(CHART), "--set", "healthPort=8080")
    assert proc.returncode != 0
    assert "healthPort must differ from the metrics port 8080" in proc.stderr


# -- release notes ---------------------------------------------------------------------------------


def test_the_release_notes_say_what_to_apply_next(helm: str) -> None:
    proc = run_helm(
        helm, "install", "sto", str(CHART), "--namespace", "ops", "--dry-run=client", "--set", "watchNamespaces={a}"
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "watching a" in notes
    for step in ("kubectl create secret generic", "kind: StorageProvider", "kind: StorageToken", "kubectl get stok"):
        assert step in notes
    assert "electing a leader" not in notes
    notes = run_helm(helm, "install", "sto", str(CHART), "--dry-run=client", "--set", "replicas=2").stdout
    assert 'electing a leader through Lease "sto-storage-token-operator"' in notes
