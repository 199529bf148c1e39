"""Go-style durations ("90m", "24h", "1h30m"), the format the CRD's CEL rules understand."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration; raise ValueError naming the text when it isn't one."""
    value = text.strip()
    if value in ("0", "0s"):
        return timedelta(0)
    position, seconds = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90m, 24h, 1h30m)")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest Go-style spelling of whole seconds, e.g. 1h30m, 45s."""
    total = int(delta.total_seconds())
    if total == 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
