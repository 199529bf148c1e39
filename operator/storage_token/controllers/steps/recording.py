"""Recording what an issuance did: the new key in status, the old one queued for revocation (a failure: failures)."""

from __future__ import annotations

import logging
from typing import Any

from storage_token.api.conditions import set_condition
from storage_token.api.status_patch import StatusPatch
from storage_token.api.times import format_time, parse_time, up_to_second
from storage_token.api.token import PendingRevocation, TokenStatus
from storage_token.controllers.steps.base import (
    KIND,
    Outcome,
)
from storage_token.controllers.steps.rollout import RolloutSteps
from storage_token.policy import reasons
from storage_token.policy.checks import Verdict
from storage_token.policy.inputs import PolicyInput
from storage_token.policy.rollout import CONDITION, new_rollout, release, revocation_window, summary
from storage_token.policy.schedule import (
    next_wakeup,
    renewal_plan,
    revocation_due,
)
from storage_token.policy.windows import describe
from storage_token.providers.base import IssuedKey
from storage_token.runtime import metrics
from storage_token.runtime.provider_pool import ProviderHandle

log = logging.getLogger(__name__)


# A replaced key that is already dead is revoked at once: nothing can be using it.


class RecordingSteps(RolloutSteps):
    async def _record_issued(
        self,
        token: dict[str, Any],
        value: PolicyInput,
        handle: ProviderHandle,
        issued: IssuedKey,
        revision: int,
        why: Verdict,
        spec_hash: str,
    ) -> Outcome:
        """`spec_hash`: the spec the key was asked for (a recovered key may predate a spec change)."""
        meta, status, spec, now = token["metadata"], value.status, value.spec, value.now
        provider_name = f"{spec.provider_ref.kind}/{spec.provider_ref.name}"
        pending = list(TokenStatus.parse(token.get("status")).pending_revocations)
        renewed = bool(status.key_id)
        # The rotation reaches its restartTargets through `status.rollout`; the old key waits for it.
        # The Secret holds the new key from now on: the grace period counts from here, not from the start
        # of the reconcile (the provider call and the Secret write took time under load).
        written_at = self.clock()
        rollout = new_rollout(revision, ((t.kind, t.name) for t in spec.restart_targets), written_at)
        follow = renewed and bool(spec.restart_targets)
        if renewed and not follow:  # restartTargets removed mid-rollout: earlier keys fall back to their floor
            pending = release(pending, revision, now)
        if status.key_id and status.key_id != issued.key_id:
            grace = spec.revoke_grace_period
            floor, ceiling = revocation_window(grace, spec.max_revoke_delay, written_at, status.not_after)
            floor = up_to_second(floor)  # status keeps whole seconds: never let that move the floor earlier
            ceiling = max(ceiling, floor)  # maxRevokeDelay <= revokeGracePeriod: the floor still holds
            waits = follow and why.reason not in reasons.DEAD_KEY
            if why.reason in reasons.DEAD_KEY:
                floor = revocation_due(grace * 0, now, status.not_after)  # nothing is using a dead key
            pending.append(
                PendingRevocation(
                    key_id=status.key_id,
                    key_name=status.key_name,
                    provider=status.provider or provider_name,
                    # Waiting for the consumers: due at the ceiling, unless the rollout completes first.
                    due_at=ceiling if waits else floor,
                    not_after=status.not_after,
                    secret_name=status.secret_name,
                    awaiting_rollout=revision if waits else 0,
                    not_before=floor if waits else None,
                )
            )
        # Status keeps whole seconds: schedule from the values as stored, so a restart computes the same time.
        issued_at = parse_time(format_time(now))
        assert issued_at is not None
        plan = renewal_plan(
            spec,
            issued_at,
            parse_time(format_time(issued.not_after)),
            f"{meta['uid']}/{revision}",
            handle.spec.ceiling.renewal_windows,
            now,
        )
        renew_at = plan.at
        conditions = (token.get("status") or {}).get("conditions") or []
        conditions = set_condition(
            conditions,
            "Issuing",
            False,
            reasons.ISSUED,
            f"issued key {issued.key_name} ({why.reason})",
            now,
            value.generation,
        )
        message = (
            f"key {issued.key_name} valid until {format_time(issued.not_after)}; renews at {format_time(renew_at)}"
            + describe(plan)
        )
        conditions = set_condition(conditions, "Ready", True, reasons.ISSUED, message, now, value.generation)
        if follow:
            state, reason, consumers = summary(rollout, forced=False)
            conditions = set_condition(conditions, CONDITION, state, reason, consumers, now, value.generation)
        elif renewed:  # no targets to follow (any more): the grace period alone decides
            conditions = [c for c in conditions if c.get("type") != CONDITION]
        patch = StatusPatch(
            observed_generation=value.generation,
            conditions=conditions,
            provider_type=handle.spec.type,
            provider=provider_name,
            secret_name=spec.secret.name,
            key_id=issued.key_id,
            key_name=issued.key_name,
            issued_at=issued_at,
            not_after=issued.not_after,
            renewal_time=renew_at,
            next_renewal_window=plan.window_opens,
            revision=revision,
            spec_hash=spec_hash,
            intent=None,
            failed_attempts=0,
            last_failure=None,
            next_attempt=None,
            handled_renew_request=value.renew_request or None,
            pending_revocations=pending,
        )
        if renewed:
            patch.rollout = rollout if follow else None
        written = await self._patch_status(token, patch)
        self.shared.missing_keys.discard(status.key_id)
        metrics.record_issuance(handle.spec.type, "renewed" if renewed else "issued")
        await self.events.record(
            token,
            KIND,
            "Renewed" if renewed else reasons.ISSUED,
            f"issued key {issued.key_name} (revision {revision}, {why.reason}), "
            f"valid until {format_time(issued.not_after)}",
            # Scheduled and asked-for issuances are routine; a repair (the Secret deleted or edited, the key
            # revoked at the provider, a spec change, a recovery) is always posted: it says why.
            routine=why.reason in reasons.ROUTINE_ISSUES,
        )
        log.info(
            "issued key %s for %s/%s: revision %d (%s)",
            issued.key_name,
            meta["namespace"],
            meta["name"],
            revision,
            why.reason,
        )
        if status.secret_name and status.secret_name != spec.secret.name:
            await self._delete_our_secrets(meta, {status.secret_name})  # the Secret's old name
        return Outcome(
            wakeup=next_wakeup(now, renew_at, issued.not_after, None, pending),
            body=written or token,
        )
