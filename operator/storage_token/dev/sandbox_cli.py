"""`storage-token sandbox`: the whole product on this machine, no cluster or cloud account needed.

Starts a control plane (or, only when STO_KUBECONFIG names one, uses an existing cluster), applies
the CRDs, starts both provider emulators on fixed loopback ports holding the buckets README.md's
examples name, starts the operator, applies sample StorageTokens in `demo`, waits until they are
Ready and prints how to follow README.md against it (a file to `source` in another shell).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Fixed loopback ports for the emulators: README's StorageProviders name these endpoints.
SANDBOX_B2_PORT = 18410
SANDBOX_US3_PORT = 18411
SANDBOX_METRICS_PORT = 18412  # the operator's /metrics, as README's Troubleshooting shows it


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("sandbox", help="local control plane + emulated providers + operator + samples")
    parser.add_argument("--exit-after-ready", action="store_true", help="stop once the samples are Ready (for CI)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the samples")
    parser.add_argument(
        "--b2-port",
        type=int,
        default=SANDBOX_B2_PORT,
        help=f"loopback port of the B2 emulator (default {SANDBOX_B2_PORT}, the endpoint README's examples name)",
    )
    parser.add_argument(
        "--us3-port",
        type=int,
        default=SANDBOX_US3_PORT,
        help=f"loopback port of the US3 emulator (default {SANDBOX_US3_PORT}, the endpoint README's examples name)",
    )
    parser.set_defaults(func=run)


def _kubectl(kubectl: str, kubeconfig: Path, *args: str) -> str:
    done = subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def _existing_cluster() -> Path | None:
    """Only STO_KUBECONFIG selects an existing cluster: a KUBECONFIG the shell happens to export never does."""
    value = os.environ.get("STO_KUBECONFIG")
    if not value:
        if os.environ.get("KUBECONFIG"):
            print(
                f"KUBECONFIG={os.environ['KUBECONFIG']} is not used: the sandbox starts its own control plane "
                "(set STO_KUBECONFIG to install into an existing cluster instead)",
                flush=True,
            )
        return None
    path = Path(value)
    if not path.is_file():
        raise SystemExit(f"storage-token sandbox: STO_KUBECONFIG={value} is not a file")
    return path


def run(args: argparse.Namespace) -> int:
    from storage_token.dev.cluster.binaries import ensure_binaries
    from storage_token.dev.cluster.controlplane import LocalControlPlane
    from storage_token.dev.sandbox import (
        B2_BUCKETS,
        CRD_DIR,
        README_B2_BUCKETS,
        README_US3_BUCKETS,
        US3_BUCKETS,
        Emulators,
        OperatorProcess,
        sample_manifests,
        shell_environment,
        wait_until,
        write_manifests,
        write_shell_environment,
    )

    binaries = ensure_binaries()
    kubectl = str(binaries.kubectl)
    workdir = Path(tempfile.mkdtemp(prefix="sto-sandbox-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        kubeconfig = _existing_cluster()
        if kubeconfig is not None:
            server = _kubectl(
                kubectl, kubeconfig, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
            )
            print(f"using the existing cluster of STO_KUBECONFIG={kubeconfig} (server {server.strip()})", flush=True)
        else:
            started = time.monotonic()
            plane = stack.enter_context(LocalControlPlane(binaries))
            kubeconfig = plane.access.kubeconfig
            print(f"control plane ready in {time.monotonic() - started:.1f}s", flush=True)
        print(_kubectl(kubectl, kubeconfig, "apply", "--server-side", "-f", str(CRD_DIR)), end="", flush=True)
        _kubectl(kubectl, kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        _kubectl(kubectl, kubeconfig, "create", "namespace", "storage-token-system")
        us3_buckets = {**README_US3_BUCKETS, **US3_BUCKETS}
        b2_buckets = [*README_B2_BUCKETS, *B2_BUCKETS]
        try:
            emulators = Emulators.start(
                us3_buckets=us3_buckets, b2_buckets=b2_buckets, us3_port=args.us3_port, b2_port=args.b2_port
            )
        except OSError as error:
            print(
                f"storage-token sandbox: cannot listen on 127.0.0.1:{args.b2_port} (B2) and {args.us3_port} (US3): "
                f"{error.strerror or error}; is another sandbox running? (--b2-port/--us3-port pick others, "
                "but README's examples name the default ports)",
                file=sys.stderr,
            )
            return 1
        stack.callback(emulators.stop)
        operator = OperatorProcess(kubeconfig, workdir / "operator.log", metrics_port=SANDBOX_METRICS_PORT).start()
        stack.callback(operator.stop)
        manifests = write_manifests(workdir / "samples.yaml", sample_manifests(emulators))
        print(_kubectl(kubectl, kubeconfig, "apply", "-f", str(manifests)), end="", flush=True)

        def ready() -> bool:
            out = _kubectl(
                kubectl,
                kubeconfig,
                "get",
                "storagetokens",
                "-n",
                "demo",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{' '}{end}",
            )
            states = out.split()
            return len(states) == 2 and all(s == "True" for s in states)

        ok = wait_until(ready, args.timeout)
        print(
            _kubectl(kubectl, kubeconfig, "get", "storageproviders,storagetokens,secrets", "-n", "demo", "-o", "wide")
        )
        if not ok:
            print("samples did not become Ready; operator log tail:", file=sys.stderr)
            print("\n".join(operator.log_text().splitlines()[-30:]), file=sys.stderr)
            return 1
        tools = [Path(kubectl).parent, Path(binaries.helm).parent, Path(sys.executable).parent]
        env_file = write_shell_environment(workdir / "env.sh", shell_environment(emulators, kubeconfig, tools))
        print("sandbox ready:")
        print(f"  B2 emulator   {emulators.b2.url}  buckets: {', '.join(b2_buckets)}")
        print(f"  US3 emulator  {emulators.us3.url}  region cn-bj2, buckets: {', '.join(us3_buckets)}")
        print(f"  kubectl       {kubectl}")
        print(f"  helm          {binaries.helm}")
        print(f"  operator log  {operator.log_path}")
        print(f"  metrics       http://127.0.0.1:{SANDBOX_METRICS_PORT}/metrics")
        print("  samples       namespace demo: StorageProviders us3 and b2, StorageTokens us3-reader and b2-writer")
        print(f"  accounts      the emulators' keys are in {env_file} (B2_APPLICATION_KEY_ID, UCLOUD_PUBLIC_KEY, ...)")
        print("In another shell, in this repository (then follow README.md from 'A B2 account and a token'):")
        print(f"  source {env_file}    # KUBECONFIG, PATH (kubectl, helm, storage-token), the account keys")
        print("  kubectl get storagetokens -n demo")
        print("  kubectl describe storagetoken us3-reader -n demo")
        print('  kubectl annotate storagetoken us3-reader -n demo storagetoken.dev/renew="$(date +%s)" --overwrite')
        print("Or only the cluster, with the full paths above:")
        print(f"  export KUBECONFIG={kubeconfig}")
        print(f"  {kubectl} get storagetokens -n demo")
        if args.exit_after_ready:
            return 0
        print("Ctrl-C stops everything.", flush=True)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        # Both, explicitly: a sandbox started in the background inherits SIGINT ignored, and Ctrl-C must still work.
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while not stop and operator.alive():
            time.sleep(0.5)
        if not operator.alive() and not stop:
            print("the operator exited; its log tail:", file=sys.stderr)
            print("\n".join(operator.log_text().splitlines()[-30:]), file=sys.stderr)
        print("stopping the sandbox (operator, emulators, control plane)...", flush=True)
    print("sandbox stopped.", flush=True)
    return 0
