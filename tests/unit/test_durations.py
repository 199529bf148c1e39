"""One duration grammar: what the CRDs admit (pattern and CEL) is exactly what the operator parses.

EXAMPLES is shared with tests/e2e/test_crd_bounds.py, which sends the same strings through a real API server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from storage_token.api import provider as provider_model
from storage_token.api.durations import DURATION_PATTERN, format_duration, parse_duration

REPO = Path(__file__).resolve().parents[2]

# (text, seconds it means, or None when it is not a duration)
EXAMPLES: list[tuple[str, float | None]] = [
    ("0", 0),
    ("0s", 0),
    ("1m", 60),
    ("90m", 5400),
    ("24h", 86400),
    ("168h", 604800),
    ("1h30m", 5400),
    ("1.5h", 5400),
    ("2h45m30.5s", 9930.5),
    ("1h0m0s", 3600),
    ("500ms", 0.5),
    ("1500us", 0.0015),
    ("24000h", 86_400_000),
    ("", None),
    ("7d", None),
    ("1w", None),
    ("h", None),
    ("10", None),
    ("1h-5m", None),
    ("-1h", None),
    ("+1h", None),
    (".5h", None),
    ("1.h", None),
    ("1µs", None),
    ("1H", None),
    (" 1h", None),
    ("1h ", None),
    ("1h\n", None),
    ("1 h", None),
    ("1e3s", None),
    ("5m5", None),
    ("abc", None),
]
VALID = [(text, seconds) for text, seconds in EXAMPLES if seconds is not None]
INVALID = [text for text, seconds in EXAMPLES if seconds is None]


def crd_schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        yield path.name, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for name, child in (node.get("properties") or {}).items():
            yield from walk(child, f"{where}.{name}")
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{where}[]")


def duration_fields() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, schema in crd_schemas():
        for where, node in walk(schema):
            if "Go duration" in (node.get("description") or "") and node.get("type") == "string":
                found.append((f"{name}:{where}", node))
    return found


@pytest.mark.parametrize(("text", "seconds"), VALID)
def test_valid_durations_parse_to_what_they_say(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", INVALID)
def test_invalid_durations_are_refused_with_the_hint(text: str) -> None:
    with pytest.raises(ValueError, match="use Go durations such as 168h"):
        parse_duration(text)


def test_every_duration_field_is_found() -> None:
    names = {where.split(":")[1] for where, _ in duration_fields()}
    assert {".spec.duration", ".spec.renewBefore", ".spec.revokeGracePeriod"} <= names
    assert {f".spec.policy.{f}" for f in ("maxDuration", "minDuration", "minRenewalInterval")} <= names
    assert {".spec.policy.maxRevokeGracePeriod", ".spec.policy.minManualRenewInterval"} <= names


@pytest.mark.parametrize(("where", "node"), duration_fields(), ids=[w for w, _ in duration_fields()])
def test_every_crd_duration_field_uses_the_operators_grammar(where: str, node: dict[str, Any]) -> None:
    assert node.get("pattern") == DURATION_PATTERN
    assert node.get("maxLength", 10**6) <= 32
    # The readable CEL message checks the same regex (CEL single-quoted strings double the backslash).
    rules = [rule["rule"] for rule in node.get("x-kubernetes-validations") or ()]
    assert f"self.matches('{DURATION_PATTERN.replace(chr(92), chr(92) * 2)}')" in rules
    field = where.rsplit(".", 1)[1]
    messages = [rule["message"] for rule in node["x-kubernetes-validations"]]
    assert f"{field}: use Go durations such as 168h, 90m or 1h30m (units h, m, s, ms, us, ns; no days)" in messages


@pytest.mark.parametrize(("text", "seconds"), EXAMPLES)
def test_the_crd_pattern_agrees_with_the_parser(text: str, seconds: float | None) -> None:
    # The API server's RE2 and Python's re agree on this pattern; \Z stands in for RE2's "$", which never
    # matches before a trailing newline.
    admitted = re.match(DURATION_PATTERN[:-1] + r"\Z", text) is not None
    assert admitted is (seconds is not None)


def test_policy_defaults_in_the_crd_are_the_models() -> None:
    expected = {
        "maxDuration": provider_model.DEFAULT_MAX_DURATION,
        "minDuration": provider_model.DEFAULT_MIN_DURATION,
        "minRenewalInterval": provider_model.DEFAULT_MIN_RENEWAL_INTERVAL,
        "maxRevokeGracePeriod": provider_model.DEFAULT_MAX_REVOKE_GRACE_PERIOD,
        "minManualRenewInterval": provider_model.DEFAULT_MIN_MANUAL_RENEW_INTERVAL,
    }
    providers = [(n, s) for n, s in crd_schemas() if "storageproviders" in n]
    assert len(providers) == 2
    for _, schema in providers:
        policy = schema["properties"]["spec"]["properties"]["policy"]["properties"]
        for field, default in expected.items():
            assert parse_duration(policy[field]["default"]) == default, field
        assert policy["maxLiveKeys"]["default"] == provider_model.DEFAULT_MAX_LIVE_KEYS
        assert "default" not in policy["allowedBuckets"]


@given(st.integers(min_value=0, max_value=10**7))
def test_formatted_durations_are_admitted_and_round_trip(seconds: int) -> None:
    text = format_duration(timedelta(seconds=seconds))
    assert re.fullmatch(DURATION_PATTERN, text)
    assert parse_duration(text).total_seconds() == seconds


def test_longer_than_go_can_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than a Go duration"):
        parse_duration("3000000h")
