"""Revoking queued keys when due, retried with backoff and never forgotten.

A key the Secret still holds as its previous pair (`secret.keepPrevious`) leaves the Secret first: no
Secret ever holds a revoked key. A key revoked at the ceiling while its rollout still ran says so.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from storage_token.api.conditions import set_condition
from storage_token.api.status_patch import StatusPatch
from storage_token.api.token import PendingRevocation, TokenStatus
from storage_token.controllers.secret_writer import drop_previous
from storage_token.controllers.steps.base import (
    KIND,
    Outcome,
    SecretRead,
    TokenSteps,
)
from storage_token.kube.api import Conflict
from storage_token.policy.rollout import CEILING_REACHED, CONDITION, EVENT_FORCED, Rollout, summary
from storage_token.policy.schedule import (
    BACKOFF_BASE,
    backoff_delay,
    due_revocations,
)

log = logging.getLogger(__name__)


class RevocationSteps(TokenSteps):
    async def _revoke_due(self, token: dict[str, Any], outcome: Outcome, read: SecretRead | None = None) -> Outcome:
        """Revoke what is due; an earlier step's unwritten change (a finished rollout) goes in the same write."""
        status = TokenStatus.parse(token.get("status"))
        now = self.clock()
        due = due_revocations(status.pending_revocations, now)
        carried = outcome.unwritten
        if not due:
            if carried is None:
                return outcome
            written = await self._write_unwritten(carried, StatusPatch())
            # On a conflict a newer version came meanwhile: its reconcile goes on.
            return Outcome(wakeup=outcome.wakeup if written else now, body=written or carried.base)
        remaining = [p for p in status.pending_revocations if p not in due]
        meta = token["metadata"]
        name = (token.get("status") or {}).get("secretName") or meta["name"]
        secret = await self._current_secret(meta["namespace"], name, read)  # one read serves both checks below
        kept = await self._drop_previous_pairs(token, due, secret)
        if kept:  # the Secret moved under us: revoke once it no longer holds the key
            remaining += [replace(entry, due_at=now + BACKOFF_BASE) for entry in kept]
            due = [entry for entry in due if entry not in kept]
        if due:
            # A Secret of ours still holding one of these keys (a renamed Secret's old copy) goes first,
            # so no Secret holds a key after its revocation. Dropping a previous pair keeps the current
            # key's annotations, so the Secret as read still says which key it holds.
            await self._delete_dead_secret(token, due, known={name: secret})
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
        patch = StatusPatch(pending_revocations=remaining)
        forced = [entry for entry in revoked if entry.awaiting_rollout]
        if forced:
            patch.conditions = await self._forced(token, forced)
        if carried is not None:
            written = await self._write_unwritten(carried, patch)
        else:
            written = await self._patch_status(token, patch)
        wakeup = outcome.wakeup
        for entry in remaining:
            wakeup = entry.due_at if wakeup is None else min(wakeup, entry.due_at)
        # Never the preview of an unwritten change: the cache holds only what the API server has.
        return Outcome(wakeup=wakeup, body=written or (carried.base if carried else token))

    async def _drop_previous_pairs(
        self, token: dict[str, Any], due: list[PendingRevocation], secret: dict[str, Any] | None
    ) -> list[PendingRevocation]:
        """Rewrite the Secret without the previous pair of any key about to be revoked; the entries whose
        revocation must wait (the Secret changed since it was read, or could not be written)."""
        meta = token["metadata"]
        name = (token.get("status") or {}).get("secretName") or meta["name"]
        self.shared.touch_secret(meta["namespace"], name)
        try:
            written = await drop_previous(self.kube, meta, secret, {entry.key_id for entry in due})
        except Conflict:
            return list(due)
        if written:
            self.shared.own_secret_writes[(meta["namespace"], name)] = written
        return []

    async def _forced(self, token: dict[str, Any], forced: list[PendingRevocation]) -> list[dict[str, Any]]:
        """maxRevokeDelay (or the key's expiry) came before every consumer had switched: event and condition."""
        raw_status = token.get("status") or {}
        rollout = Rollout.parse(raw_status.get("rollout"))
        progress = f"{rollout.adopted}/{rollout.total}" if rollout is not None else "not all"
        names = ", ".join(entry.key_name for entry in forced)
        await self.events.record(
            token,
            KIND,
            EVENT_FORCED,
            f"revoked key {names} at maxRevokeDelay while {progress} consumers had switched",
            warning=True,
        )
        now, generation = self.clock(), int(token["metadata"].get("generation") or 0)
        message = f"maxRevokeDelay revoked key {names} while {progress} consumers had switched"
        if rollout is not None and not rollout.done:
            message = summary(rollout, forced=True)[2]
        conditions = raw_status.get("conditions") or []
        return set_condition(conditions, CONDITION, False, CEILING_REACHED, message, now, generation)
