"""Operator settings: one typed object built at start-up from flags and environment; bad values fail fast."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

from storage_token.model.durations import parse_duration


@dataclass(frozen=True)
class Settings:
    # Prefix of every key name this operator issues; keeps clusters sharing an account apart.
    cluster_id: str = "default"
    # Where ClusterStorageProvider credentials Secrets are read from.
    operator_namespace: str = "storage-token-system"
    # Namespaces to watch; empty means cluster-wide.
    namespaces: tuple[str, ...] = ()
    # Reconciles running at once (each mostly waits on the provider or the API server).
    workers: int = 16
    # Seconds per provider HTTP request.
    provider_timeout: float = 10.0
    # How often provider keys are listed to revoke orphans and notice keys gone at the provider.
    sweep_interval: timedelta = timedelta(minutes=10)
    # Orphans younger than this are left alone: an issuance may still be recording them.
    sweep_min_age: timedelta = timedelta(minutes=10)
    # How often provider credentials are re-verified without a change.
    provider_recheck_interval: timedelta = timedelta(minutes=5)
    # Ports for Prometheus metrics and the liveness probe (0 turns one off).
    metrics_port: int = 8080
    health_port: int = 8081
    log_format: str = "plain"  # plain | json
    log_level: str = "INFO"
    # Name of the Lease replicas elect a leader with (in operator_namespace); None: no election.
    leader_election_lease: str | None = None
    kubeconfig: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.cluster_id or len(self.cluster_id) > 20:
            raise ValueError("cluster id must be 1-20 characters")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.log_format not in ("plain", "json"):
            raise ValueError("log format must be plain or json")


def env_duration(name: str, default: timedelta) -> timedelta:
    value = os.environ.get(name)
    return parse_duration(value) if value else default
