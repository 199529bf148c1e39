"""Series the dashboard and the alerts rely on exist before the events they count."""

from __future__ import annotations

from prometheus_client import REGISTRY

from storage_token.runtime import metrics


def value(sample: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(sample, labels)


def test_failure_counters_start_at_zero_so_the_first_failure_is_an_increase() -> None:
    # `increase()` cannot see a series' first sample as an increase: a failure series born with its
    # first failure would keep StorageTokenIssuanceFailing quiet after every operator restart.
    for provider in ("us3", "b2"):
        assert value("storage_token_issuances_total", provider=provider, result="failure") is not None
    assert value("storage_token_revocations_total", result="failure") is not None


def test_a_call_that_did_not_wait_still_creates_the_wait_series() -> None:
    before = value("storage_token_rate_limit_wait_seconds_total", provider="unit-no-wait")
    metrics.record_rate_limit_wait("unit-no-wait", 0.0)
    assert before is None
    assert value("storage_token_rate_limit_wait_seconds_total", provider="unit-no-wait") == 0.0
    metrics.record_rate_limit_wait("unit-no-wait", 1.5)
    assert value("storage_token_rate_limit_wait_seconds_total", provider="unit-no-wait") == 1.5


def test_rollout_gauges_follow_the_token_and_go_with_it() -> None:
    key = {"namespace": "unit", "name": "rolling"}
    metrics.record_token("unit", "rolling", True, 2e9, 1.9e9, 1)
    assert value("storage_token_rollout_targets", **key) == 0
    assert value("storage_token_rollout_pending_targets", **key) == 0
    metrics.record_token("unit", "rolling", True, 2e9, 1.9e9, 1, rollout_adopted=1, rollout_total=3)
    assert value("storage_token_rollout_targets", **key) == 3
    assert value("storage_token_rollout_pending_targets", **key) == 2
    metrics.forget_token("unit", "rolling")
    assert value("storage_token_rollout_targets", **key) is None
    assert value("storage_token_rollout_pending_targets", **key) is None
    assert value("storage_token_token_ready", **key) is None
