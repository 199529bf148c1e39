"""`storage-token run`: the operator process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from storage_token.api.durations import parse_duration
from storage_token.process.logs import configure_logging
from storage_token.runtime.settings import Settings

T = TypeVar("T")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_parser(subparsers: Any) -> None:
    # Environment values are read in `run`, not here: a bad one must fail `storage-token run` with a
    # one-line error, not every subcommand (or --help) while the parser is being built.
    parser = subparsers.add_parser("run", help="run the operator against the current kubeconfig or in-cluster config")
    env = os.environ.get
    parser.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="default: in-cluster, then ~/.kube/config")
    parser.add_argument(
        "--cluster-id",
        default=env("STO_CLUSTER_ID", ""),
        help="which cluster this is (part of every key name's install identity); env STO_CLUSTER_ID; "
        "default: kube-system's uid",
    )
    parser.add_argument(
        "--install-id",
        default=env("STO_INSTALL_ID", ""),
        help="which install within the cluster (the chart passes <namespace>/<release>); env STO_INSTALL_ID; "
        "default: the operator namespace and the watched namespaces",
    )
    parser.add_argument(
        "--operator-namespace",
        default=env("STO_OPERATOR_NAMESPACE") or env("POD_NAMESPACE") or "storage-token-system",
        help="where ClusterStorageProvider credentials are read from; env STO_OPERATOR_NAMESPACE",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[n for n in (env("STO_WATCH_NAMESPACES") or "").split(",") if n],
        help="watch only this namespace (repeatable); env STO_WATCH_NAMESPACES (comma-separated); "
        "default: cluster-wide",
    )
    parser.add_argument("--workers", type=_workers, help="reconciles at once; env STO_WORKERS; default 16")
    parser.add_argument("--metrics-port", type=_port, help="0 turns it off; env STO_METRICS_PORT; default 8080")
    parser.add_argument("--health-port", type=_port, help="0 turns it off; env STO_HEALTH_PORT; default 8081")
    parser.add_argument(
        "--log-format", type=_log_format, metavar="{plain,json}", help="env STO_LOG_FORMAT; default plain"
    )
    parser.add_argument(
        "--log-level",
        type=_log_level,
        metavar="{" + ",".join(LOG_LEVELS) + "}",
        help="any case; env STO_LOG_LEVEL; default INFO",
    )
    parser.add_argument(
        "--leader-election-lease",
        default=env("STO_LEADER_ELECTION_LEASE"),
        help="Lease name for leader election between replicas (in the operator namespace); "
        "env STO_LEADER_ELECTION_LEASE; default: off",
    )
    parser.set_defaults(func=run)


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {value}")
    return value


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"unknown log level {text!r} (choose from {', '.join(LOG_LEVELS)})")
    return level


def _log_format(text: str) -> str:
    if text not in ("plain", "json"):
        raise argparse.ArgumentTypeError(f"unknown log format {text!r} (choose from plain, json)")
    return text


def _flag_or_env(value: T | None, name: str, default: T, parse: Callable[[str], T]) -> T:
    """The flag when given, else the environment variable `name` when set, else `default`."""
    if value is not None:
        return value
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except (argparse.ArgumentTypeError, ValueError) as error:
        raise ValueError(f"{name}: {error}") from None


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings(
            cluster_id=args.cluster_id,
            install_id=args.install_id,
            operator_namespace=args.operator_namespace,
            namespaces=tuple(args.namespace),
            workers=_flag_or_env(args.workers, "STO_WORKERS", Settings.workers, _workers),
            metrics_port=_flag_or_env(args.metrics_port, "STO_METRICS_PORT", Settings.metrics_port, _port),
            health_port=_flag_or_env(args.health_port, "STO_HEALTH_PORT", Settings.health_port, _port),
            log_format=_flag_or_env(args.log_format, "STO_LOG_FORMAT", Settings.log_format, _log_format),
            log_level=_flag_or_env(args.log_level, "STO_LOG_LEVEL", Settings.log_level, _log_level),
            leader_election_lease=args.leader_election_lease,
            kubeconfig=args.kubeconfig,
            sweep_interval=_flag_or_env(None, "STO_SWEEP_INTERVAL", Settings.sweep_interval, parse_duration),
            sweep_min_age=_flag_or_env(None, "STO_SWEEP_MIN_AGE", Settings.sweep_min_age, parse_duration),
            provider_recheck_interval=_flag_or_env(
                None, "STO_PROVIDER_RECHECK_INTERVAL", Settings.provider_recheck_interval, parse_duration
            ),
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
