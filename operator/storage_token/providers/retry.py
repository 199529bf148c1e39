"""Exponential backoff with full jitter, honouring a server's Retry-After.

Only `RetryableError` is retried; everything else propagates at once.
Creates are never passed through here blind: see each client's `issue`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from storage_token.providers.errors import RetryableError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client tries before giving up on a transient error."""

    attempts: int = 5  # total tries, the first included
    base_delay: float = 0.5  # seconds before the second try (before jitter)
    factor: float = 2.0
    max_delay: float = 30.0  # no single wait is longer, Retry-After included
    jitter: float = 0.5  # fraction of the delay that is randomised

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Wait before try number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay)
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
    """Run `call`, retrying RetryableError per `policy`; re-raise the last one."""
    attempt = 1
    while True:
        try:
            return await call()
        except RetryableError as error:
            if attempt >= policy.attempts:
                raise
            delay = policy.delay(attempt, error.retry_after)
            if on_retry is not None:
                on_retry(error, delay)
            await sleep(delay)
            attempt += 1
