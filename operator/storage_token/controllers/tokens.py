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

from storage_token.api.conditions import condition, set_condition
from storage_token.api.naming import key_name
from storage_token.api.times import format_time, parse_time
from storage_token.api.token import PendingRevocation, ProviderRef, TokenSpec, TokenStatus
from storage_token.controllers.gather import ProviderCache, gather, resolve_provider
from storage_token.controllers.secret_writer import (
    ANNOTATION_KEY_ID_HASH,
    ANNOTATION_REVISION,
    build_secret,
    is_owned_by,
    key_id_hash,
    secret_state,
    write_secret,
)
from storage_token.kube.api import Conflict, Kube
from storage_token.kube.events import EventRecorder
from storage_token.policy import reasons
from storage_token.policy.ceiling import manual_renewal_allowed_at
from storage_token.policy.checks import Verdict, decide
from storage_token.policy.inputs import PolicyInput
from storage_token.policy.schedule import (
    backoff_delay,
    backoff_wakeup,
    due_revocations,
    next_wakeup,
    renewal_time,
    revocation_due,
)
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
from storage_token.runtime import metrics
from storage_token.runtime.provider_pool import ProviderHandle, ProviderPool
from storage_token.runtime.settings import Settings
from storage_token.secrets.checks import secret_problems
from storage_token.secrets.render import KeyMaterial, TemplateError
from storage_token.secrets.worker import BoundedRenderer, RenderWorkerError

log = logging.getLogger(__name__)

FINALIZER = "storagetoken.dev/revoke-keys"
# Set on a token being deleted to let it go without revoking (the keys then expire on their own).
ABANDON_ANNOTATION = "storagetoken.dev/abandon-keys"
KIND = "StorageToken"
DEFAULT_GRACE = timedelta(minutes=5)
MIN_LIMITED_WAIT = timedelta(seconds=1)
RENDER_RETRY = timedelta(
    seconds=30
)  # the render workers could not start  # a limited renewal is never re-checked in a tight loop
RESTART_ANNOTATION = "storagetoken.dev/restartedAt"

_ERROR_REASONS: tuple[tuple[type[ProviderError], str], ...] = (
    (RetryableError, reasons.PROVIDER_UNAVAILABLE),
    (CredentialsError, reasons.CREDENTIALS_INVALID),
    (PermissionDeniedError, reasons.PERMISSION_DENIED),
    (QuotaExceededError, reasons.QUOTA_EXCEEDED),
    (BadRequestError, reasons.REJECTED_BY_PROVIDER),
)


def _unreachable(provider: str) -> ProviderError:
    return RetryableError(f"provider {provider} of an interrupted issuance can't be reached yet", call="recover")


