"""The README's main command works end to end on its own control plane."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from storage_token.dev.cluster.controlplane import ClusterAccess


def test_the_sandbox_issues_its_samples_and_exits_cleanly(cluster: ClusterAccess) -> None:
    if cluster.binaries is None:
        pytest.skip("the sandbox starts its own local control plane")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "STO_KUBECONFIG")}
    done = subprocess.run(
        [sys.executable, "-m", "storage_token.process.cli", "sandbox", "--exit-after-ready", "--timeout", "90"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "sandbox ready" in done.stdout
    assert "storagetoken.storagetoken.dev/us3-reader" in done.stdout
    assert "storagetoken.storagetoken.dev/b2-writer" in done.stdout
    assert "CredentialsVerified" in done.stdout
