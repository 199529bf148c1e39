"""The chart's RBAC is enough for the operator and no more, checked on a real API server.

The chart is rendered with `helm template` and applied without its Deployment;
the operator then runs as a local process authenticated as the chart's
ServiceAccount (a TokenRequest token in a kubeconfig of its own), so every
request it makes is authorised by exactly the rendered (Cluster)Roles.

The session's own operator (cluster id "e2e", cluster-wide) would reconcile the
same StorageTokens, so it is paused for this module and started again after.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import (
    GROUP,
    VERSION,
    apply_provider,
    consumer_deployment,
    create_token,
    delete_namespace,
    delete_token,
    events_for,
    get_token,
    patch_token,
    secret_data,
    storage_token,
    wait_condition,
    wait_event,
    wait_for,
)
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from storage_token.dev.cluster.binaries import Binaries, ensure_binaries
from storage_token.dev.cluster.controlplane import ClusterAccess
from storage_token.dev.sandbox import Emulators, OperatorProcess

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "storage-token-operator"
CHART_NAME = "storage-token-operator"
# Milliseconds in a plain log line's timestamp may read 403; the denial must be in the message.
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
DENIAL = re.compile(r"forbidden|\b403\b", re.IGNORECASE)


# Not an authorisation failure: the API server refuses new objects in a namespace being deleted with a 403 too.
TERMINATING = "because it is being terminated"


def denials(log: str) -> list[str]:
    """Log lines that report a refused API request."""
    return [line for line in log.splitlines() if DENIAL.search(TIMESTAMP.sub("", line)) and TERMINATING not in line]


def tools(cluster: ClusterAccess) -> Binaries:
    return cluster.binaries or ensure_binaries()


def new_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="module")
def session_operator_paused(api: client.ApiClient, operator: OperatorProcess) -> Iterator[None]:
    """Stop the session operator once what earlier tests left is gone; start it again afterwards."""
    custom = client.CustomObjectsApi(api)
    with contextlib.suppress(AssertionError):  # best effort: a token stuck elsewhere is no reason to fail here
        wait_for(
            lambda: not custom.list_cluster_custom_object(GROUP, VERSION, "storagetokens")["items"],
            60,
            "earlier tests' StorageTokens to be finalized",
        )
    operator.stop()
    try:
        yield
    finally:
        core = client.CoreV1Api(api)
        # Our namespaces go first, so the session operator doesn't meet them half-deleted. After a
        # failure a token's finalizer may hold one: the session operator releases it once started.
        try:
            with contextlib.suppress(AssertionError):
                wait_for(
                    lambda: not [n for n in core.list_namespace().items if n.status.phase == "Terminating"],
                    30,
                    "namespaces to finish terminating",
                )
        finally:
            operator.start()


@dataclass
class Release:
    name: str
    namespace: str
    objects: list[dict[str, Any]]
    env: dict[str, str]  # the operator container's environment as the chart sets it

    @property
    def service_account(self) -> str:
        return f"{self.name}-{CHART_NAME}"


def render(binaries: Binaries, release: str, namespace: str, sets: list[str]) -> list[dict[str, Any]]:
    argv = [str(binaries.helm), "template", release, str(CHART), "--namespace", namespace]
    for value in sets:
        argv += ["--set", value]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def kubectl(cluster: ClusterAccess, *args: str, stdin: str) -> None:
    argv = [str(tools(cluster).kubectl), f"--kubeconfig={cluster.kubeconfig}", *args]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr


@contextmanager
def installed(api: client.ApiClient, cluster: ClusterAccess, release: str, sets: list[str]) -> Iterator[Release]:
    """The chart applied without its Deployment (the operator runs as a local process instead)."""
    namespace = new_namespace(api, "rbac-sys")
    rendered = render(tools(cluster), release, namespace, sets)
    deployment = next(obj for obj in rendered if obj["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    objects = [obj for obj in rendered if obj["kind"] != "Deployment"]
    manifest = yaml.safe_dump_all(objects)
    kubectl(cluster, "apply", "-f", "-", stdin=manifest)
    try:
        yield Release(release, namespace, objects, env)
    finally:
        kubectl(cluster, "delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=manifest)
        delete_namespace(api, namespace)


def service_account_kubeconfig(cluster: ClusterAccess, api: client.ApiClient, release: Release, path: Path) -> Path:
    """A kubeconfig of the admin's server and CA with a TokenRequest token of the release's ServiceAccount."""
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = (
        client.CoreV1Api(api)
        .create_namespaced_service_account_token(release.service_account, release.namespace, request)
        .status.token
    )
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sto", "cluster": server}],
        "users": [{"name": release.service_account, "user": {"token": token}}],
        "contexts": [{"name": "sto", "context": {"cluster": "sto", "user": release.service_account}}],
        "current-context": "sto",
    }
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return path


def revision(api: client.ApiClient, namespace: str, name: str, wanted: int) -> dict[str, Any] | None:
    status: dict[str, Any] = get_token(api, namespace, name).get("status") or {}
    return status if status.get("revision") == wanted else None


def gone(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        get_token(api, namespace, name)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def test_the_cluster_wide_rbac_carries_a_token_through_issue_renewal_and_deletion(
    cluster: ClusterAccess,
    api: client.ApiClient,
    namespace: str,
    emulators: Emulators,
    session_operator_paused: None,
    tmp_path: Path,
) -> None:
    # Two replicas: the chart adds the Role for leader election, and this process takes the Lease.
    with installed(api, cluster, "rbac-wide", ["replicas=2"]) as release:
        assert {obj["kind"] for obj in release.objects} >= {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
        kubeconfig = service_account_kubeconfig(cluster, api, release, tmp_path / "sa.kubeconfig")
        process = OperatorProcess(
            kubeconfig,
            tmp_path / "operator.log",
            cluster_id="rbac",
            operator_namespace=release.env["STO_OPERATOR_NAMESPACE"],
            extra_args=[f"--leader-election-lease={release.env['STO_LEADER_ELECTION_LEASE']}"],
            env={"STO_ROUTINE_EVENTS": "true"},  # its Issued event proves the Role lets it post events
        ).start()
        try:
            apply_provider(api, emulators, "b2", namespace, "b2")  # the credentials check writes provider status
            client.AppsV1Api(api).create_namespaced_deployment(namespace, consumer_deployment("consumer", replicas=0))
            create_token(
                api,
                namespace,
                "app",
                providerRef={"name": "b2"},
                permissions=["read", "list"],
                buckets=["demo-b2-data"],
                revokeGracePeriod="1s",
                restartTargets=[{"kind": "Deployment", "name": "consumer"}],
            )
            first = wait_condition(api, namespace, "app", "True", "Issued")["status"]
            assert first["keyName"].startswith(f"{process.key_prefix}{namespace}-app-")
            assert first["keyId"] in emulators.live_keys("b2")
            assert secret_data(api, namespace, "app")["accessKeyId"] == first["keyId"]
            wait_event(api, namespace, "app", "Issued")

            patch_token(api, namespace, "app", {"metadata": {"annotations": {"storagetoken.dev/renew": "rbac"}}})
            second = wait_for(lambda: revision(api, namespace, "app", 2), 60, "the manual renewal")
            assert second["keyId"] != first["keyId"]
            assert secret_data(api, namespace, "app")["accessKeyId"] == second["keyId"]
            wait_for(lambda: first["keyId"] not in emulators.live_keys("b2"), 30, "the replaced key revoked")
            wait_condition(api, namespace, "app", "True")

            def restarted() -> bool:
                deployment = client.AppsV1Api(api).read_namespaced_deployment("consumer", namespace)
                annotations = deployment.spec.template.metadata.annotations or {}
                return "storagetoken.dev/restartedAt" in annotations

            wait_for(restarted, 30, "the restart target's pod template annotated")

            delete_token(api, namespace, "app")
            wait_for(lambda: gone(api, namespace, "app"), 30, "the finalizer released")
            assert second["keyId"] not in emulators.live_keys("b2")
            assert not [e for e in events_for(api, namespace, "app") if e[1] == "RestartFailed"]
        finally:
            process.stop()
        log = process.log_text()
        assert "cluster id rbac" in log
        assert "became leader" in log
        assert not denials(log), "\n".join(denials(log))


def assert_forbidden(call: Callable[[], Any], what: str) -> None:
    try:
        call()
    except ApiException as error:
        assert error.status == 403, f"{what}: {error.status} {error.reason}"
    else:
        raise AssertionError(f"{what}: allowed")


def test_a_namespaced_install_reaches_only_its_namespace(
    cluster: ClusterAccess,
    api: client.ApiClient,
    emulators: Emulators,
    session_operator_paused: None,
    tmp_path: Path,
) -> None:
    watched = new_namespace(api, "rbac-a")
    other = new_namespace(api, "rbac-b")
    try:
        core = client.CoreV1Api(api)
        core.create_namespaced_secret(other, client.V1Secret(metadata=client.V1ObjectMeta(name="theirs")))
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP,
            VERSION,
            other,
            "storagetokens",
            storage_token("theirs", providerRef={"name": "b2"}, permissions=["read"]),
        )
        with installed(api, cluster, "rbac-ns", [f"watchNamespaces={{{watched}}}"]) as release:
            kubeconfig = service_account_kubeconfig(cluster, api, release, tmp_path / "sa.kubeconfig")
            as_operator = config.new_client_from_config(config_file=str(kubeconfig))
            try:
                sa_core = client.CoreV1Api(as_operator)
                sa_custom = client.CustomObjectsApi(as_operator)
                sa_leases = client.CoordinationV1Api(as_operator)
                # In the watched namespace: allowed.
                sa_core.list_namespaced_secret(watched)
                sa_custom.list_namespaced_custom_object(GROUP, VERSION, watched, "storagetokens")
                sa_custom.list_cluster_custom_object(GROUP, VERSION, "clusterstorageproviders")
                sa_core.read_namespace(other)  # ClusterStorageProvider namespace selectors
                # Anywhere else: 403.
                secret = client.V1Secret(metadata=client.V1ObjectMeta(name="planted"))
                token = storage_token("planted", providerRef={"name": "b2"}, permissions=["read"])
                status = {"status": {"revision": 99}}
                refused: dict[str, Callable[[], Any]] = {
                    "read a Secret": lambda: sa_core.read_namespaced_secret("theirs", other),
                    "list Secrets": lambda: sa_core.list_namespaced_secret(other),
                    "create a Secret": lambda: sa_core.create_namespaced_secret(other, secret),
                    "replace a Secret": lambda: sa_core.replace_namespaced_secret("theirs", other, secret),
                    "delete a Secret": lambda: sa_core.delete_namespaced_secret("theirs", other),
                    "list Secrets cluster-wide": lambda: sa_core.list_secret_for_all_namespaces(),
                    "list Secrets in its own namespace": lambda: sa_core.list_namespaced_secret(release.namespace),
                    "read a StorageToken": lambda: sa_custom.get_namespaced_custom_object(
                        GROUP, VERSION, other, "storagetokens", "theirs"
                    ),
                    "list StorageTokens": lambda: sa_custom.list_namespaced_custom_object(
                        GROUP, VERSION, other, "storagetokens"
                    ),
                    "create a StorageToken": lambda: sa_custom.create_namespaced_custom_object(
                        GROUP, VERSION, other, "storagetokens", token
                    ),
                    "patch a StorageToken's status": lambda: sa_custom.patch_namespaced_custom_object_status(
                        GROUP, VERSION, other, "storagetokens", "theirs", status
                    ),
                    "list StorageTokens cluster-wide": lambda: sa_custom.list_cluster_custom_object(
                        GROUP, VERSION, "storagetokens"
                    ),
                    "list namespaces": lambda: sa_core.list_namespace(),
                    "create a Lease without leader election": lambda: sa_leases.create_namespaced_lease(
                        release.namespace, {"metadata": {"name": "planted"}, "spec": {}}
                    ),
                }
                for what, call in refused.items():
                    assert_forbidden(call, what)
            finally:
                as_operator.close()

            # The namespace-bound operator with exactly these rights still does its job at home.
            process = OperatorProcess(
                kubeconfig,
                tmp_path / "operator.log",
                cluster_id="rbac-ns",
                operator_namespace=release.env["STO_OPERATOR_NAMESPACE"],
                extra_args=[f"--namespace={release.env['STO_WATCH_NAMESPACES']}"],
            ).start()
            try:
                apply_provider(api, emulators, "b2", watched, "b2")
                create_token(api, watched, "app", providerRef={"name": "b2"}, permissions=["read"])
                issued = wait_condition(api, watched, "app", "True", "Issued")["status"]
                assert issued["keyName"].startswith(f"{process.key_prefix}{watched}-app-")
                delete_token(api, watched, "app")
                wait_for(lambda: gone(api, watched, "app"), 30, "the finalizer released")
                assert issued["keyId"] not in emulators.live_keys("b2")
                assert not get_token(api, other, "theirs").get("status"), "the other namespace's token was touched"
            finally:
                process.stop()
            log = process.log_text()
            assert not denials(log), "\n".join(denials(log))
    finally:
        delete_namespace(api, watched)
        delete_namespace(api, other)


def test_helm_installs_and_upgrades_between_modes(cluster: ClusterAccess, api: client.ApiClient) -> None:
    """A real `helm install`/`upgrade`: switching replicas and modes leaves no stale field or role behind."""
    namespace = new_namespace(api, "rbac-helm")
    watched = new_namespace(api, "rbac-w")
    helm = [str(tools(cluster).helm), f"--kubeconfig={cluster.kubeconfig}", "--namespace", namespace]
    apps, rbac = client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
    deployment = f"sto-{CHART_NAME}"

    def helm_run(*args: str) -> None:
        proc = subprocess.run([*helm, *args], capture_output=True, text=True, check=False, timeout=120)
        assert proc.returncode == 0, proc.stderr

    def strategy() -> dict[str, Any]:
        result: dict[str, Any] = apps.read_namespaced_deployment(deployment, namespace).to_dict()["spec"]["strategy"]
        return result

    try:
        helm_run("install", "sto", str(CHART), "--skip-crds", "--set", "replicas=2")
        assert strategy()["type"] == "RollingUpdate"
        assert rbac.read_namespaced_role(f"{deployment}-leader-election", namespace)
        helm_run("upgrade", "sto", str(CHART), "--skip-crds", "--reset-values")
        assert strategy() == {"type": "Recreate", "rolling_update": None}
        with pytest.raises(ApiException) as gone_role:
            rbac.read_namespaced_role(f"{deployment}-leader-election", namespace)
        assert gone_role.value.status == 404
        helm_run("upgrade", "sto", str(CHART), "--skip-crds", "--reset-values", f"--set=watchNamespaces={{{watched}}}")
        assert rbac.read_namespaced_role(deployment, watched).rules
        with pytest.raises(ApiException) as gone_binding:
            rbac.read_cluster_role_binding(deployment)
        assert gone_binding.value.status == 404
    finally:
        subprocess.run([*helm, "uninstall", "sto"], capture_output=True, check=False, timeout=120)
        delete_namespace(api, namespace)
        delete_namespace(api, watched)
