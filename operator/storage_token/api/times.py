"""RFC 3339 timestamps as Kubernetes writes them (UTC, second precision, `Z`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    # isoformat, not strftime: half the cost, and status writes format several times per reconcile.
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def up_to_second(value: datetime) -> datetime:
    """The next whole second (or `value` if whole): a "not before" that survives `format_time`."""
    whole = value.replace(microsecond=0)
    return whole if whole == value else whole + timedelta(seconds=1)
