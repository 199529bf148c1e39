"""Restarting one of a token's `restartTargets` for a rotation: gently, once per workload, retried.

Only a workload that really consumes the token's Secret (or opts in) is restarted. Several tokens
rotating within `Settings.restart_min_interval` share one restart of a workload: the restart
annotation records when it happened, and any restart after a rotation's Secret write covers that
rotation. Nothing here runs unless status records a rotation waiting for it, so an operator restart
or a new leader never restarts anything by itself.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from storage_token.api.times import format_time, parse_time
from storage_token.controllers.steps.base import KIND, RESTART_ANNOTATION, TokenSteps
from storage_token.kube.api import ApiError, Conflict
from storage_token.policy.consumers import restart_refusal
from storage_token.policy.rollout import (
    ADOPTED,
    NOT_FOUND,
    REFUSED,
    RESTART_FAILED,
    RESTART_PENDING,
    ROLLING,
    TargetState,
    precise_time,
    restart_moment,
    workload_progress,
)
from storage_token.policy.schedule import backoff_delay

RESTART_FAILED_EVENT = "RestartFailed"
RESTART_REFUSED_EVENT = "RestartRefused"


def last_restart(workload: dict[str, Any]) -> datetime | None:
    """When the operator last restarted this workload (any token's rotation), from its pod template."""
    template = (workload.get("spec") or {}).get("template") or {}
    value = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTART_ANNOTATION)
    try:
        return parse_time(value)
    except ValueError:  # somebody wrote something else there: treat it as never restarted by us
        return None


class RestartSteps(TokenSteps):
    async def _restart_target(
        self, token: dict[str, Any], secret_name: str, target: TargetState, since: datetime, now: datetime
    ) -> tuple[TargetState, datetime | None]:
        """Move a target waiting for its restart on: (its new state, when to look again if it waits)."""
        meta = token["metadata"]
        what = f"{target.kind} {target.name}"
        if target.next_attempt is not None and target.next_attempt > now:
            return target, target.next_attempt
        try:
            workload = await self.kube.get_workload(target.kind, meta["namespace"], target.name)
            if workload is None:
                return await self._not_found(token, target)
            watched = self.shared.workloads.get((target.kind, meta["namespace"], target.name))
            if watched is not None and watched["metadata"].get("uid") != workload["metadata"].get("uid"):
                # Another object of that name than the watch last showed (deleted and re-created while the
                # watch was away): its rollout state must not judge this one's.
                self.shared.workloads.pop((target.kind, meta["namespace"], target.name), None)
            if refusal := restart_refusal(workload, meta["name"], secret_name):
                await self.events.record(
                    token, KIND, RESTART_REFUSED_EVENT, f"not restarting {what}: {refusal}", warning=True
                )
                return replace(target, state=REFUSED, message=refusal, next_attempt=None), None
            last = last_restart(workload)
            at = restart_moment(since, last, self.settings.restart_min_interval, now)
            if at is None:  # another rotation's restart came after our Secret write: it covers ours
                generation = int(workload["metadata"].get("generation") or 0)
                # It may have rolled out already (no further event of it would come): judge it now.
                switched, progress = workload_progress(target.kind, workload, generation)
                state = ADOPTED if switched else ROLLING
                message = f"restarted at {format_time(last)}, after the Secret was written; {progress}"
                return replace(target, state=state, generation=generation, message=message, next_attempt=None), None
            if at > now:
                message = f"restart at {format_time(at)}: rotations of other tokens sharing it until then join it"
                return replace(target, state=RESTART_PENDING, message=message), at
            patch = {
                "metadata": {"resourceVersion": workload["metadata"]["resourceVersion"]},
                "spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: precise_time(now)}}}},
            }
            try:
                patched = await self.kube.patch_workload(target.kind, meta["namespace"], target.name, patch)
            except Conflict:
                return target, now
            if patched is None:
                return await self._not_found(token, target)
        except (ApiError, OSError) as error:
            return await self._restart_failed(token, target, str(error)[:200], now)
        generation = int(patched["metadata"].get("generation") or 0)
        restarted = replace(target, state=ROLLING, generation=generation, message="restarted", next_attempt=None)
        return restarted, None

    async def _not_found(self, token: dict[str, Any], target: TargetState) -> tuple[TargetState, datetime | None]:
        """A target that doesn't exist consumes nothing: it doesn't hold the old key, but a typo is worth an event."""
        message = f"could not restart {target.kind} {target.name}: not found"
        await self.events.record(token, KIND, RESTART_FAILED_EVENT, message, warning=True)
        return replace(target, state=NOT_FOUND, message="not found", next_attempt=None), None

    async def _restart_failed(
        self, token: dict[str, Any], target: TargetState, problem: str, now: datetime
    ) -> tuple[TargetState, datetime | None]:
        """Visible (state, message, event) and retried with backoff; the ceiling still bounds the old key."""
        attempts = target.attempts + 1
        retry = now + backoff_delay(attempts, f"{token['metadata']['uid']}/{target.kind}/{target.name}")
        message = f"could not restart {target.kind} {target.name}: {problem}; attempt {attempts + 1} at "
        message += str(format_time(retry))
        await self.events.record(token, KIND, RESTART_FAILED_EVENT, message, warning=True)
        failed = replace(target, state=RESTART_FAILED, attempts=attempts, message=problem, next_attempt=retry)
        return failed, retry
