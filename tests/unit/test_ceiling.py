"""The policy ceiling: every way a token asks for power, checked against the provider's policy, failing closed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from storage_token.api.provider import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_LIVE_KEYS,
    DEFAULT_MIN_DURATION,
    DEFAULT_MIN_MANUAL_RENEW_INTERVAL,
    DEFAULT_MIN_RENEWAL_INTERVAL,
    Ceiling,
)
from storage_token.api.token import ProviderRef, SecretSpec, TokenSpec
from storage_token.policy.ceiling import (
    EXPLICIT_CAPABILITIES,
    ceiling_violation,
    glob_matches,
    manual_renewal_allowed_at,
    manual_renewal_too_soon,
    prefix_admitted,
    renewal_interval,
    too_many_live_keys,
)
from storage_token.providers.b2.capabilities import FORBIDDEN_CAPABILITIES, KNOWN_CAPABILITIES

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SPEC = TokenSpec(
    provider_ref=ProviderRef("StorageProvider", "p"),
    permissions=("read",),
    duration=timedelta(hours=24),
    secret=SecretSpec(name="s"),
    buckets=("team-a-data",),
)
TEAM_A = Ceiling(allowed_buckets=("team-a-*",))


def violation(ceiling: Ceiling = TEAM_A, provider: str = "b2", **spec: object) -> str:
    return ceiling_violation(replace(SPEC, **spec), ceiling, provider)  # type: ignore[arg-type]


def test_a_token_inside_the_ceiling_passes() -> None:
    assert violation() == ""


# -- H1: raw capabilities are checked by what they grant ------------------------------------
def test_the_reviewed_rawcapabilities_escalation_is_refused() -> None:
    """The review's repro: a read/list ceiling, a read token, and write/delete/lock/account-wide capabilities."""
    ceiling = Ceiling(allowed_buckets=("team-a-*",), allowed_permissions=("read", "list"))
    raw = (
        "writeFiles",
        "deleteFiles",
        "shareFiles",
        "writeFileRetentions",
        "writeFileLegalHolds",
        "listAllBucketNames",
        "readBuckets",
    )
    message = violation(ceiling, raw_capabilities=raw)
    assert message.startswith("spec.rawCapabilities: writeFiles grants write")
    for capability in raw:
        assert violation(ceiling, raw_capabilities=(capability,)) != "", capability


@pytest.mark.parametrize(
    ("capability", "permission"),
    [
        ("readFiles", "read"),
        ("readFileRetentions", "read"),
        ("readFileLegalHolds", "read"),
        ("writeFiles", "write"),
        ("deleteFiles", "delete"),
        ("listFiles", "list"),
        ("listBuckets", "list"),
        ("shareFiles", "share"),
    ],
)
def test_file_capabilities_need_the_permission_they_amount_to(capability: str, permission: str) -> None:
    others = tuple(p for p in ("read", "write", "delete", "list", "share") if p != permission)
    refused = violation(
        Ceiling(allowed_buckets=("*",), allowed_permissions=others),
        permissions=others[:1],
        raw_capabilities=(capability,),
    )
    assert f"grants {permission}" in refused
    allowed = Ceiling(allowed_buckets=("*",), allowed_permissions=(permission, "read"))
    assert violation(allowed, raw_capabilities=(capability,)) == ""


@pytest.mark.parametrize(
    "capability",
    ["listAllBucketNames", "readBuckets", "readBucketEncryption", "readBucketRetentions", "writeFileRetentions"],
)
def test_account_wide_and_irreversible_capabilities_need_an_explicit_allowance(capability: str) -> None:
    assert "needs policy.allowedRawCapabilities" in violation(raw_capabilities=(capability,))
    assert violation(replace(TEAM_A, allowed_raw_capabilities=(capability,)), raw_capabilities=(capability,)) == ""


def test_every_issuable_capability_is_classified() -> None:
    """A capability B2 adds later is unknown (InvalidSpec) until someone decides what it amounts to."""
    from storage_token.policy.ceiling import CAPABILITY_PERMISSION

    issuable = KNOWN_CAPABILITIES - FORBIDDEN_CAPABILITIES
    assert issuable <= set(CAPABILITY_PERMISSION) | EXPLICIT_CAPABILITIES
    assert not EXPLICIT_CAPABILITIES & FORBIDDEN_CAPABILITIES
    assert {"listAllBucketNames", "readBuckets", "readBucketEncryption"} <= EXPLICIT_CAPABILITIES


