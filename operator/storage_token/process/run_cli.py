"""`storage-token run`: the operator process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from storage_token.process.logs import configure_logging
from storage_token.runtime.settings import Settings, env_duration


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run the operator against the current kubeconfig or in-cluster config")
    env = os.environ.get
    parser.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="default: in-cluster, then ~/.kube/config")
    parser.add_argument(
        "--cluster-id",
        default=env("STO_CLUSTER_ID", ""),
        help="which cluster this is (part of every key name's install identity); default: kube-system's uid",
    )
    parser.add_argument(
        "--install-id",
        default=env("STO_INSTALL_ID", ""),
        help="which install within the cluster (the chart passes <namespace>/<release>); "
        "default: the operator namespace and the watched namespaces",
    )
    parser.add_argument(
        "--operator-namespace",
        default=env("STO_OPERATOR_NAMESPACE") or env("POD_NAMESPACE") or "storage-token-system",
        help="where ClusterStorageProvider credentials are read from",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[n for n in (env("STO_WATCH_NAMESPACES") or "").split(",") if n],
        help="watch only this namespace (repeatable); default: cluster-wide",
    )
    parser.add_argument("--workers", type=int, default=int(env("STO_WORKERS", "16")))
    parser.add_argument("--metrics-port", type=int, default=int(env("STO_METRICS_PORT", "8080")))
    parser.add_argument("--health-port", type=int, default=int(env("STO_HEALTH_PORT", "8081")))
    parser.add_argument("--log-format", choices=("plain", "json"), default=env("STO_LOG_FORMAT", "plain"))
    parser.add_argument("--log-level", default=env("STO_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--leader-election-lease",
        default=env("STO_LEADER_ELECTION_LEASE"),
        help="Lease name for leader election between replicas (in the operator namespace); default: off",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings(
            cluster_id=args.cluster_id,
            install_id=args.install_id,
            operator_namespace=args.operator_namespace,
            namespaces=tuple(args.namespace),
            workers=args.workers,
            metrics_port=args.metrics_port,
            health_port=args.health_port,
            log_format=args.log_format,
            log_level=args.log_level.upper(),
            leader_election_lease=args.leader_election_lease,
            kubeconfig=args.kubeconfig,
            sweep_interval=env_duration("STO_SWEEP_INTERVAL", Settings.sweep_interval),
            sweep_min_age=env_duration("STO_SWEEP_MIN_AGE", Settings.sweep_min_age),
            provider_recheck_interval=env_duration("STO_PROVIDER_RECHECK_INTERVAL", Settings.provider_recheck_interval),
        )
    except ValueError as error:
        print(f"storage-token run: {error}", file=sys.stderr)
        return 2
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's own login reads it
    configure_logging(settings.log_format, settings.log_level)
    import kopf

    from storage_token.process import handlers
    from storage_token.runtime import metrics

    metrics.serve(settings.metrics_port)
    memo = kopf.Memo()
    memo[handlers.SETTINGS_KEY] = settings
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    logging.getLogger(__name__).info(
        "starting: cluster id %s, install %s, %s",
        settings.cluster_id or "(from kube-system)",
        settings.effective_install_id,
        ", ".join(settings.namespaces) or "cluster-wide",
    )
    asyncio.run(
        kopf.operator(
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            standalone=True,
            liveness_endpoint=liveness,
            memo=memo,
        )
    )
    return 0
