"""policy/plan.py: the reconciler's decision spelled out as actions and provider calls, without acting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from builders import OPEN_CEILING, PROVIDER

from storage_token.api.naming import install_digest, key_name
from storage_token.api.token import (
    Intent,
    PendingRevocation,
    ProviderRef,
    RestartTarget,
    SecretSpec,
    TokenSpec,
    TokenStatus,
)
from storage_token.policy import plan as planning
from storage_token.policy import reasons
from storage_token.policy.checks import decide
from storage_token.policy.inputs import PolicyInput, ProviderState, SecretState
from storage_token.policy.schedule import renewal_time

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DIGEST = install_digest("prod", "storage-token-system")
UID = "1234abcd-0000-0000-0000-000000000000"
SPEC = TokenSpec(
    provider_ref=ProviderRef("StorageProvider", "b2"),
    permissions=("read", "list"),
    duration=timedelta(hours=24),
    secret=SecretSpec(name="app-storage"),
    buckets=("team-a-logs",),
    revoke_grace_period=timedelta(minutes=5),
)
CURRENT = key_name(DIGEST, "team-a", "app", UID, 1)
STATUS = TokenStatus(
    key_id="K1",
    key_name=CURRENT,
    provider="StorageProvider/b2",
    not_after=NOW + timedelta(hours=10),
    issued_at=NOW - timedelta(hours=14),
    renewal_time=NOW + timedelta(hours=2),
    revision=1,
    spec_hash="H",
)
HEALTHY = PolicyInput(
    namespace="team-a",
    name="app",
    uid=UID,
    generation=1,
    spec=SPEC,
    spec_hash="H",
    status=STATUS,
    secret=SecretState(exists=True, owned=True, key_id_hash="h(K1)", intact=True),
    provider=ProviderState(spec=PROVIDER, ready=True),
    now=NOW,
    current_key_id_hash="h(K1)",
)


def narrowed(**ceiling: object) -> ProviderState:
    return ProviderState(spec=replace(PROVIDER, ceiling=replace(OPEN_CEILING, **ceiling)), ready=True)


def test_a_healthy_token_has_nothing_to_do_and_keeps_its_schedule() -> None:
    plan = planning.plan_token(HEALTHY)
    assert (plan.action, plan.calls, plan.changes) == (planning.NOTHING, (), False)
    assert plan.renewal_time == renewal_time(SPEC, STATUS.issued_at, STATUS.not_after, f"{UID}/1")  # type: ignore[arg-type]


def test_a_new_renew_before_moves_the_renewal_without_a_new_key() -> None:
    value = replace(HEALTHY, spec=replace(SPEC, renew_before=timedelta(hours=9)))
    plan = planning.plan_token(value)
    assert plan.action == planning.NOTHING
    assert plan.renewal_time is not None and plan.renewal_time <= NOW + timedelta(hours=1)


def test_a_first_issue_calls_the_provider_once() -> None:
    value = replace(HEALTHY, status=TokenStatus(), secret=SecretState())
    plan = planning.plan_token(value)
    assert plan.action == planning.ISSUE and plan.reason == reasons.FIRST_ISSUE
    assert [(c.call, c.provider, c.at) for c in plan.calls] == [("issue", "StorageProvider/b2", NOW)]
    assert "revision 1" in plan.calls[0].key_name  # no install identity known yet: a placeholder name


def test_a_scope_change_renews_and_revokes_the_old_key_after_the_grace_period() -> None:
    plan = planning.plan_token(replace(HEALTHY, spec_hash="H2"))
    assert plan.action == planning.RENEW and plan.reason == reasons.SPEC_CHANGED
    issue, revoke = plan.calls
    assert (issue.call, issue.key_name, issue.at) == ("issue", key_name(DIGEST, "team-a", "app", UID, 2), NOW)
    assert (revoke.call, revoke.key_name, revoke.at) == ("revoke", CURRENT, NOW + timedelta(minutes=5))
    assert plan.changes


def test_an_expired_key_is_replaced_and_revoked_at_once() -> None:
    status = replace(STATUS, not_after=NOW - timedelta(minutes=1), renewal_time=NOW - timedelta(hours=1))
    plan = planning.plan_token(replace(HEALTHY, status=status))
    assert plan.reason == reasons.KEY_EXPIRED
    assert plan.calls[1].call == "revoke" and plan.calls[1].at == NOW


def test_a_narrowed_ceiling_revokes_the_current_key_after_the_grace_period() -> None:
    plan = planning.plan_token(replace(HEALTHY, provider=narrowed(allowed_buckets=("team-b-*",))))
    assert plan.action == planning.REVOKE and plan.reason == reasons.POLICY_VIOLATION
    assert "spec.buckets" in plan.message
    assert [(c.call, c.key_name, c.at) for c in plan.calls] == [("revoke", CURRENT, NOW + timedelta(minutes=5))]
    assert not any(c.call == "issue" for c in plan.calls)


def test_the_revocation_never_waits_past_the_keys_own_expiry() -> None:
    status = replace(STATUS, not_after=NOW + timedelta(minutes=2))
    plan = planning.plan_token(replace(HEALTHY, status=status, provider=narrowed(allowed_permissions=("read",))))
    assert plan.action == planning.REVOKE and plan.calls[-1].at == NOW + timedelta(minutes=2)


def test_a_provider_that_is_not_ready_blocks_without_revoking() -> None:
    value = replace(HEALTHY, provider=ProviderState(spec=PROVIDER, ready=False))
    plan = planning.plan_token(value)
    assert (plan.action, plan.reason, plan.calls) == (planning.BLOCK, reasons.PROVIDER_NOT_READY, ())


def test_restart_targets_make_the_revocation_wait_for_the_rollout_within_the_ceiling() -> None:
    spec = replace(SPEC, restart_targets=(RestartTarget("Deployment", "web"),), max_revoke_delay=timedelta(minutes=30))
    plan = planning.plan_token(replace(HEALTHY, spec=spec, spec_hash="H2"))
    assert plan.restarts == ("Deployment/web",)
    revoke = plan.calls[-1]
    assert (revoke.at, revoke.latest) == (NOW + timedelta(minutes=5), NOW + timedelta(minutes=30))


def test_an_interrupted_issuance_is_recovered_by_name_first() -> None:
    intent = Intent(key_name(DIGEST, "team-a", "app", UID, 2), 2, NOW, "H", "StorageProvider/b2")
    plan = planning.plan_token(replace(HEALTHY, status=replace(STATUS, intent=intent)))
    assert plan.action == planning.RECOVER
    assert [(c.call, c.key_name) for c in plan.calls] == [("recover", intent.key_name)]


def test_queued_revocations_are_shown_but_are_no_change() -> None:
    pending = PendingRevocation("K0", "old-key", NOW + timedelta(minutes=3), "StorageProvider/b2", attempts=2)
    plan = planning.plan_token(replace(HEALTHY, status=replace(STATUS, pending_revocations=(pending,))))
    assert plan.action == planning.NOTHING and not plan.changes
    assert [(c.call, c.key_name, c.queued) for c in plan.calls] == [("revoke", "old-key", True)]
    assert "attempt 3" in plan.calls[0].why


def test_a_renewal_held_back_by_max_live_keys_waits() -> None:
    pending = tuple(PendingRevocation(f"K{i}", f"k{i}", NOW + timedelta(hours=1)) for i in range(3))
    status = replace(STATUS, renewal_time=NOW - timedelta(minutes=1), pending_revocations=pending)
    plan = planning.plan_token(replace(HEALTHY, status=status, provider=narrowed(max_live_keys=3)))
    assert plan.action == planning.WAIT and plan.reason == reasons.TOO_MANY_LIVE_KEYS
    assert not any(c.call == "issue" for c in plan.calls)


def test_an_unreadable_spec_revokes_with_the_default_grace() -> None:
    plan = planning.plan_unreadable("team-a", "app", STATUS, reasons.INVALID_SPEC, "spec.duration: bad", NOW)
    assert plan.action == planning.REVOKE
    assert plan.calls[-1].at == NOW + planning.DEFAULT_GRACE


@pytest.mark.parametrize(
    "value",
    [
        HEALTHY,
        replace(HEALTHY, status=TokenStatus(), secret=SecretState()),
        replace(HEALTHY, spec_hash="other"),
        replace(HEALTHY, secret=SecretState()),
        replace(HEALTHY, renew_request="now"),
        replace(HEALTHY, key_live=False),
        replace(HEALTHY, provider=narrowed(allowed_buckets=())),
        replace(HEALTHY, provider=ProviderState(problem_reason=reasons.PROVIDER_NOT_FOUND)),
        replace(HEALTHY, secret=SecretState(exists=True, owned=False)),
    ],
)
def test_the_plan_reports_exactly_what_decide_decides(value: PolicyInput) -> None:
    """The plan never has its own opinion: its reason is decide's verdict, and it issues only when decide does."""
    decision = decide(value)
    verdict = decision.blocked or decision.issue or decision.backoff
    plan = planning.plan_token(value)
    assert plan.reason == (verdict.reason if verdict else "")
    assert any(c.call == "issue" for c in plan.calls) == (decision.issue is not None)


def test_summaries_count_actions() -> None:
    plans = [planning.plan_token(HEALTHY), planning.plan_token(replace(HEALTHY, spec_hash="x"))]
    assert planning.summarize(plans) == {planning.RENEW: 1, planning.NOTHING: 1}


def test_digest_from_key_name_reads_only_our_layout() -> None:
    assert planning.digest_from_key_name(CURRENT) == DIGEST
    assert planning.digest_from_key_name("sto-default-x") == ""


def test_a_token_being_deleted_revokes_every_key_now_unless_retained() -> None:
    pending = PendingRevocation("K0", "old-key", NOW + timedelta(minutes=3), "StorageProvider/b2")
    status = replace(STATUS, pending_revocations=(pending,))
    plan = planning.plan_deletion("team-a", "app", status, retain=False, now=NOW)
    assert plan.action == planning.REVOKE
    assert [(c.key_name, c.at) for c in plan.calls] == [("old-key", NOW), (CURRENT, NOW)]
    kept = planning.plan_deletion("team-a", "app", status, retain=True, now=NOW)
    assert [c.key_name for c in kept.calls] == ["old-key"] and "Retain" in kept.message
