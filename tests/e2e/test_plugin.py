"""`kubectl storage-token` through the real kubectl binary, against the real API server.

No operator runs for these tests: the tokens, their status (through the status subresource) and their
Secrets are written here the way the operator leaves them. The plan of a narrowed provider over 1,000
tokens must print in under 10 s, with zero writes (the API server's own request counters) and zero
provider calls (the emulators' counters).
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import GROUP, VERSION, apply_crds, custom, wait_for
from kubernetes import client, config

from storage_token.api.naming import install_digest, key_name
from storage_token.api.times import format_time
from storage_token.api.token import SecretSpec
from storage_token.controllers.gather import RENEW_ANNOTATION, spec_hash
from storage_token.controllers.secret_writer import build_secret
from storage_token.dev.cluster.controlplane import ClusterAccess, LocalControlPlane
from storage_token.dev.emulators.control import read_state
from storage_token.dev.sandbox import Emulators

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
OPERATOR_NAMESPACE = "sto-e2e-system"  # conftest's: it exists while the session's operator runs
DIGEST = install_digest("e2e-plugin", "plugin")
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
SECRET = secrets.token_urlsafe(30)  # what inspect must never print, not even in part
TOKENS = 1000


@pytest.fixture(scope="module")
def quiet(cluster: ClusterAccess, api: client.ApiClient) -> Iterator[tuple[ClusterAccess, client.ApiClient]]:
    """An API server nothing else writes to for these tests.

    The session's cluster when no operator of this session runs (the file alone); otherwise a private
    control plane, since that operator would reconcile the tokens written here (and call the emulators).
    """
    if cluster.binaries is None:
        pytest.skip("zero-write checks need a control plane of our own (not an existing cluster)")
    try:
        client.CoreV1Api(api).read_namespace(OPERATOR_NAMESPACE)
    except client.ApiException as error:
        if error.status != 404:
            raise
        yield cluster, api
        return
    with LocalControlPlane() as plane:
        private = config.new_client_from_config(config_file=str(plane.access.kubeconfig))
        apply_crds(private, REPO / "crds")
        yield plane.access, private
        private.close()


def fast_client(access: ClusterAccess) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(access.kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def kubectl_binary(access: ClusterAccess) -> str:
    if access.binaries is not None:
        return str(access.binaries.kubectl)
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("no kubectl")
    return found


def plugin(access: ClusterAccess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`kubectl storage-token ARGS`: kubectl finds kubectl-storage_token on PATH (the venv's bin)."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["KUBECONFIG"] = str(access.kubeconfig)
    return subprocess.run(
        [kubectl_binary(access), "storage-token", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def make_namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The controller-manager's own writes for a new namespace, done before anything is measured.
    wait_for(lambda: core.list_namespaced_config_map(name).items, 30, f"kube-root-ca.crt in {name}")
    wait_for(lambda: core.list_namespaced_service_account(name).items, 30, f"default ServiceAccount in {name}")


def ready_provider(api: client.ApiClient, emulators: Emulators, namespace: str, **policy: Any) -> dict[str, Any]:
    """A StorageProvider on the B2 emulator, marked Ready as the operator would after checking it."""
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(namespace, emulators.credentials_secret("b2", "b2-credentials", namespace))
    body = emulators.provider("b2", "b2", namespace, "b2-credentials", policy=policy)
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "storageproviders", body)
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "CredentialsVerified",
        "message": "verified",
        "lastTransitionTime": format_time(datetime.now(UTC)),
        "observedGeneration": 1,
    }
    custom(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "storageproviders", "b2", {"status": {"conditions": [ready]}}
    )
    return body


def issued_token(api: client.ApiClient, namespace: str, name: str, bucket: str, expires_in: timedelta) -> None:
    """Create a token, then give it the status and Secret the operator leaves after issuing revision 1."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StorageToken",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": "b2"}, "permissions": ["read"], "buckets": [bucket]},
    }
    created = custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "storagetokens", body)
    now = datetime.now(UTC)
    key = key_name(DIGEST, namespace, name, created["metadata"]["uid"], 1)
    key_id = f"4a5b{abs(hash(key)) % 10**12:012d}"
    expires = format_time(now + expires_in)
    status = {
        "keyId": key_id,
        "keyName": key,
        "provider": "StorageProvider/b2",
        "providerType": "b2",
        "secretName": name,
        "issuedAt": format_time(now),
        "notAfter": expires,
        "renewalTime": format_time(now + expires_in * 2 / 3),
        "revision": 1,
        "specHash": spec_hash(created["spec"]),
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Issued",
                "message": f"key {key} valid until {expires}",
                "lastTransitionTime": format_time(now),
                "observedGeneration": 1,
            }
        ],
    }
    custom(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "storagetokens", name, {"status": status}
    )
    data = {
        "accessKeyId": key_id,
        "secretAccessKey": SECRET,
        "endpoint": "http://127.0.0.1:1",
        "region": "",
        "bucket": bucket,
        "prefix": "",
        "expiresAt": expires or "",
    }
    secret = build_secret(created, SecretSpec(name=name), data, key_id, 1, expires)
    client.CoreV1Api(api).create_namespaced_secret(namespace, secret)


def write_counts(api: client.ApiClient) -> collections.Counter[tuple[str, str]]:
    """Mutating requests the API server has answered, by (verb, resource); leases (leader election) left out."""
    response = api.call_api(
        "/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True
    )
    totals: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in response.data.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition(" ")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") != "leases":
            totals[(labels["verb"], labels.get("resource", ""))] += int(float(value))
    return totals


def provider_calls(emulators: Emulators) -> int:
    """API calls both emulators have counted (their control surface's own requests left out)."""
    total = 0
    for url in (emulators.b2.url, emulators.us3.url):
        state = read_state(url)
        total += sum(c["count"] for c in state["counters"] if not c["call"].startswith("_emulator"))
    return total


