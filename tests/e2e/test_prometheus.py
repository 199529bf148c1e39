"""The chart's dashboard and alerts on a real Prometheus (Debian's) scraping the running operator.

A small fleet of tokens at both providers is issued, renewed (with injected provider failures and a
tight rate limit) and its old keys revoked; then every dashboard query, with its variables as Grafana
substitutes them, and every PrometheusRule expression run through Prometheus's query API: none
errors, every dashboard query returns series, and Prometheus's own rule engine evaluates every rule
without error. With STO_DASHBOARD_PICTURE=PATH the results are also drawn as the dashboard (the
README's picture: docs/dashboard.png), after a longer run.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import apply_provider, create_token, get_token, patch_token, wait_condition, wait_for
from kubernetes import client
from prometheus_support import PrometheusServer, QueryFailed, chart_rule_file, dashboard_queries, load_dashboard

from storage_token.dev.cluster.binaries import ensure_binaries
from storage_token.dev.prometheus import PrometheusUnavailable, ensure_prometheus
from storage_token.dev.sandbox import Emulators, OperatorProcess

# Grafana's $__rate_interval is at least four scrape intervals; 20 s of 1 s scrapes keeps the short
# run's curves readable.
RATE_INTERVAL = "20s"
PICTURE = os.environ.get("STO_DASHBOARD_PICTURE", "")
# (provider, token, duration): keys spread over the dashboard's expiry windows.
FLEET = [
    ("b2", "web", "2h"),
    ("b2", "batch", "30h"),
    ("b2", "archive", "200h"),
    ("us3", "media", "50m"),
    ("us3", "logs", "12h"),
    ("us3", "reports", "100h"),
]
BUCKETS = {"b2": ["demo-b2-data"], "us3": ["demo-us3-data"]}


@pytest.fixture
def prometheus(operator: OperatorProcess, tmp_path: Path) -> Iterator[PrometheusServer]:
    try:
        binaries = ensure_prometheus()
    except PrometheusUnavailable as error:
        pytest.fail(f"a real Prometheus is needed here and could not be fetched: {error}")
    rules = chart_rule_file(str(ensure_binaries().helm))
    server = PrometheusServer(binaries.prometheus, tmp_path, [f"127.0.0.1:{operator.metrics_port}"], rules=rules)
    server.start()
    yield server
    server.stop()


def revision(api: client.ApiClient, namespace: str, name: str) -> int:
    return int(get_token(api, namespace, name).get("status", {}).get("revision") or 0)


def run_the_fleet(api: client.ApiClient, namespace: str, emulators: Emulators, rounds: int) -> None:
    """Issue the fleet, then renew every token `rounds` times while the providers fail now and then."""
    apply_provider(api, emulators, "b2", namespace, "b2")
    # One call a second: a fleet renewing at once queues behind the limit (the rate-limit panel).
    apply_provider(api, emulators, "us3", namespace, "us3", rateLimit={"requestsPerSecond": 1, "burst": 1})
    for kind, name, duration in FLEET:
        create_token(
            api,
            namespace,
            name,
            providerRef={"name": kind},
            permissions=["read", "list"],
            buckets=BUCKETS[kind],
            duration=duration,
            revokeGracePeriod="2s",
        )
    for _, name, _ in FLEET:
        wait_condition(api, namespace, name, "True")

    def renew(names: list[str], round_: int) -> None:
        before = {name: revision(api, namespace, name) for name in names}
        for name in names:
            patch_token(api, namespace, name, {"metadata": {"annotations": {"storagetoken.dev/renew": f"r{round_}"}}})
        for name in names:
            was = before[name]
            wait_for(lambda n=name, b=was: revision(api, namespace, n) > b or None, 90, f"{name} renewed")

    try:
        for round_ in range(rounds):
            names = [name for _, name, _ in FLEET]
            if round_ % 2 == 0:
                # A provider outage long enough to exhaust the client's in-call retries (5 tries): the
                # issuance fails (error panel, issuance alert), the token backs off and then renews.
                emulators.b2.faults.inject("status", "b2_create_key", status=503, times=5)
                emulators.us3.faults.inject("retcode", "CreateUFileToken", retcode=150, times=5)
                renew(["web", "media"], round_)
                names = [name for name in names if name not in ("web", "media")]
            renew(names, round_)
            time.sleep(4)
    finally:
        emulators.b2.faults.clear()
        emulators.us3.faults.clear()

    def revoked() -> bool:
        return all(not get_token(api, namespace, n)["status"].get("pendingRevocations") for _, n, _ in FLEET)

    wait_for(revoked, 60, "every replaced key revoked")


def test_every_dashboard_query_and_alert_rule_runs_on_real_scraped_data(
    api: client.ApiClient, namespace: str, emulators: Emulators, prometheus: PrometheusServer
) -> None:
    wait_for(lambda: prometheus.query('up{job="storage-token-operator"} == 1') or None, 30, "the first scrape")
    started = time.time()
    run_the_fleet(api, namespace, emulators, rounds=10 if PICTURE else 2)
    queries = dashboard_queries(RATE_INTERVAL)
    assert len(queries) >= 15

    def all_present() -> dict[str, list[dict[str, Any]]] | None:
        found = {q.title: prometheus.query(q.expr) for q in queries}  # QueryFailed stops the wait at once
        return found if all(found.values()) else None

    try:
        results = wait_for(all_present, 30, "series for every dashboard query", interval=1)
    except AssertionError:
        empty = [q.title + ": " + q.expr for q in queries if not prometheus.query(q.expr)]
        raise AssertionError("dashboard queries without series:\n" + "\n".join(empty)) from None
    # The variables' choices, as Grafana's label_values() asks for them (the series API).
    for variable in load_dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        parsed = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"])
        assert parsed, variable["definition"]
        metric, label = parsed.groups()
        values = prometheus.api(f"label/{label}/values", **{"match[]": metric})
        assert values, variable["name"]
        if label == "namespace":
            assert namespace in values
        else:
            assert {"b2", "us3"} <= set(values)
    # What the run did is what the panels show.
    assert results
    revoked = prometheus.query('storage_token_revocations_total{result="revoked"}')
    assert revoked and float(revoked[0]["value"][1]) >= len(FLEET), revoked
    errors = prometheus.query('storage_token_provider_call_seconds_count{outcome!="ok"}')
    assert {s["metric"]["provider"] for s in errors} >= {"b2", "us3"}, errors
    waited = prometheus.query('storage_token_rate_limit_wait_seconds_total{provider="us3"} > 0')
    assert waited, "the us3 fleet never waited for its rate limit"

    # Every alert expression: valid on the real series (an empty vector is a quiet alert, not an error).
    rule_file = (prometheus.workdir / "rules.yaml").read_text()
    exprs = [rule["expr"] for group in _groups(rule_file) for rule in group["rules"]]
    assert len(exprs) == 4
    for expr in exprs:
        try:
            prometheus.query(expr)
        except QueryFailed as error:
            raise AssertionError(f"alert expression fails on real data: {error}") from None

    # And Prometheus's own rule engine has loaded and evaluated each of them without error.
    def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        # lastEvaluation is RFC 3339, year 0001 until the first evaluation.
        done = len(rules) == 4 and all(not r["lastEvaluation"].startswith("0001") for r in rules)
        return rules if done else None

    rules = wait_for(evaluated, 15, "every rule evaluated")
    assert {r["name"] for r in rules} == {
        "StorageTokenExpiringWithoutRenewal",
        "StorageTokenIssuanceFailing",
        "StorageTokenRevocationsPending",
        "StorageTokenWatchDown",
    }
    assert all(r["health"] == "ok" for r in rules), rules
    # The operator's token watch is up all along: its alert stays quiet.
    down = next(r for r in rules if r["name"] == "StorageTokenWatchDown")
    assert down["alerts"] == [], down
    # The injected b2 failures are what StorageTokenIssuanceFailing is for: it fires on real data.
    failing = next(r for r in rules if r["name"] == "StorageTokenIssuanceFailing")
    assert {a["labels"]["provider"] for a in failing["alerts"]} >= {"b2"}, failing

    if PICTURE:
        _draw(prometheus, queries, started, Path(PICTURE))


def _groups(rule_file: str) -> list[dict[str, Any]]:
    import yaml

    groups: list[dict[str, Any]] = yaml.safe_load(rule_file)["groups"]
    return groups


def _draw(prometheus: PrometheusServer, queries: list[Any], started: float, path: Path) -> None:
    from dashboard_picture import Results, draw

    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        pytest.fail("STO_DASHBOARD_PICTURE needs matplotlib: pip install -e '.[bench]' (as `make bench` does)")
    end = time.time()
    results: Results = {}
    for query in queries:
        if query.target.get("instant"):
            series = prometheus.query(query.expr)
        else:
            series = prometheus.query_range(query.expr, started, end, step=2)
        results.setdefault(query.panel["id"], []).append((query.target, series))
    # Kept beside Prometheus's data: `python tests/e2e/dashboard_picture.py RESULTS.json OUT.png` redraws it.
    (prometheus.workdir / "dashboard-results.json").write_text(json.dumps({str(k): v for k, v in results.items()}))
    took = f"{(end - started) / 60:.1f} min"
    draw(
        load_dashboard(),
        results,
        path,
        subtitle=f"queried from a real Prometheus: {took} of an e2e run, {len(FLEET)} tokens",
    )
