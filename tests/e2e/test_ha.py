"""Two replicas with leader election: exactly one key per token, the standby takes over, and a
leader that lost its lease while frozen does nothing when it wakes up."""

from __future__ import annotations

import re
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import apply_provider, create_token, get_token, wait_condition, wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

from storage_token.dev.cluster.controlplane import ClusterAccess, free_port
from storage_token.dev.sandbox import Emulators, OperatorProcess

TOKENS = 20
LEASE_SECONDS = 15  # the election's default lease duration
RECONCILES = re.compile(r'^storage_token_reconciles_total\{kind="tokens",result="(?:ok|error)"\} (\S+)$', re.M)


class Pair:
    """Two operator processes electing a leader through one Lease."""

    def __init__(self, processes: list[OperatorProcess], lease: str, namespace: str) -> None:
        self.processes, self.lease, self.namespace = processes, lease, namespace

    def holder(self, api: client.ApiClient) -> OperatorProcess | None:
        """The replica the Lease names (identity is `<hostname>-<pid>`)."""
        try:
            lease = client.CoordinationV1Api(api).read_namespaced_lease(self.lease, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        for process in self.processes:
            assert process.process is not None
            if lease.spec.holder_identity == f"{socket.gethostname()}-{process.process.pid}":
                return process
        return None

    def wait_holder(self, api: client.ApiClient, timeout: float = 60) -> OperatorProcess:
        return wait_for(lambda: self.holder(api), timeout, f"lease {self.lease} held by a replica")

    def other(self, process: OperatorProcess) -> OperatorProcess:
        return next(p for p in self.processes if p is not process)


def token_reconciles(process: OperatorProcess) -> float:
    """Token reconciles that ran to the end (ok or error) in this process, from its metrics."""
    url = f"http://127.0.0.1:{process.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(float(value) for value in RECONCILES.findall(text))


def steady_reconciles(process: OperatorProcess, quiet: float = 3, timeout: float = 60) -> float:
    """The reconcile count once it has stopped changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = token_reconciles(process), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = token_reconciles(process)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise AssertionError(f"reconciles never settled (last {last})")


@pytest.fixture
def replicas(cluster: ClusterAccess, operator: OperatorProcess, tmp_path: Path) -> Iterator[Pair]:
    """Two operator processes electing a leader (the session operator is paused meanwhile)."""
    operator.stop()
    lease = f"storage-token-e2e-ha-{uuid.uuid4().hex[:6]}"  # fresh per test: no lease left by a dead replica
    pair = [
        OperatorProcess(
            cluster.kubeconfig,
            tmp_path / f"replica-{i}.log",
            cluster_id="ha",
            operator_namespace=operator.operator_namespace,
            metrics_port=free_port(),
            extra_args=[f"--leader-election-lease={lease}"],
        )
        for i in range(2)
    ]
    try:
        yield Pair([p.start() for p in pair], lease, operator.operator_namespace)
    finally:
        for process in pair:
            if process.process is not None and process.alive():
                process.process.send_signal(signal.SIGCONT)  # a frozen replica would not see SIGTERM
            process.stop()
        operator.start()


def test_two_replicas_issue_exactly_one_key_per_token_and_fail_over(
    api: client.ApiClient, namespace: str, emulators: Emulators, replicas: Pair
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    creates = emulators.b2.count("b2_create_key")
    for i in range(TOKENS):
        create_token(api, namespace, f"t{i}", providerRef={"name": "b2"}, permissions=["read"])
    for i in range(TOKENS):
        wait_condition(api, namespace, f"t{i}", "True", "Issued")
    assert emulators.b2.count("b2_create_key") - creates == TOKENS
    leader = replicas.wait_holder(api)
    standby = replicas.other(leader)
    assert token_reconciles(standby) == 0, "the standby reconciled"

    # The leader dies without a goodbye; the standby takes the lease over once it expires.
    leader.kill()
    create_token(api, namespace, "after-failover", providerRef={"name": "b2"}, permissions=["read"])
    wait_condition(api, namespace, "after-failover", "True", "Issued", timeout=90)
    assert replicas.holder(api) is standby
    assert emulators.b2.count("b2_create_key") - creates == TOKENS + 1
    for i in range(TOKENS):
        assert get_token(api, namespace, f"t{i}")["status"]["revision"] == 1, "no token was issued twice"


def test_a_leader_frozen_past_its_lease_does_nothing_when_it_wakes(
    api: client.ApiClient, namespace: str, emulators: Emulators, replicas: Pair
) -> None:
    """Forced lease loss: the leader is stopped (SIGSTOP) until the standby has taken over and
    issued more tokens, then continued. Its watches then deliver every change it missed and its
    idle workers wake; none of them may reconcile, and it must not take the lease back."""
    apply_provider(api, emulators, "b2", namespace, "b2")
    creates = emulators.b2.count("b2_create_key")
    for i in range(5):
        create_token(api, namespace, f"before-{i}", providerRef={"name": "b2"}, permissions=["read"])
    for i in range(5):
        wait_condition(api, namespace, f"before-{i}", "True", "Issued")
    old = replicas.wait_holder(api)
    new = replicas.other(old)
    before = steady_reconciles(old)
    assert before >= 5

    assert old.process is not None
    old.process.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    wait_for(lambda: replicas.holder(api) is new, LEASE_SECONDS * 4, "the standby taking the lease over")
    assert time.monotonic() - frozen_at >= LEASE_SECONDS - 3, "taken over before the lease could have expired"
    for i in range(TOKENS):
        create_token(api, namespace, f"during-{i}", providerRef={"name": "b2"}, permissions=["read"])
    for i in range(TOKENS):
        wait_condition(api, namespace, f"during-{i}", "True", "Issued")
    # Changes the frozen replica will see late: new tokens, plus an edit to an old one.
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "storagetoken.dev",
        "v1alpha1",
        namespace,
        "storagetokens",
        "before-0",
        {"metadata": {"annotations": {"e2e/touched": "yes"}}},
    )
    issued = emulators.b2.count("b2_create_key") - creates
    assert issued == 5 + TOKENS

    old.process.send_signal(signal.SIGCONT)
    time.sleep(8)  # long enough for every buffered watch event to reach the woken replica's workers
    assert old.alive()
    assert token_reconciles(old) == before, "the replica that lost its lease reconciled after waking"
    assert "lost leadership" in old.log_text()
    assert replicas.holder(api) is new, "the woken replica took the lease back"
    assert emulators.b2.count("b2_create_key") - creates == issued, "a key was issued twice"
    for name in [f"before-{i}" for i in range(5)] + [f"during-{i}" for i in range(TOKENS)]:
        assert get_token(api, namespace, name)["status"]["revision"] == 1, f"{name} was issued twice"

    # The woken replica is a healthy standby: it leads again once the new leader dies.
    new.kill()
    create_token(api, namespace, "after", providerRef={"name": "b2"}, permissions=["read"])
    wait_condition(api, namespace, "after", "True", "Issued", timeout=90)
    assert replicas.holder(api) is old
    assert emulators.b2.count("b2_create_key") - creates == issued + 1
