"""`storage-token sandbox`: the whole product on this machine, no cluster or cloud account needed.

Starts (or reuses, with STO_KUBECONFIG/KUBECONFIG) a control plane, applies the
CRDs, starts both provider emulators and the operator, applies sample
StorageTokens, waits until they are Ready and shows what was issued.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("sandbox", help="local control plane + emulated providers + operator + samples")
    parser.add_argument("--exit-after-ready", action="store_true", help="stop once the samples are Ready (for CI)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the samples")
    parser.set_defaults(func=run)


def _kubectl(kubectl: str, kubeconfig: Path, *args: str) -> str:
    done = subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def run(args: argparse.Namespace) -> int:
    from storage_token.dev.cluster.binaries import ensure_binaries
    from storage_token.dev.cluster.controlplane import LocalControlPlane, existing_cluster
    from storage_token.dev.sandbox import (
        CRD_DIR,
        Emulators,
        OperatorProcess,
        sample_manifests,
        wait_until,
        write_manifests,
    )

    binaries = ensure_binaries()
    kubectl = str(binaries.kubectl)
    workdir = Path(tempfile.mkdtemp(prefix="sto-sandbox-"))
    with contextlib.ExitStack() as stack:
        access = existing_cluster()
        if access is None:
            started = time.monotonic()
            plane = stack.enter_context(LocalControlPlane(binaries))
            access = plane.access
            print(f"control plane ready in {time.monotonic() - started:.1f}s", flush=True)
        kubeconfig = access.kubeconfig
        print(_kubectl(kubectl, kubeconfig, "apply", "--server-side", "-f", str(CRD_DIR)), end="", flush=True)
        _kubectl(kubectl, kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        _kubectl(kubectl, kubeconfig, "create", "namespace", "storage-token-system")
        emulators = Emulators.start()
        stack.callback(emulators.stop)
        print(f"US3 emulator at {emulators.us3.url}, B2 emulator at {emulators.b2.url}", flush=True)
        operator = OperatorProcess(kubeconfig, workdir / "operator.log").start()
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
        print("sandbox ready. Try:")
        print(f"  export KUBECONFIG={kubeconfig}")
        print(f"  {kubectl} get storagetokens -n demo")
        print(f"  {kubectl} describe storagetoken us3-reader -n demo")
        print(f"  {kubectl} annotate storagetoken us3-reader -n demo storagetoken.dev/renew=$(date +%s) --overwrite")
        print(f"operator log: {operator.log_path}")
        if args.exit_after_ready:
            return 0
        print("Ctrl-C stops everything.", flush=True)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        with contextlib.suppress(KeyboardInterrupt):
            while not stop and operator.alive():
                time.sleep(1)
    return 0
