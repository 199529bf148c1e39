"""The StorageToken watches: one per watched namespace, or one for the whole cluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from functools import partial

from storage_token.kube.api import Kube
from storage_token.kube.list_watch import OnEvent, TokenWatch
from storage_token.runtime import metrics


class TokenFeeds:
    def __init__(self, kube: Kube, scopes: Iterable[str | None], on_event: OnEvent) -> None:
        """`scopes`: the watched namespaces, or `[None]` for the whole cluster. Each scope's health is the
        `token_watch_up` gauge: down until its first list, so an operator that never lists is seen too."""
        self._watches = []
        for scope in scopes:
            label = scope or "*"
            metrics.set_token_watch_up(label, False)
            self._watches.append(TokenWatch(kube, scope, on_event, partial(metrics.set_token_watch_up, label)))
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(watch.run(), name=repr(watch)) for watch in self._watches]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
