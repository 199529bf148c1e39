"""The chart's alert rules, as rendered, pass `promtool check rules` and the `promtool test rules` cases
in prometheus/rules-test.yaml: each alert fires when it should and resolves when it should."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import Render

from storage_token.dev.prometheus import PrometheusUnavailable, ensure_prometheus

RULES_TEST = Path(__file__).parent / "prometheus" / "rules-test.yaml"
RULES_FILE = "storage-token-rules.yaml"  # the name rules-test.yaml loads


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Debian's promtool (fetched by `make tools`). Never skipped: without it these tests fail, saying why."""
    try:
        return ensure_prometheus().promtool
    except PrometheusUnavailable as error:
        pytest.fail(f"promtool is needed for the alert-rule tests and could not be fetched: {error}")


def rule_groups(render: Render, *sets: str) -> dict[str, object]:
    """The PrometheusRule's `spec` (a Prometheus rule file: {groups: [...]}) as the chart renders it."""
    objects = render("metrics.prometheusRule.enabled=true", *sets, extra=("--api-versions", "monitoring.coreos.com/v1"))
    (rule,) = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    spec: dict[str, object] = rule["spec"]
    return spec


def promtool_test(promtool: Path, groups: dict[str, object], workdir: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(RULES_TEST, workdir / RULES_TEST.name)
    (workdir / RULES_FILE).write_text(yaml.safe_dump(groups, sort_keys=False))
    return subprocess.run(
        [str(promtool), "test", "rules", RULES_TEST.name],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_rendered_rules_are_valid_prometheus_rules(render: Render, promtool: Path, tmp_path: Path) -> None:
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rule_groups(render)))
    proc = subprocess.run(
        [str(promtool), "check", "rules", RULES_FILE], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout


def test_each_alert_fires_and_resolves_as_intended(render: Render, promtool: Path, tmp_path: Path) -> None:
    proc = promtool_test(promtool, rule_groups(render), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    ("value", "case"),
    [
        # An ordinary 20-minute grace period would page.
        pytest.param("metrics.prometheusRule.pendingRevocationsFor=10m", "revocations pending", id="short for"),
        # The stuck token would be found only 5 minutes before expiry.
        pytest.param("metrics.prometheusRule.expiringWithinSeconds=300", "expiring without renewal", id="late"),
    ],
)
def test_the_cases_notice_a_changed_threshold(
    render: Render, promtool: Path, tmp_path: Path, value: str, case: str
) -> None:
    """The cases pin the default thresholds: rules rendered with other values fail them, in the named case."""
    proc = promtool_test(promtool, rule_groups(render, value), tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert case in output.split("FAILED:", 1)[-1], output
