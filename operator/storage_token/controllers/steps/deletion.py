"""Deletion: revoke what the token issued, and let it go only when the provider confirmed."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from storage_token.api.conditions import condition, set_condition
from storage_token.api.status_patch import StatusPatch
from storage_token.api.token import PendingRevocation, ProviderRef, TokenSpec, TokenStatus
from storage_token.controllers.gather import resolve_provider
from storage_token.controllers.steps.base import (
    ABANDON_ANNOTATION,
    FINALIZER,
    KIND,
    Outcome,
    TokenSteps,
    where,
)
from storage_token.policy import reasons
from storage_token.policy.ceiling import retain_allowed
from storage_token.policy.schedule import (
    backoff_delay,
)
from storage_token.providers.errors import (
    NotFoundError,
    ProviderError,
)

log = logging.getLogger(__name__)


class DeletionSteps(TokenSteps):
    async def finalize(self, token: dict[str, Any]) -> Outcome:
        """Revoke what this token issued (current key unless Retain, queued keys, an unresolved intent).

        The finalizer goes only when the provider confirmed every revocation (success, or its own
        "no such key"): a missing provider, missing credentials or any error keeps it, says why in
        status, and retries. `storagetoken.dev/abandon-keys: "true"` is the explicit way out.
        """
        meta = token["metadata"]
        if FINALIZER not in (meta.get("finalizers") or ()):
            return Outcome()
        status = TokenStatus.parse(token.get("status"))
        now = self.clock()
        abandon = (meta.get("annotations") or {}).get(ABANDON_ANNOTATION) == "true"
        retain = await self._may_retain(token, status)
        failures: list[str] = []
        remaining: list[PendingRevocation] = []
        current_revoked = False
        entries = list(status.pending_revocations)
        if status.key_id and not retain:
            entries.append(PendingRevocation(status.key_id, status.key_name, now, provider=status.provider))
        if entries:
            # The Secret would go with its owner anyway: it goes before its key is revoked, so no Secret
            # holds a revoked key while the namespace (or the token) is torn down.
            await self._delete_dead_secret(token, entries)
        for entry in entries:
            error = await self._revoke(token, entry)
            if error is not None:
                failures.append(f"key {entry.key_name}: {error}")
                remaining.append(entry)
            elif entry.key_id == status.key_id:
                current_revoked = True
        intent_open = status.intent is not None
        if status.intent is not None:
            name = status.intent.key_name
            try:
                handle = await self._handle_for(token, status.intent.provider or status.provider)
                if handle is None:
                    failures.append(f"intent {name}: provider not found")
                else:
                    adopted = await handle.call(lambda p: p.recover(name), "recover")
                    if adopted is not None and not retain:
                        key_id = adopted.key_id
                        await handle.call(lambda p: p.revoke(key_id), "revoke")
                    intent_open = False
            except NotFoundError:
                intent_open = False
            except (ProviderError, ValueError) as error:
                failures.append(f"intent {name}: {error}")
        if failures and abandon:
            # Only what could not be revoked is given up: a reachable provider still revokes everything.
            log.warning(
                "releasing %s/%s with %d key(s) unrevoked (%s)", *where(meta), len(failures), ABANDON_ANNOTATION
            )
            await self.events.record(
                token, KIND, "KeysAbandoned", f"deleted with {len(failures)} key(s) left to expire", warning=True
            )
            return await self._release(token, "abandoned")
        if failures:
            queued = [p for p in remaining if p in status.pending_revocations]
            await self._report_waiting(token, failures, queued, current_revoked, intent_open, now)
            # Keep the finalizer: the keys must not outlive the token unnoticed. Try again later.
            retry = now + backoff_delay(min(len(failures) + 3, 8), meta["uid"])
            return Outcome(wakeup=retry)
        return await self._release(token, "retained" if retain else "revoked")

    async def _may_retain(self, token: dict[str, Any], status: TokenStatus) -> bool:
        """deletionPolicy Retain, and the provider that issued the key allows it now (policy.allowRetain).

        Anything less (no such provider, a namespace it no longer admits, a spec too broken to read)
        revokes: a retained key is out of the operator's control, so this fails closed."""
        if (token.get("spec") or {}).get("deletionPolicy") != "Retain":
            return False
        try:
            spec = TokenSpec.parse(token.get("spec") or {}, default_secret_name="")
        except ValueError:
            return False
        ref = spec.provider_ref
        if status.provider:
            kind, _, name = status.provider.partition("/")
            ref = ProviderRef(kind, name)
        state = await resolve_provider(
            self.kube, self.settings, ref, token["metadata"]["namespace"], self.shared.providers
        )
        if state.spec is None or state.problem_reason == reasons.NAMESPACE_NOT_ALLOWED:
            return False
        return retain_allowed(spec, state.spec.ceiling)

    async def _report_waiting(
        self,
        token: dict[str, Any],
        failures: list[str],
        queued: list[PendingRevocation],
        current_revoked: bool,
        intent_open: bool,
        now: datetime,
    ) -> None:
        """Say in status what deletion waits for: the revocations still unconfirmed, and how to give up."""
        meta = token["metadata"]
        message = (
            f"deletion waits for the provider to confirm {len(failures)} revocation(s): {'; '.join(failures)}"[:900]
            + f". To delete without revoking, annotate {ABANDON_ANNOTATION}=true"
        )
        previous = condition((token.get("status") or {}).get("conditions"), "Ready")
        if previous is not None and previous.get("message") == message:
            return
        conditions = set_condition(
            (token.get("status") or {}).get("conditions") or [],
            "Ready",
            False,
            reasons.REVOKING_KEYS,
            message,
            now,
            int(meta.get("generation") or 0),
        )
        patch = StatusPatch(conditions=conditions, pending_revocations=queued)
        if current_revoked:
            patch.key_id = patch.key_name = None
        if not intent_open:
            patch.intent = None
        await self._patch_status(token, patch)
        log.warning("deleting %s/%s waits: %s", meta["namespace"], meta["name"], message)
        await self.events.record(token, KIND, reasons.REVOKING_KEYS, message, warning=True)

    async def _release(self, token: dict[str, Any], what: str) -> Outcome:
        meta = token["metadata"]
        finalizers = [f for f in meta.get("finalizers") or () if f != FINALIZER]
        await self.kube.patch_object(
            KIND,
            meta["namespace"],
            meta["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}},
        )
        log.info("released %s/%s (keys %s)", meta["namespace"], meta["name"], what)
        return Outcome()
