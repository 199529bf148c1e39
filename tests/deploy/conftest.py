"""Fixtures for the install-artifact tests: the helm binary and a `helm template` runner."""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml
from deploy_support import CHART, Render, run_helm


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary: $HELM, else the one the dev tooling fetches and caches."""
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    from storage_token.dev.cluster.binaries import ensure_binaries

    return str(ensure_binaries().helm)


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """`render(*sets, namespace=..., extra=(...))`: the chart's objects for `--set` values, parsed."""

    def _render(*sets: str, namespace: str = "sto-system", extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        args = ["template", "sto", str(CHART), "--namespace", namespace, *extra]
        for value in sets:
            args += ["--set", value]
        proc = run_helm(helm, *args)
        assert proc.returncode == 0, proc.stderr
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return _render
