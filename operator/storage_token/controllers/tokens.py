"""The StorageToken reconciler: issue, renew, revoke, clean up on deletion.

One reconcile = gather → decide (pure `policy`) → act. Every step is idempotent
and talks to the next through `.status`: the intended key name is written
before the provider call, so a crash at any point is resolved by the next run.
"""

from __future__ import annotations

import logging
from typing import Any

from storage_token.api.token import MAX_PENDING_REVOCATIONS, TokenSpec, TokenStatus
from storage_token.controllers.gather import gather
from storage_token.controllers.steps.base import (
    ABANDON_ANNOTATION,
    FINALIZER,
    KIND,
    RENDER_RETRY,
    Outcome,
    SecretRead,
    error_reason,
    where,
)
from storage_token.controllers.steps.deletion import DeletionSteps
from storage_token.controllers.steps.issuing import IssuingSteps
from storage_token.controllers.steps.readiness import ReadinessSteps
from storage_token.controllers.steps.revocation import RevocationSteps
from storage_token.controllers.steps.secret_metadata import SecretMetadataSteps
from storage_token.policy import reasons
from storage_token.policy.checks import Verdict, decide
from storage_token.providers.errors import (
    ProviderError,
)
from storage_token.secrets.render import TemplateError
from storage_token.secrets.worker import RenderWorkerError

__all__ = ["ABANDON_ANNOTATION", "FINALIZER", "KIND", "Outcome", "TokenController", "error_reason"]

log = logging.getLogger(__name__)


class TokenController(IssuingSteps, SecretMetadataSteps, ReadinessSteps, RevocationSteps, DeletionSteps):
    """One reconcile: deletion, or the finalizer, then gather -> decide -> the step that applies."""

    async def _follow_up(self, token: dict[str, Any], outcome: Outcome, read: SecretRead | None = None) -> Outcome:
        """After every step: a rotation's rollout moves on (and may release the old key), then due keys go."""
        outcome = await self._advance_rollout(token, outcome)
        return await self._revoke_due(outcome.body or token, outcome, read)

    async def reconcile(self, token: dict[str, Any]) -> Outcome:
        meta = token["metadata"]
        if meta.get("deletionTimestamp"):
            return await self.finalize(token)
        if FINALIZER not in (meta.get("finalizers") or ()):
            patched = await self.kube.patch_object(
                KIND,
                meta["namespace"],
                meta["name"],
                {
                    "metadata": {
                        "finalizers": [*(meta.get("finalizers") or ()), FINALIZER],
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
            if patched is None:
                return Outcome()
            self.shared.on_written(patched)
            token = patched
        now = self.clock()
        status = TokenStatus.parse(token.get("status"))
        try:
            spec = TokenSpec.parse(token.get("spec") or {}, default_secret_name=meta["name"])
            await self._rehearse(spec)
        except (ValueError, TemplateError) as error:
            # A broken spec blocks issuing, never revoking: queued keys still go when due.
            reason = reasons.TEMPLATE_ERROR if isinstance(error, TemplateError) else reasons.INVALID_SPEC
            blocked = await self._blocked(token, status, Verdict(reason, str(error)), now)
            return await self._follow_up(blocked.body or token, blocked)
        except RenderWorkerError as error:  # our infrastructure, not the tenant's input: try again soon
            log.warning("rendering for %s/%s unavailable: %s", *where(meta), error)
            return await self._follow_up(token, Outcome(wakeup=now + RENDER_RETRY, body=token))
        key_live = False if status.key_id and status.key_id in self.shared.missing_keys else None
        value, secret = await gather(self.kube, self.settings, token, spec, now, key_live, self.shared.providers)
        read = self._secret_read(meta["namespace"], spec.secret.name, secret)
        decision = decide(value)
        if decision.blocked is not None:
            outcome = await self._blocked(token, status, decision.blocked, now)
        elif decision.issue is not None and len(value.status.pending_revocations) >= MAX_PENDING_REVOCATIONS:
            # Whatever asks for a key (even a first issue after failed renders): status stays bounded.
            waiting = len(value.status.pending_revocations)
            outcome = await self._limited(
                token,
                value,
                Verdict(
                    reasons.TOO_MANY_LIVE_KEYS,
                    f"{decision.issue.message}; {waiting} keys wait for revocation, no new key until fewer "
                    f"than {MAX_PENDING_REVOCATIONS} do",
                ),
            )
        elif decision.issue is not None:
            assert value.provider.spec is not None
            try:
                handle = await self.pool.get(value.provider.spec)
            except ProviderError as error:  # e.g. the credentials Secret vanished since the provider was verified
                outcome = await self._failed(token, status, error, now, keep_intent=True)
            else:
                outcome = await self._issue(token, value, handle, decision.issue, secret)
        elif decision.backoff is not None and decision.backoff.reason in reasons.MINTING_LIMITS:
            token = await self._sync_secret_metadata(token, value, secret)
            outcome = await self._limited(token, value, decision.backoff)
        else:
            token = await self._sync_secret_metadata(token, value, secret)
            outcome = await self._steady(token, value)
        return await self._follow_up(outcome.body or token, outcome, read)
