"""Renewal windows: when a due renewal may start, in a zone's wall-clock time, across DST changes.

Pure: no clock of its own; every function is told the moments it reasons about.

- A window opens on each of its `days` (every day without them) at `start` local time and closes at
  `end`; on the next day when `end` is not after `start` (crossing midnight; equal: a whole day).
- DST: a window opens at the first moment the wall clock shows `start` and closes at the last
  moment it shows `end`, so it never shrinks in the repeated hour (fall back: 02:30 opens on the
  first pass). A wall time the clocks skip (spring forward) is taken at the moment they jumped:
  02:30 on a day that goes 02:00 -> 03:00 opens at 03:00. A window wholly inside the skipped hour
  does not open that day.
- A token's windows and its provider's: a renewal starts only at a moment inside both when both
  have windows; either alone applies alone (a token can narrow its provider's windows, not widen them).
- Safety margin: max(10% of the lifetime granted, 1h). A renewal waits for a window only until
  expiry - margin (and never past its planned time when that is already later: short keys, a late
  renewBefore); then it goes ahead outside the windows.
- A renewal put off to a window is spread over the first half of that window (at most 2h) by the
  key's stable seed, so tokens sharing a window don't all renew in its first second.
- A window that closed before `now` without the renewal (the operator was down, or the renewal kept
  failing) is missed: the renewal waits for the next one, under the same margin.

Windows only ever delay a renewal, never bring it forward. Manual renewals (the renew annotation)
and repairs (expired, deleted or edited keys, spec changes) are not bound by windows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storage_token.api.token import WEEKDAYS, RenewalWindow

MARGIN_FRACTION: Final = 0.10  # of the lifetime granted
MIN_MARGIN: Final = timedelta(hours=1)
SPREAD_FRACTION: Final = 0.5  # of a window a held renewal is spread over
MAX_SPREAD: Final = timedelta(hours=2)
# How far ahead openings are looked for: past the latest moment a renewal may wait for (to say
# when the next window would have opened), and never further than this from where the search starts.
_REPORT_AHEAD: Final = timedelta(days=8)
_MAX_SEARCH: Final = timedelta(days=400)
_CHUNK: Final = timedelta(days=8)

Span = tuple[datetime, datetime]  # [opens, closes) in UTC


@dataclass(frozen=True)
class Placement:
    """When a renewal starts, and the window that decided it.

    `window_opens`: the opening of the window the renewal starts in, or (`outside`) of the first
    window after the latest safe moment; None without windows or when none opens within the search.
    `outside`: windows apply, but the renewal goes ahead outside them (the safety margin).
    """

    at: datetime
    window_opens: datetime | None = None
    outside: bool = False
    held: bool = False  # put off from its planned time to a window


def safety_margin(lifetime: timedelta) -> timedelta:
    """How close to expiry a renewal may be put off: max(10% of the lifetime, 1h)."""
    return max(lifetime * MARGIN_FRACTION, MIN_MARGIN)


def window_problem(windows: Sequence[RenewalWindow], where: str) -> str | None:
    """Why these windows can't be used (an unknown time zone), or None. Schema-checked fields aren't re-checked."""
    for index, window in enumerate(windows):
        if _zone(window.time_zone) is None:
            return (
                f"{where}[{index}].timeZone: unknown time zone {window.time_zone[:64]!r}; "
                "use an IANA name such as Europe/Berlin, America/New_York or UTC"
            )
    return None


def place(
    planned: datetime,
    expires: datetime,
    lifetime: timedelta,
    window_sets: Sequence[Sequence[RenewalWindow]],
    unit: float,
    now: datetime | None = None,
) -> Placement:
    """When a renewal planned for `planned` starts under `window_sets` (each non-empty set must be met).

    `unit` in [0, 1) is the key's stable jitter; `now` (optional) detects a missed window.
    """
    sets = tuple(tuple(windows) for windows in window_sets if windows)
    if not sets:
        return Placement(planned)
    latest = max(planned, expires - safety_margin(lifetime))
    span = _first_span(sets, planned, latest)
    if span is not None and now is not None and span[1] <= now and span[0] <= latest:
        span = _first_span(sets, now, latest)  # missed: the window closed without the renewal
    if span is None or span[0] > latest:
        return Placement(latest, span[0] if span is not None else None, outside=True, held=latest > planned)
    opens, closes = span
    if opens <= planned:
        return Placement(planned, opens)
    spread = min((closes - opens) * SPREAD_FRACTION, MAX_SPREAD)
    return Placement(min(opens + spread * unit, latest), opens, held=True)


def describe(placement: Placement) -> str:
    """A clause for the Ready message ("" without windows)."""
    opens = placement.window_opens
    if placement.outside:
        later = f" (the next opens at {_stamp(opens)})" if opens is not None else ""
        return f"; no renewal window opens before the safety margin before expiry{later}, so it renews outside them"
    if opens is None:
        return ""
    if placement.held:
        return f"; held for the renewal window opening at {_stamp(opens)}"
    return f"; inside the renewal window that opened at {_stamp(opens)}"


# --- windows as moments --------------------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, or not a relative key ("/etc/x", "../x")
        return None


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _instants(local: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The first and last UTC moments the wall clock shows `local` (naive); both the jump when it never does."""
    candidates = [local.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
    shown = [moment for moment in candidates if _wall(moment, zone) == local]
    if shown:
        return min(shown), max(shown)
    # Skipped: the clocks jumped over `local` somewhere between the two readings. The first
    # moment whose wall time is at or past `local` is the jump (transitions fall on whole seconds).
    low, high = int(min(candidates).timestamp()), int(max(candidates).timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= local:
            high = middle
        else:
            low = middle
    jump = datetime.fromtimestamp(high, UTC)
    return jump, jump


def _occurrence(window: RenewalWindow, day: date, zone: ZoneInfo) -> Span | None:
    """The window opening on local `day`, or None when DST leaves nothing of it."""
    opens = _instants(datetime.combine(day, window.start), zone)[0]
    end_day = day if window.end > window.start else day + timedelta(days=1)
    closes = _instants(datetime.combine(end_day, window.end), zone)[1]
    return (opens, closes) if closes > opens else None


def _spans(windows: Iterable[RenewalWindow], start: datetime, until: datetime) -> list[Span]:
    """Every opening of `windows` overlapping [start, until), merged, in order."""
    found: list[Span] = []
    for window in windows:
        zone = _zone(window.time_zone)
        if zone is None:
            continue  # window_problem blocks the token first
        day = start.astimezone(zone).date() - timedelta(days=1)  # yesterday's may still be open
        last = until.astimezone(zone).date()
        while day <= last:
            if not window.days or WEEKDAYS[day.weekday()] in window.days:
                span = _occurrence(window, day, zone)
                if span is not None and span[1] > start and span[0] < until:
                    found.append(span)
            day += timedelta(days=1)
    return _merge(found)


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for opens, closes in sorted(spans):
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return merged


def _intersect(left: list[Span], right: list[Span]) -> list[Span]:
    both: list[Span] = []
    i = j = 0
    while i < len(left) and j < len(right):
        opens, closes = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if opens < closes:
            both.append((opens, closes))
        if left[i][1] <= right[j][1]:
            i += 1
        else:
            j += 1
    return both


@functools.lru_cache(maxsize=4096)
def _first_span(sets: tuple[tuple[RenewalWindow, ...], ...], origin: datetime, latest: datetime) -> Span | None:
    """The first moment range at or after `origin` inside every set; searched a little past `latest`.

    Cached: every reconcile of a steady token asks the same question.
    """
    end = min(max(latest, origin) + _REPORT_AHEAD, origin + _MAX_SEARCH)
    start = origin
    while start < end:
        until = min(start + _CHUNK, end)
        spans = _spans(sets[0], start, until)
        for windows in sets[1:]:
            spans = _intersect(spans, _spans(windows, start, until))
        for span in spans:
            if span[1] > origin:
                return span
        start = until
    return None
