"""A work queue with de-duplication and timed re-adds, and the workers that drain it.

Watch events only enqueue a key; workers reconcile the latest cached body.
One key is never reconciled twice at once; a key enqueued while it is being
reconciled runs again afterwards. Keys are served most overdue first: each
carries the wall-clock time its work became due (default: when it was added),
so after a restart relists every object, a revocation or renewal that is
already late runs before the check-ups of healthy objects. Timers live in one
heap driven by one task, so thousands of idle tokens cost no CPU between their
renewals.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from storage_token import metrics

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)

RETRY_MIN, RETRY_MAX = 1.0, 60.0  # seconds, for reconciles that raised


class RetryLater(Exception):
    """An expected, transient failure (e.g. the API server refused a write): retried with backoff,
    logged as one line rather than a traceback."""


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        # (due, sequence, key); an entry whose due no longer matches _queued[key] is stale and skipped.
        self._ready: asyncio.PriorityQueue[tuple[float, int, K]] = asyncio.PriorityQueue()
        self._queued: dict[K, float] = {}
        self._processing: set[K] = set()
        self._dirty: dict[K, float] = {}
        self._timers: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._sequence = itertools.count()
        self._timer_changed = asyncio.Event()

    def add(self, key: K, due: float | None = None) -> None:
        """Queue `key`; `due` (epoch seconds) is when its work became due, earlier runs first."""
        due = time.time() if due is None else due
        if key in self._processing:
            self._dirty[key] = min(due, self._dirty.get(key, due))
        elif due < self._queued.get(key, float("inf")):
            self._queued[key] = due
            self._ready.put_nowait((due, next(self._sequence), key))
        metrics.set_queue_depth(len(self._queued))

    def add_at(self, key: K, when: float) -> None:
        """Enqueue `key` at monotonic time `when`; an earlier timer for it wins over a later one."""
        current = self._due.get(key)
        if current is not None and current <= when:
            return
        self._due[key] = when
        heapq.heappush(self._timers, (when, next(self._sequence), key))
        self._timer_changed.set()

    def forget(self, key: K) -> None:
        self._due.pop(key, None)  # the heap entry is skipped when it surfaces

    def reset_timer(self, key: K) -> None:
        """Drop the key's timer before a reconcile sets the next one."""
        self._due.pop(key, None)

    async def get(self) -> K:
        while True:
            due, _, key = await self._ready.get()
            if self._queued.get(key) == due:
                break
        del self._queued[key]
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self.add(key, self._dirty.pop(key))

    def __len__(self) -> int:
        return len(self._queued)

    async def run_timers(self) -> None:
        while True:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                when, _, key = heapq.heappop(self._timers)
                if self._due.get(key) == when:
                    del self._due[key]
                    self.add(key, time.time() - (now - when))
            self._timer_changed.clear()
            timeout = self._timers[0][0] - now if self._timers else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_changed.wait(), timeout)


Reconcile = Callable[[K], Awaitable[datetime | None]]


class Workers(Generic[K]):
    """`count` tasks running `reconcile(key)`; the returned wall-clock time schedules the next run."""

    def __init__(
        self, name: str, queue: WorkQueue[K], reconcile: Reconcile[K], count: int, gate: asyncio.Event | None = None
    ) -> None:
        self.name, self.queue, self.reconcile, self.count = name, queue, reconcile, count
        self.gate = gate  # when given, work only while it is set (leader election)
        self._failures: dict[K, int] = {}
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"{self.name}-{i}") for i in range(self.count)]
        self._tasks.append(asyncio.create_task(self.queue.run_timers(), name=f"{self.name}-timers"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            if self.gate is not None:
                await self.gate.wait()
            key = await self.queue.get()
            try:
                self.queue.reset_timer(key)
                wakeup = await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(RETRY_MIN * 2 ** (failures - 1), RETRY_MAX)
                message = "%s reconcile of %s failed (attempt %d); retrying in %.0fs"
                if isinstance(error, RetryLater):
                    log.warning(message + ": %s", self.name, key, failures, delay, error)
                else:
                    log.exception(message, self.name, key, failures, delay)
                metrics.record_reconcile(self.name, "error")
                self.queue.add_at(key, time.monotonic() + delay)
            else:
                self._failures.pop(key, None)
                metrics.record_reconcile(self.name, "ok")
                if wakeup is not None:
                    delay = max((wakeup - datetime.now(UTC)).total_seconds(), 0.0)
                    self.queue.add_at(key, time.monotonic() + delay)
            finally:
                self.queue.done(key)
