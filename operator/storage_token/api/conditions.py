"""Status conditions: set one, keep lastTransitionTime when the status didn't change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage_token.api.times import format_time


def set_condition(
    conditions: Sequence[dict[str, Any]],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> list[dict[str, Any]]:
    """A new list with condition `type_` set; other conditions kept as they are."""
    value = "Unknown" if status is None else ("True" if status else "False")
    previous = next((c for c in conditions if c.get("type") == type_), None)
    transition = (
        previous.get("lastTransitionTime") if previous and previous.get("status") == value else format_time(now)
    )
    updated = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
    result = [dict(c) for c in conditions if c.get("type") != type_]
    result.append(updated)
    return sorted(result, key=lambda c: str(c.get("type")))


def condition(conditions: Sequence[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)
