"""Times: when to renew, when to revoke a replaced key, when to try again, when to wake up."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from storage_token.api.token import PendingRevocation, RenewalWindow, TokenSpec
from storage_token.policy.inputs import PolicyInput
from storage_token.policy.windows import Placement, place, window_problem

DEFAULT_RENEW_FRACTION = 2 / 3  # of the lifetime actually granted
JITTER_FRACTION = 0.05  # of the lifetime; renewals only ever move earlier
MIN_LIFETIME_LEFT = timedelta(seconds=5)  # renew no later than this before expiry
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(minutes=10)


def _unit_jitter(seed: str) -> float:
    """A stable number in [0, 1) per seed: restarts reschedule to the same time."""
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def renewal_plan(
    spec: TokenSpec,
    issued_at: datetime,
    not_after: datetime | None,
    seed: str,
    provider_windows: Sequence[RenewalWindow] = (),
    now: datetime | None = None,
) -> Placement:
    """When the next key is issued, and the renewal window that decided it (policy/windows.py).

    Based on the lifetime the provider actually granted. Without windows (the token's
    spec.renewalWindows, its provider's policy.renewalWindows) `now` plays no part; with them it
    only notices a window that closed without the renewal.
    """
    expires = not_after or issued_at + spec.duration
    lifetime = max(expires - issued_at, timedelta(0))
    if spec.renew_before is not None:
        renew_at = expires - min(spec.renew_before, lifetime)
    elif spec.renew_before_percentage is not None:
        renew_at = expires - lifetime * (spec.renew_before_percentage / 100)
    else:
        renew_at = issued_at + lifetime * DEFAULT_RENEW_FRACTION
    renew_at -= lifetime * JITTER_FRACTION * _unit_jitter(seed)
    latest = expires - min(MIN_LIFETIME_LEFT, lifetime / 10)
    planned = max(issued_at, min(renew_at, latest))
    placement = place(
        planned, expires, lifetime, (spec.renewal_windows, provider_windows), _unit_jitter(f"{seed}/window"), now
    )
    at = max(issued_at, min(placement.at, latest))
    return placement if at == placement.at else Placement(at, placement.window_opens, placement.outside, placement.held)


def renewal_time(
    spec: TokenSpec,
    issued_at: datetime,
    not_after: datetime | None,
    seed: str,
    provider_windows: Sequence[RenewalWindow] = (),
    now: datetime | None = None,
) -> datetime:
    """When the next key is issued (see `renewal_plan`)."""
    return renewal_plan(spec, issued_at, not_after, seed, provider_windows, now).at


def provider_windows(value: PolicyInput) -> tuple[RenewalWindow, ...]:
    provider = value.provider.spec
    return provider.ceiling.renewal_windows if provider is not None else ()


def renewal_windows_problem(value: PolicyInput) -> str | None:
    """Why the token's or its provider's renewal windows can't be used (an unknown time zone), or None."""
    provider = value.provider.spec
    problem = window_problem(value.spec.renewal_windows, "spec.renewalWindows")
    if problem is None and provider is not None:
        problem = window_problem(provider.ceiling.renewal_windows, "spec.policy.renewalWindows")
        if problem is not None:
            problem = f"{provider.kind} {provider.name!r}: {problem}"
    return problem


def renewal_held_until(value: PolicyInput) -> datetime | None:
    """A renewal due by status that must still wait for a window (its window was missed), or None.

    Status keeps the time computed at the last reconcile; this recomputes it with `now`, so a
    renewal whose window closed unnoticed (the operator was down) waits for the next one.
    """
    status, windows = value.status, provider_windows(value)
    if status.issued_at is None or not (value.spec.renewal_windows or windows):
        return None
    if renewal_windows_problem(value) is not None:
        return None
    seed = f"{value.uid}/{status.revision}"
    at = renewal_time(value.spec, status.issued_at, status.not_after, seed, windows, value.now)
    return at if at > value.now else None


def revocation_due(grace: timedelta, now: datetime, old_not_after: datetime | None) -> datetime:
    """After the grace period, but never after the old key's own expiry."""
    due = now + grace
    if old_not_after is not None:
        due = min(due, old_not_after)
    return max(due, now)


def backoff_delay(failed_attempts: int, seed: str, retry_after: float | None = None) -> timedelta:
    """Exponential with jitter (up to +50%), at least the provider's Retry-After."""
    exponent = max(failed_attempts - 1, 0)
    base: timedelta = min(BACKOFF_BASE * (2**exponent), BACKOFF_MAX)
    delay: timedelta = base * (1 + 0.5 * _unit_jitter(f"{seed}/{failed_attempts}"))
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    ceiling: timedelta = BACKOFF_MAX * 1.5
    return min(delay, ceiling)


def due_revocations(pending: Iterable[PendingRevocation], now: datetime) -> list[PendingRevocation]:
    return [p for p in pending if p.due_at <= now]


def next_wakeup(
    now: datetime,
    renewal: datetime | None,
    not_after: datetime | None,
    next_attempt: datetime | None,
    pending: Iterable[PendingRevocation],
) -> datetime | None:
    """The earliest future moment something is due; None when nothing is."""
    moments = [t for t in (renewal, not_after, next_attempt) if t is not None]
    moments.extend(p.due_at for p in pending)
    if not moments:
        return None
    return max(min(moments), now)


def backoff_wakeup(
    now: datetime, next_attempt: datetime, not_after: datetime | None, pending: Iterable[PendingRevocation]
) -> datetime:
    """While an issuance backs off: the next attempt, or sooner a future expiry or a revocation due.

    An overdue renewal or an expiry already past is exactly what the next attempt is for, so it
    never pulls the wakeup to now (that would reconcile in a loop until the attempt is due).
    """
    moments = [next_attempt, *(p.due_at for p in pending)]
    if not_after is not None and not_after > now:
        moments.append(not_after)
    return max(min(moments), now)
