"""Revoke on adoption: has every consumer of a rotation switched, and when may a shared workload restart.

After a rotation the old key waits for the token's `restartTargets`: each is restarted (a pod-template
annotation) and followed until its controller has rolled every replica onto the new pod template.
The old key goes as soon as the last one has, but never before the grace period (the floor) and never
after `maxRevokeDelay` or its own expiry (the ceiling). Pure: workload bodies and times in, decisions out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from storage_token.api.times import format_time, parse_time
from storage_token.api.token import PendingRevocation
from storage_token.policy.schedule import revocation_due

# Target states. Waiting ones hold the old key; NotFound and Refused workloads consume nothing of ours.
RESTART_PENDING = "RestartPending"
RESTART_FAILED = "RestartFailed"
ROLLING = "Rolling"
ADOPTED = "Adopted"
NOT_FOUND = "NotFound"
REFUSED = "Refused"
WAITING = frozenset({RESTART_PENDING, RESTART_FAILED, ROLLING})
NOT_CONSUMERS = frozenset({NOT_FOUND, REFUSED})

CONDITION = "ConsumersUpdated"
# Condition reasons
ALL_SWITCHED = "AllConsumersSwitched"
ROLLING_OUT = "RolloutInProgress"
RESTART_FAILING = "RestartFailing"
CEILING_REACHED = "MaxRevokeDelayReached"
# Event reasons: the last consumer switched; the ceiling revoked a key before every consumer had.
EVENT_SWITCHED = "ConsumersSwitched"
EVENT_FORCED = "RevokedBeforeAdoption"

POLL = timedelta(seconds=30)  # re-read rolling workloads this often even if a watch event is missed


def precise_time(value: datetime) -> str:
    """Microseconds kept: "restarted after the Secret write" must not be blurred within a second."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class TargetState:
    kind: str
    name: str
    state: str = RESTART_PENDING
    generation: int = 0  # the workload generation carrying the restart: its controller must observe it
    message: str = ""
    attempts: int = 0  # failed restart patches
    next_attempt: datetime | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> TargetState:
        return cls(
            kind=raw.get("kind", ""),
            name=raw.get("name", ""),
            state=raw.get("state") or RESTART_PENDING,
            generation=int(raw.get("generation") or 0),
            message=raw.get("message", ""),
            attempts=int(raw.get("attempts") or 0),
            next_attempt=parse_time(raw.get("nextAttempt")),
        )

    def to_status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "state": self.state,
            "generation": self.generation,
            "message": self.message[:512],
            "attempts": self.attempts,
            "nextAttempt": format_time(self.next_attempt),
        }


@dataclass(frozen=True)
class Rollout:
    """One rotation's way to its consumers: `started_at` is the Secret write (a restart after it covers it)."""

    revision: int
    started_at: datetime
    targets: tuple[TargetState, ...] = ()
    completed_at: datetime | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Rollout | None:
        if not raw or not raw.get("startedAt"):
            return None
        started = parse_time(raw.get("startedAt"))
        assert started is not None
        return cls(
            revision=int(raw.get("revision") or 0),
            started_at=started,
            targets=tuple(TargetState.parse(t) for t in raw.get("targets") or ()),
            completed_at=parse_time(raw.get("completedAt")),
        )

    @property
    def total(self) -> int:
        return sum(1 for t in self.targets if t.state not in NOT_CONSUMERS)

    @property
    def adopted(self) -> int:
        return sum(1 for t in self.targets if t.state == ADOPTED)

    @property
    def done(self) -> bool:
        return not any(t.state in WAITING for t in self.targets)

    def to_status(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "startedAt": precise_time(self.started_at),
            "completedAt": format_time(self.completed_at),
            "adopted": self.adopted,
            "total": self.total,
            "progress": f"{self.adopted}/{self.total}",
            "targets": [t.to_status() for t in self.targets],
        }


def new_rollout(revision: int, targets: Iterable[tuple[str, str]], now: datetime) -> Rollout:
    return Rollout(revision, now, tuple(TargetState(kind, name) for kind, name in targets))


def revocation_window(
    grace: timedelta, max_delay: timedelta, now: datetime, not_after: datetime | None
) -> tuple[datetime, datetime]:
    """(floor, ceiling) for a key replaced now: the grace period, then at most `max_delay` (never below
    the grace), both capped at the key's own expiry."""
    return revocation_due(grace, now, not_after), revocation_due(max(grace, max_delay), now, not_after)


