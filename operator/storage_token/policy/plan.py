"""What the operator would do to a token, without doing it: the reconciler's own decision, spelled out.

`plan_token` runs the same `decide` as controllers/tokens.py and turns its Decision into the
action and the provider calls the steps would make (controllers/steps: issuing, recording,
readiness, revocation), at the times policy/schedule gives them. `plan_unreadable` does the
same for a token whose spec or template the controller refuses before gathering anything.

Pure: no I/O; time comes in through the PolicyInput. The CLI (`storage-token plan`) gathers the
input with the controller's own gather code from GETs and LISTs only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage_token.api.naming import key_name
from storage_token.api.token import TokenStatus
from storage_token.policy import reasons
from storage_token.policy.checks import Decision, Verdict, decide
from storage_token.policy.inputs import PolicyInput
from storage_token.policy.rollout import revocation_window
from storage_token.policy.schedule import renewal_time, revocation_due

# Actions, one per token: what the next reconcile does.
ISSUE = "issue"  # the first key
RENEW = "renew"  # a new key replaces the current one, which is revoked after the grace period
RECOVER = "recover"  # an interrupted issuance is resolved first (adopted, or deleted and issued again)
REVOKE = "revoke"  # blocked, and the token may no longer hold its key: revoked after the grace period
BLOCK = "block"  # blocked; nothing is issued (and there is no current key to revoke)
WAIT = "wait"  # a renewal is held back (backoff, minting limits); the current key stays
NOTHING = "none"

# Provider calls, as the provider clients name them (providers/base.Provider).
CALL_ISSUE = "issue"
CALL_REVOKE = "revoke"
CALL_RECOVER = "recover"

# Replacing a dead key revokes the old one at once: nothing is using it (controllers/steps/recording.py).
DELETING = "Deleting"  # not a condition reason: the finalizer's work
DEFAULT_GRACE = timedelta(minutes=5)  # a spec too broken to read its grace period (steps/base.py)
_DIGEST_OF_NAME = re.compile(r"^sto-([0-9a-f]{10})-")


@dataclass(frozen=True)
class PlannedCall:
    """One provider call the operator would make; `at` is now or when it falls due."""

    call: str  # CALL_ISSUE | CALL_REVOKE | CALL_RECOVER
    provider: str  # Kind/name
    key_name: str
    at: datetime
    why: str
    queued: bool = False  # already in status.pendingRevocations: happens whatever the change
    latest: datetime | None = None  # waits for the restart targets' rollout: `at` is the earliest, this the latest


@dataclass(frozen=True)
class TokenPlan:
    namespace: str
    name: str
    action: str
    reason: str  # the policy/reasons vocabulary ("" when nothing happens)
    message: str
    calls: tuple[PlannedCall, ...] = ()
    restarts: tuple[str, ...] = ()  # Kind/name of the workloads restarted after the rotation
    renewal_time: datetime | None = None  # when the (new or current) key renews
    not_after: datetime | None = None  # when the current key expires

    @property
    def changes(self) -> bool:
        """Would the operator do anything new (queued revocations happen anyway)?"""
        return self.action != NOTHING or any(not call.queued for call in self.calls)


def digest_from_key_name(name: str) -> str:
    """The install digest a key name of ours carries, or "" (naming.key_name's layout)."""
    match = _DIGEST_OF_NAME.match(name)
    return match.group(1) if match else ""


def _install_digest(status: TokenStatus) -> str:
    names = [status.key_name, status.intent.key_name if status.intent else ""]
    names += [p.key_name for p in status.pending_revocations]
    return next((d for d in map(digest_from_key_name, names) if d), "")


def next_key_name(value: PolicyInput, revision: int) -> str:
    """The name the next key gets; a placeholder when the token has no uid or install identity yet."""
    digest = _install_digest(value.status)
    if not digest or not value.uid:
        return f"(revision {revision}, named when the operator issues it)"
    return key_name(digest, value.namespace, value.name, value.uid, revision)


def _queued(status: TokenStatus, now: datetime, fallback_provider: str) -> list[PlannedCall]:
    return [
        PlannedCall(
            CALL_REVOKE,
            pending.provider or fallback_provider,
            pending.key_name,
            max(pending.due_at, now),
            "queued for revocation" + (f" (attempt {pending.attempts + 1})" if pending.attempts else ""),
            queued=True,
        )
        for pending in status.pending_revocations
    ]


def _blocked(
    namespace: str,
    name: str,
    status: TokenStatus,
    why: Verdict,
    grace: timedelta,
    now: datetime,
    provider_label: str,
) -> TokenPlan:
    """readiness._blocked: an open intent is resolved, and losing admission revokes the current key."""
    calls = _queued(status, now, provider_label)
    if status.intent is not None:
        calls.append(
            PlannedCall(
                CALL_RECOVER,
                status.intent.provider or status.provider or provider_label,
                status.intent.key_name,
                now,
                "an interrupted issuance is resolved: the key is revoked at once if it was created",
            )
        )
    if why.reason in reasons.REVOKE_CURRENT_KEY and status.key_id:
        due = revocation_due(grace, now, status.not_after)
        calls.append(
            PlannedCall(
                CALL_REVOKE,
                status.provider or provider_label,
                status.key_name,
                due,
                f"the token may no longer hold it ({why.reason}); after the grace period",
            )
        )
        return TokenPlan(namespace, name, REVOKE, why.reason, why.message, tuple(calls), not_after=status.not_after)
    return TokenPlan(namespace, name, BLOCK, why.reason, why.message, tuple(calls), not_after=status.not_after)


def plan_unreadable(
    namespace: str,
    name: str,
    status: TokenStatus,
    reason: str,
    message: str,
    now: datetime,
    grace: timedelta | None = None,
    provider_label: str = "",
) -> TokenPlan:
    """A spec that does not parse (InvalidSpec) or a template that does not render (TemplateError)."""
    return _blocked(namespace, name, status, Verdict(reason, message), grace or DEFAULT_GRACE, now, provider_label)


def _replaced(value: PolicyInput, why: Verdict, label: str) -> PlannedCall:
    """The old key's revocation after a rotation: after the grace period, or once the restart targets
    have rolled out (between the grace period and maxRevokeDelay, policy/rollout.py)."""
    status, spec, now = value.status, value.spec, value.now
    provider = status.provider or label
    if why.reason in reasons.DEAD_KEY:
        due = revocation_due(timedelta(0), now, status.not_after)
        return PlannedCall(CALL_REVOKE, provider, status.key_name, due, "replaced; nothing uses a dead key")
    if spec.restart_targets:
        floor, ceiling = revocation_window(spec.revoke_grace_period, spec.max_revoke_delay, now, status.not_after)
        return PlannedCall(
            CALL_REVOKE,
            provider,
            status.key_name,
            floor,
            "replaced; once every restart target has rolled out, not before the grace period ends",
            latest=ceiling,
        )
    due = revocation_due(spec.revoke_grace_period, now, status.not_after)
    return PlannedCall(CALL_REVOKE, provider, status.key_name, due, "replaced; after the grace period")


def plan_deletion(namespace: str, name: str, status: TokenStatus, retain: bool, now: datetime) -> TokenPlan:
    """A token being deleted (steps/deletion.finalize): every key it holds is revoked now, the current one
    unless `deletionPolicy: Retain`; the finalizer goes when the provider confirmed."""
    calls = [
        PlannedCall(CALL_REVOKE, p.provider or status.provider, p.key_name, now, "the token is being deleted")
        for p in status.pending_revocations
    ]
    if status.key_id and not retain:
        calls.append(PlannedCall(CALL_REVOKE, status.provider, status.key_name, now, "the token is being deleted"))
    if status.intent is not None:
        calls.append(
            PlannedCall(
                CALL_RECOVER,
                status.intent.provider or status.provider,
                status.intent.key_name,
                now,
                "an interrupted issuance: revoked if it was created" + (" (kept: Retain)" if retain else ""),
            )
        )
    kept = f"; key {status.key_name} is kept (deletionPolicy Retain)" if retain and status.key_id else ""
    return TokenPlan(namespace, name, REVOKE, DELETING, f"the token is being deleted{kept}", tuple(calls))


def plan_token(value: PolicyInput, decision: Decision | None = None) -> TokenPlan:
    """What the next reconcile of `value` does (tokens.TokenController.reconcile, step by step)."""
    decision = decision or decide(value)
    status, spec, now = value.status, value.spec, value.now
    ref = spec.provider_ref
    label = f"{ref.kind}/{ref.name}"
    namespace, name = value.namespace, value.name
    if decision.blocked is not None:
        return _blocked(namespace, name, status, decision.blocked, spec.revoke_grace_period, now, label)
    calls = _queued(status, now, label)
    if decision.issue is not None:
        why = decision.issue
        if status.intent is not None:
            where = status.intent.provider or label
            if status.intent.provider not in ("", label):
                detail = "resolved where it was asked for (revoked if created), then a key is issued here"
            else:
                detail = "US3 adopts the key found by name; B2 deletes keys of that name and issues again"
            calls.append(PlannedCall(CALL_RECOVER, where, status.intent.key_name, now, detail))
            return TokenPlan(
                namespace, name, RECOVER, why.reason, why.message, tuple(calls), not_after=status.not_after
            )
        revision = status.revision + 1
        calls.append(PlannedCall(CALL_ISSUE, label, next_key_name(value, revision), now, why.message))
        # The provider may grant less than asked; the renewal is scheduled from what it grants.
        renews = renewal_time(spec, now, now + spec.duration, f"{value.uid}/{revision}")
        if not status.key_id:
            return TokenPlan(namespace, name, ISSUE, why.reason, why.message, tuple(calls), renewal_time=renews)
        restarts = tuple(f"{target.kind}/{target.name}" for target in spec.restart_targets)
        calls.append(_replaced(value, why, label))
        return TokenPlan(
            namespace,
            name,
            RENEW,
            why.reason,
            why.message,
            tuple(calls),
            restarts=restarts,
            renewal_time=renews,
            not_after=status.not_after,
        )
    current: datetime | None = status.renewal_time
    if status.issued_at is not None:
        # readiness._steady: timing fields apply to the current key without a new one.
        current = renewal_time(spec, status.issued_at, status.not_after, f"{value.uid}/{status.revision}")
    if decision.backoff is not None:
        return TokenPlan(
            namespace,
            name,
            WAIT,
            decision.backoff.reason,
            decision.backoff.message,
            tuple(calls),
            renewal_time=current,
            not_after=status.not_after,
        )
    message = f"key {status.key_name} stays" if status.key_id else "nothing to do"
    return TokenPlan(
        namespace, name, NOTHING, "", message, tuple(calls), renewal_time=current, not_after=status.not_after
    )


def summarize(plans: Iterable[TokenPlan]) -> dict[str, int]:
    """How many tokens get each action, in the order of the constants above."""
    order = (ISSUE, RENEW, RECOVER, REVOKE, BLOCK, WAIT, NOTHING)
    counts = dict.fromkeys(order, 0)
    for plan in plans:
        counts[plan.action] = counts.get(plan.action, 0) + 1
    return {action: count for action, count in counts.items() if count}
