"""The small parts scheduling rests on: durations, the token bucket, the work queue."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage_token.api.durations import format_duration, parse_duration
from storage_token.runtime.ratelimit import TokenBucket
from storage_token.runtime.workers import WorkQueue


@pytest.mark.parametrize(
    ("text", "seconds"), [("90m", 5400), ("24h", 86400), ("1h30m", 5400), ("45s", 45), ("0s", 0), ("1.5h", 5400)]
)
def test_go_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "7d", "h", "10", "1h-5m", "abc"])
def test_bad_durations_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**7))
def test_durations_round_trip(seconds: int) -> None:
    from datetime import timedelta

    assert parse_duration(format_duration(timedelta(seconds=seconds))).total_seconds() == seconds


async def test_token_bucket_lets_a_burst_through_then_paces() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0], sleep=sleep)
    waits = [await bucket.acquire() for _ in range(7)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert all(w == pytest.approx(0.5) for w in waits[3:])
    assert now[0] == pytest.approx(2.0)


async def test_work_queue_deduplicates_and_reruns_a_key_changed_while_processing() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    key = await queue.get()
    assert key == "a"
    queue.add("a")  # changed while being reconciled
    queue.done("a")
    assert [await queue.get(), await queue.get()] == ["b", "a"]


async def test_work_queue_timers_fire_the_earliest_request() -> None:
    queue: WorkQueue[str] = WorkQueue()
    timers = asyncio.create_task(queue.run_timers())
    try:
        queue.add_at("later", time.monotonic() + 5)
        queue.add_at("later", time.monotonic() + 0.05)  # an earlier time wins
        queue.add_at("soon", time.monotonic() + 0.02)
        got = [await asyncio.wait_for(queue.get(), 2), await asyncio.wait_for(queue.get(), 2)]
        assert got == ["soon", "later"]
        queue.add_at("gone", time.monotonic() + 0.02)
        queue.forget("gone")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), 0.2)
    finally:
        timers.cancel()


async def test_work_queue_serves_overdue_work_first() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("healthy")
    queue.add("new")
    queue.add("revocation late by a minute", time.time() - 60)
    queue.add("renewal late by a second", time.time() - 1)
    got = [await queue.get() for _ in range(4)]
    assert got == ["revocation late by a minute", "renewal late by a second", "healthy", "new"]


async def test_work_queue_moves_a_key_ahead_once_and_serves_it_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("b")
    queue.add("b", time.time() - 10)  # became overdue: ahead of "a"
    queue.add("b")  # a later due does not move it back
    assert len(queue) == 2
    assert [await queue.get(), await queue.get()] == ["b", "a"]
    with pytest.raises(TimeoutError):  # the superseded entry of "b" is not served again
        await asyncio.wait_for(queue.get(), 0.1)


async def test_work_queue_keeps_the_earliest_due_of_a_key_changed_while_processing() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("b")
    queue.add("a", time.time() - 30)  # while "a" is being reconciled
    queue.add("a")
    queue.done("a")
    assert [await queue.get(), await queue.get()] == ["a", "b"]
