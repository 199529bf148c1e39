"""StorageProvider / ClusterStorageProvider specs as frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from storage_token.api.durations import parse_duration
from storage_token.api.token import RenewalWindow, parse_renewal_windows

NAMESPACED_KIND = "StorageProvider"
CLUSTER_KIND = "ClusterStorageProvider"
DEFAULT_ENDPOINTS = {"us3": "https://api.ucloud.cn", "b2": "https://api.backblazeb2.com"}


# What a provider without the field allows. Each default fails closed: a provider that says
# nothing gets short keys, rare renewals and few live keys, never "anything". The CRD
# (crds/*storageproviders.yaml) carries the same values as schema defaults; a unit test holds
# them together.
DEFAULT_MAX_DURATION = timedelta(days=30)
DEFAULT_MIN_DURATION = timedelta(minutes=15)
DEFAULT_MIN_RENEWAL_INTERVAL = timedelta(minutes=5)
DEFAULT_MAX_REVOKE_GRACE_PERIOD = timedelta(hours=24)
DEFAULT_MAX_LIVE_KEYS = 5
DEFAULT_MIN_MANUAL_RENEW_INTERVAL = timedelta(minutes=1)
ALL_BUCKETS = "*"  # the one allowedBuckets entry that also admits bucket-less (account-wide) keys


@dataclass(frozen=True)
class Ceiling:
    """The most a token of this provider may ask for. Fails closed: no allowedBuckets admits no token.

    allowed_buckets: bucket globs; empty admits nothing, ["*"] every bucket and bucket-less keys.
    allowed_prefixes: prefix globs with path boundaries (see policy/ceiling.py); empty: any prefix.
    allowed_permissions: portable permissions and provider extras; empty: all the provider knows.
    allowed_raw_capabilities: B2 capabilities with no portable equivalent (account-wide reads,
    object-lock writes); empty: none of them.
    allow_retain: whether a token may ask `deletionPolicy: Retain` (its keys then outlive the
    token and the operator's control until they expire); default no.
    """

    allowed_buckets: tuple[str, ...] = ()
    allowed_prefixes: tuple[str, ...] = ()
    allowed_permissions: tuple[str, ...] = ()
    allowed_raw_capabilities: tuple[str, ...] = ()
    max_duration: timedelta = DEFAULT_MAX_DURATION
    min_duration: timedelta = DEFAULT_MIN_DURATION
    min_renewal_interval: timedelta = DEFAULT_MIN_RENEWAL_INTERVAL
    max_revoke_grace_period: timedelta = DEFAULT_MAX_REVOKE_GRACE_PERIOD
    max_live_keys: int = DEFAULT_MAX_LIVE_KEYS
    min_manual_renew_interval: timedelta = DEFAULT_MIN_MANUAL_RENEW_INTERVAL
    required_allow_ips: tuple[str, ...] = ()
    allow_retain: bool = False
    # When this provider's keys may be renewed; a token's own windows only narrow them.
    renewal_windows: tuple[RenewalWindow, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Ceiling:
        """Parse `spec.policy`; a value the schema should have refused raises ValueError naming it."""
        raw = raw or {}

        def duration(name: str, default: timedelta) -> timedelta:
            value = raw.get(name)
            if value is None or value == "":
                return default
            try:
                return parse_duration(str(value))
            except ValueError as error:
                raise ValueError(f"spec.policy.{name}: {error}") from None

        live_keys = raw.get("maxLiveKeys")
        return cls(
            allowed_buckets=tuple(raw.get("allowedBuckets") or ()),
            allowed_prefixes=tuple(raw.get("allowedPrefixes") or ()),
            allowed_permissions=tuple(raw.get("allowedPermissions") or ()),
            allowed_raw_capabilities=tuple(raw.get("allowedRawCapabilities") or ()),
            max_duration=duration("maxDuration", DEFAULT_MAX_DURATION),
            min_duration=duration("minDuration", DEFAULT_MIN_DURATION),
            min_renewal_interval=duration("minRenewalInterval", DEFAULT_MIN_RENEWAL_INTERVAL),
            max_revoke_grace_period=duration("maxRevokeGracePeriod", DEFAULT_MAX_REVOKE_GRACE_PERIOD),
            max_live_keys=int(live_keys) if live_keys is not None else DEFAULT_MAX_LIVE_KEYS,
            min_manual_renew_interval=duration("minManualRenewInterval", DEFAULT_MIN_MANUAL_RENEW_INTERVAL),
            required_allow_ips=tuple(raw.get("requiredAllowIPs") or ()),
            allow_retain=raw.get("allowRetain") is True,
            renewal_windows=parse_renewal_windows(raw.get("renewalWindows"), "spec.policy.renewalWindows"),
        )

    @property
    def allows_every_bucket(self) -> bool:
        return ALL_BUCKETS in self.allowed_buckets


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
    allow_insecure: bool = False  # plain http endpoints; only when the provider object says so
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
            allow_insecure=spec.get("allowInsecure") is True,
            ceiling=Ceiling.parse(spec.get("policy")),
            requests_per_second=float(rate.get("requestsPerSecond") or 10.0),
            burst=int(rate.get("burst") or 20),
            namespaces=namespaces,
        )
