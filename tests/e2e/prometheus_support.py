"""A real Prometheus for the e2e tests: started against the operator's metrics port, queried over its
HTTP API. And the queries to run on it: the chart's dashboard and alert rules, as shipped."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from storage_token.dev.cluster.controlplane import free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "storage-token-operator"
DASHBOARD = CHART / "dashboards" / "storage-token.json"


class QueryFailed(Exception):
    """Prometheus refused or failed a query."""


@dataclass
class PrometheusServer:
    """`prometheus` scraping `targets` every `scrape_interval`, evaluating `rules` (a rule file's text)."""

    binary: Path
    workdir: Path
    targets: list[str]
    rules: str = ""
    scrape_interval: str = "1s"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> PrometheusServer:
        self.port = self.port or free_port()
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "storage-token-operator",
                    # As the chart's ServiceMonitor: the tokens' own `namespace` label wins.
                    "honor_labels": True,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        if self.rules:
            (self.workdir / "rules.yaml").write_text(self.rules)
            config["rule_files"] = [str(self.workdir / "rules.yaml")]
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(
            [
                str(self.binary),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.process.returncode}:\n{self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready within {timeout}s:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>: the `data` of a success, else QueryFailed with Prometheus's error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise QueryFailed(f"{params.get('query', path)}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result as a list of series (a scalar comes back as one unlabelled series)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        result: list[dict[str, Any]] = data["result"]
        return result


# -- what the chart ships -----------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def substitute(expr: str, rate_interval: str, namespace: str = ".*", provider: str = ".*") -> str:
    """A query as Grafana sends it: the dashboard's variables at "All", Grafana's `$__rate_interval`."""
    for name, value in (("namespace", namespace), ("provider", provider), ("__rate_interval", rate_interval)):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, f"a variable the test does not know in {expr}"
    return expr


@dataclass(frozen=True)
class DashboardQuery:
    panel: dict[str, Any]
    target: dict[str, Any]
    expr: str

    @property
    def title(self) -> str:
        return f"{self.panel['title']} [{self.target['refId']}]"


def dashboard_queries(rate_interval: str) -> list[DashboardQuery]:
    found = []
    for panel in load_dashboard()["panels"]:
        for target in panel.get("targets", ()):
            found.append(DashboardQuery(panel, target, substitute(target["expr"], rate_interval)))
    return found


def chart_rule_file(helm: str) -> str:
    """The PrometheusRule's rule groups as the chart renders them, as a Prometheus rule file."""
    proc = subprocess.run(
        [
            helm,
            "template",
            "sto",
            str(CHART),
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--api-versions",
            "monitoring.coreos.com/v1",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (rule,) = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "PrometheusRule"]
    return yaml.safe_dump(rule["spec"], sort_keys=False)