def _where(meta: dict[str, Any]) -> tuple[str, str]:
    return meta["namespace"], meta["name"]


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
        renderer: BoundedRenderer | None = None,
    ) -> None:
        self.kube, self.pool, self.events, self.settings, self.clock = kube, pool, events, settings, clock
        # Tenant templates render in bounded worker processes, never on the event loop.
        self.renderer = renderer or BoundedRenderer(workers=2)  # one slow template never holds every render
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
        status = TokenStatus.parse(token.get("status"))
        try:
            spec = TokenSpec.parse(token.get("spec") or {}, default_secret_name=meta["name"])
            await self._rehearse(spec)
        except (ValueError, TemplateError) as error:
            # A broken spec blocks issuing, never revoking: queued keys still go when due.
            reason = reasons.TEMPLATE_ERROR if isinstance(error, TemplateError) else reasons.INVALID_SPEC
            blocked = await self._blocked(token, status, Verdict(reason, str(error)), now)
            return await self._revoke_due(blocked.body or token, blocked)
        except RenderWorkerError as error:  # our infrastructure, not the tenant's input: try again soon
            log.warning("rendering for %s/%s unavailable: %s", *_where(meta), error)
            return await self._revoke_due(token, Outcome(wakeup=now + RENDER_RETRY, body=token))
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
        elif decision.backoff is not None and decision.backoff.reason in reasons.MINTING_LIMITS:
            outcome = await self._limited(token, value, decision.backoff)
        else:
            outcome = await self._steady(token, value)
        return await self._revoke_due(outcome.body or token, outcome)

    async def _rehearse(self, spec: TokenSpec) -> None:
        """Build the whole Secret with placeholder keys, checked as the API server would check it,
        so bad input fails before any key exists (the outcome is cached per template)."""
        data = await self.renderer.rehearse(spec.secret.template, spec.buckets, spec.prefixes)
        problem = secret_problems(data, spec.secret.labels, spec.secret.annotations)
        if problem:
            raise ValueError(f"spec.secret: {problem}")

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
        label = f"{handle.spec.kind}/{handle.spec.name}"
        if status.intent is not None and status.intent.provider not in ("", label):
            # providerRef changed since the intent: resolve it where the key was asked for, then start over.
            leftover = await self._resolve_abandoned_intent(token, status, value.now)
            if leftover is None:
                return await self._failed(
                    token, status, _unreachable(status.intent.provider), value.now, keep_intent=True
                )
            pending = [p.to_status() for p in (*status.pending_revocations, *leftover)]
            written = await self._patch_status(token, {"intent": None, "pendingRevocations": pending})
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
            intent = {
                "keyName": name,
                "revision": revision,
                "since": format_time(value.now),
                "specHash": value.spec_hash,
                "provider": label,
            }
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
        body = build_secret(token, spec.secret, data, issued.key_id, revision, expires)
        del data, material
        try:
            self.own_secret_writes[(meta["namespace"], spec.secret.name)] = await write_secret(self.kube, body, secret)
        except Conflict:
            # Someone wrote the Secret meanwhile: keep the intent (the key is adopted/replaced next run).
            return Outcome(wakeup=value.now, body=token)
        return await self._record_issued(token, value, handle, issued, revision, why, value.spec_hash)

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
        patch = {
            "intent": None,
            "conditions": conditions,
            "failedAttempts": attempts,
            "lastFailure": {"time": format_time(now), "reason": reasons.TEMPLATE_ERROR, "message": message},
            "nextAttempt": format_time(retry_at),
            "pendingRevocations": [p.to_status() for p in pending],
            "observedGeneration": generation,
        }
        written = await self._patch_status(token, patch)
        await self.events.record(token, KIND, reasons.TEMPLATE_ERROR, message, warning=True)
        return Outcome(wakeup=backoff_wakeup(now, retry_at, status.not_after, pending), body=written or token)

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
        spec_hash: str,
    ) -> Outcome:
        """`spec_hash`: the spec the key was asked for (a recovered key may predate a spec change)."""
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
                    secret_name=status.secret_name,
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
            "specHash": spec_hash,
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
        wakeup = backoff_wakeup(now, retry_at, status.not_after, status.pending_revocations)
        return Outcome(wakeup=wakeup, body=written or token)

    async def _blocked(self, token: dict[str, Any], status: TokenStatus, why: Verdict, now: datetime) -> Outcome:
        """No key may be issued now. Losing admission queues the current key for revocation; an
        unresolved intent is resolved (its key revoked) rather than left live and unreferenced."""
        meta = token["metadata"]
        generation = int(meta.get("generation") or 0)
        patch: dict[str, Any] = {}
        pending = list(status.pending_revocations)
        if status.intent is not None:
            leftover = await self._resolve_abandoned_intent(token, status, now)
            if leftover is not None:
                pending += leftover
                patch["intent"] = None
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
            patch.update(keyId=None, keyName=None, notAfter=None, renewalTime=None, issuedAt=None, specHash=None)
            why = Verdict(why.reason, f"{why.message}; key {status.key_name} is revoked at {format_time(due)}")
        if pending != list(status.pending_revocations):
            patch["pendingRevocations"] = [p.to_status() for p in pending]
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

    async def _resolve_abandoned_intent(
        self, token: dict[str, Any], status: TokenStatus, now: datetime
    ) -> list[PendingRevocation] | None:
        """While blocked, an intent's key (if the create happened) is queued for revocation now.

        None when the provider can't be asked (the intent stays, and is retried)."""
        assert status.intent is not None
        name, revision = status.intent.key_name, status.intent.revision
        try:
            handle = await self._handle_for(token, status.intent.provider or status.provider)
            if handle is None:
                return None
            found = await handle.call(lambda p: p.recover(name), "recover")
        except (ProviderError, ValueError):
            return None
        # The crash may have come after the Secret write: that Secret holds the key being revoked.
        await self._delete_secret_of_revision(token, revision)
        if found is None:  # nothing was created, or B2 already deleted it by name
            return []
        provider = f"{handle.spec.kind}/{handle.spec.name}"
        return [PendingRevocation(found.key_id, found.key_name, now, provider=provider, not_after=found.not_after)]

    @staticmethod
    def _grace(token: dict[str, Any]) -> timedelta:
        try:
            return TokenSpec.parse(token.get("spec") or {}, default_secret_name="").revoke_grace_period
        except ValueError:
            return DEFAULT_GRACE  # a spec too broken to read its grace gets the documented default

    async def _steady(self, token: dict[str, Any], value: PolicyInput) -> Outcome:
        """Nothing to issue: keep renewalTime in step with the spec and Ready honest."""
        status, spec, now = value.status, value.spec, value.now
        if status.failed_attempts and status.next_attempt and status.next_attempt > now:
            wakeup = backoff_wakeup(now, status.next_attempt, status.not_after, status.pending_revocations)
            return Outcome(wakeup=wakeup, body=token)
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
            written = await self._patch_status(token, {"conditions": conditions})
            await self.events.record(token, KIND, why.reason, why.message, warning=True)
        return Outcome(wakeup=max(retry, now + MIN_LIMITED_WAIT), body=written or token)

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

    async def _revoke(self, token: dict[str, Any], entry: PendingRevocation) -> str | None:
        """Revoke one key; None on success, else the error text (never key material)."""
        try:
            handle = await self._handle_for(token, entry.provider)
            if handle is None:
                return f"provider {entry.provider or 'of this token'} not found; retrying until it is back"
            await handle.call(lambda p: p.revoke(entry.key_id), "revoke")
        except NotFoundError:
            pass  # the provider says the key is gone: that is the confirmation we wait for
        except ValueError as error:  # no provider recorded and a spec too broken to name one
            return str(error)
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
        retain = (token.get("spec") or {}).get("deletionPolicy") == "Retain"
        failures: list[str] = []
        remaining: list[PendingRevocation] = []
        current_revoked = False
        entries = list(status.pending_revocations)
        if status.key_id and not retain:
            entries.append(PendingRevocation(status.key_id, status.key_name, now, provider=status.provider))
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
                "releasing %s/%s with %d key(s) unrevoked (%s)", *_where(meta), len(failures), ABANDON_ANNOTATION
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
        patch: dict[str, Any] = {"conditions": conditions, "pendingRevocations": [p.to_status() for p in queued]}
        if current_revoked:
            patch.update(keyId=None, keyName=None)
        if not intent_open:
            patch["intent"] = None
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

    def _key_name(self, meta: dict[str, Any], revision: int) -> str:
        return key_name(self.settings.install_digest, meta["namespace"], meta["name"], meta["uid"], revision)

    # -- small steps ------------------------------------------------------------------
    async def _patch_status(self, token: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any] | None:
        meta = token["metadata"]
        # Conditional on the version this reconcile read: a stale writer (an old leader, a lagging cache)
        # gets a Conflict instead of silently overwriting newer status.
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}
        try:
            written = await self.kube.patch_status(KIND, meta["namespace"], meta["name"], body)
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

    async def _delete_dead_secret(self, token: dict[str, Any], revoked: list[PendingRevocation]) -> None:
        """A Secret of ours left holding a revoked key is deleted rather than left to mislead: the
        current Secret, and the Secret each key was recorded in (an old name after a rename)."""
        meta = token["metadata"]
        hashes = {key_id_hash(entry.key_id) for entry in revoked}
        names = {(token.get("status") or {}).get("secretName") or meta["name"]}
        names.update(entry.secret_name for entry in revoked if entry.secret_name)
        for name in sorted(names):
            secret = await self.kube.get_secret(meta["namespace"], name)
            if secret is None or not is_owned_by(secret, meta["uid"]):
                continue
            held = ((secret.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_KEY_ID_HASH)
            if held in hashes:
                await self.kube.delete_secret(meta["namespace"], name, uid=secret["metadata"]["uid"])

    async def _delete_secret_of_revision(self, token: dict[str, Any], revision: int) -> None:
        """Delete our Secret if it was written for `revision` (whose key is being given up)."""
        meta = token["metadata"]
        names = {(token.get("status") or {}).get("secretName") or meta["name"]}
        names.add(((token.get("spec") or {}).get("secret") or {}).get("name") or meta["name"])
        for name in sorted(names):
            secret = await self.kube.get_secret(meta["namespace"], name)
            if secret is None or not is_owned_by(secret, meta["uid"]):
                continue
            annotations = (secret.get("metadata") or {}).get("annotations") or {}
            if annotations.get(ANNOTATION_REVISION) == str(revision):
                await self.kube.delete_secret(meta["namespace"], name, uid=secret["metadata"]["uid"])

    async def _delete_old_secret(self, meta: dict[str, Any], name: str) -> None:
        old = await self.kube.get_secret(meta["namespace"], name)
        if old is not None and is_owned_by(old, meta["uid"]):
            await self.kube.delete_secret(meta["namespace"], name, uid=old["metadata"]["uid"])
