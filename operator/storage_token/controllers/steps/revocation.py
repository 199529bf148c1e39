"""Revoking queued keys when due, retried with backoff and never forgotten."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from storage_token.api.token import TokenStatus
from storage_token.controllers.steps.base import (
    Outcome,
    TokenSteps,
)
from storage_token.policy.schedule import (
    backoff_delay,
    due_revocations,
)

log = logging.getLogger(__name__)


class RevocationSteps(TokenSteps):
    async def _revoke_due(self, token: dict[str, Any], outcome: Outcome) -> Outcome:
        status = TokenStatus.parse(token.get("status"))
        now = self.clock()
        due = due_revocations(status.pending_revocations, now)
        if not due:
            return outcome
        remaining = [p for p in status.pending_revocations if p not in due]
        for entry in due:
            error = await self._revoke(token, entry)
            if error is None:
                continue
            attempts = entry.attempts + 1
            remaining.append(
                replace(
                    entry,
                    attempts=attempts,
                    last_error=error[:512],
                    due_at=now + backoff_delay(attempts, entry.key_id),
                )
            )
        failed = {entry.key_id for entry in remaining}
        revoked = [entry for entry in due if entry.key_id not in failed]
        if revoked:
            # Only deletes a Secret that holds one of these keys (e.g. a renamed Secret's old copy).
            await self._delete_dead_secret(token, revoked)
        written = await self._patch_status(token, {"pendingRevocations": [p.to_status() for p in remaining]})
        wakeup = outcome.wakeup
        for entry in remaining:
            wakeup = entry.due_at if wakeup is None else min(wakeup, entry.due_at)
        return Outcome(wakeup=wakeup, body=written or token)
