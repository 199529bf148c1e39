"""Every YAML example in README.md is accepted by the real API server (server-side dry run), so the
examples stay valid as the CRDs change."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from e2e_support import wait_for
from kubernetes import client

from storage_token.dev.cluster.controlplane import ClusterAccess

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_documents() -> list[dict[str, object]]:
    documents = []
    for block in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S):
        for document in yaml.safe_load_all(block):
            if isinstance(document, dict) and "apiVersion" in document and "kind" in document:
                documents.append(document)
    return documents


def test_the_readme_has_the_examples_users_need() -> None:
    kinds = [d["kind"] for d in readme_documents()]
    for kind in ("StorageProvider", "StorageToken", "Secret", "Pod", "Role"):
        assert kind in kinds
    assert kinds.count("StorageToken") >= 2  # one per provider


def test_every_readme_example_passes_server_side_validation(
    cluster: ClusterAccess, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    if cluster.binaries is None:
        pytest.skip("needs kubectl from the local control plane")
    # Pods need the namespace's default ServiceAccount, which the controller-manager creates shortly after.
    wait_for(lambda: client.CoreV1Api(api).read_namespaced_service_account("default", namespace), 30, "the default SA")
    documents = readme_documents()
    for document in documents:
        metadata = document["metadata"]
        assert isinstance(metadata, dict)
        metadata.pop("namespace", None)  # validate in the test's namespace
    manifest = tmp_path / "readme.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    done = subprocess.run(
        [
            str(cluster.binaries.kubectl),
            f"--kubeconfig={cluster.kubeconfig}",
            "apply",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(server dry run)") == len(documents)
