"""kopf wiring: every handler is a docstring and one call into the Manager.

Watch events only feed caches and queues (`on.event`), so kopf keeps no
per-object progress of its own; finalizers, status and scheduling belong to
the controllers. Handlers are coroutines: kopf runs plain functions in its
thread pool, and the caches and queues they feed belong to the event loop.

StorageTokens and Secrets are not watched through kopf (`kube.list_watch`):
`TokenFeeds` lists and watches the tokens, because kopf's per-event machinery
cost more CPU than everything the operator then did with the event; and kopf
would stream every Secret in the cluster, data included, where `SecretFeeds`
watches the operator's own Secrets by label and each credentials Secret by name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import kopf

from storage_token.api.token import API_GROUP, API_VERSION
from storage_token.controllers.manager import Manager
from storage_token.controllers.secret_writer import LABEL_TOKEN
from storage_token.controllers.steps.base import RESTART_ANNOTATION
from storage_token.kube.api import Kube
from storage_token.kube.client import Timeouts, authorization_header, load_configuration
from storage_token.kube.leader import LeaderElector
from storage_token.runtime.secret_feeds import SecretFeeds
from storage_token.runtime.settings import Settings
from storage_token.runtime.token_feeds import TokenFeeds

log = logging.getLogger(__name__)
SETTINGS_KEY = "storage_token_settings"


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: with only `on.event` handlers kopf never compares essences, yet it builds one (a deep
    copy of the whole body) for every watch event. A quarter of kopf's CPU in a burst went to that."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Apply our settings to kopf and start the controllers."""
    ours: Settings = memo[SETTINGS_KEY]
    settings.persistence.finalizer = f"{API_GROUP}/kopf"  # unused by on.event; named ours anyway
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.scanning.disabled = True  # no cluster-wide list/watch of CRDs and namespaces: least-privilege RBAC
    # Replicas coordinate through a Lease (kube.leader), not kopf peering: see that module.
    settings.peering.standalone = True
    configuration = load_configuration(ours.kubeconfig)
    memo["kube_configuration"] = configuration
    kube = Kube(configuration, Timeouts(request=ours.kube_timeout))
    ours = await resolve_identity(kube, ours)
    memo[SETTINGS_KEY] = ours
    elector = None
    if ours.leader_election_lease:
        identity = f"{socket.gethostname()}-{os.getpid()}"
        elector = LeaderElector(kube, ours.operator_namespace, ours.leader_election_lease, identity)
    manager = Manager(kube, ours, leading=elector.leading if elector else None)
    memo["manager"] = manager
    manager.start()
    feeds = SecretFeeds(kube, ours.namespaces or [None], LABEL_TOKEN, manager.on_secret_event)
    memo["feeds"] = feeds
    feeds.want(manager.credentials_secrets())
    feeds.start()
    tokens = TokenFeeds(kube, ours.namespaces or [None], manager.on_token_event)
    memo["token_feeds"] = tokens
    tokens.start()
    if elector is not None:
        elector.on_start_leading = manager.resync
        memo["elector"] = asyncio.create_task(elector.run(), name="leader-election")


@kopf.on.login()
async def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf's watches use the very credentials our own requests use (loaded once, at start-up).

    kopf asks again after a 401: the token is read from the configuration each time, so a
    refreshed service account token is picked up."""
    configuration = memo.get("kube_configuration") or load_configuration(memo[SETTINGS_KEY].kubeconfig)
    header = authorization_header(configuration)
    scheme, _space, token = (header or "").partition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert or None,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file or None,
        private_key_path=configuration.key_file or None,
    )


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
    for name in ("token_feeds", "feeds"):
        watches: TokenFeeds | SecretFeeds | None = memo.get(name)
        if watches is not None:
            await watches.stop()
    manager: Manager | None = memo.get("manager")
    if manager is not None:
        await manager.stop()


@kopf.on.event(API_GROUP, API_VERSION, "storageproviders")
async def provider_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """A StorageProvider changed: queue a credentials check, and watch the Secret it names."""
    _provider_changed(memo, type, _with_kind(body, "StorageProvider"))


@kopf.on.event(API_GROUP, API_VERSION, "clusterstorageproviders")
async def cluster_provider_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:  # noqa: A002
    """A ClusterStorageProvider changed: queue a credentials check, and watch the Secret it names."""
    _provider_changed(memo, type, _with_kind(body, "ClusterStorageProvider"))


def _provider_changed(memo: kopf.Memo, event_type: str | None, body: dict[str, Any]) -> None:
    manager: Manager = memo["manager"]
    manager.on_provider_event(event_type, body)
    feeds: SecretFeeds | None = memo.get("feeds")
    if feeds is not None:
        feeds.want(manager.credentials_secrets())


def _with_kind(body: kopf.Body, kind: str) -> dict[str, Any]:
    result = dict(body)
    result.setdefault("kind", kind)
    return result


WORKLOAD_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


def slim_workload(body: Mapping[str, Any]) -> dict[str, Any]:
    """What deciding "does this event move a waiting target on" needs: counts, generations and our restart
    annotation. No pod template (env values, images) leaves here."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    template = (spec.get("template") or {}).get("metadata") or {}
    restarted = (template.get("annotations") or {}).get(RESTART_ANNOTATION)
    return {
        "metadata": {k: meta.get(k) for k in ("namespace", "name", "uid", "generation")},
        "spec": {
            "replicas": spec.get("replicas"),
            "template": {"metadata": {"annotations": {RESTART_ANNOTATION: restarted}}},
        },
        "status": dict(body.get("status") or {}),
    }


def watch_workloads() -> None:
    """Register watches of the restartable workloads (called before kopf starts, when RBAC allows it):
    a rollout's progress then reaches the tokens whose old key waits for it at once."""
    for kind, plural in WORKLOAD_PLURALS.items():
        # The kind is bound as a default: a closure would see the loop's last kind.
        async def workload_event(
            memo: kopf.Memo,
            body: kopf.Body,
            type: str | None,  # noqa: A002 - kopf's keyword
            workload_kind: str = kind,
            **_: Any,
        ) -> None:
            """A workload changed: queue the tokens whose rollout follows it (no pod template leaves here)."""
            memo["manager"].on_workload_event(workload_kind, slim_workload(body), type)

        kopf.on.event("apps", "v1", plural, id=f"{plural}-rollout")(workload_event)
