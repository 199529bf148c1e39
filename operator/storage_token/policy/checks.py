"""The check chains. Each check looks at a PolicyInput and returns a Verdict or None; first hit wins.

`BLOCKERS` say why no key may be issued now (Ready=False, no provider call).
`TRIGGERS` say why a key must be issued now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage_token.api.durations import format_duration
from storage_token.policy import reasons
from storage_token.policy.ceiling import (
    ceiling_violation,
    manual_renewal_too_soon,
    provider_rule_violation,
    too_many_live_keys,
)
from storage_token.policy.inputs import PolicyInput
from storage_token.policy.schedule import renewal_held_until, renewal_windows_problem


@dataclass(frozen=True)
class Verdict:
    reason: str
    message: str


Check = Callable[[PolicyInput], Verdict | None]


def first(chain: Sequence[Check], value: PolicyInput) -> Verdict | None:
    for check in chain:
        verdict = check(value)
        if verdict is not None:
            return verdict
    return None


# -- blockers ---------------------------------------------------------------
# The ceiling and the provider's rules come from the provider's spec, not from its account:
# they are checked whenever the spec is known, also while the provider is NotReady, so a
# ceiling narrowed during an outage still ends in PolicyViolation (and revocation). They are
# not checked for a provider that doesn't admit the namespace: its ceiling is none of the
# token's business, and the message would show it to a namespace it doesn't serve.
def provider_unknown_or_foreign(value: PolicyInput) -> Verdict | None:
    provider = value.provider
    if provider.spec is None or provider.problem_reason == reasons.NAMESPACE_NOT_ALLOWED:
        reason = provider.problem_reason or reasons.PROVIDER_NOT_FOUND
        message = provider.problem_message or f"provider {value.spec.provider_ref.name!r} not found"
        return Verdict(reason, message)
    return None


def beyond_ceiling(value: PolicyInput) -> Verdict | None:
    provider = value.provider.spec
    if provider is None:
        return None
    message = ceiling_violation(value.spec, provider.ceiling, provider.type)
    return Verdict(reasons.POLICY_VIOLATION, message) if message else None


def against_provider_rules(value: PolicyInput) -> Verdict | None:
    provider = value.provider.spec
    if provider is None:
        return None
    message = provider_rule_violation(value.spec, provider.type, value.now)
    return Verdict(reasons.INVALID_SPEC, message) if message else None


def renewal_windows_unusable(value: PolicyInput) -> Verdict | None:
    message = renewal_windows_problem(value)
    return Verdict(reasons.INVALID_RENEWAL_WINDOW, message) if message else None


def provider_unusable(value: PolicyInput) -> Verdict | None:
    provider = value.provider
    if provider.spec is None or not provider.ready:
        reason = provider.problem_reason or reasons.PROVIDER_NOT_READY
        message = provider.problem_message or f"provider {value.spec.provider_ref.name!r} is not ready"
        return Verdict(reason, message)
    return None


def secret_owned_by_someone_else(value: PolicyInput) -> Verdict | None:
    if not value.secret.exists or value.secret.owned:
        return None
    name = value.spec.secret.name
    provider = value.provider.spec
    if provider is not None and provider.namespace == value.namespace and provider.credentials_secret == name:
        # Deleting it would break the provider for every token: never suggest that here.
        return Verdict(
            reasons.SECRET_CONFLICT,
            f"Secret {name!r} holds the account credentials of {provider.kind} {provider.name!r}; "
            "choose another spec.secret.name",
        )
    return Verdict(
        reasons.SECRET_CONFLICT,
        f"Secret {name!r} exists and is not owned by this StorageToken; "
        "choose another spec.secret.name, or delete that Secret if nothing else uses it",
    )


def backing_off(value: PolicyInput) -> Verdict | None:
    due = value.status.next_attempt
    if value.status.failed_attempts > 0 and due is not None and due > value.now:
        return Verdict(reasons.BACKING_OFF, f"attempt {value.status.failed_attempts + 1} due at {due.isoformat()}")
    return None


BLOCKERS: tuple[Check, ...] = (
    provider_unknown_or_foreign,
    beyond_ceiling,
    against_provider_rules,
    renewal_windows_unusable,
    provider_unusable,
    secret_owned_by_someone_else,
)


# -- triggers ---------------------------------------------------------------
def never_issued(value: PolicyInput) -> Verdict | None:
    if not value.status.key_id and value.status.intent is None:
        return Verdict(reasons.FIRST_ISSUE, "no key issued yet")
    return None


def intent_left_over(value: PolicyInput) -> Verdict | None:
    intent = value.status.intent
    if intent is not None:
        return Verdict(reasons.RECOVERING_INTENT, f"resolving key {intent.key_name!r} whose issuance was interrupted")
    return None


def spec_changed(value: PolicyInput) -> Verdict | None:
    if value.status.spec_hash and value.status.spec_hash != value.spec_hash:
        return Verdict(reasons.SPEC_CHANGED, "the key's scope changed in the spec")
    return None


def secret_missing(value: PolicyInput) -> Verdict | None:
    if not value.secret.exists:
        return Verdict(reasons.SECRET_MISSING, f"Secret {value.spec.secret.name!r} does not exist")
    return None


def secret_modified(value: PolicyInput) -> Verdict | None:
    if value.secret.key_id_hash != value.current_key_id_hash or not value.secret.intact:
        return Verdict(reasons.SECRET_MODIFIED, f"Secret {value.spec.secret.name!r} no longer holds the current key")
    return None


def key_expired(value: PolicyInput) -> Verdict | None:
    not_after = value.status.not_after
    if not_after is not None and not_after <= value.now:
        return Verdict(reasons.KEY_EXPIRED, f"the current key expired at {not_after.isoformat()}")
    return None


def key_gone_at_provider(value: PolicyInput) -> Verdict | None:
    if value.key_live is False:
        return Verdict(reasons.KEY_REVOKED_AT_PROVIDER, "the provider no longer has the current key")
    return None


def manual_renewal_requested(value: PolicyInput) -> Verdict | None:
    if value.renew_request and value.renew_request != value.handled_renew_request:
        return Verdict(reasons.MANUAL_RENEWAL, f"renewal requested ({value.renew_request})")
    return None


def renewal_due(value: PolicyInput) -> Verdict | None:
    due = value.status.renewal_time
    if due is not None and due <= value.now and renewal_held_until(value) is None:  # a missed window waits
        return Verdict(reasons.RENEWAL_DUE, f"renewal was due at {due.isoformat()}")
    return None


TRIGGERS: tuple[Check, ...] = (
    never_issued,
    intent_left_over,
    spec_changed,
    secret_missing,
    secret_modified,
    key_expired,
    key_gone_at_provider,
    manual_renewal_requested,
    renewal_due,
)


@dataclass(frozen=True)
class Decision:
    """What to do now: `issue` with its reason, or `blocked` with why not, or nothing."""

    issue: Verdict | None = None
    blocked: Verdict | None = None
    backoff: Verdict | None = None


# Triggers that replace a key still live at the provider (so one more key would be live meanwhile).
_ROTATIONS = frozenset(
    {reasons.SPEC_CHANGED, reasons.SECRET_MISSING, reasons.SECRET_MODIFIED, reasons.MANUAL_RENEWAL, reasons.RENEWAL_DUE}
)


_EDITS = frozenset({reasons.SPEC_CHANGED, reasons.SECRET_MISSING, reasons.SECRET_MODIFIED})


def minting_limited(value: PolicyInput, trigger: Verdict) -> Verdict | None:
    """The provider's limits against minting: live keys per token, and the manual-renewal rate."""
    if value.provider.spec is None or trigger.reason not in _ROTATIONS:
        return None  # a first issue, a recovery or a dead key's replacement always goes ahead
    ceiling = value.provider.spec.ceiling
    if trigger.reason == reasons.MANUAL_RENEWAL:
        message = manual_renewal_too_soon(value.status.issued_at, value.now, ceiling)
        if message:
            return Verdict(reasons.RENEWAL_RATE_LIMITED, message)
    issued_at = value.status.issued_at
    if trigger.reason in _EDITS and issued_at is not None and value.now < issued_at + ceiling.min_renewal_interval:
        # Spec edits and Secret deletions are in the tenant's hands: each would otherwise mint a key.
        return Verdict(
            reasons.RENEWAL_RATE_LIMITED,
            f"{trigger.message}; keys of this provider are replaced at most every "
            f"{format_duration(ceiling.min_renewal_interval)}, the next at "
            f"{(issued_at + ceiling.min_renewal_interval).isoformat()}",
        )
    message = too_many_live_keys(len(value.status.pending_revocations), ceiling, has_current=bool(value.status.key_id))
    return Verdict(reasons.TOO_MANY_LIVE_KEYS, message) if message else None


def decide(value: PolicyInput) -> Decision:
    """Blockers first (bad input never reaches the provider), then triggers, then limits and backoff."""
    blocked = first(BLOCKERS, value)
    if blocked is not None:
        return Decision(blocked=blocked)
    trigger = first(TRIGGERS, value)
    if trigger is None:
        return Decision()
    waiting = minting_limited(value, trigger) or backing_off(value)
    if waiting is not None:
        return Decision(backoff=waiting)
    return Decision(issue=trigger)
