"""The README's main command works end to end on its own control plane, says how to use it, and never installs
into the cluster a stray KUBECONFIG names."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from storage_token.dev.sandbox_cli import SANDBOX_B2_PORT, SANDBOX_US3_PORT


def test_the_sandbox_issues_its_samples_says_how_to_use_it_and_exits_cleanly(tmp_path: Path) -> None:
    if os.environ.get("STO_KUBECONFIG"):
        pytest.skip("the sandbox starts its own local control plane")
    # A KUBECONFIG the shell exports, naming a cluster nobody should install into: the sandbox must not use it.
    stray = tmp_path / "production.kubeconfig"
    stray.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: prod, cluster: {server: 'https://192.0.2.1:6443'}}]\n"
        "contexts: [{name: prod, context: {cluster: prod, user: prod}}]\ncurrent-context: prod\n"
        "users: [{name: prod, user: {token: x}}]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "STO_KUBECONFIG"}
    env["KUBECONFIG"] = str(stray)
    done = subprocess.run(
        [sys.executable, "-m", "storage_token.process.cli", "sandbox", "--exit-after-ready", "--timeout", "90"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert f"KUBECONFIG={stray} is not used" in out
    assert "control plane ready" in out
    assert "sandbox ready" in out
    assert "storagetoken.storagetoken.dev/us3-reader" in out
    assert "storagetoken.storagetoken.dev/b2-writer" in out
    assert "CredentialsVerified" in out
    # Everything README's examples need, printed: endpoints, buckets, tools, and the file to source.
    assert f"http://127.0.0.1:{SANDBOX_B2_PORT}" in out and f"http://127.0.0.1:{SANDBOX_US3_PORT}" in out
    for bucket in ("team-a-uploads", "team-b-backups", "team-b-reports"):
        assert bucket in out
    tools = dict(line.split() for line in out.splitlines() if line.startswith("  ") and len(line.split()) == 2)
    assert Path(tools["kubectl"]).is_file() and Path(tools["helm"]).is_file()
    assert "export KUBECONFIG=" in out
    source = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("source "))
    # Removed at exit, with the operator log: the sandbox leaves nothing behind.
    assert not Path(source).exists()
    assert not Path(source).parent.exists()


def test_the_env_file_is_for_its_owner_only(tmp_path: Path) -> None:
    from storage_token.dev.sandbox import write_shell_environment

    path = write_shell_environment(
        tmp_path / "env.sh", {"KUBECONFIG": "/x y", "B2_APPLICATION_KEY": 'a"$b', "PATH": "/t:$PATH"}
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    done = subprocess.run(
        ["bash", "-c", f'source {path} && printf "%s|%s|%s" "$KUBECONFIG" "$B2_APPLICATION_KEY" "$PATH"'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.stdout == '/x y|a"$b|/t:/usr/bin:/bin'
