"""A work queue with de-duplication and timed re-adds, and the workers that drain it.

Watch events only enqueue a key; workers reconcile the latest cached body.
One key is never reconciled twice at once; a key enqueued while it is being
reconciled runs again afterwards. Keys are served most overdue first: each
carries the wall-clock time its work became due (default: when it was added),
so after a restart relists every object, a revocation or renewal that is
already late runs before the check-ups of healthy objects. With lanes (the
Manager's: one per namespace) the lanes take turns, so one namespace's backlog
can't hold another's work, and with deadlines the work whose key expires
soonest goes first within a lane (see `WorkQueue`). Timers live in one
heap driven by one task, so thousands of idle tokens cost no CPU between their
renewals.

Workers are fenced by leadership: the gate is re-checked after a key is taken
(a worker parked in `get()` may wake long after a step-down), and a step-down
cancels the reconciles in flight. Either way the key goes back to the queue
with its due time, for this replica's next term or for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from storage_token.runtime import metrics

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)

RETRY_MIN, RETRY_MAX = 1.0, 60.0  # seconds, for reconciles that raised
URGENT_WITHIN = 300.0  # seconds; work with no deadline ranks as due this much later
NOT_LEADING_PAUSE = 0.05  # seconds; only if the gate stays set while `is_leading()` says no


class RetryLater(Exception):
    """An expected, transient failure (e.g. the API server refused a write): retried with backoff,
    logged as one line rather than a traceback."""


@runtime_checkable
class Leadership(Protocol):
    """What a leader-election gate offers beyond `asyncio.Event` (see `kube.leader.LeadingEvent`)."""

    def is_leading(self) -> bool:
        """True while this replica may act; also judges the renew deadline on our own clock."""
        ...

    def add_step_down_callback(self, callback: Callable[[], None]) -> None: ...


class WorkQueue(Generic[K]):
    """Keys waiting for a worker, served fairly between lanes and most urgent first within one.

    `lane(key)` names the key's lane (the Manager: its namespace); lanes with waiting keys take
    turns, one key each, so one namespace's backlog never holds another's work behind it.
    Within a lane the key with the smallest rank goes first: its due time, or, given
    `deadline(key)` (the epoch second its work must be done by, e.g. its key's expiry), the
    earlier of that deadline and its due time plus `slack` (work without a deadline, such as a
    first issuance, counts as due within `slack`; a key expiring sooner overtakes it).
    Without `lane` and `deadline`, keys are simply served earliest due first.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        lane: Callable[[K], Hashable] | None = None,
        deadline: Callable[[K], float | None] | None = None,
        slack: float = URGENT_WITHIN,
    ) -> None:
        self.clock, self.wall_clock = clock, wall_clock
        self._lane_of = lane or (lambda key: None)
        self._deadline_of = deadline
        self.slack = slack
        # lane -> heap of (rank, sequence, key); an entry whose sequence is no longer _queued[key]'s is stale.
        self._lanes: dict[Hashable, list[tuple[float, int, K]]] = {}
        self._turns: deque[Hashable] = deque()  # lanes with entries, in the order they are served
        self._queued: dict[K, tuple[float, float, int]] = {}  # key -> (rank, due, sequence)
        self._available = asyncio.Event()
        self._processing: dict[K, float] = {}  # key -> the due it was taken with (for put_back)
        self._dirty: dict[K, float] = {}
        self._timers: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._sequence = itertools.count()
        self._timer_changed = asyncio.Event()

    def rank(self, key: K, due: float) -> float:
        """Where `key`, due at `due`, stands in its lane: smaller goes first."""
        if self._deadline_of is None:
            return due
        deadline = self._deadline_of(key)
        return min(due + self.slack, deadline) if deadline is not None else due + self.slack

    def add(self, key: K, due: float | None = None) -> None:
        """Queue `key`; `due` (epoch seconds) is when its work became due, earlier runs first."""
        due = self.wall_clock() if due is None else due
        if key in self._processing:
            self._dirty[key] = min(due, self._dirty.get(key, due))
        else:
            rank = self.rank(key, due)
            current = self._queued.get(key)
            if current is None or rank < current[0]:
                sequence = next(self._sequence)
                self._queued[key] = (rank, min(due, current[1]) if current else due, sequence)
                lane = self._lane_of(key)
                heap = self._lanes.get(lane)
                if heap is None:
                    heap = self._lanes[lane] = []
                    self._turns.append(lane)
                heapq.heappush(heap, (rank, sequence, key))
                self._available.set()
            elif due < current[1]:
                self._queued[key] = (current[0], due, current[2])  # same place, earlier due kept for put_back
        metrics.set_queue_depth(len(self._queued))

    def _pop(self) -> K | None:
        """The head of the next lane in turn, or None when nothing is queued."""
        while self._turns:
            lane = self._turns.popleft()
            heap = self._lanes[lane]
            key: K | None = None
            while heap:
                _, sequence, candidate = heapq.heappop(heap)
                if self._queued.get(candidate, (0.0, 0.0, -1))[2] == sequence:
                    key = candidate
                    break
            while heap and self._queued.get(heap[0][2], (0.0, 0.0, -1))[2] != heap[0][1]:
                heapq.heappop(heap)  # stale entries at the head don't keep a lane in turn
            if heap:
                self._turns.append(lane)
            else:
                del self._lanes[lane]
            if key is not None:
                return key
        return None

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
            key = self._pop()
            if key is not None:
                break
            self._available.clear()
            await self._available.wait()
        _, due, _ = self._queued.pop(key)
        self._processing[key] = due
        metrics.set_queue_depth(len(self._queued))
        return key

    def done(self, key: K) -> None:
        self._processing.pop(key, None)
        if key in self._dirty:
            self.add(key, self._dirty.pop(key))

    def put_back(self, key: K) -> None:
        """End processing without doing the work: the key is queued again with the due it was taken with."""
        due = self._processing.pop(key, None)
        dirty = self._dirty.pop(key, None)
        dues = [d for d in (due, dirty) if d is not None]
        self.add(key, min(dues) if dues else None)

    def __len__(self) -> int:
        return len(self._queued)

    async def run_timers(self) -> None:
        while True:
            now = self.clock()
            while self._timers and self._timers[0][0] <= now:
                when, _, key = heapq.heappop(self._timers)
                if self._due.get(key) == when:
                    del self._due[key]
                    self.add(key, self.wall_clock() - (now - when))
            self._timer_changed.clear()
            timeout = self._timers[0][0] - now if self._timers else None
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that arrives as the
            # event is set (an add_at racing stop()), and this task then never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._timer_changed.wait()