def test_forbidden_capabilities_are_left_to_the_provider_rules() -> None:
    # InvalidSpec ("can manage the account") is the clearer answer; the ceiling doesn't pre-empt it.
    assert violation(raw_capabilities=("writeKeys",)) == ""


# -- M7: fail closed -------------------------------------------------------------------------
def test_no_allowed_buckets_admits_no_token_at_all() -> None:
    assert "policy.allowedBuckets is empty" in violation(Ceiling())
    assert "policy.allowedBuckets is empty" in violation(Ceiling(), buckets=())


def test_a_bucketless_key_needs_the_explicit_star() -> None:
    assert violation(TEAM_A, buckets=()).startswith("spec.buckets: must name buckets")
    assert violation(Ceiling(allowed_buckets=("*-*", "?*")), buckets=()).startswith("spec.buckets: must name")
    assert violation(Ceiling(allowed_buckets=("*",)), buckets=()) == ""
    assert violation(Ceiling(allowed_buckets=("*",)), buckets=("anything",)) == ""


def test_an_absent_max_duration_is_thirty_days_not_a_thousand() -> None:
    assert Ceiling.parse({}).max_duration == timedelta(days=30)
    assert violation(duration=timedelta(days=31)).startswith("spec.duration: 744h exceeds the provider's maximum 720h")
    assert violation(duration=timedelta(days=30)) == ""


# -- L4: globs and literal token values ----------------------------------------------------
@pytest.mark.parametrize("bucket", ["*", "team-a-*", "team-a-?", "team-a-[xy]", "team-a-]"])
def test_wildcards_in_token_buckets_are_refused(bucket: str) -> None:
    message = violation(Ceiling(allowed_buckets=("*",)), buckets=(bucket,))
    assert message.startswith("spec.buckets:") and "wildcard" in message


@pytest.mark.parametrize("prefix", ["*", "logs/*", "logs/?", "logs/[a]"])
def test_wildcards_in_token_prefixes_are_refused(prefix: str) -> None:
    message = violation(Ceiling(allowed_buckets=("*",)), prefixes=(prefix,))
    assert message.startswith("spec.prefixes:") and "wildcard" in message


@pytest.mark.parametrize(
    ("value", "pattern", "matches"),
    [
        ("team-a-data", "team-a-*", True),
        ("team-a-", "team-a-*", True),
        ("team-b-data", "team-a-*", False),
        ("team-a1", "team-a?", True),
        ("team-a12", "team-a?", False),
        ("team-a", "team-[ab]", True),
        ("team-c", "team-[ab]", False),
        ("team-c", "team-[!ab]", True),
        ("team-a", "team-[!ab]", False),
        ("team-3", "team-[0-9]", True),
        ("team-[", "team-[", True),  # an unclosed "[" is literal
        ("a/b", "*", False),  # wildcards stop at "/"
        ("a/b", "a?b", False),
        ("a/b", "a[!x]b", False),
        ("a.b", "a?b", True),
        ("TEAM-A", "team-*", False),  # case matters
    ],
)
def test_ceiling_globs(value: str, pattern: str, matches: bool) -> None:
    assert glob_matches(value, pattern) is matches


@pytest.mark.parametrize(
    ("prefix", "pattern", "admitted"),
    [
        ("team-a", "team-a", True),
        ("team-a/", "team-a", True),
        ("team-a/reports/2026/", "team-a", True),
        ("team-a-other/", "team-a", False),
        ("team-a-other", "team-a", False),
        ("team-ab", "team-a", False),
        ("team", "team-a", False),  # wider than the ceiling
        ("team-a/", "team-a/", True),
        ("team-a/x", "team-a/", True),
        ("team-a", "team-a/", False),  # the key prefix team-a also reaches team-a-other/...
        ("logs/", "logs/*", True),
        ("logs/2026", "logs/*", True),
        ("logs/2026/05/", "logs/*", True),
        ("logs", "logs/*", False),
        ("team-b/", "team-a/*", False),
        ("tenants/a/data/", "tenants/*/data/", True),
        ("tenants/a/b/data/", "tenants/*/data/", False),
    ],
)
def test_prefixes_are_admitted_on_path_boundaries(prefix: str, pattern: str, admitted: bool) -> None:
    assert prefix_admitted(prefix, pattern) is admitted


