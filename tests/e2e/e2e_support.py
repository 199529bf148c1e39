"""Helpers the end-to-end tests share: applying CRDs, waiting, clients for other users."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from storage_token.dev.cluster.controlplane import ClusterAccess
from storage_token.dev.emulators.control import CONTROL_PREFIX, ControlledEmulator, read_state
from storage_token.dev.sandbox import OperatorProcess

T = TypeVar("T")

GROUP = "storagetoken.dev"
VERSION = "v1alpha1"


def apply_crds(api: client.ApiClient, directory: Path, timeout: float = 60) -> list[str]:
    """Create or replace every CRD in `directory` and wait until each is Established."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(directory.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        names.append(name)
        try:
            current = ext.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(name, body)
        except ApiException as error:
            if error.status != 404:
                raise
            ext.create_custom_resource_definition(body)
    for name in names:
        wait_for(lambda n=name: _established(ext, n), timeout, f"CRD {name} established")
    return names


def _established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    crd = ext.read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except ApiException as error:
            last_error = error
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last: {last_error})" if last_error else "")
    )


def delete_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


def service_account_client(api: client.ApiClient, namespace: str, name: str) -> client.ApiClient:
    """An ApiClient authenticated as a ServiceAccount through a short-lived TokenRequest token."""
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as error:
        if error.status != 409:
            raise
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = core.create_namespaced_service_account_token(name, namespace, request).status.token
    configuration = client.Configuration()
    configuration.host = api.configuration.host
    configuration.ssl_ca_cert = api.configuration.ssl_ca_cert
    configuration.verify_ssl = api.configuration.verify_ssl
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def storage_token(name: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StorageToken", "metadata": {"name": name}, "spec": spec}


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def get_token(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "storagetokens", name)
    return result


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for entry in (obj.get("status") or {}).get("conditions") or ():
        if entry.get("type") == type_:
            return dict(entry)
    return {}


def wait_condition(
    api: client.ApiClient, namespace: str, name: str, status: str, reason: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Wait until the token's Ready condition has `status` (and `reason`); return the token."""

    def probe() -> dict[str, Any] | None:
        token = get_token(api, namespace, name)
        ready = condition(token, "Ready")
        if ready.get("status") == status and (reason is None or ready.get("reason") == reason):
            return token
        return None

    try:
        return wait_for(probe, timeout, f"{namespace}/{name} Ready={status} {reason or ''}")
    except AssertionError:
        token = get_token(api, namespace, name)
        raise AssertionError(
            f"{namespace}/{name} never reached Ready={status} {reason}: {token.get('status')}"
        ) from None


def events_for(api: client.ApiClient, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the events about object `name` in `namespace`."""
    events = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [(e.type, e.reason, e.message) for e in events.items]


def secret_data(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    import base64

    secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def apply_provider(api: client.ApiClient, emulators: Any, kind: str, namespace: str, name: str, **extra: Any) -> None:
    """Create the credentials Secret and a StorageProvider for emulator `kind`, and wait until it is Ready."""
    secret = emulators.credentials_secret(kind, f"{name}-credentials", namespace)
    client.CoreV1Api(api).create_namespaced_secret(namespace, secret)
    body = emulators.provider(kind, name, namespace, f"{name}-credentials", **extra)
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "storageproviders", body)

    def ready() -> bool:
        obj = custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "storageproviders", name)
        return condition(obj, "Ready").get("status") == "True"

    wait_for(ready, 60, f"provider {namespace}/{name} Ready")


def create_token(api: client.ApiClient, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body = storage_token(name, **spec)
    result: dict[str, Any] = custom(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "storagetokens", body
    )
    return result


def patch_token(api: client.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    custom(api).patch_namespaced_custom_object(GROUP, VERSION, namespace, "storagetokens", name, patch)


def delete_token(api: client.ApiClient, namespace: str, name: str) -> None:
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "storagetokens", name)


def wait_event(
    api: client.ApiClient, namespace: str, name: str, reason: str, containing: str = "", timeout: float = 30
) -> tuple[str, str]:
    """Wait for an event with `reason` (and text `containing`) about `name`; return its (type, message)."""

    def probe() -> tuple[str, str] | None:
        for kind, found, message in events_for(api, namespace, name):
            if found == reason and containing in message:
                return kind, message
        return None

    return wait_for(probe, timeout, f"a {reason} event about {namespace}/{name}")


def wait_gone(read: Callable[[], object], timeout: float, what: str) -> None:
    """Wait until `read()` answers 404."""

    def gone() -> bool:
        try:
            read()
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    wait_for(gone, timeout, what)


def everything_but_secrets(cluster: ClusterAccess) -> str:
    assert cluster.binaries is not None
    kubectl = [str(cluster.binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}"]
    names = subprocess.run(
        [*kubectl, "api-resources", "--verbs=list", "-o", "name"], capture_output=True, text=True, check=True
    ).stdout.split()
    kinds = [n for n in names if n.split(".")[0] != "secrets"]
    dump = subprocess.run(
        [*kubectl, "get", ",".join(kinds), "--all-namespaces", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert dump.stdout, dump.stderr
    return dump.stdout


def metrics_text(operator: OperatorProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


# -- the provider emulators, read and changed only through their control surface ------------------
def emulator_state(emulator: ControlledEmulator) -> dict[str, Any]:
    """`GET /_emulator/state`: the emulator's keys (never their secrets), clock and counters."""
    return read_state(emulator.url)


def live_keys_named(emulator: ControlledEmulator, prefix: str) -> dict[str, str]:
    """Live keys at `emulator` whose name starts with `prefix`: provider id -> name."""
    state = emulator_state(emulator)
    if emulator.name == "b2":  # B2's state leaves out expired keys, as B2 forgets them
        return {k["applicationKeyId"]: k["keyName"] for k in state["keys"] if k["keyName"].startswith(prefix)}
    return {
        t["TokenId"]: t["TokenName"] for t in state["tokens"] if t["TokenName"].startswith(prefix) and not t["Expired"]
    }


def us3_token_id(emulator: ControlledEmulator, public_key: str) -> str:
    """The TokenId of the US3 token whose S3 access key is `public_key` ("" when there is none)."""
    return next((t["TokenId"] for t in emulator_state(emulator)["tokens"] if t["PublicKey"] == public_key), "")


def delete_at_provider(emulator: ControlledEmulator, key_id: str) -> bool:
    """Delete a key out of band (drift), as someone at the provider's console would; False if it was not there."""
    route = "keys" if emulator.name == "b2" else "tokens"
    request = urllib.request.Request(f"{emulator.url}{CONTROL_PREFIX}{route}/{key_id}", method="DELETE")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(json.loads(response.read())["removed"])
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


def scan_for_key_material(cluster: ClusterAccess, emulators: Any, logs: list[Path], metrics: str) -> None:
    """Every issued secret and account key, searched for in every operator log of the session, every
    object the API server holds except Secrets (events included) and the metrics."""
    needles = [s for s in emulators.issued_secrets() + emulators.account_secrets() if len(s) >= 8]
    haystacks = {
        **{f"operator log {path.name}": path.read_text(errors="replace") for path in logs},
        "objects except Secrets (events included)": everything_but_secrets(cluster),
        "metrics": metrics,
    }
    assert len(needles) >= 4 and logs, "the scan would prove nothing"
    for where, text in haystacks.items():
        leaked = [f"{n[:4]}…" for n in needles if n in text]
        assert not leaked, f"{len(leaked)} secret(s) found in {where}: {leaked}"
    # The haystack really holds what we think: the events name issued keys.
    assert "issued key sto-" in haystacks["objects except Secrets (events included)"]


def consumer_deployment(name: str, secret: str = "app", replicas: int | None = None) -> client.V1Deployment:
    """A Deployment whose pod template reads Secret `secret` (only such a workload is restarted)."""
    labels = {"app": name}
    container = client.V1Container(
        name="app",
        image="app:1",
        env_from=[client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=secret))],
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(containers=[container])
            ),
        ),
    )