Reconcile = Callable[[K], Coroutine[Any, Any, datetime | None]]


class Workers(Generic[K]):
    """`count` tasks running `reconcile(key)`; the returned wall-clock time schedules the next run.

    With a `gate`, work happens only while it is set, and `is_leading()` (default: the gate's own,
    when it is a `Leadership`, else `gate.is_set`) is asked again after each key is taken. A gate
    that is a `Leadership` also cancels the reconciles in flight when it steps down.
    """

    def __init__(
        self,
        name: str,
        queue: WorkQueue[K],
        reconcile: Reconcile[K],
        count: int,
        gate: asyncio.Event | None = None,
        is_leading: Callable[[], bool] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name, self.queue, self.reconcile, self.count = name, queue, reconcile, count
        self.gate, self.now = gate, now
        if is_leading is None:
            if isinstance(gate, Leadership):
                is_leading = gate.is_leading
            elif gate is not None:
                is_leading = gate.is_set
        self.is_leading = is_leading
        if isinstance(gate, Leadership):
            gate.add_step_down_callback(self.cancel_running)
        self._failures: dict[K, int] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._running: dict[K, asyncio.Task[datetime | None]] = {}

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"{self.name}-{i}") for i in range(self.count)]
        self._tasks.append(asyncio.create_task(self.queue.run_timers(), name=f"{self.name}-timers"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cancel_running(self) -> None:
        """Step-down: cancel every reconcile in flight; each key goes back to the queue."""
        for task in self._running.values():
            task.cancel()
        if self._running:
            log.warning("%s: cancelled %d reconciles in flight", self.name, len(self._running))

    async def _work(self) -> None:
        while True:
            if self.gate is not None:
                await self.gate.wait()
            key = await self.queue.get()
            if self.is_leading is not None and not self.is_leading():
                # Woken after a step-down: the key is not ours to work on now.
                self.queue.put_back(key)
                if self.gate is not None and self.gate.is_set():
                    await asyncio.sleep(NOT_LEADING_PAUSE)  # a predicate that disagrees with the gate: don't spin
                continue
            await self._process(key)

    async def _process(self, key: K) -> None:
        self.queue.reset_timer(key)
        task = asyncio.create_task(self.reconcile(key), name=f"{self.name}-reconcile")
        self._running[key] = task
        try:
            wakeup = await task
        except asyncio.CancelledError:
            self.queue.put_back(key)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this worker is being stopped
            log.info("%s reconcile of %s cancelled (step-down); left queued", self.name, key)
            return
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
            self.queue.add_at(key, self.queue.clock() + delay)
        else:
            self._failures.pop(key, None)
            metrics.record_reconcile(self.name, "ok")
            if wakeup is not None:
                delay = max((wakeup - self.now()).total_seconds(), 0.0)
                self.queue.add_at(key, self.queue.clock() + delay)
        finally:
            self._running.pop(key, None)
        self.queue.done(key)
