"""The Grafana dashboard: shipped as a sidecar ConfigMap only when asked, and every query it makes names
metrics the operator exports (the e2e in tests/e2e/test_prometheus.py runs them on a real Prometheus)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from deploy_support import CHART, Render, run_helm
from prometheus_client import REGISTRY

from storage_token.runtime import metrics

DASHBOARD = CHART / "dashboards" / "storage-token.json"
FULLNAME = "sto-storage-token-operator"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def exported_series_names() -> set[str]:
    """Every sample name the operator's metrics can produce (counters' `_total`, histograms' parts)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith(metrics.NAMESPACE):
            continue
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{part}" for part in ("bucket", "count", "sum"))
        else:
            names.add(family.name)
    return names


def dashboard_configmaps(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == f"{FULLNAME}-dashboard"]


def test_the_dashboard_is_off_by_default(render: Render) -> None:
    assert not dashboard_configmaps(render())


def test_the_chart_lints_strictly_with_the_dashboard_on(helm: str) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), "--set", "metrics.grafanaDashboard.enabled=true")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_label_kubernetes_would_refuse_fails_through_the_schema(helm: str) -> None:
    args = ["template", "sto", str(CHART), "--set", "metrics.grafanaDashboard.enabled=true"]
    proc = run_helm(helm, *args, "--set", "metrics.grafanaDashboard.label=grafana dashboard")
    assert proc.returncode != 0
    assert "/metrics/grafanaDashboard/label" in proc.stderr


def test_the_dashboard_configmap_follows_the_sidecar_convention(render: Render) -> None:
    (configmap,) = dashboard_configmaps(render("metrics.grafanaDashboard.enabled=true"))
    assert configmap["metadata"]["namespace"] == "sto-system"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["labels"]["app.kubernetes.io/part-of"] == "storage-token-operator"
    assert list(configmap["data"]) == ["storage-token.json"]
    assert json.loads(configmap["data"]["storage-token.json"]) == dashboard()


def test_the_sidecar_label_namespace_and_annotations_are_configurable(render: Render) -> None:
    (configmap,) = dashboard_configmaps(
        render(
            "metrics.grafanaDashboard.enabled=true",
            "metrics.grafanaDashboard.label=example.com/dashboard",
            "metrics.grafanaDashboard.labelValue=storage",
            "metrics.grafanaDashboard.namespace=monitoring",
            "metrics.grafanaDashboard.labels.team=platform",
            "metrics.grafanaDashboard.annotations.grafana_folder=Storage",
        )
    )
    meta = configmap["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["example.com/dashboard"] == "storage"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["labels"]["team"] == "platform"
    assert meta["annotations"] == {"grafana_folder": "Storage"}


def test_every_panel_queries_the_chosen_data_source() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        for owner in (panel, *panel["targets"]):
            assert owner["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_the_dashboard_covers_what_the_fleet_needs_to_show() -> None:
    titles = {p["title"] for p in panels()}
    for wanted in (
        "Tokens by time to expiry",
        "Issuances and renewals",
        "Revocations",
        "Provider calls",
        "Provider errors",
        "Rate-limit waits",
        "Rollout adoption",
    ):
        assert wanted in titles


def test_every_query_names_only_metrics_the_operator_exports() -> None:
    exported = exported_series_names()
    queries = [t["expr"] for p in panels() for t in p["targets"]]
    queries += [v["definition"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    assert queries
    for query in queries:
        named = set(re.findall(r"\b(storage_token_[a-z_]+)", query))
        assert named, query
        assert named <= exported, f"{query}: {sorted(named - exported)} not exported"


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells


def test_the_dashboard_file_is_the_only_copy() -> None:
    """The ConfigMap loads the file with .Files.Glob: no second copy to drift from it."""
    template = (CHART / "templates" / "dashboard.yaml").read_text()
    assert '.Files.Glob "dashboards/storage-token.json"' in template
    assert sorted(p.name for p in (CHART / "dashboards").iterdir()) == [DASHBOARD.name]
    assert Path(DASHBOARD).stat().st_size < 256 * 1024  # well under a ConfigMap's 1 MiB
