"""List-then-watch of one scope, forever: the operator's own watches.

- `TokenWatch`: the StorageTokens, whole. kopf watched them before; its per-event machinery
  (a worker task per object, batching timers, cause and kwargs building) was the largest share
  of the operator's CPU in a burst, for handlers that only feed a queue (README "Benchmarks").
- `SecretWatch`: the Secrets one selector picks, as metadata only (PartialObjectMetadata), so the
  API server sends the operator nothing else and no Secret's data.

Both report what changed or vanished while no watch ran on the next list, and a callback that
fails costs that one event (logged), never the watch of every other object.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable

from storage_token.kube.api import ApiError, Body, Conflict, Kube

log = logging.getLogger(__name__)

OnEvent = Callable[[str, Body], None]
OnHealth = Callable[[bool], None]  # True once a list succeeded, False after a failed list or watch
RETRY_SECONDS = (1.0, 30.0)  # first and longest wait after a failed list or watch
RELIST_PAUSE = 0.5  # before listing again after a watch expired
RELIST_BATCH = 100  # listed objects reported between two turns of the event loop
Key = tuple[str, str]  # (namespace, name)


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


def _identity(body: Body) -> Body:
    """What a vanished object is reported with: who it was, not what it held."""
    meta = body.get("metadata") or {}
    return {"metadata": {k: meta.get(k) for k in ("namespace", "name", "uid", "resourceVersion")}}


def _describe(error: Exception) -> str:
    """The kind of failure, never a message that could quote an object."""
    return str(error) if isinstance(error, ApiError) else type(error).__name__


class ListWatch:
    """One scope (a namespace, or the cluster when None). Subclasses say how to list and watch, what
    a listener receives (`_project`) and what is kept to report a deletion (`_remember`)."""

    def __init__(self, namespace: str | None, on_event: OnEvent, on_health: OnHealth | None = None) -> None:
        self.namespace, self.on_event, self.on_health = namespace, on_event, on_health
        self._known: dict[Key, Body] = {}  # what `_remember` kept, as last seen

    async def _list(self) -> tuple[list[Body], str]:
        raise NotImplementedError

    def _stream(self, resource_version: str) -> AsyncIterator[Body]:
        raise NotImplementedError

    def _project(self, body: Body) -> Body:
        return body

    def _remember(self, projected: Body) -> Body:
        return projected

    async def run(self) -> None:
        """Forever: a failure of any kind is logged and retried with backoff, never the end of it."""
        failures = 0
        while True:
            try:
                resource_version = await self._relist()
                failures = 0
                self._health(True)
                while True:
                    resource_version = await self._watch(resource_version)
            except asyncio.CancelledError:
                raise
            except Conflict:
                await asyncio.sleep(RELIST_PAUSE)  # the watch fell too far behind: list again, not in a spin
                continue
            except Exception as error:  # noqa: BLE001 - one scope's watch must outlive any bad answer
                failures += 1
                self._health(False)
                delay = min(RETRY_SECONDS[1], RETRY_SECONDS[0] * 2 ** min(failures, 6)) * random.uniform(0.8, 1.2)
                # Not on every retry: a watch the operator may not make (e.g. a namespaced install's
                # credentials in its own namespace) stays refused, and the periodic recheck covers it;
                # but again every tenth (minutes apart), so a feed that stays down stays visible.
                level = logging.WARNING if failures % 10 == 1 else logging.DEBUG
                log.log(level, "%r: %s; retrying in %.0fs", self, _describe(error), delay)
                await asyncio.sleep(delay)

    def _health(self, up: bool) -> None:
        if self.on_health is not None:
            self.on_health(up)

    def _deliver(self, event_type: str, body: Body) -> None:
        try:
            self.on_event(event_type, body)
        except Exception as error:
            meta = body.get("metadata") or {}
            log.error(
                "%r: handling %s of %s/%s failed (%s)",
                self,
                event_type,
                meta.get("namespace"),
                meta.get("name"),
                type(error).__name__,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )

    async def _relist(self) -> str:
        """List, and report what changed or vanished while no watch was running."""
        items, resource_version = await self._list()
        seen: dict[Key, Body] = {}
        for index, item in enumerate(items):
            if index and not index % RELIST_BATCH:
                await asyncio.sleep(0)  # thousands of objects: let leases and workers run in between
            body = self._project(item)
            meta = body["metadata"]
            key = (str(meta["namespace"]), str(meta["name"]))
            seen[key] = self._remember(body)
            known = self._known.get(key)
            if known is not None and known["metadata"].get("uid") != meta.get("uid"):
                self._deliver("DELETED", known)  # deleted and made again under the same name meanwhile
                known = None
            if known is None or known["metadata"]["resourceVersion"] != meta["resourceVersion"]:
                self._deliver("ADDED" if known is None else "MODIFIED", body)
        for key, body in self._known.items():
            if key not in seen:
                self._deliver("DELETED", body)  # as last seen
        self._known = seen
        return resource_version

    async def _watch(self, resource_version: str) -> str:
        """Follow events until the server closes the watch; the version to resume from."""
        async for event in self._stream(resource_version):
            body = self._project(event.get("object") or {})
            meta = body.get("metadata") or {}
            resource_version = str(meta.get("resourceVersion") or resource_version)
            if event.get("type") == "BOOKMARK":
                continue
            key = (str(meta.get("namespace")), str(meta.get("name")))
            if event.get("type") == "DELETED":
                self._known.pop(key, None)
            else:
                self._known[key] = self._remember(body)
            self._deliver(str(event.get("type")), body)
        return resource_version


class SecretWatch(ListWatch):
    """One selector (`labelSelector` or `fieldSelector` in `params`); events carry `metadata_only(secret)`."""

    def __init__(self, kube: Kube, namespace: str | None, params: dict[str, str], on_event: OnEvent) -> None:
        super().__init__(namespace, on_event)
        self.kube, self.params = kube, params

    def __repr__(self) -> str:
        return f"SecretWatch({self.namespace or '*'}, {self.params})"

    async def _list(self) -> tuple[list[Body], str]:
        return await self.kube.list_secrets(self.namespace, self.params)

    def _stream(self, resource_version: str) -> AsyncIterator[Body]:
        return self.kube.watch_secrets(self.namespace, self.params, resource_version)

    def _project(self, body: Body) -> Body:
        return metadata_only(body)


class TokenWatch(ListWatch):
    """Every StorageToken of the scope, whole; a deletion found by a list carries its identity only."""

    KIND = "StorageToken"

    def __init__(self, kube: Kube, namespace: str | None, on_event: OnEvent, on_health: OnHealth | None = None) -> None:
        super().__init__(namespace, on_event, on_health)
        self.kube = kube

    def __repr__(self) -> str:
        return f"TokenWatch({self.namespace or '*'})"

    async def _list(self) -> tuple[list[Body], str]:
        return await self.kube.list_custom(self.KIND, self.namespace)

    def _stream(self, resource_version: str) -> AsyncIterator[Body]:
        return self.kube.watch_custom(self.KIND, self.namespace, resource_version)

    def _remember(self, projected: Body) -> Body:
        return _identity(projected)
