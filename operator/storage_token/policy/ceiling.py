"""Does a token stay within its provider's ceiling and the provider API's own rules?

Each function returns a message naming the offending field, or "".
"""

from __future__ import annotations

import fnmatch
import ipaddress
from datetime import datetime, timedelta

from storage_token.model.durations import format_duration
from storage_token.model.provider import Ceiling
from storage_token.model.token import TokenSpec
from storage_token.providers.b2.capabilities import FORBIDDEN_CAPABILITIES, KNOWN_CAPABILITIES

US3_MAX_EXPIRE = datetime.fromtimestamp(4102416000).astimezone()  # the API's ExpireTime ceiling
B2_MAX_DURATION = timedelta(days=1000)
PROVIDER_PERMISSIONS = {
    "us3": {"read", "write", "delete", "list", "image-processing", "deny-overwrite"},
    "b2": {"read", "write", "delete", "list", "share"},
}


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


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


def ceiling_violation(spec: TokenSpec, ceiling: Ceiling) -> str:
    if ceiling.allowed_permissions:
        extra = [p for p in spec.permissions if p not in ceiling.allowed_permissions]
        if extra:
            return (
                f"spec.permissions: {', '.join(extra)} not allowed (allowed: {', '.join(ceiling.allowed_permissions)})"
            )
    if ceiling.allowed_buckets:
        if not spec.buckets:
            return "spec.buckets: must name buckets; the provider allows only " + ", ".join(ceiling.allowed_buckets)
        for bucket in spec.buckets:
            if not _matches(bucket, ceiling.allowed_buckets):
                return f"spec.buckets: {bucket!r} not allowed (allowed: {', '.join(ceiling.allowed_buckets)})"
    if ceiling.allowed_prefixes:
        if not spec.prefixes:
            return "spec.prefixes: must name prefixes; the provider allows only " + ", ".join(ceiling.allowed_prefixes)
        for prefix in spec.prefixes:
            if not _matches(prefix, ceiling.allowed_prefixes):
                return f"spec.prefixes: {prefix!r} not allowed (allowed: {', '.join(ceiling.allowed_prefixes)})"
    if ceiling.max_duration is not None and spec.duration > ceiling.max_duration:
        return (
            f"spec.duration: {format_duration(spec.duration)} exceeds the provider's maximum "
            f"{format_duration(ceiling.max_duration)}"
        )
    if ceiling.required_allow_ips:
        if not spec.allow_ips:
            return "spec.allowIPs: required by the provider, within " + ", ".join(ceiling.required_allow_ips)
        for address in spec.allow_ips:
            if not _inside(address, ceiling.required_allow_ips):
                return f"spec.allowIPs: {address!r} is outside {', '.join(ceiling.required_allow_ips)}"
    return ""


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
