"""A whole local installation in one process tree: control plane, provider emulators, the operator.

Used by `storage-token sandbox` (the README's main command) and by the
end-to-end tests, so both exercise the same wiring.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from storage_token.api.naming import key_prefix
from storage_token.api.token import API_GROUP, API_VERSION
from storage_token.dev.emulators.b2 import B2Emulator
from storage_token.dev.emulators.clock import Clock
from storage_token.dev.emulators.control import read_state
from storage_token.dev.emulators.us3 import US3Emulator
from storage_token.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "crds"
# Every bucket, short keys, frequent renewals, long grace periods and instant manual renewals:
# what tests and the sandbox need of an emulator account (the CRD defaults are much tighter).
EMULATOR_CEILING: dict[str, Any] = {
    "allowedBuckets": ["*"],
    "maxDuration": "24000h",
    "minDuration": "1m",
    "minRenewalInterval": "1s",
    "maxRevokeGracePeriod": "168h",
    "maxLiveKeys": 100,
    "minManualRenewInterval": "0s",
}
US3_BUCKETS = {"demo-us3-data": "cn-bj2", "demo-us3-logs": "cn-bj2"}
B2_BUCKETS = ["demo-b2-data", "demo-b2-logs", "demo-b2-backup"]
# The buckets README.md's examples name: the sandbox's emulators hold them too, so every example runs as written.
README_US3_BUCKETS = {"team-b-reports": "cn-bj2"}
README_B2_BUCKETS = ["team-a-uploads", "team-b-backups"]


@dataclass
class Emulators:
    """Both provider emulators with freshly generated account keys (never fixed in the code)."""

    us3: US3Emulator
    b2: B2Emulator
    us3_account: tuple[str, str]
    b2_account: tuple[str, str]

    @classmethod
    def start(
        cls,
        *,
        us3_buckets: Mapping[str, str] = US3_BUCKETS,
        b2_buckets: Sequence[str] = B2_BUCKETS,
        at: float | None = None,
        b2_auth_token_ttl: float = 86400,
        us3_port: int = 0,
        b2_port: int = 0,
    ) -> Self:
        """`at`: freeze both emulators' clocks there (tests move them); default: real time. Port 0: any free one."""
        us3_account = (f"TOKEN_{secrets.token_hex(8)}", secrets.token_urlsafe(30))
        b2_account = (f"000{secrets.token_hex(12)}", f"K000{secrets.token_urlsafe(24)}")
        us3_clock = Clock(at) if at is not None else None
        b2_clock = Clock(at) if at is not None else None
        us3 = US3Emulator(dict([us3_account]), dict(us3_buckets), token_limit=10_000, clock=us3_clock, port=us3_port)
        b2 = B2Emulator(
            dict([b2_account]), list(b2_buckets), auth_token_ttl=b2_auth_token_ttl, clock=b2_clock, port=b2_port
        )
        us3.start()
        try:
            b2.start()
        except BaseException:
            us3.stop()
            raise
        return cls(us3, b2, us3_account, b2_account)

    def stop(self) -> None:
        self.us3.stop()
        self.b2.stop()

    def account_secrets(self) -> list[str]:
        return [self.us3_account[1], self.b2_account[1]]

    def issued_secrets(self) -> list[str]:
        """Every secret either emulator ever issued, revoked ones included."""
        with self.us3.lock, self.b2.lock:
            return [*self.us3.store.issued_secrets, *self.b2.store.issued_secrets]

    def live_keys(self, kind: str) -> set[str]:
        """Ids of the keys that exist and have not expired at emulator `kind`, read as a test would:
        through its control surface (`GET /_emulator/state`), not its store."""
        emulator = self.us3 if kind == "us3" else self.b2
        state = read_state(emulator.url)
        if kind == "us3":
            return {t["TokenId"] for t in state["tokens"] if not t["Expired"]}
        return {k["applicationKeyId"] for k in state["keys"]}  # B2 forgets expired keys; the master is not listed

    def credentials_secret(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        if kind == "us3":
            data = {"publicKey": self.us3_account[0], "privateKey": self.us3_account[1]}
        else:
            data = {"applicationKeyId": self.b2_account[0], "applicationKey": self.b2_account[1]}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": data,
        }

    def provider(self, kind: str, name: str, namespace: str | None, secret: str, **extra: Any) -> dict[str, Any]:
        # The emulators speak plain http on loopback: the provider says so explicitly.
        spec: dict[str, Any] = {"type": kind, "credentialsSecretRef": {"name": secret}, "allowInsecure": True}
        if kind == "us3":
            spec.update(endpoint=self.us3.url, region="cn-bj2", s3Endpoint="http://s3-cn-bj2.example.invalid")
        else:
            spec.update(endpoint=self.b2.url)
        # Ceilings fail closed; the emulators' throwaway accounts start wide open, and a caller's
        # `policy` narrows only the fields it names.
        extra = {**extra, "policy": {**EMULATOR_CEILING, **(extra.get("policy") or {})}}
        spec.update(extra)
        metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
        kind_name = "StorageProvider" if namespace else "ClusterStorageProvider"
        return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": kind_name, "metadata": metadata, "spec": spec}


