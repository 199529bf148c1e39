"""When nothing may be issued now: blocked (and what that revokes), held back by minting limits, or steady."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from storage_token.api.conditions import condition, set_condition
from storage_token.api.status_patch import StatusPatch
from storage_token.api.times import format_time
from storage_token.api.token import PendingRevocation, TokenStatus
from storage_token.controllers.steps.base import (
    KIND,
    Outcome,
    TokenSteps,
)
from storage_token.policy import reasons
from storage_token.policy.ceiling import manual_renewal_allowed_at
from storage_token.policy.checks import Verdict
from storage_token.policy.inputs import PolicyInput
from storage_token.policy.schedule import (
    backoff_delay,
    backoff_wakeup,
    next_wakeup,
    provider_windows,
    renewal_plan,
    revocation_due,
)
from storage_token.policy.windows import Placement, describe

log = logging.getLogger(__name__)


class ReadinessSteps(TokenSteps):
    async def _blocked(self, token: dict[str, Any], status: TokenStatus, why: Verdict, now: datetime) -> Outcome:
        """No key may be issued now. Losing admission queues the current key for revocation; an
        unresolved intent is resolved (its key revoked) rather than left live and unreferenced."""
        meta = token["metadata"]
        generation = int(meta.get("generation") or 0)
        patch = StatusPatch()
        pending = list(status.pending_revocations)
        if status.intent is not None:
            leftover = await self._resolve_abandoned_intent(token, status, now)
            if leftover is not None:
                pending += leftover
                patch.intent = None
        if why.reason in reasons.REVOKE_CURRENT_KEY:
            # Keys waiting for a rollout wait no longer than the grace period either: the token may
            # hold none of its keys now, and a rollout that never ends must not keep one alive.
            due = revocation_due(self._grace(token), now, None)
            pending = [
                replace(entry, due_at=min(entry.due_at, due), awaiting_rollout=0, not_before=None)
                if entry.awaiting_rollout
                else entry
                for entry in pending
            ]
        if why.reason in reasons.REVOKE_CURRENT_KEY and status.key_id:
            # The token may no longer hold this key (ceiling narrowed, namespace offboarded, provider
            # deleted, spec broken): say so, then revoke it after the grace period.
            due = revocation_due(self._grace(token), now, status.not_after)
            pending.append(
                PendingRevocation(
                    status.key_id,
                    status.key_name,
                    due,
                    provider=status.provider,
                    not_after=status.not_after,
                    secret_name=status.secret_name,
                )
            )
            patch.key_id = patch.key_name = patch.spec_hash = None
            patch.not_after = patch.renewal_time = patch.issued_at = patch.next_renewal_window = None
            why = Verdict(why.reason, f"{why.message}; key {status.key_name} is revoked at {format_time(due)}")
        if pending != list(status.pending_revocations):
            patch.pending_revocations = pending
        previous = condition((token.get("status") or {}).get("conditions"), "Ready")
        changed = previous is None or previous.get("reason") != why.reason or previous.get("message") != why.message
        written = None
        if patch or changed or (token.get("status") or {}).get("observedGeneration") != generation:
            patch.conditions = set_condition(
                (token.get("status") or {}).get("conditions") or [],
                "Ready",
                False,
                why.reason,
                why.message,
                now,
                generation,
            )
            patch.observed_generation = generation
            written = await self._patch_status(token, patch)
        if changed:
            await self.events.record(token, KIND, why.reason, why.message, warning=True)
        # Nothing changes by itself for most blockers; provider readiness is watched. Look again later anyway.
        retry = now + backoff_delay(max(status.failed_attempts, 4), meta["uid"])
        return Outcome(wakeup=next_wakeup(now, None, None, retry, pending), body=written or token)

    async def _steady(self, token: dict[str, Any], value: PolicyInput) -> Outcome:
        """Nothing to issue: keep renewalTime in step with the spec and Ready honest."""
        status, spec, now = value.status, value.spec, value.now
        if status.failed_attempts and status.next_attempt and status.next_attempt > now:
            wakeup = backoff_wakeup(now, status.next_attempt, status.not_after, status.pending_revocations)
            return Outcome(wakeup=wakeup, body=token)
        renew_at, plan = status.renewal_time, Placement(status.renewal_time or now)
        if status.issued_at is not None:
            seed = f"{value.uid}/{status.revision}"
            plan = renewal_plan(spec, status.issued_at, status.not_after, seed, provider_windows(value), now)
            renew_at = plan.at
        patch = StatusPatch()
        if format_time(renew_at) != format_time(status.renewal_time):
            patch.renewal_time = renew_at
        if format_time(plan.window_opens) != format_time(status.next_renewal_window):
            patch.next_renewal_window = plan.window_opens
        ready = condition((token.get("status") or {}).get("conditions"), "Ready")
        if ready is None or ready.get("status") != "True" or status.observed_generation != value.generation or patch:
            message = (
                f"key {status.key_name} valid until {format_time(status.not_after)}; renews at {format_time(renew_at)}"
                + describe(plan)
            )
            patch.conditions = set_condition(
                (token.get("status") or {}).get("conditions") or [],
                "Ready",
                True,
                reasons.ISSUED,
                message,
                now,
                value.generation,
            )
            patch.observed_generation = value.generation
        written = await self._patch_status(token, patch) if patch else None
        return Outcome(
            wakeup=next_wakeup(now, renew_at, status.not_after, None, status.pending_revocations), body=written or token
        )

    async def _limited(self, token: dict[str, Any], value: PolicyInput, why: Verdict) -> Outcome:
        """A renewal the provider's minting limits hold back: the current key stays; Issuing says why."""
        status, now = value.status, value.now
        assert value.provider.spec is not None
        ceiling = value.provider.spec.ceiling
        if why.reason == reasons.RENEWAL_RATE_LIMITED and status.issued_at is not None:
            allowed = (
                manual_renewal_allowed_at(status.issued_at, ceiling),
                status.issued_at + ceiling.min_renewal_interval,
            )
            retry = min((t for t in allowed if t is not None and t > now), default=now)
        elif why.reason == reasons.RENEWAL_RATE_LIMITED:
            retry = now
        else:  # too many live keys: the next revocation makes room
            retry = min((p.due_at for p in status.pending_revocations), default=now + ceiling.min_renewal_interval)
        if status.not_after is not None:
            retry = min(retry, status.not_after)  # an expired key is replaced whatever the limits
        issuing = condition((token.get("status") or {}).get("conditions"), "Issuing")
        written = None
        if issuing is None or issuing.get("reason") != why.reason or issuing.get("message") != why.message:
            conditions = set_condition(
                (token.get("status") or {}).get("conditions") or [],
                "Issuing",
                False,
                why.reason,
                why.message,
                now,
                value.generation,
            )
            written = await self._patch_status(token, StatusPatch(conditions=conditions))
            await self.events.record(token, KIND, why.reason, why.message, warning=True)
        # The Manager's requeue floor keeps a retry due now from becoming a tight loop.
        return Outcome(wakeup=retry, body=written or token)
