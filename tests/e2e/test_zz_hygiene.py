"""Nothing secret escapes: after the suite, every issued secret and account key is searched for
in the operator's log, every event, every object the API server holds except Secrets, and the metrics.

Named to run last, so it sees what the other end-to-end tests left behind.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest
from e2e_support import apply_provider, create_token, wait_condition, wait_for
from kubernetes import client

from storage_token.dev.cluster.controlplane import ClusterAccess
from storage_token.dev.sandbox import Emulators, OperatorProcess


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


def test_no_key_material_anywhere_but_in_secrets(
    cluster: ClusterAccess, api: client.ApiClient, namespace: str, emulators: Emulators, operator: OperatorProcess
) -> None:
    if cluster.binaries is None:
        pytest.skip("needs kubectl from the local control plane")
    # Make sure there is something to find, whatever ran before.
    apply_provider(api, emulators, "b2", namespace, "b2")
    apply_provider(api, emulators, "us3", namespace, "us3")
    create_token(api, namespace, "b2", providerRef={"name": "b2"}, permissions=["read"])
    create_token(api, namespace, "us3", providerRef={"name": "us3"}, permissions=["read"], buckets=["demo-us3-data"])
    wait_condition(api, namespace, "b2", "True")
    wait_condition(api, namespace, "us3", "True")

    needles = [s for s in emulators.issued_secrets() + emulators.account_secrets() if len(s) >= 8]
    assert len(needles) >= 4
    haystacks = {
        "operator log": operator.log_text(),
        "objects except Secrets (events included)": everything_but_secrets(cluster),
        "metrics": metrics_text(operator),
    }
    for where, text in haystacks.items():
        assert text, f"{where} is empty: the scan would prove nothing"
        leaked = [f"{n[:4]}…" for n in needles if n in text]
        assert not leaked, f"{len(leaked)} secret(s) found in {where}: {leaked}"
    # The haystack really holds what we think: the events name the issued keys.
    assert f"issued key {operator.key_prefix}" in haystacks["objects except Secrets (events included)"]
    assert json.loads(haystacks["objects except Secrets (events included)"])["items"]


def test_metrics_describe_tokens_providers_and_calls(
    api: client.ApiClient, namespace: str, emulators: Emulators, operator: OperatorProcess
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(api, namespace, "watched", providerRef={"name": "b2"}, permissions=["read"])
    wait_condition(api, namespace, "watched", "True")
    labels = f'name="watched",namespace="{namespace}"'  # the exposition sorts label names

    def published() -> str | None:
        text = metrics_text(operator)
        return text if f"storage_token_token_ready{{{labels}}}" in text else None

    text = wait_for(published, 10, "the token's metrics")
    for expected in (
        f"storage_token_token_ready{{{labels}}} 1.0",
        f"storage_token_token_expiry_timestamp_seconds{{{labels}}}",
        f"storage_token_token_renewal_timestamp_seconds{{{labels}}}",
        f"storage_token_pending_revocations{{{labels}}} 0.0",
        'storage_token_issuances_total{provider="b2",result="issued"}',
        'storage_token_provider_call_seconds_count{call="issue",outcome="ok",provider="b2"}',
        'storage_token_provider_call_seconds_count{call="check",outcome="ok",provider="b2"}',
        'storage_token_reconciles_total{kind="tokens",result="ok"}',
        "storage_token_work_queue_depth",
    ):
        assert expected in text, expected
