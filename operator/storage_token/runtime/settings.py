"""Operator settings: one typed object built at start-up from flags and environment; bad values fail fast."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from storage_token.api.naming import install_digest

_ID = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)?$")
_INSTALL_ID = re.compile(r"^[A-Za-z0-9._/-]*$")


@dataclass(frozen=True)
class Settings:
    # Which cluster this is. Empty: derived at start-up from the cluster itself (kube-system's uid).
    cluster_id: str = ""
    # Which install within the cluster (the chart passes <release namespace>/<release name>).
    # Empty: the operator namespace plus the watched namespaces.
    install_id: str = ""
    # Where ClusterStorageProvider credentials Secrets are read from.
    operator_namespace: str = "storage-token-system"
    # Namespaces to watch; empty means cluster-wide.
    namespaces: tuple[str, ...] = ()
    # Reconciles running at once (each mostly waits on the provider or the API server).
    workers: int = 32  # as many requests in flight as the bench's bare client; 16 left adoption waves queued
    # Seconds per provider HTTP request.
    provider_timeout: float = 10.0
    # Seconds per Kubernetes API request (watches excepted): a stuck connection frees its worker.
    kube_timeout: float = 30.0
    # How often provider keys are listed to revoke orphans and notice keys gone at the provider.
    sweep_interval: timedelta = timedelta(minutes=10)
    # Orphans younger than this are left alone: an issuance may still be recording them.
    sweep_min_age: timedelta = timedelta(minutes=10)
    # A rotation's restart of a workload waits this long, so rotations of other tokens sharing the
    # workload meanwhile share the one restart; restarts of a workload are at least this far apart.
    restart_min_interval: timedelta = timedelta(seconds=10)
    # Watch Deployments, StatefulSets and DaemonSets so a finished rollout revokes the old key at once
    # (needs list/watch on them; without it rollouts are polled).
    watch_workloads: bool = True
    # Post the Normal events of routine success (Issued, Renewed, Revoked). Off: an issuance and a
    # rotation cost 4 API writes instead of 5 and 6; status, metrics and logs still record each one.
    routine_events: bool = False
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

    @property
    def effective_install_id(self) -> str:
        if self.install_id:
            return self.install_id
        return "/".join((self.operator_namespace, *sorted(self.namespaces)))

    @property
    def install_digest(self) -> str:
        """The identity in every key name this install issues (see `naming`)."""
        if not self.cluster_id:
            raise RuntimeError("the cluster id is resolved at start-up before any key is named")
        return install_digest(self.cluster_id, self.effective_install_id)

    def __post_init__(self) -> None:
        if len(self.cluster_id) > 63 or not _ID.match(self.cluster_id):
            raise ValueError("cluster id must be empty (derived from the cluster) or 1-63 of [A-Za-z0-9._-]")
        if len(self.install_id) > 253 or not _INSTALL_ID.match(self.install_id):
            raise ValueError("install id must be at most 253 of [A-Za-z0-9._/-]")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not 0 < self.kube_timeout <= 300:
            raise ValueError("the Kubernetes request timeout must be more than 0 and at most 300 seconds")
        if self.log_format not in ("plain", "json"):
            raise ValueError("log format must be plain or json")
