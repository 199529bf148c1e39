"""Status keeps whole seconds: a "not before" is rounded up so storing it never moves it earlier."""

from __future__ import annotations

from datetime import UTC, datetime

from storage_token.api.times import format_time, parse_time, up_to_second


def test_a_moment_within_a_second_rounds_up_and_a_whole_second_stays() -> None:
    inside = datetime(2026, 12, 1, 12, 0, 5, 1, tzinfo=UTC)
    assert up_to_second(inside) == datetime(2026, 12, 1, 12, 0, 6, tzinfo=UTC)
    whole = datetime(2026, 12, 1, 12, 0, 5, tzinfo=UTC)
    assert up_to_second(whole) == whole
    stored = parse_time(format_time(up_to_second(inside)))
    assert stored is not None and stored >= inside
