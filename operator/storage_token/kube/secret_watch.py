"""List-then-watch of the Secrets one selector picks, forever, passing on metadata only.

The operator watches its own Secrets by label and each credentials Secret by name, as metadata
only (PartialObjectMetadata), so the API server sends it nothing else and no Secret's data.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from storage_token.kube.api import ApiError, Body, Conflict, Kube

log = logging.getLogger(__name__)

OnEvent = Callable[[str, Body], None]
RETRY_SECONDS = (1.0, 30.0)  # first and longest wait after a failed list or watch
RELIST_PAUSE = 0.5  # before listing again after a watch expired


def metadata_only(secret: Body) -> Body:
    """Secret data never leaves this function: names, labels and the version are all anyone needs."""
    meta = secret.get("metadata") or {}
    return {
        "metadata": {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "labels": dict(meta.get("labels") or {}),
            "resourceVersion": meta.get("resourceVersion"),
        }
    }


def _describe(error: Exception) -> str:
    """The kind of failure, never a message that could quote an object."""
    return str(error) if isinstance(error, ApiError) else type(error).__name__


class SecretWatch:
    """One scope (a namespace, or the cluster when None) and one selector (`labelSelector` or
    `fieldSelector` in `params`). Events go to `on_event(type, metadata_only(secret))`."""

    def __init__(self, kube: Kube, namespace: str | None, params: dict[str, str], on_event: OnEvent) -> None:
        self.kube, self.namespace, self.params, self.on_event = kube, namespace, params, on_event
        self._known: dict[tuple[str, str], Body] = {}  # (namespace, name) -> its metadata as last seen

    def __repr__(self) -> str:
        return f"SecretWatch({self.namespace or '*'}, {self.params})"

    async def run(self) -> None:
        """Forever: a failure of any kind is logged and retried with backoff, never the end of it."""
        failures = 0
        while True:
            try:
                resource_version = await self._relist()
                failures = 0
                while True:
                    resource_version = await self._watch(resource_version)
            except asyncio.CancelledError:
                raise
            except Conflict:
                await asyncio.sleep(RELIST_PAUSE)  # the watch fell too far behind: list again, not in a spin
                continue
            except Exception as error:  # noqa: BLE001 - one scope's watch must outlive any bad answer
                failures += 1
                delay = min(RETRY_SECONDS[1], RETRY_SECONDS[0] * 2 ** min(failures, 6)) * random.uniform(0.8, 1.2)
                # Once per outage: a watch the operator may not make (e.g. a namespaced install's
                # credentials in its own namespace) stays refused, and the periodic recheck covers it.
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "%r: %s; retrying in %.0fs", self, _describe(error), delay)
                await asyncio.sleep(delay)

    async def _relist(self) -> str:
        """List, and report what changed or vanished while no watch was running."""
        items, resource_version = await self.kube.list_secrets(self.namespace, self.params)
        seen: dict[tuple[str, str], Body] = {}
        for item in items:
            body = metadata_only(item)
            meta = body["metadata"]
            key = (str(meta["namespace"]), str(meta["name"]))
            seen[key] = body
            known = self._known.get(key)
            if known is None or known["metadata"]["resourceVersion"] != meta["resourceVersion"]:
                self.on_event("ADDED" if known is None else "MODIFIED", body)
        for key, body in self._known.items():
            if key not in seen:
                self.on_event("DELETED", body)  # as last seen, labels included
        self._known = seen
        return resource_version

    async def _watch(self, resource_version: str) -> str:
        """Follow events until the server closes the watch; the version to resume from."""
        async for event in self.kube.watch_secrets(self.namespace, self.params, resource_version):
            body = metadata_only(event.get("object") or {})
            meta = body["metadata"]
            resource_version = str(meta.get("resourceVersion") or resource_version)
            if event.get("type") == "BOOKMARK":
                continue
            key = (str(meta.get("namespace")), str(meta.get("name")))
            if event.get("type") == "DELETED":
                self._known.pop(key, None)
            else:
                self._known[key] = body
            self.on_event(str(event.get("type")), body)
        return resource_version
