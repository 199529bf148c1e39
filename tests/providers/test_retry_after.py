"""Retry-After: honoured in full up to an hour, never early, never a crash on garbage (inf, nan, 1e15)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage_token.providers.errors import MAX_RETRY_AFTER, RetryableError
from storage_token.providers.retry import RetryPolicy, parse_retry_after, with_retries


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("120", 120.0),  # longer than the 30 s in-process cap: still reported in full
        ("5400", MAX_RETRY_AFTER),
        ("1e15", MAX_RETRY_AFTER),
        ("-4", 0.0),
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 01 Jan 2025 00:00:07 GMT", 7.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_is_a_sane_number_of_seconds(header: str | None, seconds: float | None) -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


@pytest.mark.parametrize("wait", [float("inf"), float("nan"), 1e15, -1.0])
def test_an_error_never_carries_a_wait_a_timedelta_cannot_hold(wait: float) -> None:
    error = RetryableError("busy", retry_after=wait)
    assert error.retry_after is None or 0 <= error.retry_after <= MAX_RETRY_AFTER
    timedelta(seconds=error.retry_after or 0)  # what the token controller does with it


def test_policy_delay_honours_a_retry_after_longer_than_max_delay() -> None:
    policy = RetryPolicy(max_delay=30)
    assert policy.delay(1, retry_after=120) == 120
    assert policy.delay(1, retry_after=1e9) == MAX_RETRY_AFTER


async def test_a_short_retry_after_is_slept_in_process() -> None:
    waits: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RetryableError("busy", retry_after=7)
        return "ok"

    assert await with_retries(call, RetryPolicy(max_delay=30), sleep=sleep) == "ok"
    assert waits == [7]


async def test_a_long_retry_after_goes_to_the_caller_instead_of_an_early_retry() -> None:
    waits: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise RetryableError("slow down", retry_after=600)

    with pytest.raises(RetryableError) as caught:
        await with_retries(call, RetryPolicy(max_delay=30), sleep=sleep)
    # Not retried after 30 s (the old cap): the caller requeues after the full 600 s.
    assert calls == 1 and waits == [] and caught.value.retry_after == 600
