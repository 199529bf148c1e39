"""The Secret watches the operator keeps: its own Secrets by label, and each credentials Secret by
name, started and stopped as the providers that name them come and go."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from storage_token.kube.api import Kube
from storage_token.kube.list_watch import OnEvent, SecretWatch

SecretKey = tuple[str, str]  # (namespace, name)


class SecretFeeds:
    def __init__(self, kube: Kube, scopes: Iterable[str | None], label_selector: str, on_event: OnEvent) -> None:
        """`scopes`: the watched namespaces, or `[None]` for the whole cluster."""
        self.kube, self.on_event = kube, on_event
        self._owned = [SecretWatch(kube, scope, {"labelSelector": label_selector}, on_event) for scope in scopes]
        self._tasks: list[asyncio.Task[None]] = []
        self._named: dict[SecretKey, asyncio.Task[None]] = {}
        self._wanted: set[SecretKey] = set()
        self._running = False

    def start(self) -> None:
        self._running = True
        self._tasks = [asyncio.create_task(watch.run(), name=repr(watch)) for watch in self._owned]
        self.want(self._wanted)

    def want(self, secrets: Iterable[SecretKey]) -> None:
        """Watch exactly these credentials Secrets from now on (cheap to call with the same set)."""
        self._wanted = set(secrets)
        if not self._running:
            return
        for key in [key for key in self._named if key not in self._wanted]:
            self._named.pop(key).cancel()
        for namespace, name in self._wanted - set(self._named):
            watch = SecretWatch(self.kube, namespace, {"fieldSelector": f"metadata.name={name}"}, self.on_event)
            self._named[(namespace, name)] = asyncio.create_task(watch.run(), name=repr(watch))

    @property
    def watching(self) -> set[SecretKey]:
        return set(self._named)

    async def stop(self) -> None:
        self._running = False
        tasks = [*self._tasks, *self._named.values()]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks, self._named = [], {}
