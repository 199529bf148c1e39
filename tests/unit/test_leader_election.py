"""Leader election judged on our own clock, fenced by resourceVersion, stepping down in time.

The Lease API is an in-memory fake with the two semantics that matter: every write bumps
resourceVersion, and a replace carrying a stale one is refused with 409 (`Conflict`).
"""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage_token.kube.api import Conflict
from storage_token.kube.leader import LeaderElector

Body = dict[str, Any]
NS, NAME = "ops", "leader"
WALL = datetime(2030, 1, 1, tzinfo=UTC)


def micro(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeLeases:
    """get/create/replace of one Lease, with resourceVersion and 409 semantics."""

    def __init__(self) -> None:
        self.lease: Body | None = None
        self.version = 0
        self.block: asyncio.Event | None = None  # while set to an unset Event, every call hangs
        self.error: Exception | None = None
        self.read_barrier: asyncio.Barrier | None = None  # lets two candidates read before either writes

    async def _enter(self) -> None:
        if self.block is not None:
            await self.block.wait()
        if self.error is not None:
            raise self.error

    def _store(self, body: Body) -> Body:
        self.version += 1
        stored = copy.deepcopy(body)
        stored.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.lease = stored
        return copy.deepcopy(stored)

    async def get_lease(self, namespace: str, name: str) -> Body | None:
        await self._enter()
        found = copy.deepcopy(self.lease)
        if self.read_barrier is not None:
            await self.read_barrier.wait()
        return found

    async def create_lease(self, namespace: str, body: Body) -> Body | None:
        await self._enter()
        if self.lease is not None:
            raise Conflict("already exists")
        return self._store(body)

    async def replace_lease(self, namespace: str, name: str, body: Body) -> Body | None:
        await self._enter()
        if self.lease is None:
            return None
        sent = (body.get("metadata") or {}).get("resourceVersion")
        if sent is not None and sent != self.lease["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")
        return self._store(body)

    def written_by(self, holder: str, renew_time: datetime, duration: int = 15) -> None:
        """Another replica writes the lease (acquire or renew) with its own idea of the time."""
        self._store(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": NAME, "namespace": NS},
                "spec": {"holderIdentity": holder, "renewTime": micro(renew_time), "leaseDurationSeconds": duration},
            }
        )

    @property
    def holder(self) -> str | None:
        return None if self.lease is None else self.lease["spec"].get("holderIdentity")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def elector(
    leases: FakeLeases,
    identity: str,
    clock: Clock,
    lease_duration: timedelta = timedelta(seconds=15),
    renew_deadline: timedelta = timedelta(seconds=10),
) -> LeaderElector:
    return LeaderElector(
        leases,
        NS,
        NAME,
        identity,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        clock=lambda: WALL,
        monotonic=clock,
    )


async def test_a_live_holder_whose_clock_runs_behind_keeps_its_lease() -> None:
    leases, clock = FakeLeases(), Clock()
    standby = elector(leases, "b", clock)
    for _ in range(20):  # 40 s, the holder renewing every 2 s with a clock a minute behind
        leases.written_by("a", WALL - timedelta(seconds=60))
        assert not await standby.step()
        clock.now += 2
    assert leases.holder == "a"
    assert not standby.leading.is_set()


async def test_a_dead_holder_whose_clock_ran_ahead_is_taken_over_after_one_lease_duration() -> None:
    leases, clock = FakeLeases(), Clock()
    leases.written_by("a", WALL + timedelta(hours=1))  # then "a" dies
    standby = elector(leases, "b", clock)
    started = clock.now
    while not await standby.step():
        clock.now += 0.5
        assert clock.now - started <= 15, "not taken over one lease duration after the last observed change"
    assert clock.now - started == 15
    assert leases.holder == "b"
    assert standby.leading.is_set()


async def test_a_new_standby_does_not_trust_an_old_renew_time_it_never_saw_change() -> None:
    leases, clock = FakeLeases(), Clock()
    leases.written_by("a", WALL - timedelta(hours=1))  # "a" may be alive with a clock an hour behind
    standby = elector(leases, "b", clock)
    assert not await standby.step()
    clock.now += 14.9
    assert not await standby.step()
    clock.now += 0.1
    assert await standby.step()