def test_kubectl_storage_token_status_inspect_renew_and_plan(
    quiet: tuple[ClusterAccess, client.ApiClient], emulators: Emulators
) -> None:
    access, api = quiet
    namespace = f"plugin-{os.getpid()}-small"
    make_namespace(api, namespace)
    ready_provider(api, emulators, namespace)
    issued_token(api, namespace, "soon", "demo-b2-data", timedelta(hours=2))
    issued_token(api, namespace, "later", "demo-b2-logs", timedelta(hours=20))

    help_text = plugin(access, "--help")
    assert help_text.returncode == 0 and "plan" in help_text.stdout and "examples:" in help_text.stdout

    status = plugin(access, "status", "-n", namespace)
    assert status.returncode == 0, status.stderr
    names = [line.split()[0] for line in status.stdout.splitlines()[1:3]]
    assert names == ["soon", "later"], status.stdout  # soonest expiry first

    inspect = plugin(access, "inspect", "soon", "-n", namespace)
    assert inspect.returncode == 0, inspect.stderr
    assert "secretAccessKey" in inspect.stdout and "demo-b2-data" in inspect.stdout
    pieces = [SECRET[i : i + 8] for i in range(len(SECRET) - 7)]
    assert not [p for p in pieces if p in inspect.stdout]
    assert base64.b64encode(SECRET.encode()).decode()[:8] not in inspect.stdout

    missing = plugin(access, "inspect", "nope", "-n", namespace)
    assert missing.returncode == 1 and "not found in namespace" in missing.stderr and "Traceback" not in missing.stderr

    before = write_counts(api)
    renew = plugin(access, "renew", "soon", "-n", namespace)
    assert renew.returncode == 0, renew.stderr
    # The one write renew makes, seen by the counters the plan's zero-write check reads.
    assert write_counts(api) - before == collections.Counter({("PATCH", "storagetokens"): 1})
    token = custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "storagetokens", "soon")
    assert token["metadata"]["annotations"][RENEW_ANNOTATION]
    assert f"kubectl get storagetoken soon -n {namespace} -w" in renew.stdout

    # The renew annotation is now pending: the plan sees what the operator would do with it.
    plan = plugin(access, "plan", "-f", "-", "-n", namespace, stdin=_provider_file(emulators, namespace, ["*"]))
    assert plan.returncode == 0, plan.stderr
    assert f"{namespace}/soon  RENEW (ManualRenewal)" in plan.stdout
    assert f"{namespace}/later  no change" in plan.stdout


def _provider_file(emulators: Emulators, namespace: str, buckets: list[str]) -> str:
    body = emulators.provider("b2", "b2", namespace, "b2-credentials", policy={"allowedBuckets": buckets})
    return yaml.safe_dump(body)


def test_plan_over_1000_tokens_is_fast_and_writes_and_calls_nothing(
    quiet: tuple[ClusterAccess, client.ApiClient], emulators: Emulators, tmp_path: Path
) -> None:
    access, api = quiet
    namespace = f"plugin-{os.getpid()}-fleet"
    make_namespace(api, namespace)
    ready_provider(api, emulators, namespace)
    setup = fast_client(access)
    started = time.monotonic()
    buckets = ["demo-b2-data", "demo-b2-logs"]
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(
            pool.map(
                lambda i: issued_token(setup, namespace, f"t{i:04d}", buckets[i % 2], timedelta(hours=1 + i % 48)),
                range(TOKENS),
            )
        )
    setup.close()
    print(f"\n{TOKENS} tokens with status and Secrets written in {time.monotonic() - started:.1f}s")
    path = tmp_path / "narrowed.yaml"
    path.write_text(_provider_file(emulators, namespace, ["demo-b2-data"]))

    writes_before, calls_before = write_counts(api), provider_calls(emulators)
    started = time.monotonic()
    plan = plugin(access, "plan", "-f", str(path), "-n", namespace)
    elapsed = time.monotonic() - started
    writes_after, calls_after = write_counts(api), provider_calls(emulators)

    assert plan.returncode == 0, plan.stderr
    print(f"plan of {TOKENS} tokens through kubectl: {elapsed:.2f}s, {len(plan.stdout.splitlines())} lines")
    assert elapsed < 10, f"plan took {elapsed:.1f}s"
    revoked = [line for line in plan.stdout.splitlines() if "REVOKE (PolicyViolation)" in line]
    unchanged = [line for line in plan.stdout.splitlines() if line.startswith(namespace) and "no change" in line]
    assert (len(revoked), len(unchanged)) == (TOKENS // 2, TOKENS // 2), plan.stdout[-2000:]
    assert all("'demo-b2-logs' not allowed" in line for line in revoked)
    assert f"Summary: {TOKENS // 2} revoke, {TOKENS // 2} none" in plan.stdout
    assert writes_after - writes_before == collections.Counter(), "the plan wrote to the API server"
    assert calls_after == calls_before, "the plan called a provider"

    status = plugin(access, "status", "-n", namespace, "-o", "json")
    assert status.returncode == 0 and len(json.loads(status.stdout)) == TOKENS
    assert write_counts(api) - writes_after == collections.Counter()

    # The emulators' counters do count: one account check by hand moves them.
    key_id, key = emulators.b2_account
    check = subprocess.run(
        [
            str(VENV_BIN / "storage-token"),
            "provider",
            "check",
            "--kind",
            "b2",
            "--endpoint",
            emulators.b2.url,
            "--allow-insecure",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "B2_APPLICATION_KEY_ID": key_id, "B2_APPLICATION_KEY": key},
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert provider_calls(emulators) > calls_after