@dataclass
class OperatorProcess:
    """The operator as its own process, logging to a file (tests scan it for leaked secrets)."""

    kubeconfig: Path
    log_path: Path
    cluster_id: str = "sandbox"
    operator_namespace: str = "storage-token-system"
    install_id: str = ""
    metrics_port: int = 0
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def key_prefix(self) -> str:
        """What every key name this operator issues starts with (its install identity)."""
        watched = tuple(arg.split("=", 1)[1] for arg in self.extra_args if arg.startswith("--namespace="))
        settings = Settings(
            cluster_id=self.cluster_id,
            install_id=self.install_id,
            operator_namespace=self.operator_namespace,
            namespaces=watched,
        )
        return key_prefix(settings.install_digest)

    def start(self) -> OperatorProcess:
        env = dict(os.environ, **self.env)
        env.setdefault("STO_SWEEP_INTERVAL", "30s")
        argv = [
            sys.executable,
            "-m",
            "storage_token.process.cli",
            "run",
            f"--kubeconfig={self.kubeconfig}",
            f"--cluster-id={self.cluster_id}",
            f"--install-id={self.install_id}",
            f"--operator-namespace={self.operator_namespace}",
            f"--metrics-port={self.metrics_port}",
            "--health-port=0",
            "--log-level=DEBUG",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def sample_manifests(emulators: Emulators, namespace: str = "demo") -> list[dict[str, Any]]:
    """What the sandbox applies: credentials, one provider per API, and a token per provider."""
    token = f"{API_GROUP}/{API_VERSION}"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        emulators.credentials_secret("us3", "us3-account", namespace),
        emulators.credentials_secret("b2", "b2-account", namespace),
        emulators.provider(
            "us3", "us3", namespace, "us3-account", policy={"allowedBuckets": ["demo-us3-*"], "maxDuration": "168h"}
        ),
        emulators.provider(
            "b2", "b2", namespace, "b2-account", policy={"allowedBuckets": ["demo-b2-*"], "maxDuration": "168h"}
        ),
        {
            "apiVersion": token,
            "kind": "StorageToken",
            "metadata": {"name": "us3-reader", "namespace": namespace},
            "spec": {
                "providerRef": {"name": "us3"},
                "permissions": ["read", "list"],
                "buckets": ["demo-us3-data"],
                "prefixes": ["reports/"],
                "duration": "1h",
            },
        },
        {
            "apiVersion": token,
            "kind": "StorageToken",
            "metadata": {"name": "b2-writer", "namespace": namespace},
            "spec": {
                "providerRef": {"name": "b2"},
                "permissions": ["read", "write", "list"],
                "buckets": ["demo-b2-data"],
                "duration": "2h",
                "secret": {"name": "b2-writer-aws", "template": {"preset": "aws"}},
            },
        },
    ]


def write_manifests(path: Path, manifests: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    return path


def wait_until(probe: Any, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(interval)
    return False


def shell_environment(emulators: Emulators, kubeconfig: Path, tool_dirs: Sequence[Path]) -> dict[str, str]:
    """What a shell needs to follow README.md against the sandbox: the cluster, the tools, the accounts.

    The account keys are the emulators' throwaway ones, under the names `storage-token provider`
    reads (and README's `kubectl create secret` commands use).
    """
    return {
        "KUBECONFIG": str(kubeconfig),
        "B2_APPLICATION_KEY_ID": emulators.b2_account[0],
        "B2_APPLICATION_KEY": emulators.b2_account[1],
        "UCLOUD_PUBLIC_KEY": emulators.us3_account[0],
        "UCLOUD_PRIVATE_KEY": emulators.us3_account[1],
        "PATH": ":".join([*dict.fromkeys(str(d) for d in tool_dirs), "$PATH"]),
    }


def write_shell_environment(path: Path, variables: Mapping[str, str]) -> Path:
    """A file to `source`: one `export` per variable, readable by its owner only (it holds account keys)."""
    lines = ["# Written by `storage-token sandbox`; valid while it runs.  source this file"]
    for name, value in variables.items():
        quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`")
        if name != "PATH":
            quoted = quoted.replace("$", "\\$")
        lines.append(f'export {name}="{quoted}"')
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return path
