"""`kubectl get stok` shows whether a token is Ready and, when it isn't, why (like cert-manager's READY/STATUS)."""

from __future__ import annotations

from typing import Any

import yaml
from deploy_support import CHART, REPO

SOURCE = REPO / "crds" / "storagetoken.dev_storagetokens.yaml"


def columns(text: str) -> dict[str, dict[str, Any]]:
    crd = yaml.safe_load(text)
    (version,) = crd["spec"]["versions"]
    return {column["name"]: column for column in version["additionalPrinterColumns"]}


def test_ready_and_reason_are_shown_without_wide_output() -> None:
    shown = columns(SOURCE.read_text())
    for name in ("Ready", "Reason"):
        assert shown[name].get("priority", 0) == 0, f"{name} must be a default column"
    assert shown["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    default = [name for name, column in shown.items() if column.get("priority", 0) == 0]
    assert default[:2] == ["Ready", "Reason"]
    assert default[-1] == "Age"


def test_the_chart_installs_the_same_columns() -> None:
    generated = (CHART / "crds" / SOURCE.name).read_text()
    assert columns(generated) == columns(SOURCE.read_text())
