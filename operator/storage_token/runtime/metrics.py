"""Prometheus metrics behind small functions; handlers never touch the client library directly.

Labels never carry key material: provider type, call, outcome, namespace/name of a token.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, start_http_server

NAMESPACE = "storage_token"

ISSUANCES = Counter(f"{NAMESPACE}_issuances_total", "Keys issued, by provider type and result", ["provider", "result"])
REVOCATIONS = Counter(f"{NAMESPACE}_revocations_total", "Key revocations, by result", ["result"])
RECONCILES = Counter(f"{NAMESPACE}_reconciles_total", "Reconciles, by resource kind and result", ["kind", "result"])
PROVIDER_CALLS = Histogram(
    f"{NAMESPACE}_provider_call_seconds",
    "Provider API calls: latency by provider type, call and outcome",
    ["provider", "call", "outcome"],
)
RATE_LIMIT_WAIT = Counter(
    f"{NAMESPACE}_rate_limit_wait_seconds_total", "Time spent waiting for a provider rate limit", ["provider"]
)
TOKEN_EXPIRY = Gauge(f"{NAMESPACE}_token_expiry_timestamp_seconds", "Expiry of the current key", ["namespace", "name"])
TOKEN_RENEWAL = Gauge(
    f"{NAMESPACE}_token_renewal_timestamp_seconds", "When the next key is issued", ["namespace", "name"]
)
TOKEN_READY = Gauge(f"{NAMESPACE}_token_ready", "1 when the token's Secret holds a valid key", ["namespace", "name"])
PENDING_REVOCATIONS = Gauge(
    f"{NAMESPACE}_pending_revocations", "Replaced keys waiting to be revoked", ["namespace", "name"]
)
UNOWNED_KEYS = Gauge(
    f"{NAMESPACE}_unowned_keys",
    "Keys named by this install whose StorageToken no longer exists (retained, or finalizer removed by hand)",
    ["provider"],
)
QUEUE_DEPTH = Gauge(f"{NAMESPACE}_work_queue_depth", "Objects waiting for a reconcile")
TOKEN_WATCH_UP = Gauge(
    f"{NAMESPACE}_token_watch_up",
    "1 while the StorageToken watch of a scope (a namespace, or * for the cluster) has listed and follows; "
    "0 from a failed list or watch until the next list succeeds",
    ["scope"],
)
ROLLOUT_TARGETS = Gauge(
    f"{NAMESPACE}_rollout_targets",
    "Restart targets of the token's latest rotation (status.rollout total; 0 when nothing rolls out)",
    ["namespace", "name"],
)
ROLLOUT_PENDING = Gauge(
    f"{NAMESPACE}_rollout_pending_targets",
    "Restart targets not yet rolled out to the latest key (status.rollout total - adopted)",
    ["namespace", "name"],
)

# Failure series exist from the start at 0: `increase()` over a series that appears with its first
# failure sees no increase, so an alert on it would miss the first failure after every restart.
PROVIDER_TYPES = ("us3", "b2")
for _provider in PROVIDER_TYPES:
    ISSUANCES.labels(_provider, "failure")
REVOCATIONS.labels("failure")


def record_issuance(provider: str, result: str) -> None:
    ISSUANCES.labels(provider, result).inc()


def record_revocation(result: str) -> None:
    REVOCATIONS.labels(result).inc()


def record_reconcile(kind: str, result: str) -> None:
    RECONCILES.labels(kind, result).inc()


def record_provider_call(provider: str, call: str, outcome: str, seconds: float) -> None:
    PROVIDER_CALLS.labels(provider, call, outcome).observe(seconds)


def record_rate_limit_wait(provider: str, seconds: float) -> None:
    # Zero waits count too: the series then exists (and rates read 0) before the first real wait.
    RATE_LIMIT_WAIT.labels(provider).inc(max(seconds, 0.0))


def record_token(
    namespace: str,
    name: str,
    ready: bool,
    expires: float | None,
    renews: float | None,
    pending: int,
    rollout_adopted: int = 0,
    rollout_total: int = 0,
) -> None:
    """`rollout_adopted`/`rollout_total`: status.rollout's counts for the latest rotation (0/0: none)."""
    TOKEN_READY.labels(namespace, name).set(1 if ready else 0)
    if expires is not None:
        TOKEN_EXPIRY.labels(namespace, name).set(expires)
    if renews is not None:
        TOKEN_RENEWAL.labels(namespace, name).set(renews)
    PENDING_REVOCATIONS.labels(namespace, name).set(pending)
    ROLLOUT_TARGETS.labels(namespace, name).set(rollout_total)
    ROLLOUT_PENDING.labels(namespace, name).set(max(rollout_total - rollout_adopted, 0))


def forget_token(namespace: str, name: str) -> None:
    for gauge in (TOKEN_READY, TOKEN_EXPIRY, TOKEN_RENEWAL, PENDING_REVOCATIONS, ROLLOUT_TARGETS, ROLLOUT_PENDING):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)


def record_unowned_keys(provider: str, count: int) -> None:
    UNOWNED_KEYS.labels(provider).set(count)


def set_token_watch_up(scope: str, up: bool) -> None:
    TOKEN_WATCH_UP.labels(scope).set(1 if up else 0)


def set_queue_depth(depth: int) -> None:
    QUEUE_DEPTH.set(depth)


def serve(port: int) -> None:
    if port:
        start_http_server(port)
