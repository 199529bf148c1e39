"""The decision chain as a table: each row is a situation a token can be in, and what must happen."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from builders import OPEN_CEILING, PROVIDER

from storage_token.api.provider import Ceiling
from storage_token.api.token import Intent, ProviderRef, SecretSpec, TokenSpec, TokenStatus
from storage_token.policy import reasons
from storage_token.policy.checks import decide
from storage_token.policy.inputs import PolicyInput, ProviderState, SecretState

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SPEC = TokenSpec(
    provider_ref=ProviderRef("StorageProvider", "b2"),
    permissions=("read", "list"),
    duration=timedelta(hours=24),
    secret=SecretSpec(name="app-storage"),
    buckets=("team-a-logs",),
)
HEALTHY_STATUS = TokenStatus(
    key_id="K1",
    key_name="sto-default-team-a-app-1234abcd-r1",
    not_after=NOW + timedelta(hours=10),
    issued_at=NOW - timedelta(hours=14),
    renewal_time=NOW + timedelta(hours=2),
    revision=1,
    spec_hash="H",
)
HEALTHY = PolicyInput(
    namespace="team-a",
    name="app",
    uid="1234abcd-0000",
    generation=1,
    spec=SPEC,
    spec_hash="H",
    status=HEALTHY_STATUS,
    secret=SecretState(exists=True, owned=True, key_id_hash="h(K1)", intact=True),
    provider=ProviderState(spec=PROVIDER, ready=True),
    now=NOW,
    current_key_id_hash="h(K1)",
)


def with_status(**changes: object) -> PolicyInput:
    return replace(HEALTHY, status=replace(HEALTHY_STATUS, **changes))


CASES = [
    ("a healthy token before its renewal time needs nothing", HEALTHY, None),
    ("a new token is issued", replace(HEALTHY, status=TokenStatus(), secret=SecretState()), reasons.FIRST_ISSUE),
    (
        "an interrupted issuance is resolved before anything else",
        with_status(intent=Intent("sto-x-r2", 2, NOW)),
        reasons.RECOVERING_INTENT,
    ),
    ("a changed scope re-issues", replace(HEALTHY, spec_hash="H2"), reasons.SPEC_CHANGED),
    ("a deleted Secret re-issues", replace(HEALTHY, secret=SecretState()), reasons.SECRET_MISSING),
    (
        "a Secret whose data was edited re-issues",
        replace(HEALTHY, secret=replace(HEALTHY.secret, intact=False)),
        reasons.SECRET_MODIFIED,
    ),
    (
        "a Secret holding another key re-issues",
        replace(HEALTHY, secret=replace(HEALTHY.secret, key_id_hash="h(K0)")),
        reasons.SECRET_MODIFIED,
    ),
    ("an expired key re-issues", with_status(not_after=NOW - timedelta(seconds=1)), reasons.KEY_EXPIRED),
    ("a key revoked at the provider re-issues", replace(HEALTHY, key_live=False), reasons.KEY_REVOKED_AT_PROVIDER),
    ("a renewal annotation re-issues", replace(HEALTHY, renew_request="now"), reasons.MANUAL_RENEWAL),
    (
        "a renewal annotation already acted on does nothing",
        replace(HEALTHY, renew_request="now", handled_renew_request="now"),
        None,
    ),
    ("a due renewal re-issues", with_status(renewal_time=NOW - timedelta(seconds=1)), reasons.RENEWAL_DUE),
]


@pytest.mark.parametrize(("situation", "value", "reason"), CASES, ids=[c[0] for c in CASES])
def test_triggers(situation: str, value: PolicyInput, reason: str | None) -> None:
    decision = decide(value)
    assert decision.blocked is None
    assert (decision.issue.reason if decision.issue else None) == reason


BLOCKED = [
    (
        "a missing provider blocks without a provider call",
        replace(HEALTHY, provider=ProviderState(problem_reason=reasons.PROVIDER_NOT_FOUND, problem_message="gone")),
        reasons.PROVIDER_NOT_FOUND,
        "gone",
    ),
    (
        "a provider whose credentials failed blocks",
        replace(HEALTHY, provider=ProviderState(spec=PROVIDER, ready=False)),
        reasons.PROVIDER_NOT_READY,
        "not ready",
    ),
    (
        "a bucket outside the ceiling is a policy violation naming the field",
        replace(
            HEALTHY,
            provider=ProviderState(
                spec=replace(PROVIDER, ceiling=replace(OPEN_CEILING, allowed_buckets=("team-b-*",))), ready=True
            ),
        ),
        reasons.POLICY_VIOLATION,
        "spec.buckets: 'team-a-logs' not allowed",
    ),
    (
        "a permission outside the ceiling is a policy violation",
        replace(
            HEALTHY,
            provider=ProviderState(
                spec=replace(PROVIDER, ceiling=replace(OPEN_CEILING, allowed_permissions=("read",))), ready=True
            ),
        ),
        reasons.POLICY_VIOLATION,
        "spec.permissions: list not allowed",
    ),
    (
        "a duration beyond the ceiling is a policy violation",
        replace(
            HEALTHY,
            provider=ProviderState(
                spec=replace(PROVIDER, ceiling=replace(OPEN_CEILING, max_duration=timedelta(hours=1))), ready=True
            ),
        ),
        reasons.POLICY_VIOLATION,
        "spec.duration: 24h exceeds the provider's maximum 1h",
    ),
    (
        "a provider with no allowedBuckets admits no token (fails closed)",
        replace(HEALTHY, provider=ProviderState(spec=replace(PROVIDER, ceiling=Ceiling()), ready=True)),
        reasons.POLICY_VIOLATION,
        "policy.allowedBuckets is empty",
    ),
    (
        "a bucket-less key needs allowedBuckets ['*'], not a glob that happens to match everything",
        replace(
            HEALTHY,
            spec=replace(SPEC, buckets=()),
            provider=ProviderState(
                spec=replace(PROVIDER, ceiling=replace(OPEN_CEILING, allowed_buckets=("*-*",))), ready=True
            ),
        ),
        reasons.POLICY_VIOLATION,
        "spec.buckets: must name buckets",
    ),
    (
        "a ceiling narrowed while the provider is NotReady is still a policy violation",
        replace(
            HEALTHY,
            provider=ProviderState(
                spec=replace(PROVIDER, ceiling=replace(OPEN_CEILING, allowed_buckets=("team-b-*",))),
                ready=False,
                problem_reason=reasons.PROVIDER_NOT_READY,
                problem_message="b2 is not ready: 503",
            ),
        ),
        reasons.POLICY_VIOLATION,
        "spec.buckets: 'team-a-logs' not allowed",
    ),
    (
        "the provider's own rules are checked while it is NotReady",
        replace(
            HEALTHY,
            spec=replace(SPEC, prefixes=("a/", "b/")),
            provider=ProviderState(spec=PROVIDER, ready=False, problem_reason=reasons.PROVIDER_NOT_READY),
        ),
        reasons.INVALID_SPEC,
        "at most one prefix",
    ),
    (
        "a provider that doesn't admit the namespace says so and shows none of its ceiling",
        replace(
            HEALTHY,
            provider=ProviderState(
                spec=replace(PROVIDER, ceiling=replace(OPEN_CEILING, allowed_buckets=("team-b-*",))),
                problem_reason=reasons.NAMESPACE_NOT_ALLOWED,
                problem_message="ClusterStorageProvider 'b2' does not admit namespace 'team-a'",
            ),
        ),
        reasons.NAMESPACE_NOT_ALLOWED,
        "does not admit",
    ),
    (
        "a raw capability granting a permission outside the ceiling is a policy violation",
        replace(
            HEALTHY,
            spec=replace(SPEC, permissions=("read",), raw_capabilities=("deleteFiles",)),
            provider=ProviderState(
                spec=replace(PROVIDER, ceiling=replace(OPEN_CEILING, allowed_permissions=("read", "list"))), ready=True
            ),
        ),
        reasons.POLICY_VIOLATION,
        "spec.rawCapabilities: deleteFiles grants delete",
    ),
    (
        "two prefixes on a b2 key break the provider's rules",
        replace(HEALTHY, spec=replace(SPEC, prefixes=("a/", "b/"))),
        reasons.INVALID_SPEC,
        "at most one prefix",
    ),
    (
        "a us3-only permission on b2 is refused",
        replace(HEALTHY, spec=replace(SPEC, permissions=("read", "image-processing"))),
        reasons.INVALID_SPEC,
        "image-processing not supported by b2",
    ),
    (
        "an account capability asked for through the expert field is refused",
        replace(HEALTHY, spec=replace(SPEC, raw_capabilities=("writeKeys",))),
        reasons.INVALID_SPEC,
        "writeKeys can manage the account",
    ),
    (
        "a Secret of the same name owned by someone else is never overwritten",
        replace(HEALTHY, status=TokenStatus(), secret=SecretState(exists=True, owned=False)),
        reasons.SECRET_CONFLICT,
        "not owned by this StorageToken",
    ),
]


@pytest.mark.parametrize(("situation", "value", "reason", "message"), BLOCKED, ids=[c[0] for c in BLOCKED])
def test_blockers(situation: str, value: PolicyInput, reason: str, message: str) -> None:
    decision = decide(value)
    assert decision.issue is None
    assert decision.blocked is not None
    assert decision.blocked.reason == reason
    assert message in decision.blocked.message


def test_a_failed_attempt_waits_for_its_backoff() -> None:
    value = with_status(
        renewal_time=NOW - timedelta(minutes=1), failed_attempts=2, next_attempt=NOW + timedelta(seconds=30)
    )
    decision = decide(value)
    assert decision.issue is None and decision.backoff is not None
    assert decision.backoff.reason == reasons.BACKING_OFF
    later = replace(value, now=NOW + timedelta(seconds=31))
    assert decide(later).issue is not None


def test_us3_keys_cannot_expire_after_the_api_ceiling() -> None:
    us3 = replace(PROVIDER, type="us3")
    value = replace(
        HEALTHY,
        provider=ProviderState(spec=us3, ready=True),
        now=datetime(2099, 12, 31, tzinfo=UTC),
        spec=replace(SPEC, duration=timedelta(days=2)),
    )
    decision = decide(value)
    assert decision.blocked is not None and decision.blocked.reason == reasons.INVALID_SPEC
