"""The StorageToken reconciler: issue, renew, revoke, clean up on deletion.

One reconcile = gather → decide (pure `policy`) → act. Every step is idempotent
and talks to the next through `.status`: the intended key name is written
before the provider call, so a crash at any point is resolved by the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from storage_token import metrics
from storage_token.config import Settings
from storage_token.controllers.gather import ProviderCache, gather, resolve_provider
from storage_token.kube.api import Conflict, Kube
from storage_token.kube.events import EventRecorder
from storage_token.model.conditions import condition, set_condition
from storage_token.model.times import format_time, parse_time
from storage_token.model.token import PendingRevocation, ProviderRef, TokenSpec, TokenStatus
from storage_token.naming import key_name
from storage_token.policy import reasons
from storage_token.policy.checks import Verdict, decide
from storage_token.policy.inputs import PolicyInput
from storage_token.policy.schedule import backoff_delay, due_revocations, next_wakeup, renewal_time, revocation_due
from storage_token.provider_pool import ProviderHandle, ProviderPool
from storage_token.providers.base import IssuedKey, KeySpec
from storage_token.providers.errors import (
    BadRequestError,
    CredentialsError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RetryableError,
)
from storage_token.secret_render import KeyMaterial, TemplateError, render_secret_data, validate_template
from storage_token.secret_writer import (
    ANNOTATION_KEY_ID_HASH,
    ANNOTATION_REVISION,
    build_secret,
    is_owned_by,
    key_id_hash,
    secret_state,
    write_secret,
)

log = logging.getLogger(__name__)

FINALIZER = "storagetoken.dev/revoke-keys"
KIND = "StorageToken"
RESTART_ANNOTATION = "storagetoken.dev/restartedAt"

_ERROR_REASONS: tuple[tuple[type[ProviderError], str], ...] = (
    (RetryableError, reasons.PROVIDER_UNAVAILABLE),
    (CredentialsError, reasons.CREDENTIALS_INVALID),
    (PermissionDeniedError, reasons.PERMISSION_DENIED),
    (QuotaExceededError, reasons.QUOTA_EXCEEDED),
    (BadRequestError, reasons.REJECTED_BY_PROVIDER),
)


def rehearse_template(spec: TokenSpec) -> None:
    """Render the Secret once with placeholder values, so a bad template fails before any key exists."""
    validate_template(spec.secret.template)
    placeholder = KeyMaterial(
        provider="placeholder",
        key_id="placeholder-key-id",
        key_name="placeholder-key-name",
        access_key_id="PLACEHOLDERACCESSKEY",
        secret_access_key="placeholder-secret-access-key",
        endpoint="https://s3.placeholder.invalid",
        region="placeholder-1",
        buckets=spec.buckets,
        prefixes=spec.prefixes,
        expires_at=datetime(2000, 1, 1, tzinfo=UTC),
    )
    render_secret_data(placeholder, spec.secret.template)


def error_reason(error: ProviderError) -> str:
    return next((reason for cls, reason in _ERROR_REASONS if isinstance(error, cls)), reasons.ISSUE_FAILED)


@dataclass
class Outcome:
    """What a reconcile leaves behind: when to look again, and the latest body it wrote."""

    wakeup: datetime | None = None
    body: dict[str, Any] | None = None


class TokenController:
    def __init__(
        self,
        kube: Kube,
        pool: ProviderPool,
        events: EventRecorder,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube, self.pool, self.events, self.settings, self.clock = kube, pool, events, settings, clock
        self.missing_keys: set[str] = set()  # key ids the sweep found gone at their provider
        self.provider_cache: ProviderCache = {}  # the Manager shares its watch cache
        # (namespace, Secret name) -> resourceVersion of our last write: its watch event needs no reconcile.
        self.own_secret_writes: dict[tuple[str, str], str] = {}
        # Called with every token body this controller writes, so the Manager's cache runs ahead of the watch.
        self.on_written: Callable[[dict[str, Any]], None] = lambda body: None

    # -- entry ------------------------------------------------------------------
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
            self.on_written(patched)
            token = patched
        now = self.clock()
        try:
            spec = TokenSpec.parse(token.get("spec") or {}, default_secret_name=meta["name"])
            rehearse_template(spec)
        except (ValueError, TemplateError) as error:
            reason = reasons.TEMPLATE_ERROR if isinstance(error, TemplateError) else reasons.INVALID_SPEC
            return await self._blocked(token, TokenStatus.parse(token.get("status")), Verdict(reason, str(error)), now)
        status = TokenStatus.parse(token.get("status"))
        key_live = False if status.key_id and status.key_id in self.missing_keys else None
        value, secret = await gather(self.kube, self.settings, token, spec, now, key_live, self.provider_cache)
        decision = decide(value)
        if decision.blocked is not None:
            outcome = await self._blocked(token, status, decision.blocked, now)
        elif decision.issue is not None:
            assert value.provider.spec is not None
            try:
                handle = await self.pool.get(value.provider.spec)
            except ProviderError as error:  # e.g. the credentials Secret vanished since the provider was verified
                outcome = await self._failed(token, status, error, now, keep_intent=True)
            else:
                outcome = await self._issue(token, value, handle, decision.issue, secret)
        else:
            outcome = await self._steady(token, value)
        return await self._revoke_due(outcome.body or token, outcome)

    # -- issuing -----------------------------------------------------------------
    async def _issue(
        self,
        token: dict[str, Any],
        value: PolicyInput,
        handle: ProviderHandle,
        why: Verdict,
        secret: dict[str, Any] | None,
    ) -> Outcome:
        meta, status, spec = token["metadata"], value.status, value.spec
        provider_type = handle.spec.type
        issued: IssuedKey | None = None
        revision = status.revision + 1
        if status.intent is not None:
            revision = status.intent.revision
            name = status.intent.key_name
            # The create may have happened. If the Secret was already written with it (the crash came
            # between the Secret and the status), keep that key; otherwise US3 adopts the token found by
            # name and B2 deletes keys of that name (their secret is gone).
            try:
                written_key = await self._key_in_secret(handle, secret, meta["uid"], name, revision)
                if written_key is not None:
                    return await self._record_issued(token, value, handle, written_key, revision, why)
                issued = await handle.call(lambda p: p.recover(name), "recover")
            except ProviderError as error:
                return await self._failed(token, status, error, value.now, keep_intent=True)
            if issued is not None:
                log.info(
                    "adopted key %s for %s/%s after an interrupted issuance", name, meta["namespace"], meta["name"]
                )
        else:
            name = key_name(self.settings.cluster_id, meta["namespace"], meta["name"], meta["uid"], revision)
        if issued is None:
            # Write-ahead: the name is in status before the provider is asked.
            intent = {"keyName": name, "revision": revision, "since": format_time(value.now)}
            conditions = set_condition(
                (token.get("status") or {}).get("conditions") or [],
                "Issuing",
                True,
                why.reason,
                why.message,
                value.now,
                value.generation,
            )
            written = await self._patch_status(token, {"intent": intent, "conditions": conditions})
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
            data = render_secret_data(material, spec.secret.template)
        except TemplateError as error:
            await handle.call(lambda p: p.revoke(issued.key_id), "revoke")
            written = await self._patch_status(token, {"intent": None})
            return await self._blocked(written or token, status, Verdict(reasons.TEMPLATE_ERROR, str(error)), value.now)
        expires = format_time(issued.not_after)
        body = build_secret(token, spec.secret, data, issued.key_id, revision, expires)
        del data, material
        try:
            self.own_secret_writes[(meta["namespace"], spec.secret.name)] = await write_secret(self.kube, body, secret)
        except Conflict:
            # Someone wrote the Secret meanwhile: keep the intent (the key is adopted/replaced next run).
            return Outcome(wakeup=value.now, body=token)
        return await self._record_issued(token, value, handle, issued, revision, why)

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

    async def _record_issued(
        self,
        token: dict[str, Any],
        value: PolicyInput,
        handle: ProviderHandle,
        issued: IssuedKey,
        revision: int,
        why: Verdict,
    ) -> Outcome:
        meta, status, spec, now = token["metadata"], value.status, value.spec, value.now
        provider_name = f"{spec.provider_ref.kind}/{spec.provider_ref.name}"
        pending = list(TokenStatus.parse(token.get("status")).pending_revocations)
        if status.key_id and status.key_id != issued.key_id:
            grace = spec.revoke_grace_period
            if why.reason in (reasons.KEY_EXPIRED, reasons.KEY_REVOKED_AT_PROVIDER):
                grace = grace * 0  # nothing is using a dead key
            pending.append(
                PendingRevocation(
                    key_id=status.key_id,
                    key_name=status.key_name,
                    provider=status.provider or provider_name,
                    due_at=revocation_due(grace, now, status.not_after),
                    not_after=status.not_after,
                )
            )
        # Status keeps whole seconds: schedule from the values as stored, so a restart computes the same time.
        issued_at = parse_time(format_time(now))
        assert issued_at is not None
        renew_at = renewal_time(spec, issued_at, parse_time(format_time(issued.not_after)), f"{meta['uid']}/{revision}")
        conditions = (token.get("status") or {}).get("conditions") or []
        conditions = set_condition(
            conditions, "Issuing", False, reasons.ISSUED, f"issued key {issued.key_name}", now, value.generation
        )
        message = (
            f"key {issued.key_name} valid until {format_time(issued.not_after)}; renews at {format_time(renew_at)}"
        )
        conditions = set_condition(conditions, "Ready", True, reasons.ISSUED, message, now, value.generation)
        patch = {
            "observedGeneration": value.generation,
            "conditions": conditions,
            "providerType": handle.spec.type,
            "provider": provider_name,
            "secretName": spec.secret.name,
            "keyId": issued.key_id,
            "keyName": issued.key_name,
            "issuedAt": format_time(issued_at),
            "notAfter": format_time(issued.not_after),
            "renewalTime": format_time(renew_at),
            "revision": revision,
            "specHash": value.spec_hash,
            "intent": None,
            "failedAttempts": 0,
            "lastFailure": None,
            "nextAttempt": None,
            "handledRenewRequest": value.renew_request or None,
            "pendingRevocations": [p.to_status() for p in pending],
        }
        written = await self._patch_status(token, patch)
        self.missing_keys.discard(status.key_id)
        renewed = bool(status.key_id)
        metrics.record_issuance(handle.spec.type, "renewed" if renewed else "issued")
        await self.events.record(
            token,
            KIND,
            "Renewed" if renewed else reasons.ISSUED,
            f"issued key {issued.key_name} (revision {revision}, {why.reason}), "
            f"valid until {format_time(issued.not_after)}",
        )
        if renewed:
            await self._restart_targets(token, spec, now)
        if status.secret_name and status.secret_name != spec.secret.name:
            await self._delete_old_secret(meta, status.secret_name)
        return Outcome(
            wakeup=next_wakeup(now, renew_at, issued.not_after, None, pending),
            body=written or token,
        )

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
        suffix = f"; the current key stays in the Secret until {format_time(status.not_after)}" if still_valid else ""
        conditions = set_condition(
            conditions,
            "Ready",
            False,
            reason,
            f"{error}; attempt {attempts + 1} at {format_time(retry_at)}{suffix}",
            now,
            generation,
        )
        patch: dict[str, Any] = {
            "conditions": conditions,
            "failedAttempts": attempts,
            "lastFailure": {"time": format_time(now), "reason": reason, "message": str(error)},
            "nextAttempt": format_time(retry_at),
            "observedGeneration": generation,
        }
        if not keep_intent:
            patch["intent"] = None
        written = await self._patch_status(token, patch)
        log.warning("issuing for %s/%s failed (%s): %s", meta["namespace"], meta["name"], reason, error)
        await self.events.record(token, KIND, reasons.ISSUE_FAILED, f"{reason}: {error}", warning=True)
        wakeup = next_wakeup(now, None, status.not_after, retry_at, status.pending_revocations)
        return Outcome(wakeup=wakeup, body=written or token)

    async def _blocked(self, token: dict[str, Any], status: TokenStatus, why: Verdict, now: datetime) -> Outcome:
        meta = token["metadata"]
        generation = int(meta.get("generation") or 0)
        patch: dict[str, Any] = {}
        pending = list(status.pending_revocations)
        if why.reason == reasons.POLICY_VIOLATION and status.key_id:
            # The ceiling narrowed under an issued key: say so, then revoke it after the grace period.
            due = revocation_due(self._grace(token), now, status.not_after)
            pending.append(
                PendingRevocation(
                    status.key_id, status.key_name, due, provider=status.provider, not_after=status.not_after
                )
            )
            patch.update(
                pendingRevocations=[p.to_status() for p in pending],
                keyId=None,
                keyName=None,
                notAfter=None,
                renewalTime=None,
                issuedAt=None,
                specHash=None,
            )
            why = Verdict(why.reason, f"{why.message}; key {status.key_name} is revoked at {format_time(due)}")
        previous = condition((token.get("status") or {}).get("conditions"), "Ready")
        changed = previous is None or previous.get("reason") != why.reason or previous.get("message") != why.message
        written = None
        if patch or changed or (token.get("status") or {}).get("observedGeneration") != generation:
            patch["conditions"] = set_condition(
                (token.get("status") or {}).get("conditions") or [],
                "Ready",
                False,
                why.reason,
                why.message,
                now,
                generation,
            )
            patch["observedGeneration"] = generation
            written = await self._patch_status(token, patch)
        if changed:
            await self.events.record(token, KIND, why.reason, why.message, warning=True)
        # Nothing changes by itself for most blockers; provider readiness is watched. Look again later anyway.
        retry = now + backoff_delay(max(status.failed_attempts, 4), meta["uid"])
        return Outcome(wakeup=next_wakeup(now, None, None, retry, pending), body=written or token)

    @staticmethod
    def _grace(token: dict[str, Any]) -> timedelta:
        try:
            return TokenSpec.parse(token.get("spec") or {}, default_secret_name="").revoke_grace_period
        except ValueError:
            return timedelta(0)

    async def _steady(self, token: dict[str, Any], value: PolicyInput) -> Outcome:
        """Nothing to issue: keep renewalTime in step with the spec and Ready honest."""
        status, spec, now = value.status, value.spec, value.now
        if value.status.failed_attempts and value.status.next_attempt and value.status.next_attempt > now:
            return Outcome(
                wakeup=next_wakeup(
                    now, status.renewal_time, status.not_after, status.next_attempt, status.pending_revocations
                ),
                body=token,
            )
        renew_at = status.renewal_time
        if status.issued_at is not None:
            renew_at = renewal_time(spec, status.issued_at, status.not_after, f"{value.uid}/{status.revision}")
        patch: dict[str, Any] = {}
        if format_time(renew_at) != format_time(status.renewal_time):
            patch["renewalTime"] = format_time(renew_at)
        ready = condition((token.get("status") or {}).get("conditions"), "Ready")
        if ready is None or ready.get("status") != "True" or status.observed_generation != value.generation:
            message = (
                f"key {status.key_name} valid until {format_time(status.not_after)}; renews at {format_time(renew_at)}"
            )
            patch["conditions"] = set_condition(
                (token.get("status") or {}).get("conditions") or [],
                "Ready",
                True,
                reasons.ISSUED,
                message,
                now,
                value.generation,
            )
            patch["observedGeneration"] = value.generation
        written = await self._patch_status(token, patch) if patch else None
        return Outcome(
            wakeup=next_wakeup(now, renew_at, status.not_after, None, status.pending_revocations), body=written or token
        )

    # -- revoking ----------------------------------------------------------------
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
        if not status.key_id:
            revoked = {entry.key_id for entry in due} - {entry.key_id for entry in remaining}
            await self._delete_dead_secret(token, revoked)
        written = await self._patch_status(token, {"pendingRevocations": [p.to_status() for p in remaining]})
        wakeup = outcome.wakeup
        for entry in remaining:
            wakeup = entry.due_at if wakeup is None else min(wakeup, entry.due_at)
        return Outcome(wakeup=wakeup, body=written or token)

    async def _revoke(self, token: dict[str, Any], entry: PendingRevocation) -> str | None:
        """Revoke one key; None on success, else the error text (never key material)."""
        try:
            handle = await self._handle_for(token, entry.provider)
            if handle is None:
                return f"provider {entry.provider or 'of this token'} not found; the key expires on its own"
            await handle.call(lambda p: p.revoke(entry.key_id), "revoke")
        except NotFoundError:
            pass
        except ProviderError as error:
            metrics.record_revocation("failure")
            await self.events.record(
                token, KIND, reasons.REVOKE_FAILED, f"revoking key {entry.key_name} failed: {error}", warning=True
            )
            return str(error)
        metrics.record_revocation("revoked")
        self.missing_keys.discard(entry.key_id)
        await self.events.record(token, KIND, reasons.REVOKED, f"revoked key {entry.key_name}")
        return None

    async def _handle_for(self, token: dict[str, Any], provider: str) -> ProviderHandle | None:
        """The client of the provider that issued a key ("Kind/name"), ready or not: revoking is always safe."""
        if provider:
            kind, _, name = provider.partition("/")
            ref = ProviderRef(kind, name)
        else:
            ref = TokenSpec.parse(token.get("spec") or {}, default_secret_name="").provider_ref
        state = await resolve_provider(
            self.kube, self.settings, ref, token["metadata"]["namespace"], self.provider_cache
        )
        if state.spec is None:
            return None
        return await self.pool.get(state.spec)

    # -- deletion ------------------------------------------------------------------
    async def finalize(self, token: dict[str, Any]) -> Outcome:
        """Revoke what this token issued (current key unless Retain, queued keys, an unresolved intent)."""
        meta = token["metadata"]
        if FINALIZER not in (meta.get("finalizers") or ()):
            return Outcome()
        status = TokenStatus.parse(token.get("status"))
        retain = (token.get("spec") or {}).get("deletionPolicy") == "Retain"
        failures: list[str] = []
        entries = list(status.pending_revocations)
        if status.key_id and not retain:
            entries.append(PendingRevocation(status.key_id, status.key_name, self.clock(), provider=status.provider))
        for entry in entries:
            error = await self._revoke(token, entry)
            if error is not None and "not found" not in error:
                failures.append(error)
        if status.intent is not None and not failures:
            try:
                handle = await self._handle_for(token, status.provider)
                if handle is not None:
                    name = status.intent.key_name
                    adopted = await handle.call(lambda p: p.recover(name), "recover")
                    if adopted is not None and not retain:
                        key_id = adopted.key_id
                        await handle.call(lambda p: p.revoke(key_id), "revoke")
            except ProviderError as error:
                failures.append(str(error))
        if failures:
            # Keep the finalizer: the keys must not outlive the token unnoticed. Try again later.
            retry = self.clock() + backoff_delay(status.failed_attempts + 2, meta["uid"])
            return Outcome(wakeup=retry)
        finalizers = [f for f in meta.get("finalizers") or () if f != FINALIZER]
        await self.kube.patch_object(
            KIND,
            meta["namespace"],
            meta["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}},
        )
        log.info("released %s/%s (keys %s)", meta["namespace"], meta["name"], "retained" if retain else "revoked")
        return Outcome()

    # -- small steps ------------------------------------------------------------------
    async def _patch_status(self, token: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any] | None:
        meta = token["metadata"]
        try:
            written = await self.kube.patch_status(KIND, meta["namespace"], meta["name"], {"status": patch})
        except Conflict:
            return None
        if written is not None:
            self.on_written(written)
        return written

    async def _restart_targets(self, token: dict[str, Any], spec: TokenSpec, now: datetime) -> None:
        meta = token["metadata"]
        stamp = format_time(now)
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
        for target in spec.restart_targets:
            try:
                result = await self.kube.patch_workload(target.kind, meta["namespace"], target.name, patch)
            except Exception as error:  # noqa: BLE001 - a restart is best effort; the event says what failed
                result, reason = None, str(error)[:200]
            else:
                reason = "not found"
            if result is None:
                await self.events.record(
                    token,
                    KIND,
                    "RestartFailed",
                    f"could not restart {target.kind} {target.name}: {reason}",
                    warning=True,
                )

    async def _delete_dead_secret(self, token: dict[str, Any], revoked: set[str]) -> None:
        """A Secret left holding a revoked key and no successor is deleted rather than left to mislead."""
        meta = token["metadata"]
        name = (token.get("status") or {}).get("secretName") or meta["name"]
        secret = await self.kube.get_secret(meta["namespace"], name)
        if secret is None or not is_owned_by(secret, meta["uid"]):
            return
        held = ((secret.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_KEY_ID_HASH)
        if held in {key_id_hash(k) for k in revoked}:
            await self.kube.delete_secret(meta["namespace"], name, uid=secret["metadata"]["uid"])

    async def _delete_old_secret(self, meta: dict[str, Any], name: str) -> None:
        old = await self.kube.get_secret(meta["namespace"], name)
        if old is not None and is_owned_by(old, meta["uid"]):
            await self.kube.delete_secret(meta["namespace"], name, uid=old["metadata"]["uid"])
