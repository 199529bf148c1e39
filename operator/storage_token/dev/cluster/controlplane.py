"""Start and stop a real etcd + kube-apiserver + kube-controller-manager on loopback.

`LocalControlPlane` is a context manager: it generates the PKI, picks free
ports, starts the three processes, waits for `/readyz`, writes an admin
kubeconfig, and on exit stops everything and removes its directory, also
when the body raised.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from storage_token.dev.cluster.binaries import Binaries, ensure_binaries
from storage_token.dev.cluster.pki import CertificateAuthority, CertPair, service_account_keys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_kubeconfig(path: Path, server: str, ca: Path, client: CertPair, user: str = "admin") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class ClusterAccess:
    """How to reach a running cluster as admin."""

    kubeconfig: Path
    server: str
    ca: Path | None
    binaries: Binaries | None


class LocalControlPlane:
    """A throwaway control plane. Use as `with LocalControlPlane() as cp: cp.access.kubeconfig`."""

    def __init__(self, binaries: Binaries | None = None, workdir: Path | None = None, log: bool = False) -> None:
        self.binaries = binaries or ensure_binaries()
        self._own_dir = workdir is None
        # /dev/shm keeps etcd's fsyncs off the disk: the cluster is throwaway.
        base = "/dev/shm" if Path("/dev/shm").is_dir() else None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="sto-cluster-", dir=base))
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._log = log
        self.access: ClusterAccess

    # -- lifecycle ----------------------------------------------------
    def __enter__(self) -> LocalControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> ClusterAccess:
        started = time.monotonic()
        pki = self.dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority(pki)
        serving = ca.issue("apiserver", "kube-apiserver", server_hosts=("127.0.0.1", "localhost", "10.0.0.1"))
        admin = ca.issue("admin", "admin", organization="system:masters", client=True)
        kcm = ca.issue("kcm", "system:kube-controller-manager", client=True)
        sa = service_account_keys(pki)

        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=4294967296",
                "--log-level=error",
            ],
        )
        server = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.pair.cert}",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # Loopback can't be a Service endpoint; nothing in-cluster needs the `kubernetes` Service.
                "--endpoint-reconciler-type=none",
                "--max-requests-inflight=800",
                "--max-mutating-requests-inflight=400",
                f"--cert-dir={pki}",
                "--profiling=false",
                "--v=0",
            ],
        )
        kubeconfig = write_kubeconfig(self.dir / "admin.kubeconfig", server, ca.pair.cert, admin)
        kcm_kubeconfig = write_kubeconfig(
            self.dir / "kcm.kubeconfig", server, ca.pair.cert, kcm, user="system:kube-controller-manager"
        )
        self._wait_ready(server, ca.pair.cert, admin, timeout - (time.monotonic() - started))
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={ca.pair.cert}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--controllers=*",
                # Collect garbage promptly: tests wait on it.
                "--concurrent-gc-syncs=20",
                # Its client's default 20 requests/s would pace rollouts of many workloads at once (the
                # rollout bench restarts 50 together); production clusters raise it the same way.
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                "--v=0",
            ],
        )
        self.access = ClusterAccess(kubeconfig, server, ca.pair.cert, self.binaries)
        return self.access

    def stop(self) -> None:
        for _name, proc in reversed(self._processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _name, proc in reversed(self._processes):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._processes.clear()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers --------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log_path = self.dir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._processes.append((name, proc))

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self, server: str, ca: Path, client: CertPair, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(client.cert), str(client.key))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self._processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{server}/readyz", context=context, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last = str(error)
            time.sleep(0.25)
        raise TimeoutError(
            f"kube-apiserver not ready after {timeout:.0f}s ({last}):\n{self.log_tail('kube-apiserver')}"
        )


def existing_cluster() -> ClusterAccess | None:
    """An existing cluster named by STO_KUBECONFIG (or KUBECONFIG), if any."""
    for variable in ("STO_KUBECONFIG", "KUBECONFIG"):
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return ClusterAccess(Path(value), server="", ca=None, binaries=None)
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m storage_token.dev.cluster.controlplane`: bring a cluster up until Ctrl-C."""
    started = time.monotonic()
    with LocalControlPlane() as plane:
        elapsed = time.monotonic() - started
        print(f"control plane ready in {elapsed:.1f}s", flush=True)
        print(f"export KUBECONFIG={plane.access.kubeconfig}", flush=True)
        print(f"kubectl: {plane.binaries.kubectl}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
