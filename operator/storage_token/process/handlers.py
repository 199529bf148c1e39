"""kopf wiring: every handler is a docstring and one call into the Manager.

Watch events only feed caches and queues (`on.event`), so kopf keeps no
per-object progress of its own; finalizers, status and scheduling belong to
the controllers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from typing import Any

import kopf

from storage_token.api.token import API_GROUP, API_VERSION
from storage_token.controllers.manager import Manager
from storage_token.kube.api import Kube, load_api_client
from storage_token.kube.leader import LeaderElector
from storage_token.runtime.settings import Settings

log = logging.getLogger(__name__)
SETTINGS_KEY = "storage_token_settings"


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Apply our settings to kopf and start the controllers."""
    ours: Settings = memo[SETTINGS_KEY]
    settings.persistence.finalizer = f"{API_GROUP}/kopf"  # unused by on.event; named ours anyway
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.scanning.disabled = True  # no cluster-wide list/watch of CRDs and namespaces: least-privilege RBAC
    # Replicas coordinate through a Lease (kube.leader), not kopf peering: see that module.
    settings.peering.standalone = True
    kube = Kube(load_api_client(ours.kubeconfig))
    ours = await resolve_identity(kube, ours)
    memo[SETTINGS_KEY] = ours
    elector = None
    if ours.leader_election_lease:
        identity = f"{socket.gethostname()}-{os.getpid()}"
        elector = LeaderElector(kube, ours.operator_namespace, ours.leader_election_lease, identity)
    manager = Manager(kube, ours, leading=elector.leading if elector else None)
    memo["manager"] = manager
    manager.start()
    if elector is not None:
        elector.on_start_leading = manager.resync
        memo["elector"] = asyncio.create_task(elector.run(), name="leader-election")


async def resolve_identity(kube: Kube, settings: Settings) -> Settings:
    """Without an explicit cluster id, the cluster names itself: kube-system's uid never changes."""
    if not settings.cluster_id:
        namespace = await kube.get_namespace("kube-system")
        uid = ((namespace or {}).get("metadata") or {}).get("uid")
        if not uid:
            # Naming keys without an identity could collide with another install's: refuse to start.
            raise kopf.PermanentError("cannot read namespace kube-system to derive the cluster id; set --cluster-id")
        settings = dataclasses.replace(settings, cluster_id=uid)
    log.info(
        "install identity %s (cluster %s, install %s)",
        settings.install_digest,
        settings.cluster_id,
        settings.effective_install_id,
    )
    return settings


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop the controllers and close provider connections."""
    elector: asyncio.Task[None] | None = memo.get("elector")
    if elector is not None:
        elector.cancel()
    manager: Manager | None = memo.get("manager")
    if manager is not None:
        await manager.stop()


@kopf.on.event(API_GROUP, API_VERSION, "storagetokens")
def token_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """A StorageToken changed: queue its reconcile."""
    memo["manager"].on_token_event(type, dict(body))


@kopf.on.event(API_GROUP, API_VERSION, "storageproviders")
def provider_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """A StorageProvider changed: queue a credentials check."""
    memo["manager"].on_provider_event(type, _with_kind(body, "StorageProvider"))


@kopf.on.event(API_GROUP, API_VERSION, "clusterstorageproviders")
def cluster_provider_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """A ClusterStorageProvider changed: queue a credentials check."""
    memo["manager"].on_provider_event(type, _with_kind(body, "ClusterStorageProvider"))


@kopf.on.event("v1", "secrets")
def secret_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """A Secret changed: a token's Secret (drift), provider credentials (re-verify), or a name conflict."""
    memo["manager"].on_secret_event(type, _metadata_only(body))


def _with_kind(body: kopf.Body, kind: str) -> dict[str, Any]:
    result = dict(body)
    result.setdefault("kind", kind)
    return result


def _metadata_only(body: kopf.Body) -> dict[str, Any]:
    """Secret data never leaves this function: only names and labels are needed."""
    meta = body.get("metadata") or {}
    return {
        "metadata": {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "labels": dict(meta.get("labels") or {}),
            "resourceVersion": meta.get("resourceVersion"),
        }
    }
