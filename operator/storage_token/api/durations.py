"""Go-style durations ("90m", "24h", "1h30m"), the format the CRD's CEL rules understand.

`DURATION_PATTERN` is the grammar, word for word the `pattern` of every duration field in
crds/*.yaml (a unit test holds them together): what the API server admits, the operator
parses, and nothing else. Go's own parser also takes a sign, "µs" and ".5h"; those are left
out so every spelling means the same to kubectl, CEL and the operator.
"""

from __future__ import annotations

import re
from datetime import timedelta

DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$"
DURATION_HINT = "use Go durations such as 168h, 90m or 1h30m (units h, m, s, ms, us, ns; no days)"
# Go's time.Duration is an int64 of nanoseconds; CEL's duration() refuses anything longer.
MAX_DURATION = timedelta(seconds=(2**63 - 1) // 10**9)

_WHOLE = re.compile(DURATION_PATTERN)
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration; raise ValueError naming the text when it isn't one."""
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"not a duration: {text!r} ({DURATION_HINT})")
    seconds = sum(float(m.group(1)) * _UNITS[m.group(2)] for m in _PART.finditer(text))
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"not a duration: {text!r} is longer than a Go duration can be ({DURATION_HINT})")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest Go-style spelling of whole seconds, e.g. 1h30m, 45s."""
    total = int(delta.total_seconds())
    if total == 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
