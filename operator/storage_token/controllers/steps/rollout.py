"""Following a rotation to its consumers: restart each target, watch it roll out, then let the old key go.

`status.rollout` is the whole state: the revision, each target's state and `adopted/total`. The old
key's queue entry waits on it (`awaitingRollout`, due at the ceiling); when the last target has
switched, the entry becomes due at its floor and the revocation step takes it from there.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from storage_token.api.conditions import condition, set_condition
from storage_token.api.status_patch import StatusPatch
from storage_token.api.times import format_time
from storage_token.api.token import TokenStatus
from storage_token.controllers.steps.base import KIND, Outcome, Unwritten
from storage_token.controllers.steps.restarts import RestartSteps
from storage_token.kube.api import ApiError
from storage_token.policy.rollout import (
    ADOPTED,
    CEILING_REACHED,
    CONDITION,
    EVENT_SWITCHED,
    NOT_FOUND,
    POLL,
    RESTART_FAILED,
    RESTART_PENDING,
    ROLLING,
    Rollout,
    TargetState,
    release,
    summary,
    workload_progress,
)

log = logging.getLogger(__name__)


class RolloutSteps(RestartSteps):
    async def _advance_rollout(self, token: dict[str, Any], outcome: Outcome) -> Outcome:
        """One look at every target of the rotation in progress; release the old key once all switched."""
        raw_status = token.get("status") or {}
        rollout = Rollout.parse(raw_status.get("rollout"))
        if rollout is None or rollout.completed_at is not None:
            return outcome
        now = self.clock()
        secret_name = raw_status.get("secretName") or token["metadata"]["name"]
        targets: list[TargetState] = []
        wakeups = [w for w in (outcome.wakeup,) if w is not None]
        for target in rollout.targets:
            moved, wakeup = await self._follow(token, secret_name, rollout, target, now)
            targets.append(moved)
            if wakeup is not None:
                wakeups.append(wakeup)
        updated = replace(rollout, targets=tuple(targets))
        status = TokenStatus.parse(raw_status)
        pending = list(status.pending_revocations)
        just_done = updated.done
        if just_done:
            updated = replace(updated, completed_at=now)
            pending = release(pending, updated.revision, now)
        elif any(t.state == ROLLING for t in targets):
            wakeups.append(now + POLL)  # the workload watch is faster; this is the safety net
        previous = condition(raw_status.get("conditions"), CONDITION)
        forced = previous is not None and previous.get("reason") == CEILING_REACHED
        state, reason, message = summary(updated, forced and not just_done)
        patch = StatusPatch()
        if updated.to_status() != rollout.to_status():
            patch.rollout = updated
        if pending != list(status.pending_revocations):
            patch.pending_revocations = pending
        if previous is None or (previous.get("reason"), previous.get("message")) != (reason, message):
            generation = int(token["metadata"].get("generation") or 0)
            conditions = raw_status.get("conditions") or []
            patch.conditions = set_condition(conditions, CONDITION, state, reason, message, now, generation)
        wakeups += [p.due_at for p in pending]
        wakeup = max(min(wakeups), now) if wakeups else None
        if not patch:
            return Outcome(wakeup=wakeup, body=token)
        # The revocation step writes this with its own: the key the last switch released goes in the same
        # write, one PATCH per adoption instead of two. The event follows the write.
        after = (lambda: self._announce(token, updated, pending, status)) if just_done else None
        preview = {**token, "status": patch.applied_to(raw_status)}
        return Outcome(wakeup=wakeup, body=preview, unwritten=Unwritten(patch, token, after))

    async def _follow(
        self, token: dict[str, Any], secret_name: str, rollout: Rollout, target: TargetState, now: datetime
    ) -> tuple[TargetState, datetime | None]:
        if target.state in (RESTART_PENDING, RESTART_FAILED):
            return await self._restart_target(token, secret_name, target, rollout.started_at, now)
        if target.state != ROLLING:
            return target, None
        meta = token["metadata"]
        watched = self.shared.workloads.get((target.kind, meta["namespace"], target.name))
        if watched is not None:  # the watch showed it rolled out: one GET fewer per adoption
            switched, message = workload_progress(target.kind, watched, target.generation)
            if switched:
                return replace(target, state=ADOPTED, message=message), None
        try:
            workload = await self.kube.get_workload(target.kind, meta["namespace"], target.name)
        except (ApiError, OSError) as error:
            log.warning("reading %s %s/%s failed: %s", target.kind, meta["namespace"], target.name, error)
            return target, now + POLL
        if workload is None:  # deleted mid-rollout: nothing of it uses the old key any more
            return replace(target, state=NOT_FOUND, message="deleted during the rollout"), None
        switched, message = workload_progress(target.kind, workload, target.generation)
        return replace(target, state=ADOPTED if switched else ROLLING, message=message), None

    async def _announce(self, token: dict[str, Any], rollout: Rollout, pending: list[Any], before: TokenStatus) -> None:
        """The event of the last consumer switching, naming when the old key(s) go."""
        released = [p for p in pending if p not in before.pending_revocations]
        when = ", ".join(f"{p.key_name} at {format_time(p.due_at)}" for p in released) or "nothing left to revoke"
        await self.events.record(
            token,
            KIND,
            EVENT_SWITCHED,
            f"{rollout.adopted}/{rollout.total} consumers switched to revision {rollout.revision}; revoking {when}",
        )
