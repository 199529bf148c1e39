"""ServiceMonitor and PrometheusRule need the Prometheus Operator's CRDs: without them the chart stops with a
message saying so (not the API server's "no matches for kind"), with them it renders both."""

from __future__ import annotations

import pytest
from deploy_support import CHART, Render, run_helm

MONITORING_API = "monitoring.coreos.com/v1"


@pytest.mark.parametrize("value", ["metrics.serviceMonitor.enabled", "metrics.prometheusRule.enabled"])
def test_monitoring_without_the_prometheus_operator_fails_with_a_clear_message(helm: str, value: str) -> None:
    proc = run_helm(helm, "template", "sto", str(CHART), "--set", f"{value}=true")
    assert proc.returncode != 0
    assert f"{value}=true needs the Prometheus Operator's CRDs ({MONITORING_API})" in proc.stderr
    assert f"--api-versions {MONITORING_API}" in proc.stderr  # how to render it for a GitOps repository


def test_install_dry_run_says_the_same(helm: str) -> None:
    proc = run_helm(
        helm,
        "install",
        "sto",
        str(CHART),
        "--dry-run=client",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    )
    assert proc.returncode != 0
    assert "needs the Prometheus Operator's CRDs" in proc.stderr


def test_with_the_prometheus_operator_both_render(render: Render) -> None:
    objects = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        extra=("--api-versions", MONITORING_API),
    )
    kinds = {obj["kind"] for obj in objects}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds


def test_off_by_default_needs_nothing(render: Render) -> None:
    kinds = {obj["kind"] for obj in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
