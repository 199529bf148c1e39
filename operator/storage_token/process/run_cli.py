"""`storage-token run`: the operator process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import timedelta
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
    parser.add_argument(
        "--kubeconfig",
        default=env("KUBECONFIG"),
        help="env KUBECONFIG; default: the in-cluster service account, then ~/.kube/config",
    )
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
        help="where ClusterStorageProvider credentials are read from; env STO_OPERATOR_NAMESPACE, then POD_NAMESPACE; "
        "default storage-token-system",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[n for n in (env("STO_WATCH_NAMESPACES") or "").split(",") if n],
        help="watch only this namespace (repeatable); env STO_WATCH_NAMESPACES (comma-separated); "
        "default: cluster-wide",
    )
    parser.add_argument("--workers", type=_workers, help="reconciles at once; env STO_WORKERS; default 32")
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
    # Go durations, like the CRDs' (e.g. 30s, 10m, 1h30m).
    parser.add_argument(
        "--sweep-interval",
        type=_duration,
        help="how often provider keys are listed (orphans, keys gone at the provider); "
        "env STO_SWEEP_INTERVAL; default 10m",
    )
    parser.add_argument(
        "--sweep-min-age",
        type=_duration,
        help="orphaned keys younger than this are left alone; env STO_SWEEP_MIN_AGE; default 10m",
    )
    parser.add_argument(
        "--provider-recheck-interval",
        type=_duration,
        help="how often provider credentials are verified again; env STO_PROVIDER_RECHECK_INTERVAL; default 5m",
    )
    parser.add_argument(
        "--provider-timeout",
        type=_timeout,
        help="limit on each provider HTTP request, seconds or a duration; env STO_PROVIDER_TIMEOUT; default 10s",
    )
    parser.set_defaults(func=run)


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _timeout(text: str) -> float:
    """Seconds (`30`, `2.5`) or a Go duration (`30s`, `1m`), more than 0 and at most 5 minutes."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = _duration(text).total_seconds()
    if not 0 < seconds <= 300:
        raise argparse.ArgumentTypeError(f"must be more than 0s and at most 5m, not {text!r}")
    return seconds


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


NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _namespaces(raw: list[str]) -> tuple[str, ...]:
    """Exact names: each one is a watch path, so a pattern or a typo would watch nothing, silently."""
    names = tuple(name.strip() for name in raw if name.strip())
    for name in names:
        if not NAMESPACE_NAME.fullmatch(name):
            raise ValueError(
                f"--namespace / STO_WATCH_NAMESPACES: {name!r} is not a namespace name (exact names only, no patterns)"
            )
    return names


def _boolean(raw: str) -> bool:
    if raw.strip().lower() not in ("true", "false"):
        raise ValueError(f"must be true or false, not {raw!r}")
    return raw.strip().lower() == "true"


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings(
            cluster_id=args.cluster_id,
            install_id=args.install_id,
            operator_namespace=args.operator_namespace,
            namespaces=_namespaces(args.namespace),
            workers=_flag_or_env(args.workers, "STO_WORKERS", Settings.workers, _workers),
            metrics_port=_flag_or_env(args.metrics_port, "STO_METRICS_PORT", Settings.metrics_port, _port),
            health_port=_flag_or_env(args.health_port, "STO_HEALTH_PORT", Settings.health_port, _port),
            log_format=_flag_or_env(args.log_format, "STO_LOG_FORMAT", Settings.log_format, _log_format),
            log_level=_flag_or_env(args.log_level, "STO_LOG_LEVEL", Settings.log_level, _log_level),
            leader_election_lease=args.leader_election_lease,
            kubeconfig=args.kubeconfig,
            sweep_interval=_flag_or_env(args.sweep_interval, "STO_SWEEP_INTERVAL", Settings.sweep_interval, _duration),
            sweep_min_age=_flag_or_env(args.sweep_min_age, "STO_SWEEP_MIN_AGE", Settings.sweep_min_age, _duration),
            provider_timeout=_flag_or_env(
                args.provider_timeout, "STO_PROVIDER_TIMEOUT", Settings.provider_timeout, _timeout
            ),
            kube_timeout=_flag_or_env(None, "STO_KUBE_TIMEOUT", Settings.kube_timeout, _timeout),
            restart_min_interval=_flag_or_env(
                None, "STO_RESTART_MIN_INTERVAL", Settings.restart_min_interval, _duration
            ),
            watch_workloads=_flag_or_env(None, "STO_WATCH_WORKLOADS", Settings.watch_workloads, _boolean),
            routine_events=_flag_or_env(None, "STO_ROUTINE_EVENTS", Settings.routine_events, _boolean),
            provider_recheck_interval=_flag_or_env(
                args.provider_recheck_interval,
                "STO_PROVIDER_RECHECK_INTERVAL",
                Settings.provider_recheck_interval,
                _duration,
            ),
        )
    except ValueError as error:
        print(f"storage-token run: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    import kopf

    from storage_token.process import handlers
    from storage_token.runtime import metrics

    if settings.watch_workloads:
        handlers.watch_workloads()
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
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(
            kopf.operator(
                clusterwide=not settings.namespaces,
                namespaces=list(settings.namespaces),
                standalone=True,
                liveness_endpoint=liveness,
                memo=memo,
            )
        )
    return 0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed, as `kopf run` does; else asyncio's own (None)."""
    try:
        import uvloop
    except ImportError:  # not on this platform: the pure-Python loop is slower, not different
        return None
    return uvloop.new_event_loop