def test_prefix_ceiling_in_the_token_check() -> None:
    ceiling = replace(TEAM_A, allowed_prefixes=("team-a",))
    assert violation(ceiling, prefixes=("team-a/x/",)) == ""
    assert violation(ceiling, prefixes=("team-a-other/",)).startswith("spec.prefixes: 'team-a-other/' not allowed")
    assert violation(ceiling).startswith("spec.prefixes: must name prefixes")


# -- IP lists --------------------------------------------------------------------------------
def test_required_allow_ips() -> None:
    ceiling = replace(TEAM_A, required_allow_ips=("10.0.0.0/8",))
    assert violation(ceiling, provider="us3", allow_ips=("10.1.0.0/16",)) == ""
    assert violation(ceiling, provider="us3").startswith("spec.allowIPs: required")
    assert "outside" in violation(ceiling, provider="us3", allow_ips=("0.0.0.0/0",))
    assert "outside" in violation(ceiling, provider="us3", allow_ips=("10.1.0.0/16", "192.168.0.1"))
    assert "outside" in violation(ceiling, provider="us3", allow_ips=("::/0",))


@pytest.mark.parametrize("field", ["allow_ips", "deny_ips"])
def test_unreadable_ip_entries_are_refused(field: str) -> None:
    # A provider may drop an entry it can't read, and a dropped allow entry widens the key.
    spec = replace(SPEC, allow_ips=("10.0.0.300",)) if field == "allow_ips" else replace(SPEC, deny_ips=("10.0.0.300",))
    message = ceiling_violation(spec, TEAM_A, "us3")
    assert "is not an IP address or CIDR" in message


# -- H7: how often and how many -----------------------------------------------------------
def test_min_duration() -> None:
    assert violation(duration=timedelta(minutes=1)).startswith("spec.duration: 1m is below the provider's minimum 15m")
    # Allowed by minDuration, a 1m key renewed at 2/3 still comes every ~17s: below the default 5m interval.
    lowered = replace(TEAM_A, min_duration=timedelta(minutes=1))
    assert violation(lowered, duration=timedelta(minutes=1)).startswith("spec.duration: renewing a 1m key")


def test_max_revoke_grace_period() -> None:
    assert violation(revoke_grace_period=timedelta(hours=168)).startswith(
        "spec.revokeGracePeriod: 168h exceeds the provider's maximum 24h"
    )
    assert violation(revoke_grace_period=timedelta(hours=24)) == ""


def test_the_reviewed_renewal_storm_is_refused() -> None:
    """duration 1m with renewBeforePercentage 95 re-issued every few seconds."""
    ceiling = replace(TEAM_A, min_duration=timedelta(minutes=1))
    message = violation(ceiling, duration=timedelta(minutes=1), renew_before_percentage=95)
    assert message.startswith("spec.renewBeforePercentage: renewing a 1m key this early issues one every 0s")
    assert "minimum renewal interval is 5m" in message


@pytest.mark.parametrize(
    ("changes", "interval", "field"),
    [
        ({}, timedelta(hours=24) * (2 / 3 - 0.05), "spec.duration"),
        ({"renew_before": timedelta(hours=20)}, timedelta(hours=4) - timedelta(hours=24) * 0.05, "spec.renewBefore"),
        (
            {"renew_before_percentage": 50},
            timedelta(hours=12) - timedelta(hours=24) * 0.05,
            "spec.renewBeforePercentage",
        ),
    ],
)
def test_renewal_interval_is_the_worst_case_with_jitter(
    changes: dict[str, object], interval: timedelta, field: str
) -> None:
    found, named = renewal_interval(replace(SPEC, **changes))  # type: ignore[arg-type]
    assert abs(found - interval) < timedelta(seconds=1)
    assert named == field