def restart_moment(
    started_at: datetime, last_restart: datetime | None, interval: timedelta, now: datetime
) -> datetime | None:
    """When to restart a target for a rotation whose Secret was written at `started_at`.

    None: a restart at or after that write (another token's, sharing the workload) already covers it.
    Otherwise one `interval` after the write, so the rotations of other tokens sharing the workload
    within that window are covered by the same restart; restarts of a workload are thereby always
    at least `interval` apart (a restart's window starts after the previous restart).
    """
    if last_restart is not None and last_restart >= started_at:
        return None
    return max(started_at + interval, now)


def workload_progress(kind: str, workload: Mapping[str, Any], generation: int) -> tuple[bool, str]:
    """(switched, what is left): its controller observed the restart and every replica runs the new template."""
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return False, f"its controller has not observed generation {generation} yet (at {observed})"
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        counts = {
            "updated": int(status.get("updatedNumberScheduled") or 0),
            "ready": int(status.get("numberReady") or 0),
            "available": int(status.get("numberAvailable") or 0),
        }
        old = 0
    else:
        replicas = spec.get("replicas")
        desired = 1 if replicas is None else int(replicas)
        counts = {
            "updated": int(status.get("updatedReplicas") or 0),
            "ready": int(status.get("readyReplicas") or 0),
            "available": int(status.get("availableReplicas") or 0),
        }
        # Pods of the old template still running (e.g. a surge not yet scaled down) still hold the old key.
        old = max(int(status.get("replicas") or 0) - counts["updated"], 0)
    if all(count == desired for count in counts.values()) and old == 0:
        return True, f"{desired}/{desired} replicas updated, ready and available"
    parts = ", ".join(f"{count}/{desired} {what}" for what, count in counts.items())
    if old:
        parts += f", {old} old replica(s) left"
    stalled = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or ()
    )
    return False, parts + ("; its progress deadline was exceeded" if stalled else "")


def release(pending: Iterable[PendingRevocation], revision: int, now: datetime) -> list[PendingRevocation]:
    """The rollout of `revision` is complete: keys waiting on it (or an earlier one) are due at their floor."""
    released = []
    for entry in pending:
        if 0 < entry.awaiting_rollout <= revision:
            due = max(entry.not_before or now, now)
            entry = replace(entry, awaiting_rollout=0, not_before=None, due_at=min(due, entry.due_at))
        released.append(entry)
    return released


def summary(rollout: Rollout, forced: bool) -> tuple[bool, str, str]:
    """The ConsumersUpdated condition: (status, reason, message). `forced`: the ceiling revoked a key early."""
    progress = f"{rollout.adopted}/{rollout.total} consumers switched to revision {rollout.revision}"
    if rollout.done:
        return True, ALL_SWITCHED, progress
    waiting = [t for t in rollout.targets if t.state in WAITING]
    detail = "; ".join(f"{t.kind} {t.name}: {t.state}{' (' + t.message + ')' if t.message else ''}" for t in waiting)
    if forced:
        return False, CEILING_REACHED, f"{progress}; maxRevokeDelay revoked the old key first; {detail}"[:1024]
    if any(t.state == RESTART_FAILED for t in waiting):
        return False, RESTART_FAILING, f"{progress}; {detail}"[:1024]
    return False, ROLLING_OUT, f"{progress}; {detail}"[:1024]


def workload_event_moves(
    status: Mapping[str, Any] | None,
    kind: str,
    name: str,
    workload: Mapping[str, Any],
    restarted_at: datetime | None,
) -> bool:
    """Does this event of workload `kind`/`name` move one of the token's waiting targets on? A target
    waiting for its restart only when a restart after its Secret write covers it (its own timer
    restarts it otherwise); a rolling one only once the workload has rolled out (POLL meanwhile)."""
    raw = (status or {}).get("rollout") or {}
    started = parse_time(raw.get("startedAt"))
    for t in raw.get("targets") or ():
        if t.get("kind") != kind or t.get("name") != name:
            continue
        state = t.get("state") or RESTART_PENDING
        if state in (RESTART_PENDING, RESTART_FAILED):
            if restarted_at is not None and started is not None and restarted_at >= started:
                return True
            continue
        if state == ROLLING and workload_progress(kind, workload, int(t.get("generation") or 0))[0]:
            return True
    return False
