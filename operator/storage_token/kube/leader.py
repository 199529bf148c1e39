"""Leader election on a coordination.k8s.io Lease, so several replicas never act on one token at once.

kopf's own peering freezes every replica of equal priority and cannot pause
the operator's own timers, so replicas elect a leader here instead: all of
them watch and keep caches warm; only the leader reconciles. A leader that
cannot renew steps down before its lease can be taken over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from storage_token.kube.api import Conflict, Kube

log = logging.getLogger(__name__)


def _micro_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: timedelta = timedelta(seconds=15),
        renew_every: timedelta = timedelta(seconds=5),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_duration, self.renew_every, self.clock = lease_duration, renew_every, clock
        self.leading = asyncio.Event()
        self.on_start_leading: Callable[[], None] = lambda: None
        self._last_renewal: datetime | None = None

    async def run(self) -> None:
        while True:
            try:
                held = await self._try_acquire_or_renew()
            except Exception as error:  # noqa: BLE001 - any failure counts as "not renewed"
                log.warning("lease %s/%s: %s", self.namespace, self.name, error)
                held = False
            now = self.clock()
            if held:
                self._last_renewal = now
                if not self.leading.is_set():
                    log.info("became leader (%s)", self.identity)
                    self.leading.set()
                    self.on_start_leading()
            elif self.leading.is_set() and (
                self._last_renewal is None or now - self._last_renewal > self.lease_duration - self.renew_every
            ):
                # Step down before anyone else may take the lease over.
                log.warning("lost leadership (%s)", self.identity)
                self.leading.clear()
            await asyncio.sleep(self.renew_every.total_seconds())

    async def _try_acquire_or_renew(self) -> bool:
        now = self.clock()
        lease = await self.kube.get_lease(self.namespace, self.name)
        spec: dict[str, Any] = {
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
                await self.kube.create_lease(self.namespace, body)
            except Conflict:
                return False
            return True
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        renewed = _parse_micro_time(current.get("renewTime"))
        duration = timedelta(seconds=int(current.get("leaseDurationSeconds") or 0))
        expired = renewed is None or now > renewed + duration
        if holder not in (self.identity, None, "") and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**current, **spec}
        try:
            return await self.kube.replace_lease(self.namespace, self.name, lease) is not None
        except Conflict:
            return False