def test_min_renewal_interval_against_the_schedule() -> None:
    """A spec the check admits never renews sooner than the interval, whatever the jitter seed."""
    from storage_token.policy.schedule import renewal_time

    ceiling = replace(TEAM_A, min_duration=timedelta(0), min_renewal_interval=timedelta(minutes=10))
    for minutes in (12, 15, 20, 30, 60):
        for percent in (5, 20, 50, 80, 95):
            spec = replace(SPEC, duration=timedelta(minutes=minutes), renew_before_percentage=percent)
            if ceiling_violation(spec, ceiling, "b2"):
                continue
            for seed in ("a", "b", "c", "d", "e", "f"):
                issued = NOW
                assert renewal_time(spec, issued, issued + spec.duration, seed) - issued >= timedelta(minutes=10)


def test_too_many_live_keys() -> None:
    ceiling = Ceiling(max_live_keys=3)
    assert too_many_live_keys(0, ceiling) == ""
    assert too_many_live_keys(1, ceiling) == ""  # 1 pending + current + new = 3
    message = too_many_live_keys(2, ceiling)
    assert message.startswith("issuing now would make 4 live keys (2 waiting for revocation)")
    assert too_many_live_keys(2, ceiling, has_current=False) == ""
    assert too_many_live_keys(DEFAULT_MAX_LIVE_KEYS - 2, Ceiling()) == ""
    assert too_many_live_keys(DEFAULT_MAX_LIVE_KEYS - 1, Ceiling()) != ""


def test_manual_renewal_rate_limit() -> None:
    ceiling = Ceiling(min_manual_renew_interval=timedelta(minutes=5))
    assert manual_renewal_too_soon(None, NOW, ceiling) == ""
    assert manual_renewal_allowed_at(None, ceiling) is None
    last = NOW - timedelta(minutes=2)
    message = manual_renewal_too_soon(last, NOW, ceiling)
    assert message == (
        f"manual renewals are limited to one per 5m; this one is acted on at {(NOW + timedelta(minutes=3)).isoformat()}"
    )
    assert manual_renewal_allowed_at(last, ceiling) == NOW + timedelta(minutes=3)
    assert manual_renewal_too_soon(NOW - timedelta(minutes=5), NOW, ceiling) == ""


# -- parsing ---------------------------------------------------------------------------------
def test_parse_reads_every_field() -> None:
    ceiling = Ceiling.parse(
        {
            "allowedBuckets": ["*"],
            "allowedPrefixes": ["team-a/"],
            "allowedPermissions": ["read"],
            "allowedRawCapabilities": ["listAllBucketNames"],
            "maxDuration": "168h",
            "minDuration": "1h",
            "minRenewalInterval": "30m",
            "maxRevokeGracePeriod": "1h",
            "maxLiveKeys": 3,
            "minManualRenewInterval": "10m",
            "requiredAllowIPs": ["10.0.0.0/8"],
        }
    )
    assert ceiling == Ceiling(
        allowed_buckets=("*",),
        allowed_prefixes=("team-a/",),
        allowed_permissions=("read",),
        allowed_raw_capabilities=("listAllBucketNames",),
        max_duration=timedelta(hours=168),
        min_duration=timedelta(hours=1),
        min_renewal_interval=timedelta(minutes=30),
        max_revoke_grace_period=timedelta(hours=1),
        max_live_keys=3,
        min_manual_renew_interval=timedelta(minutes=10),
        required_allow_ips=("10.0.0.0/8",),
    )


def test_parse_defaults_fail_closed() -> None:
    ceiling = Ceiling.parse(None)
    assert ceiling.allowed_buckets == () and not ceiling.allows_every_bucket
    assert ceiling.allowed_raw_capabilities == ()
    assert ceiling.max_duration == DEFAULT_MAX_DURATION
    assert ceiling.min_duration == DEFAULT_MIN_DURATION
    assert ceiling.min_renewal_interval == DEFAULT_MIN_RENEWAL_INTERVAL
    assert ceiling.min_manual_renew_interval == DEFAULT_MIN_MANUAL_RENEW_INTERVAL


def test_parse_names_a_bad_duration() -> None:
    with pytest.raises(ValueError, match=r"spec.policy.minDuration: not a duration: '7d'"):
        Ceiling.parse({"minDuration": "7d"})
