"""Exponential backoff with full jitter, honouring a server's Retry-After.

Only `RetryableError` is retried; everything else propagates at once.
Creates are never passed through here blind: see each client's `issue`.

A Retry-After is honoured in full, up to MAX_RETRY_AFTER: a wait no longer
than the policy's `max_delay` happens here; a longer one ends the loop and
the error (carrying `retry_after`) goes to the caller, which requeues the
work no earlier than asked instead of holding a worker asleep for minutes.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from storage_token.providers.errors import MAX_RETRY_AFTER, RetryableError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

__all__ = ["MAX_RETRY_AFTER", "RetryPolicy", "Sleep", "parse_retry_after", "with_retries"]


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds in [0, MAX_RETRY_AFTER]: a number or an HTTP date; None when unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client tries before giving up on a transient error."""

    attempts: int = 5  # total tries, the first included
    base_delay: float = 0.5  # seconds before the second try (before jitter)
    factor: float = 2.0
    max_delay: float = 30.0  # the longest wait spent in-process (a longer Retry-After goes to the caller)
    jitter: float = 0.5  # fraction of the delay that is randomised

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Wait before try number `attempt + 1` (attempt counts from 1); a Retry-After wins, up to 1 h."""
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return min(retry_after, MAX_RETRY_AFTER)
        raw = min(self.base_delay * self.factor ** (attempt - 1), self.max_delay)
        r = (rng or random).random()
        return raw * (1 - self.jitter) + raw * self.jitter * r


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    on_retry: Callable[[RetryableError, float], None] | None = None,
) -> T:
    """Run `call`, retrying RetryableError per `policy`; re-raise the last one.

    A server asking for a longer wait than `policy.max_delay` gets the error back
    at once (its `retry_after` intact): the caller requeues, never earlier than asked.
    """
    attempt = 1
    while True:
        try:
            return await call()
        except RetryableError as error:
            if attempt >= policy.attempts:
                raise
            delay = policy.delay(attempt, error.retry_after)
            if delay > policy.max_delay:
                raise
            if on_retry is not None:
                on_retry(error, delay)
            await sleep(delay)
            attempt += 1
