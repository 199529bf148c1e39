"""A failed issuance in status: the provider's refusal or outage, or a template that failed on the real key
(whose key goes at once); both back off with growing delays."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from storage_token.api.conditions import set_condition
from storage_token.api.status_patch import Failure, StatusPatch
from storage_token.api.times import format_time
from storage_token.api.token import PendingRevocation, TokenStatus
from storage_token.controllers.steps.base import KIND, Outcome, TokenSteps, error_reason
from storage_token.policy import reasons
from storage_token.policy.schedule import backoff_delay, backoff_wakeup
from storage_token.providers.base import IssuedKey
from storage_token.providers.errors import ProviderError
from storage_token.runtime.provider_pool import ProviderHandle

log = logging.getLogger(__name__)


class FailureSteps(TokenSteps):
    async def _failed(
        self, token: dict[str, Any], status: TokenStatus, error: ProviderError, now: datetime, keep_intent: bool
    ) -> Outcome:
        meta = token["metadata"]
        attempts = status.failed_attempts + 1
        delay = backoff_delay(attempts, meta["uid"], error.retry_after)
        retry_at = now + delay
        reason = error_reason(error)
        generation = int(meta.get("generation") or 0)
        conditions = (token.get("status") or {}).get("conditions") or []
        conditions = set_condition(conditions, "Issuing", False, reason, str(error), now, generation)
        still_valid = status.not_after is not None and status.not_after > now and bool(status.key_id)
        retrying = f"{error}; attempt {attempts + 1} at {format_time(retry_at)}"
        if still_valid:
            # Like cert-manager: Ready says whether the Secret holds a valid key; Issuing says renewal fails.
            conditions = set_condition(
                conditions,
                "Ready",
                True,
                reasons.ISSUED,
                f"key {status.key_name} valid until {format_time(status.not_after)}; renewal failing ({reason}), "
                f"next attempt at {format_time(retry_at)}; the current key stays in the Secret until it expires",
                now,
                generation,
            )
        else:
            conditions = set_condition(conditions, "Ready", False, reason, retrying, now, generation)
        patch = StatusPatch(
            conditions=conditions,
            failed_attempts=attempts,
            last_failure=Failure(now, reason, str(error)),
            next_attempt=retry_at,
            observed_generation=generation,
        )
        if not keep_intent:
            patch.intent = None
        written = await self._patch_status(token, patch)
        log.warning("issuing for %s/%s failed (%s): %s", meta["namespace"], meta["name"], reason, error)
        await self.events.record(token, KIND, reasons.ISSUE_FAILED, f"{reason}: {error}", warning=True)
        wakeup = backoff_wakeup(now, retry_at, status.not_after, status.pending_revocations)
        return Outcome(wakeup=wakeup, body=written or token)

    async def _render_failed(
        self,
        token: dict[str, Any],
        status: TokenStatus,
        handle: ProviderHandle,
        issued: IssuedKey,
        problem: str,
        now: datetime,
    ) -> Outcome:
        meta = token["metadata"]
        pending = list(TokenStatus.parse(token.get("status")).pending_revocations)
        try:
            await handle.call(lambda p: p.revoke(issued.key_id), "revoke")
        except ProviderError:  # still revoked, by the queue, retried until the provider confirms
            provider = f"{handle.spec.kind}/{handle.spec.name}"
            pending.append(PendingRevocation(issued.key_id, issued.key_name, now, provider, issued.not_after))
        attempts = status.failed_attempts + 1
        retry_at = now + backoff_delay(attempts, meta["uid"])
        generation = int(meta.get("generation") or 0)
        message = f"{problem}; the new key was revoked; attempt {attempts + 1} at {format_time(retry_at)}"
        conditions = set_condition(
            (token.get("status") or {}).get("conditions") or [],
            "Issuing",
            False,
            reasons.TEMPLATE_ERROR,
            message,
            now,
            generation,
        )
        if not (status.key_id and status.not_after is not None and status.not_after > now):
            conditions = set_condition(conditions, "Ready", False, reasons.TEMPLATE_ERROR, message, now, generation)
        patch = StatusPatch(
            intent=None,
            conditions=conditions,
            failed_attempts=attempts,
            last_failure=Failure(now, reasons.TEMPLATE_ERROR, message),
            next_attempt=retry_at,
            pending_revocations=pending,
            observed_generation=generation,
        )
        written = await self._patch_status(token, patch)
        await self.events.record(token, KIND, reasons.TEMPLATE_ERROR, message, warning=True)
        return Outcome(wakeup=backoff_wakeup(now, retry_at, status.not_after, pending), body=written or token)
