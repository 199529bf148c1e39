"""Workers act only while leading: re-checked after each key is taken, cancelled on step-down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from storage_token.kube.leader import LeadingEvent
from storage_token.runtime.workers import Workers, WorkQueue


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(20):
        await asyncio.sleep(0)


class Recorder:
    """A reconcile that records each start and, while `hold` is unset, blocks."""

    def __init__(self, hold: bool = False) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, key: str) -> datetime | None:
        self.started.append(key)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(key)
            raise
        self.finished.append(key)
        return None


async def test_idle_workers_parked_in_get_do_not_reconcile_after_step_down() -> None:
    """The reviewer's repro: 16 idle workers, step down, enqueue 20 keys."""
    gate = asyncio.Event()
    gate.set()
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    workers = Workers("tokens", queue, reconcile, 16, gate=gate)
    workers.start()
    try:
        await settle()  # all 16 wait in queue.get()
        gate.clear()
        now = time.time()
        keys = [f"t{i:02d}" for i in range(20)]
        for i, key in enumerate(keys):
            queue.add(key, now - 100 + i)  # t00 is the most overdue
        await settle()
        await asyncio.sleep(0.05)
        assert reconcile.started == [], f"{len(reconcile.started)} reconciles ran while not leading"
        assert len(queue) == 20
        gate.set()  # leading again: every key still there, most overdue first
        await until(lambda: len(reconcile.finished) == 20)
        assert reconcile.started == keys
    finally:
        await workers.stop()


async def test_a_key_put_back_keeps_its_due() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("late", time.time() - 60)
    assert await queue.get() == "late"
    queue.add("fresh")
    queue.put_back("late")
    assert [await queue.get(), await queue.get()] == ["late", "fresh"]
    # A change seen while the key was taken keeps the earlier of the two dues.
    queue.add("other")
    queue.put_back("fresh")
    assert await queue.get() == "fresh"
    queue.add("fresh", time.time() - 300)
    queue.put_back("fresh")
    assert [await queue.get(), await queue.get()] == ["fresh", "other"]


async def test_the_leadership_fence_is_asked_after_a_key_is_taken() -> None:
    """The gate is still set but the renew deadline has passed: the worker steps down instead of acting."""
    allowed = [True]
    leading = LeadingEvent(fence=lambda: allowed[0])
    leading.set()
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    workers = Workers("tokens", queue, reconcile, 4, gate=leading)
    workers.start()
    try:
        await settle()
        allowed[0] = False
        queue.add("a")
        await settle()
        assert reconcile.started == []
        assert not leading.is_set(), "the fence stepped down"
        assert len(queue) == 1
    finally:
        await workers.stop()


async def test_step_down_cancels_reconciles_in_flight_and_leaves_their_keys_queued() -> None:
    leading = LeadingEvent()
    leading.set()
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder(hold=True)
    workers = Workers("tokens", queue, reconcile, 4, gate=leading)
    workers.start()
    try:
        queue.add("a", time.time() - 30)
        queue.add("b")
        await until(lambda: len(reconcile.started) == 2)
        leading.clear()
        await until(lambda: len(reconcile.cancelled) == 2)
        await settle()
        assert sorted(reconcile.cancelled) == ["a", "b"]
        assert len(queue) == 2, "the cancelled keys wait for the next term"
        assert all(not t.done() for t in workers._tasks), "workers survive a step-down"
        reconcile.release.set()
        leading.set()
        await until(lambda: len(reconcile.finished) == 2)
        assert reconcile.started[2:] == ["a", "b"], "the more overdue key first again"
    finally:
        await workers.stop()


async def test_stopping_workers_propagates_cancellation_and_keeps_the_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder(hold=True)
    workers = Workers("tokens", queue, reconcile, 2)
    workers.start()
    queue.add("a")
    await until(lambda: reconcile.started == ["a"])
    tasks = list(workers._tasks)
    await workers.stop()
    assert reconcile.cancelled == ["a"]
    assert all(t.cancelled() for t in tasks), "a worker swallowed its CancelledError"
    assert len(queue) == 1, "the interrupted key is still queued"