async def test_of_two_candidates_reading_the_same_expired_lease_only_one_wins() -> None:
    leases, clock = FakeLeases(), Clock()
    leases.written_by("dead", WALL)
    first, second = elector(leases, "b", clock), elector(leases, "c", clock)
    assert not await first.step() and not await second.step()  # both start watching the record
    clock.now += 15
    leases.read_barrier = asyncio.Barrier(2)  # both read the same resourceVersion before either writes
    won = list(await asyncio.gather(first.step(), second.step()))
    assert sorted(won) == [False, True]
    winner = first if won[0] else second
    assert leases.holder == winner.identity
    assert [e.leading.is_set() for e in (first, second)] == won


async def test_the_leader_steps_down_at_once_when_it_reads_another_holder() -> None:
    leases, clock = FakeLeases(), Clock()
    leader = elector(leases, "a", clock)
    stepped_down: list[str] = []
    leader.add_step_down_callback(lambda: stepped_down.append("a"))
    assert await leader.step()
    # "a" stalled; "b" took the lease over (from its point of view "a" stopped renewing).
    clock.now += 1
    leases.written_by("b", WALL)
    assert not await leader.step()
    assert not leader.leading.is_set()
    assert stepped_down == ["a"]


async def test_the_leader_steps_down_at_its_renew_deadline_on_its_own_clock() -> None:
    leases, clock = FakeLeases(), Clock()
    leader = elector(leases, "a", clock, renew_deadline=timedelta(seconds=10), lease_duration=timedelta(seconds=15))
    assert await leader.step()
    renewed = clock.now
    leases.error = RuntimeError("apiserver unreachable")
    for _ in range(4):  # 2, 4, 6, 8 s after the last renewal
        clock.now += 2
        assert not await leader.step()
        assert leader.leading.is_set()
    clock.now = renewed + 10 - 1e-3
    assert leader.is_leading()
    assert leader._pause() == pytest.approx(1e-3)  # the loop wakes at the deadline
    clock.now = renewed + 10
    # The fence itself answers no at the deadline, before the election loop runs again.
    assert not leader.is_leading()
    assert not leader.leading.is_set()


async def test_a_hung_renewal_steps_the_leader_down_before_anyone_may_take_over() -> None:
    leases = FakeLeases()
    lease, deadline = 0.6, 0.3
    leader = LeaderElector(
        leases,
        NS,
        NAME,
        "a",
        lease_duration=timedelta(seconds=lease),
        renew_deadline=timedelta(seconds=deadline),
        renew_every=timedelta(seconds=0.05),
    )
    stepped_down: list[float] = []
    leader.add_step_down_callback(lambda: stepped_down.append(time.monotonic()))
    task = asyncio.create_task(leader.run())
    try:
        await asyncio.wait_for(leader.leading.wait(), 2)
        leases.block = asyncio.Event()  # every API call from now on hangs
        last_write = leases.version
        hung_at = time.monotonic()
        for _ in range(100):
            if stepped_down:
                break
            await asyncio.sleep(0.02)
        assert stepped_down, "the leader kept leading while its renewals hung"
        assert leases.version == last_write
        # A standby starts counting no earlier than it saw the last renewal, which is before hung_at.
        assert stepped_down[0] - hung_at < lease
        assert not leader.leading.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_stopping_the_election_steps_down() -> None:
    leases, clock = FakeLeases(), Clock()
    leader = elector(leases, "a", clock)
    stepped_down: list[bool] = []
    leader.add_step_down_callback(lambda: stepped_down.append(True))

    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    leader.sleep = no_sleep
    task = asyncio.create_task(leader.run())
    await asyncio.wait_for(leader.leading.wait(), 2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert stepped_down == [True]


def test_the_renew_deadline_must_leave_a_margin_before_the_lease_expires() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        LeaderElector(FakeLeases(), NS, NAME, "a", renew_deadline=timedelta(seconds=15))
