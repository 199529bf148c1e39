"""Does a token stay within its provider's ceiling and the provider API's own rules?

Each function returns a message naming the offending field, or "".

`ceiling_violation` is the one place that compares every way a token asks for power with
the ceiling: permissions, B2 raw capabilities (by the permission they amount to), buckets,
prefixes, IP lists, lifetime, grace period, renewal frequency and whether keys may outlive
the token (deletionPolicy: Retain). It fails closed: what the
ceiling does not name is refused (see model/provider.py for the defaults).

Matching rules (also in the CRD descriptions):
- Ceiling entries are globs: `*` is any run of characters except `/`, `?` one character
  except `/`, `[abc]`/`[!abc]` a character class. Token values are literal: a `*`, `?`, `[`
  or `]` in spec.buckets or spec.prefixes is refused (US3 reads a bucket `*` as "every bucket").
- allowedBuckets `["*"]` is the only way to admit a token that names no bucket (an
  account-wide key); an empty list admits no token at all.
- A ceiling prefix admits a token prefix on path boundaries. Without a trailing `/`,
  `team-a` admits `team-a`, `team-a/` and `team-a/...`, never `team-a-other/...`. With a
  trailing `/`, `team-a/` admits `team-a/` and `team-a/...` but not `team-a` itself: a key
  prefix is a plain string prefix at the provider, so the key prefix `team-a` also reaches
  objects named `team-a-other/...`. End ceiling prefixes with `/` to keep tenants apart.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache

from storage_token.api.durations import format_duration
from storage_token.api.provider import Ceiling
from storage_token.api.token import TokenSpec
from storage_token.policy.schedule import DEFAULT_RENEW_FRACTION, JITTER_FRACTION
from storage_token.providers.b2.capabilities import (
    FORBIDDEN_CAPABILITIES,
    KNOWN_CAPABILITIES,
    PERMISSION_CAPABILITIES,
)

US3_MAX_EXPIRE = datetime.fromtimestamp(4102416000).astimezone()  # the API's ExpireTime ceiling
B2_MAX_DURATION = timedelta(days=1000)
PROVIDER_PERMISSIONS = {
    "us3": {"read", "write", "delete", "list", "image-processing", "deny-overwrite"},
    "b2": {"read", "write", "delete", "list", "share"},
}
GLOB_CHARACTERS = frozenset("*?[]")

# B2 capabilities that act on the files of the key's bucket(s), by the portable permission
# they amount to. The object-lock writes are writes, and are also listed explicitly below:
# a compliance-mode retention can't be undone, not even by the account owner.
CAPABILITY_PERMISSION: Mapping[str, str] = {
    **{capability: permission for permission, caps in PERMISSION_CAPABILITIES.items() for capability in caps},
    "readFileLegalHolds": "read",
    "readFileRetentions": "read",
    "writeFileLegalHolds": "write",
    "writeFileRetentions": "write",
}
# Everything else an issued key may carry: account-wide reads (listAllBucketNames names every
# tenant's buckets; readBuckets and the read*Bucket* family read bucket settings) and the
# irreversible object-lock writes. Refused unless policy.allowedRawCapabilities lists them.
EXPLICIT_CAPABILITIES: frozenset[str] = (KNOWN_CAPABILITIES - FORBIDDEN_CAPABILITIES - set(CAPABILITY_PERMISSION)) | {
    "writeFileLegalHolds",
    "writeFileRetentions",
}


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """A ceiling glob as a regex whose wildcards stop at `/` (fnmatch's `*` would cross it)."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            # A class runs to the next "]" (a "]" right after "[" or "[!" is a member); none: a literal "[".
            start = i + 2 if pattern.startswith("[!", i) else i + 1
            end = pattern.find("]", start + 1 if pattern.startswith("]", start) else start)
            if end < 0:
                out.append(re.escape(char))
            else:
                members = "".join(c if c == "-" else re.escape(c) for c in pattern[start:end])
                out.append(f"[^/{members}]" if start == i + 2 else f"[{members}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    try:
        return re.compile("".join(out))
    except re.error:  # a reversed range such as [z-a]: the entry matches only itself
        return re.compile(re.escape(pattern))


def glob_matches(value: str, pattern: str) -> bool:
    return _glob(pattern).fullmatch(value) is not None


def prefix_admitted(prefix: str, pattern: str) -> bool:
    """Does ceiling prefix `pattern` admit token prefix `prefix`, on path boundaries (module docstring)?"""
    if glob_matches(prefix, pattern):
        return True
    # Cut the token prefix at each `/`: just after it for a ceiling ending in `/`, just before it otherwise.
    keep_slash = pattern.endswith("/")
    for index, char in enumerate(prefix):
        if char == "/" and glob_matches(prefix[: index + 1] if keep_slash else prefix[:index], pattern):
            return True
    return False


def _inside(address: str, networks: tuple[str, ...]) -> bool:
    try:
        candidate = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return False
    for network in networks:
        try:
            allowed = ipaddress.ip_network(network, strict=False)
        except ValueError:
            continue
        if candidate.version == allowed.version and candidate.subnet_of(allowed):  # type: ignore[arg-type]
            return True
    return False


def _valid_network(address: str) -> bool:
    try:
        ipaddress.ip_network(address, strict=False)
    except ValueError:
        return False
    return True


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values) if values else "none"


def renewal_interval(spec: TokenSpec) -> tuple[timedelta, str]:
    """The shortest time between two issuances the spec can cause, and the field that sets it.

    Worst case of policy/schedule.renewal_time for the requested lifetime: the renew-before
    in force plus the largest jitter (renewals only ever move earlier).
    """
    lifetime = spec.duration
    if spec.renew_before is not None:
        before, field = min(spec.renew_before, lifetime), "spec.renewBefore"
    elif spec.renew_before_percentage is not None:
        before, field = lifetime * (spec.renew_before_percentage / 100), "spec.renewBeforePercentage"
    else:
        before, field = lifetime * (1 - DEFAULT_RENEW_FRACTION), "spec.duration"
    return max(lifetime - before - lifetime * JITTER_FRACTION, timedelta(0)), field


def _permission_violation(spec: TokenSpec, ceiling: Ceiling, provider_type: str) -> str:
    allowed = ceiling.allowed_permissions
    if allowed:
        extra = [p for p in spec.permissions if p not in allowed]
        if extra:
            return f"spec.permissions: {', '.join(extra)} not allowed (allowed: {', '.join(allowed)})"
    if provider_type != "b2" or not spec.raw_capabilities:
        return ""
    # Forbidden and unknown capabilities are the provider rules' business (InvalidSpec).
    for capability in spec.raw_capabilities:
        permission = CAPABILITY_PERMISSION.get(capability)
        if permission is not None and allowed and permission not in allowed:
            return (
                f"spec.rawCapabilities: {capability} grants {permission}, which is not allowed "
                f"(allowed: {', '.join(allowed)})"
            )
        if capability in EXPLICIT_CAPABILITIES and capability not in ceiling.allowed_raw_capabilities:
            return (
                f"spec.rawCapabilities: {capability} reaches beyond the token's files and needs "
                f"policy.allowedRawCapabilities (allowed: {_listed(ceiling.allowed_raw_capabilities)})"
            )
    return ""


def _scope_violation(spec: TokenSpec, ceiling: Ceiling) -> str:
    for field, values in (("spec.buckets", spec.buckets), ("spec.prefixes", spec.prefixes)):
        for value in values:
            if GLOB_CHARACTERS & set(value):
                return f"{field}: {value!r} contains a wildcard (* ? [ ]); name buckets and prefixes literally"
    buckets = ceiling.allowed_buckets
    if not buckets:
        return (
            "spec.buckets: the provider's policy allows no buckets (policy.allowedBuckets is empty; "
            'the platform lists bucket globs there, or ["*"] for every bucket)'
        )
    if not spec.buckets and not ceiling.allows_every_bucket:
        return "spec.buckets: must name buckets; the provider allows only " + ", ".join(buckets)
    for bucket in spec.buckets:
        if not any(glob_matches(bucket, pattern) for pattern in buckets):
            return f"spec.buckets: {bucket!r} not allowed (allowed: {', '.join(buckets)})"
    prefixes = ceiling.allowed_prefixes
    if prefixes:
        if not spec.prefixes:
            return "spec.prefixes: must name prefixes; the provider allows only " + ", ".join(prefixes)
        for prefix in spec.prefixes:
            if not any(prefix_admitted(prefix, pattern) for pattern in prefixes):
                return f"spec.prefixes: {prefix!r} not allowed (allowed: {', '.join(prefixes)})"
    return ""


def _network_violation(spec: TokenSpec, ceiling: Ceiling) -> str:
    for field, values in (("spec.allowIPs", spec.allow_ips), ("spec.denyIPs", spec.deny_ips)):
        for address in values:
            # An entry the provider can't read might be dropped there, widening the key.
            if not _valid_network(address):
                return f"{field}: {address!r} is not an IP address or CIDR"
    required = ceiling.required_allow_ips
    if required:
        if not spec.allow_ips:
            return "spec.allowIPs: required by the provider, within " + ", ".join(required)
        for address in spec.allow_ips:
            if not _inside(address, required):
                return f"spec.allowIPs: {address!r} is outside {', '.join(required)}"
    return ""


def _time_violation(spec: TokenSpec, ceiling: Ceiling) -> str:
    if spec.duration > ceiling.max_duration:
        return (
            f"spec.duration: {format_duration(spec.duration)} exceeds the provider's maximum "
            f"{format_duration(ceiling.max_duration)}"
        )
    if spec.duration < ceiling.min_duration:
        return (
            f"spec.duration: {format_duration(spec.duration)} is below the provider's minimum "
            f"{format_duration(ceiling.min_duration)}"
        )
    if spec.revoke_grace_period > ceiling.max_revoke_grace_period:
        return (
            f"spec.revokeGracePeriod: {format_duration(spec.revoke_grace_period)} exceeds the provider's "
            f"maximum {format_duration(ceiling.max_revoke_grace_period)}"
        )
    interval, field = renewal_interval(spec)
    if interval < ceiling.min_renewal_interval:
        return (
            f"{field}: renewing a {format_duration(spec.duration)} key this early issues one every "
            f"{format_duration(interval)} or sooner; the provider's minimum renewal interval is "
            f"{format_duration(ceiling.min_renewal_interval)}"
        )
    return ""


def retain_allowed(spec: TokenSpec, ceiling: Ceiling) -> bool:
    """May this token's keys outlive it? Only if it asks and the provider explicitly allows it."""
    return spec.deletion_policy == "Retain" and ceiling.allow_retain


def _retention_violation(spec: TokenSpec, ceiling: Ceiling) -> str:
    if spec.deletion_policy != "Revoke" and not retain_allowed(spec, ceiling):
        return (
            f"spec.deletionPolicy: {spec.deletion_policy} would leave keys live after the token is deleted, "
            "beyond the operator's control; the provider does not allow it (policy.allowRetain)"
        )
    return ""


def ceiling_violation(spec: TokenSpec, ceiling: Ceiling, provider_type: str) -> str:
    """The first way `spec` asks for more than `ceiling` allows, or ""."""
    return (
        _permission_violation(spec, ceiling, provider_type)
        or _scope_violation(spec, ceiling)
        or _network_violation(spec, ceiling)
        or _time_violation(spec, ceiling)
        or _retention_violation(spec, ceiling)
    )


def too_many_live_keys(pending_count: int, ceiling: Ceiling, has_current: bool = True) -> str:
    """Would issuing one more key exceed policy.maxLiveKeys? Live: pending revocations + current + the new one.

    For the issuing step to call before it creates a key; "" when the issue may go ahead.
    """
    after = pending_count + (1 if has_current else 0) + 1
    if after > ceiling.max_live_keys:
        return (
            f"issuing now would make {after} live keys ({pending_count} waiting for revocation); the provider "
            f"allows {ceiling.max_live_keys} per token, so the next key waits for a revocation"
        )
    return ""


def manual_renewal_allowed_at(last_handled_at: datetime | None, ceiling: Ceiling) -> datetime | None:
    """The earliest time a new storagetoken.dev/renew value may be acted on; None: at once."""
    if last_handled_at is None:
        return None
    return last_handled_at + ceiling.min_manual_renew_interval


def manual_renewal_too_soon(last_handled_at: datetime | None, now: datetime, ceiling: Ceiling) -> str:
    """Is a manual renewal now within policy.minManualRenewInterval of the last one handled?"""
    allowed_at = manual_renewal_allowed_at(last_handled_at, ceiling)
    if allowed_at is None or allowed_at <= now:
        return ""
    return (
        f"manual renewals are limited to one per {format_duration(ceiling.min_manual_renew_interval)}; "
        f"this one is acted on at {allowed_at.isoformat()}"
    )


def provider_rule_violation(spec: TokenSpec, provider_type: str, now: datetime) -> str:
    known = PROVIDER_PERMISSIONS.get(provider_type, set())
    unsupported = [p for p in spec.permissions if p not in known]
    if unsupported:
        return f"spec.permissions: {', '.join(unsupported)} not supported by {provider_type}"
    if provider_type == "b2":
        forbidden = sorted(set(spec.raw_capabilities) & FORBIDDEN_CAPABILITIES)
        if forbidden:
            return f"spec.rawCapabilities: {', '.join(forbidden)} can manage the account and is never issued"
        unknown = sorted(set(spec.raw_capabilities) - KNOWN_CAPABILITIES)
        if unknown:
            return f"spec.rawCapabilities: {', '.join(unknown)} is not a b2 capability"
        if len(spec.prefixes) > 1:
            return "spec.prefixes: b2 keys take at most one prefix"
        if spec.allow_ips or spec.deny_ips:
            return "spec.allowIPs/denyIPs: b2 keys can't be limited by IP"
        if spec.duration > B2_MAX_DURATION:
            return "spec.duration: b2 keys live at most 1000 days"
    if provider_type == "us3":
        if spec.raw_capabilities:
            return "spec.rawCapabilities: only b2 has raw capabilities"
        if now + spec.duration > US3_MAX_EXPIRE:
            return f"spec.duration: us3 keys can't expire after {US3_MAX_EXPIRE.isoformat()}"
    return ""
