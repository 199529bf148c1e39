"""Leader election on a coordination.k8s.io Lease, so several replicas never act on one token at once.

kopf's own peering freezes every replica of equal priority and cannot pause
the operator's own timers, so replicas elect a leader here instead: all of
them watch and keep caches warm; only the leader reconciles.

Time is judged as client-go judges it, on this process's own monotonic clock,
never by the timestamps another replica wrote:

- a standby counts a lease as expired only after `lease_duration` in which it
  observed no change to the lease (holder, renewTime or resourceVersion);
- the leader stops leading once `renew_deadline` has passed since it *sent*
  its last successful renewal, so it has stepped down before any standby
  (which started counting no earlier than that request) may take over;
  the margin is `lease_duration - renew_deadline`;
- every write carries the resourceVersion it read, so of two candidates that
  read the same expired lease only one can win (the other gets 409).

`LeaderElector.leading` is the gate the workers wait on; its `is_leading()`
also checks the deadline itself, and its step-down callbacks cancel the work
in flight.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from storage_token.kube.api import Conflict

log = logging.getLogger(__name__)

Body = dict[str, Any]


class LeaseApi(Protocol):
    """The three calls of `kube.api.Kube` the election makes."""

    async def get_lease(self, namespace: str, name: str) -> Body | None: ...
    async def create_lease(self, namespace: str, body: Body) -> Body | None: ...
    async def replace_lease(self, namespace: str, name: str, body: Body) -> Body | None: ...


def _micro_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeadingEvent(asyncio.Event):
    """Set while this replica leads. Clearing it is the step-down: the callbacks run once per term.

    `is_leading()` is the fence to ask right before acting: it also steps down when the
    renew deadline has passed, even if the election loop has not run since (e.g. the
    event loop was stalled).
    """

    def __init__(self, fence: Callable[[], bool] = lambda: True) -> None:
        super().__init__()
        self.fence = fence
        self._step_down_callbacks: list[Callable[[], None]] = []

    def add_step_down_callback(self, callback: Callable[[], None]) -> None:
        self._step_down_callbacks.append(callback)

    def is_leading(self) -> bool:
        if self.is_set() and not self.fence():
            log.warning("lost leadership: renew deadline passed")
            self.clear()
        return self.is_set()

    def clear(self) -> None:
        was_set = self.is_set()
        super().clear()
        if not was_set:
            return
        for callback in list(self._step_down_callbacks):
            try:
                callback()
            except Exception:  # one broken callback must not keep the others from stopping work
                log.exception("step-down callback %r failed", callback)


class _Outcome(enum.Enum):
    HELD = "held"  # we hold the lease (created, acquired or renewed)
    TAKEN = "taken"  # someone else holds an unexpired lease
    FAILED = "failed"  # no answer, an error, or a lost write race: unknown


class LeaderElector:
    def __init__(
        self,
        kube: LeaseApi,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: timedelta = timedelta(seconds=15),
        renew_every: timedelta = timedelta(seconds=2),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        renew_deadline: timedelta = timedelta(seconds=10),
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`clock` is only written into the Lease (renewTime, acquireTime) for humans; every
        decision uses `monotonic`. `renew_every` is the pause between attempts."""
        if not timedelta(0) < renew_every < renew_deadline < lease_duration:
            raise ValueError("leader election needs 0 < renew_every < renew_deadline < lease_duration")
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_duration, self.renew_every, self.renew_deadline = lease_duration, renew_every, renew_deadline
        self.clock, self.monotonic, self.sleep = clock, monotonic, sleep
        self.leading = LeadingEvent(fence=self._within_renew_deadline)
        self.on_start_leading: Callable[[], None] = lambda: None
        self._renewed_at = float("-inf")  # monotonic time our last successful renewal was sent
        self._observed: tuple[Any, ...] | None = None  # the lease record last seen
        self._observed_at = float("-inf")  # monotonic time we first saw that record

    # -- the API the rest of the operator uses -----------------------------------------
    def is_leading(self) -> bool:
        return self.leading.is_leading()

    def add_step_down_callback(self, callback: Callable[[], None]) -> None:
        self.leading.add_step_down_callback(callback)

    async def run(self) -> None:
        try:
            while True:
                await self.step()
                await self.sleep(self._pause())
        finally:
            self.leading.clear()  # stopped: no more work, even if the lease lingers until it expires

    # -- one round ---------------------------------------------------------------------------
    async def step(self) -> bool:
        """One attempt to acquire or renew; steps down if the renew deadline has passed. True if held."""
        started = self.monotonic()
        leading = self.leading.is_set()
        budget = (self._renewed_at + self.renew_deadline.total_seconds() - started) if leading else None
        outcome = _Outcome.FAILED
        if budget is None or budget > 0:
            try:
                async with asyncio.timeout(budget if budget is not None else self.renew_deadline.total_seconds()):
                    outcome = await self._try_acquire_or_renew()
            except TimeoutError:
                log.warning("lease %s/%s: no answer in time", self.namespace, self.name)
            except Exception as error:  # noqa: BLE001 - any failure counts as "not renewed"
                log.warning("lease %s/%s: %s", self.namespace, self.name, error)
        if outcome is _Outcome.HELD:
            self._renewed_at = started  # the earliest moment the write can have landed: conservative
            if not self.leading.is_set():
                log.info("became leader (%s)", self.identity)
                self.leading.set()
                self.on_start_leading()
            return True
        if self.leading.is_set():
            if outcome is _Outcome.TAKEN:
                log.warning("lost leadership (%s): the lease is held by another replica", self.identity)
                self.leading.clear()
            elif not self._within_renew_deadline():
                log.warning("lost leadership (%s): not renewed within %s", self.identity, self.renew_deadline)
                self.leading.clear()
        return False

    def _within_renew_deadline(self) -> bool:
        return self.monotonic() - self._renewed_at < self.renew_deadline.total_seconds()

    def _pause(self) -> float:
        """Until the next attempt; a leader also wakes at its renew deadline to step down on time."""
        pause = self.renew_every.total_seconds()
        if self.leading.is_set():
            left = self._renewed_at + self.renew_deadline.total_seconds() - self.monotonic()
            pause = min(pause, max(left, 0.0))
        return pause

    def _observe(self, lease: Body) -> None:
        spec = lease.get("spec") or {}
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            (lease.get("metadata") or {}).get("resourceVersion"),
        )
        if record != self._observed:
            self._observed, self._observed_at = record, self.monotonic()

    def _observed_expired(self, spec: Body) -> bool:
        seconds = int(spec.get("leaseDurationSeconds") or 0) or self.lease_duration.total_seconds()
        return self.monotonic() >= self._observed_at + seconds

    async def _try_acquire_or_renew(self) -> _Outcome:
        lease = await self.kube.get_lease(self.namespace, self.name)
        now = self.clock()
        spec: Body = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration.total_seconds()),
            "renewTime": _micro_time(now),
        }
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": _micro_time(now), "leaseTransitions": 0},
            }
            try:
                created = await self.kube.create_lease(self.namespace, body)
            except Conflict:
                return _Outcome.FAILED  # another candidate created it first
            self._observe(created or body)
            return _Outcome.HELD
        self._observe(lease)
        metadata = lease.get("metadata") or {}
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        if holder not in (self.identity, None, "") and not self._observed_expired(current):
            return _Outcome.TAKEN
        version = metadata.get("resourceVersion")
        if not version:
            return _Outcome.FAILED  # a write without it could not lose a race, so don't send one
        if holder != self.identity:
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        body = {**lease, "metadata": {**metadata, "resourceVersion": version}, "spec": {**current, **spec}}
        try:
            written = await self.kube.replace_lease(self.namespace, self.name, body)
        except Conflict:
            return _Outcome.FAILED  # changed since we read it: judge again next round
        if written is None:
            return _Outcome.FAILED  # deleted meanwhile
        self._observe(written)
        return _Outcome.HELD
