"""Renewal, revocation and backoff times, and the promise they add up to."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from builders import PROVIDER
from hypothesis import given, settings
from hypothesis import strategies as st

from storage_token.api.token import PendingRevocation, ProviderRef, SecretSpec, TokenSpec, TokenStatus
from storage_token.policy.checks import decide
from storage_token.policy.inputs import PolicyInput, ProviderState, SecretState
from storage_token.policy.schedule import (
    JITTER_FRACTION,
    backoff_delay,
    next_wakeup,
    renewal_time,
    revocation_due,
)

T0 = datetime(2026, 11, 23, tzinfo=UTC)
SPEC = TokenSpec(
    provider_ref=ProviderRef("StorageProvider", "p"),
    permissions=("read",),
    duration=timedelta(hours=24),
    secret=SecretSpec(name="s"),
)


def test_default_renewal_is_two_thirds_of_the_granted_lifetime_minus_jitter() -> None:
    renew = renewal_time(SPEC, T0, T0 + timedelta(hours=24), seed="x")
    assert T0 + timedelta(hours=16) - timedelta(hours=24) * JITTER_FRACTION <= renew <= T0 + timedelta(hours=16)


def test_renewal_follows_the_lifetime_the_provider_granted_not_the_one_asked_for() -> None:
    renew = renewal_time(SPEC, T0, T0 + timedelta(hours=3), seed="x")
    assert renew <= T0 + timedelta(hours=2)


def test_renew_before_and_percentage() -> None:
    before = renewal_time(replace(SPEC, renew_before=timedelta(hours=1)), T0, T0 + timedelta(hours=24), "x")
    assert T0 + timedelta(hours=23) - timedelta(hours=24) * JITTER_FRACTION <= before <= T0 + timedelta(hours=23)
    share = renewal_time(replace(SPEC, renew_before_percentage=50), T0, T0 + timedelta(hours=24), "x")
    assert share <= T0 + timedelta(hours=12)


def test_jitter_is_stable_per_seed_and_differs_between_seeds() -> None:
    first = renewal_time(SPEC, T0, T0 + timedelta(hours=24), "a")
    assert first == renewal_time(SPEC, T0, T0 + timedelta(hours=24), "a")
    assert len({renewal_time(SPEC, T0, T0 + timedelta(hours=24), str(i)) for i in range(20)}) > 10


def test_revocation_waits_for_grace_but_never_past_the_old_keys_expiry() -> None:
    assert revocation_due(timedelta(minutes=5), T0, T0 + timedelta(hours=1)) == T0 + timedelta(minutes=5)
    assert revocation_due(timedelta(minutes=5), T0, T0 + timedelta(minutes=2)) == T0 + timedelta(minutes=2)


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    delays = [backoff_delay(n, "seed") for n in range(1, 12)]
    assert delays[0] < delays[3] < delays[6]
    assert max(delays) <= timedelta(minutes=15)
    assert backoff_delay(1, "seed", retry_after=120) >= timedelta(seconds=120)


def test_next_wakeup_is_the_earliest_due_moment() -> None:
    pending = [PendingRevocation("k", "n", due_at=T0 + timedelta(minutes=3))]
    assert next_wakeup(T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2), None, pending) == T0 + timedelta(minutes=3)
    assert next_wakeup(T0, None, None, None, []) is None


@settings(max_examples=200, deadline=None)
@given(
    duration_s=st.integers(min_value=60, max_value=86_400 * 30),
    granted_fraction=st.floats(min_value=0.05, max_value=1.0),
    renew_pct=st.one_of(st.none(), st.integers(min_value=5, max_value=95)),
    lateness_s=st.floats(min_value=0, max_value=2.0),
    seed=st.text(min_size=1, max_size=8),
)
def test_a_secret_never_holds_an_expired_key_while_the_provider_is_up(
    duration_s: int, granted_fraction: float, renew_pct: int | None, lateness_s: float, seed: str
) -> None:
    """Run ten rotations: waking at each scheduled time (up to 2 s late), the decision issues before expiry."""
    spec = replace(SPEC, duration=timedelta(seconds=duration_s), renew_before_percentage=renew_pct)
    now = T0
    status = TokenStatus()
    for revision in range(1, 11):
        value = PolicyInput(
            namespace="n",
            name="t",
            uid=seed,
            generation=1,
            spec=spec,
            spec_hash="h",
            status=status,
            secret=SecretState(exists=bool(status.key_id), owned=True, key_id_hash=status.key_id, intact=True),
            provider=ProviderState(spec=PROVIDER, ready=True),
            now=now,
            current_key_id_hash=status.key_id,
        )
        decision = decide(value)
        if status.key_id:
            assert status.not_after is not None and now < status.not_after, "the Secret held an expired key"
        assert decision.issue is not None, f"nothing issued at the scheduled wake-up {now}"
        granted = now + max(timedelta(seconds=duration_s * granted_fraction), timedelta(seconds=30))
        renew = renewal_time(spec, now, granted, f"{seed}/{revision}")
        status = TokenStatus(
            key_id=f"k{revision}",
            not_after=granted,
            issued_at=now,
            renewal_time=renew,
            revision=revision,
            spec_hash="h",
        )
        wakeup = next_wakeup(now, renew, granted, None, [])
        assert wakeup is not None
        now = wakeup + timedelta(seconds=lateness_s)


def test_the_earliest_due_moment_of_a_status_orders_the_work_queue() -> None:
    assert TokenStatus().earliest_due() is None
    renew, expiry = T0 + timedelta(hours=16), T0 + timedelta(hours=24)
    healthy = TokenStatus(key_id="k2", not_after=expiry, renewal_time=renew)
    assert healthy.earliest_due() == renew
    revocation = PendingRevocation("k1", "n1", due_at=T0 + timedelta(minutes=5), not_after=T0 + timedelta(hours=1))
    assert replace(healthy, pending_revocations=(revocation,)).earliest_due() == T0 + timedelta(minutes=5)
    expiring = replace(revocation, due_at=T0 + timedelta(hours=2), not_after=T0 + timedelta(minutes=1))
    assert replace(healthy, pending_revocations=(expiring,)).earliest_due() == T0 + timedelta(minutes=1)
