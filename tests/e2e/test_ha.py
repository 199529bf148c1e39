"""Two replicas with leader election: exactly one key per token, and the standby takes over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import apply_provider, create_token, get_token, wait_condition
from kubernetes import client

from storage_token.devcluster.controlplane import ClusterAccess
from storage_token.sandbox import Emulators, OperatorProcess

LEASE = "storage-token-e2e-ha"
TOKENS = 20


@pytest.fixture
def replicas(cluster: ClusterAccess, operator: OperatorProcess, tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    """Two operator processes electing a leader (the session operator is paused meanwhile)."""
    operator.stop()
    pair = [
        OperatorProcess(
            cluster.kubeconfig,
            tmp_path / f"replica-{i}.log",
            cluster_id="ha",
            operator_namespace=operator.operator_namespace,
            extra_args=[f"--leader-election-lease={LEASE}"],
        )
        for i in range(2)
    ]
    try:
        yield [p.start() for p in pair]
    finally:
        for process in pair:
            process.stop()
        operator.start()


def test_two_replicas_issue_exactly_one_key_per_token_and_fail_over(
    api: client.ApiClient, namespace: str, emulators: Emulators, replicas: list[OperatorProcess]
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    creates = emulators.b2.count("b2_create_key")
    for i in range(TOKENS):
        create_token(api, namespace, f"t{i}", providerRef={"name": "b2"}, permissions=["read"])
    for i in range(TOKENS):
        wait_condition(api, namespace, f"t{i}", "True", "Issued")
    assert emulators.b2.count("b2_create_key") - creates == TOKENS
    leaders = [p for p in replicas if "became leader" in p.log_text()]
    assert len(leaders) == 1, "exactly one replica leads"
    standby = next(p for p in replicas if p is not leaders[0])

    # The leader dies without a goodbye; the standby takes the lease over once it expires.
    leaders[0].kill()
    create_token(api, namespace, "after-failover", providerRef={"name": "b2"}, permissions=["read"])
    wait_condition(api, namespace, "after-failover", "True", "Issued", timeout=90)
    assert "became leader" in standby.log_text()
    assert emulators.b2.count("b2_create_key") - creates == TOKENS + 1
    for i in range(TOKENS):
        assert get_token(api, namespace, f"t{i}")["status"]["revision"] == 1, "no token was issued twice"
