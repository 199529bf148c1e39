"""Issuing a key: rehearse the Secret, write the intent, call the provider (or resolve an old intent),
write the Secret."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from storage_token.api.conditions import set_condition
from storage_token.api.status_patch import StatusPatch
from storage_token.api.times import format_time
from storage_token.api.token import Intent, TokenSpec
from storage_token.controllers.secret_writer import (
    ANNOTATION_KEY_ID_HASH,
    ANNOTATION_REVISION,
    build_secret,
    carry_previous,
    is_owned_by,
    key_id_hash,
    secret_state,
    write_secret,
)
from storage_token.controllers.steps.base import (
    Outcome,
    unreachable,
)
from storage_token.controllers.steps.failures import FailureSteps
from storage_token.controllers.steps.recording import RecordingSteps
from storage_token.kube.api import ApiError, Conflict
from storage_token.policy import reasons
from storage_token.policy.checks import Verdict
from storage_token.policy.inputs import PolicyInput
from storage_token.providers.base import IssuedKey, KeySpec
from storage_token.providers.errors import (
    ProviderError,
    RetryableError,
)
from storage_token.runtime import metrics
from storage_token.runtime.provider_pool import ProviderHandle
from storage_token.secrets.checks import secret_problems
from storage_token.secrets.render import KeyMaterial, TemplateError
from storage_token.secrets.worker import RenderWorkerError

log = logging.getLogger(__name__)
NAMESPACE_WAIT = timedelta(seconds=5)  # a token whose namespace is terminating looks again this often


class IssuingSteps(RecordingSteps, FailureSteps):
    async def _namespace_terminating(self, namespace: str) -> bool:
        try:
            found = await self.kube.get_namespace(namespace)
        except ApiError:
            return False  # may not read namespaces (a namespaced install): the Secret write will say
        return bool(found) and ((found or {}).get("status") or {}).get("phase") == "Terminating"

    async def _rehearse(self, spec: TokenSpec) -> None:
        """Build the whole Secret with placeholder keys, checked as the API server would check it,
        so bad input fails before any key exists (the outcome is cached per template)."""
        data = await self.renderer.rehearse(spec.secret.template, spec.buckets, spec.prefixes)
        problem = secret_problems(data, spec.secret.labels, spec.secret.annotations)
        if problem:
            raise ValueError(f"spec.secret: {problem}")

    async def _issue(
        self,
        token: dict[str, Any],
        value: PolicyInput,
        handle: ProviderHandle,
        why: Verdict,
        secret: dict[str, Any] | None,
    ) -> Outcome:
        meta, status, spec = token["metadata"], value.status, value.spec
        if why.reason == reasons.SECRET_MISSING and await self._namespace_terminating(meta["namespace"]):
            # The namespace is being deleted: its Secrets go first and the token's deletion follows.
            # A key issued now could never be written anywhere; wait for the deletion instead.
            return Outcome(wakeup=value.now + NAMESPACE_WAIT, body=token)
        provider_type = handle.spec.type
        issued: IssuedKey | None = None
        revision = status.revision + 1
        label = f"{handle.spec.kind}/{handle.spec.name}"
        if status.intent is not None and status.intent.provider not in ("", label):
            # providerRef changed since the intent: resolve it where the key was asked for, then start over.
            leftover = await self._resolve_abandoned_intent(token, status, value.now)
            if leftover is None:
                return await self._failed(
                    token, status, unreachable(status.intent.provider), value.now, keep_intent=True
                )
            pending = [*status.pending_revocations, *leftover]
            written = await self._patch_status(token, StatusPatch(intent=None, pending_revocations=pending))
            return Outcome(wakeup=value.now, body=written or token)
        if status.intent is not None:
            revision = status.intent.revision
            name = status.intent.key_name
            # The create may have happened. If the Secret was already written with it (the crash came
            # between the Secret and the status), keep that key; otherwise US3 adopts the token found by
            # name and B2 deletes keys of that name (their secret is gone).
            # The key was asked for the intent's spec; if the spec changed since, the recorded hash
            # makes the next reconcile replace it (an adopted key nobody holds yet is revoked at once).
            asked_for = status.intent.spec_hash or value.spec_hash
            try:
                written_key = await self._key_in_secret(handle, secret, meta["uid"], name, revision)
                if written_key is not None:
                    return await self._record_issued(token, value, handle, written_key, revision, why, asked_for)
                issued = await handle.call(lambda p: p.recover(name), "recover")
                if issued is not None and asked_for != value.spec_hash:
                    stale = issued.key_id
                    await handle.call(lambda p: p.revoke(stale), "revoke")
                    log.info("revoked key %s: recovered for a spec that has changed since", name)
                    issued, revision = None, revision + 1
                    name = self._key_name(meta, revision)
            except ProviderError as error:
                return await self._failed(token, status, error, value.now, keep_intent=True)
            if issued is not None:
                log.info(
                    "adopted key %s for %s/%s after an interrupted issuance", name, meta["namespace"], meta["name"]
                )
        else:
            name = self._key_name(meta, revision)
        if issued is None:
            # Write-ahead: the name is in status before the provider is asked.
            intent = Intent(name, revision, value.now, value.spec_hash, label)
            conditions = set_condition(
                (token.get("status") or {}).get("conditions") or [],
                "Issuing",
                True,
                why.reason,
                why.message,
                value.now,
                value.generation,
            )
            written = await self._patch_status(token, StatusPatch(intent=intent, conditions=conditions))
            if written is None:
                return Outcome()
            token = written
            key_spec = KeySpec(
                name=name,
                permissions=spec.permissions,
                duration_seconds=int(spec.duration.total_seconds()),
                buckets=spec.buckets,
                prefixes=spec.prefixes,
                allow_ips=spec.allow_ips,
                deny_ips=spec.deny_ips,
                raw_capabilities=spec.raw_capabilities,
            )
            try:
                issued = await handle.call(lambda p: p.issue(key_spec), "issue")
            except ProviderError as error:
                metrics.record_issuance(provider_type, "failure")
                # Only a retryable failure can hide a created key; a refusal means nothing exists.
                return await self._failed(
                    token, status, error, value.now, keep_intent=isinstance(error, RetryableError)
                )
        material = KeyMaterial.from_issued(provider_type, issued)
        try:
            data = await self.renderer.render(material, spec.secret.template)
            problem = secret_problems(data, spec.secret.labels, spec.secret.annotations)
        except (TemplateError, RenderWorkerError) as error:
            problem = str(error)
        if problem:
            # Passed the rehearsal, failed on the real key: the key goes at once, and the next try
            # waits with growing delays instead of minting a key per reconcile.
            del material
            return await self._render_failed(token, status, handle, issued, problem, value.now)
        expires = format_time(issued.not_after)
        alive = why.reason not in reasons.DEAD_KEY and status.not_after is not None and status.not_after > value.now
        previous = carry_previous(secret, spec.secret, meta["uid"], status.key_id, alive)  # secret.keepPrevious
        body = build_secret(token, spec.secret, data, issued.key_id, revision, expires, previous)
        del data, material
        self.shared.touch_secret(meta["namespace"], spec.secret.name)
        try:
            self.shared.own_secret_writes[(meta["namespace"], spec.secret.name)] = await write_secret(
                self.kube, body, secret
            )
        except Conflict:
            # Someone wrote the Secret meanwhile: keep the intent (the key is adopted/replaced next run).
            return Outcome(wakeup=value.now, body=token)
        return await self._record_issued(token, value, handle, issued, revision, why, value.spec_hash)

    async def _key_in_secret(
        self, handle: ProviderHandle, secret: dict[str, Any] | None, uid: str, name: str, revision: int
    ) -> IssuedKey | None:
        """The key of intent `name` if our Secret already holds it and the provider still has it."""
        if secret is None or not is_owned_by(secret, uid) or not secret_state(secret, uid).intact:
            return None
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if annotations.get(ANNOTATION_REVISION) != str(revision):
            return None
        for key in await handle.call(lambda p: p.list_keys(name), "list"):
            if key.key_name == name and key_id_hash(key.key_id) == annotations.get(ANNOTATION_KEY_ID_HASH):
                # The secret itself stays in the Secret; the status only needs the id, name and expiry.
                return IssuedKey(key.key_id, key.key_name, "", "", key.not_after)
        return None
