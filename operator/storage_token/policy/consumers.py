"""Does a workload really consume a token's Secret? Only then may the operator restart it.

`restartTargets` would otherwise let anyone who can create a StorageToken make the operator patch any
Deployment, StatefulSet or DaemonSet of the namespace (a confused deputy). A workload qualifies when
its pod template reads the Secret (a volume, a projected volume, `envFrom` or an env `secretKeyRef`,
in any container or init container), or when it opts in with the annotation `RESTART_OPT_IN` naming
the token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

RESTART_OPT_IN = "storagetoken.dev/restart-by"  # comma-separated StorageToken names


def _secrets_read(pod: Mapping[str, Any]) -> Iterator[str]:
    for volume in pod.get("volumes") or ():
        secret = volume.get("secret") or {}
        if secret.get("secretName"):
            yield secret["secretName"]
        for source in (volume.get("projected") or {}).get("sources") or ():
            projected = source.get("secret") or {}
            if projected.get("name"):
                yield projected["name"]
    for container in [*(pod.get("containers") or ()), *(pod.get("initContainers") or ())]:
        for source in container.get("envFrom") or ():
            ref = source.get("secretRef") or {}
            if ref.get("name"):
                yield ref["name"]
        for variable in container.get("env") or ():
            ref = (variable.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name"):
                yield ref["name"]


def restart_refusal(workload: Mapping[str, Any], token_name: str, secret_name: str) -> str:
    """ "" when the workload may be restarted for this token, else why not."""
    annotations = (workload.get("metadata") or {}).get("annotations") or {}
    opted_in = {name.strip() for name in str(annotations.get(RESTART_OPT_IN, "")).split(",")}
    if token_name in opted_in:
        return ""
    template = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    if secret_name in set(_secrets_read(template)):
        return ""
    return (
        f"its pod template does not read Secret {secret_name!r} (volume, envFrom or secretKeyRef) and it does "
        f"not opt in with the annotation {RESTART_OPT_IN}: {token_name}"
    )
