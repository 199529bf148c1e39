"""StorageProvider / ClusterStorageProvider specs as frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from storage_token.model.durations import parse_duration

NAMESPACED_KIND = "StorageProvider"
CLUSTER_KIND = "ClusterStorageProvider"
DEFAULT_ENDPOINTS = {"us3": "https://api.ucloud.cn", "b2": "https://api.backblazeb2.com"}


@dataclass(frozen=True)
class Ceiling:
    """The most a token of this provider may ask for; empty tuples allow everything of that kind."""

    allowed_buckets: tuple[str, ...] = ()
    allowed_prefixes: tuple[str, ...] = ()
    allowed_permissions: tuple[str, ...] = ()
    max_duration: timedelta | None = None
    required_allow_ips: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Ceiling:
        raw = raw or {}
        max_duration = raw.get("maxDuration")
        return cls(
            allowed_buckets=tuple(raw.get("allowedBuckets") or ()),
            allowed_prefixes=tuple(raw.get("allowedPrefixes") or ()),
            allowed_permissions=tuple(raw.get("allowedPermissions") or ()),
            max_duration=parse_duration(max_duration) if max_duration else None,
            required_allow_ips=tuple(raw.get("requiredAllowIPs") or ()),
        )


@dataclass(frozen=True)
class NamespaceRule:
    """Which namespaces a ClusterStorageProvider admits (names or a label selector)."""

    names: tuple[str, ...] = ()
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[Mapping[str, Any], ...] = ()
    has_selector: bool = False


@dataclass(frozen=True)
class ProviderSpec:
    kind: str  # NAMESPACED_KIND | CLUSTER_KIND
    name: str
    namespace: str  # where the credentials Secret lives
    type: str
    endpoint: str
    credentials_secret: str
    region: str = ""
    project_id: str = ""
    s3_endpoint: str | None = None
    ceiling: Ceiling = field(default_factory=Ceiling)
    requests_per_second: float = 10.0
    burst: int = 20
    namespaces: NamespaceRule | None = None  # cluster kind only

    @classmethod
    def parse(cls, body: Mapping[str, Any], credentials_namespace: str | None = None) -> ProviderSpec:
        """`credentials_namespace` is the operator's namespace for the cluster kind."""
        kind = body.get("kind") or NAMESPACED_KIND
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        rate = spec.get("rateLimit") or {}
        namespaces = None
        if kind == CLUSTER_KIND:
            selector = spec.get("namespaceSelector")
            namespaces = NamespaceRule(
                names=tuple(spec.get("namespaces") or ()),
                match_labels=dict((selector or {}).get("matchLabels") or {}),
                match_expressions=tuple((selector or {}).get("matchExpressions") or ()),
                has_selector=selector is not None,
            )
        provider_type = spec.get("type") or ""
        return cls(
            kind=kind,
            name=meta.get("name") or "",
            namespace=(credentials_namespace or "") if kind == CLUSTER_KIND else (meta.get("namespace") or ""),
            type=provider_type,
            endpoint=spec.get("endpoint") or DEFAULT_ENDPOINTS.get(provider_type, ""),
            credentials_secret=(spec.get("credentialsSecretRef") or {}).get("name") or "",
            region=spec.get("region") or "",
            project_id=spec.get("projectId") or "",
            s3_endpoint=spec.get("s3Endpoint") or None,
            ceiling=Ceiling.parse(spec.get("policy")),
            requests_per_second=float(rate.get("requestsPerSecond") or 10.0),
            burst=int(rate.get("burst") or 20),
            namespaces=namespaces,
        )
