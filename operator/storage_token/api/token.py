"""StorageToken spec and status as frozen values, parsed from the API object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from storage_token.api.durations import parse_duration
from storage_token.api.status_patch import encode_fields
from storage_token.api.times import parse_time

API_GROUP = "storagetoken.dev"
API_VERSION = "v1alpha1"
# status.pendingRevocations: no key is issued while this many wait (policy.maxLiveKeys is at most 100).
# The CRD's maxItems is higher, so the few a blocked token still queues always fit in a status write.
MAX_PENDING_REVOCATIONS = 128
PENDING_REVOCATIONS_MAX_ITEMS = 256


@dataclass(frozen=True)
class ProviderRef:
    kind: str  # StorageProvider | ClusterStorageProvider
    name: str


@dataclass(frozen=True)
class SecretTemplate:
    preset: str = "default"
    data: Mapping[str, str] = field(default_factory=dict)
    include_preset: bool = True


@dataclass(frozen=True)
class SecretSpec:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    template: SecretTemplate = field(default_factory=SecretTemplate)
    keep_previous: bool = False  # also hold the replaced key pair until it is revoked


@dataclass(frozen=True)
class RestartTarget:
    kind: str
    name: str


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # datetime.weekday() order


@dataclass(frozen=True)
class RenewalWindow:
    """When renewals may start: from `start` to `end` local time in `time_zone`, on the days it opens.

    `end` before (or at) `start` crosses midnight: the window closes on the next day. `days` are the
    days the window opens on; empty means every day. The zone is checked by policy/windows.py (an
    unknown one is a condition, not a parse error: providers must always parse).
    """

    start: time
    end: time
    days: tuple[str, ...] = ()
    time_zone: str = "UTC"

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> RenewalWindow:
        """`where` names the field in errors (the schema refuses all of these first)."""
        days = tuple(raw.get("days") or ())
        unknown = [day for day in days if day not in WEEKDAYS]
        if unknown:
            raise ValueError(f"{where}.days: unknown day {unknown[0]!r}; use {', '.join(WEEKDAYS)}")
        return cls(
            start=_clock_time(raw.get("start"), f"{where}.start"),
            end=_clock_time(raw.get("end"), f"{where}.end"),
            days=days,
            time_zone=str(raw.get("timeZone") or "UTC"),
        )


def _clock_time(value: object, where: str) -> time:
    text = str(value or "")
    hours, _, minutes = text.partition(":")
    if len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"{where}: {text!r} is not a time of day as HH:MM")
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"{where}: {text!r} is not a time of day (00:00 to 23:59)")
    return time(int(hours), int(minutes))


def parse_renewal_windows(raw: object, where: str) -> tuple[RenewalWindow, ...]:
    """A `renewalWindows` list; absent is no windows (renewals whenever they are due)."""
    if not raw:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where}: must be a list of windows")
    return tuple(RenewalWindow.parse(item or {}, f"{where}[{index}]") for index, item in enumerate(raw))


@dataclass(frozen=True)
class TokenSpec:
    provider_ref: ProviderRef
    permissions: tuple[str, ...]
    duration: timedelta
    secret: SecretSpec
    buckets: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    allow_ips: tuple[str, ...] = ()
    deny_ips: tuple[str, ...] = ()
    raw_capabilities: tuple[str, ...] = ()
    renew_before: timedelta | None = None
    renew_before_percentage: int | None = None
    revoke_grace_period: timedelta = timedelta(minutes=5)
    # With restartTargets: the latest a replaced key is revoked when its consumers never finish switching.
    max_revoke_delay: timedelta = timedelta(hours=1)
    deletion_policy: str = "Revoke"
    restart_targets: tuple[RestartTarget, ...] = ()
    renewal_windows: tuple[RenewalWindow, ...] = ()  # empty: renew whenever due

    @classmethod
    def parse(cls, spec: Mapping[str, Any], default_secret_name: str) -> TokenSpec:
        """Parse an API spec (defaults applied by the API server; re-applied here for safety)."""
        ref = spec.get("providerRef") or {}
        secret = spec.get("secret") or {}
        template = secret.get("template") or {}
        renew_before = spec.get("renewBefore")
        return cls(
            provider_ref=ProviderRef(ref.get("kind") or "StorageProvider", ref.get("name") or ""),
            permissions=tuple(spec.get("permissions") or ()),
            duration=parse_duration(spec.get("duration") or "24h"),
            secret=SecretSpec(
                name=secret.get("name") or default_secret_name,
                labels=dict(secret.get("labels") or {}),
                annotations=dict(secret.get("annotations") or {}),
                template=SecretTemplate(
                    preset=template.get("preset") or "default",
                    data=dict(template.get("data") or {}),
                    include_preset=template.get("includePreset", True),
                ),
                keep_previous=bool(secret.get("keepPrevious", False)),
            ),
            buckets=tuple(spec.get("buckets") or ()),
            prefixes=tuple(spec.get("prefixes") or ()),
            allow_ips=tuple(spec.get("allowIPs") or ()),
            deny_ips=tuple(spec.get("denyIPs") or ()),
            raw_capabilities=tuple(spec.get("rawCapabilities") or ()),
            renew_before=parse_duration(renew_before) if renew_before else None,
            renew_before_percentage=spec.get("renewBeforePercentage"),
            revoke_grace_period=parse_duration(spec.get("revokeGracePeriod") or "5m"),
            max_revoke_delay=parse_duration(spec.get("maxRevokeDelay") or "1h"),
            deletion_policy=spec.get("deletionPolicy") or "Revoke",
            restart_targets=tuple(RestartTarget(t["kind"], t["name"]) for t in spec.get("restartTargets") or ()),
            renewal_windows=parse_renewal_windows(spec.get("renewalWindows"), "spec.renewalWindows"),
        )


@dataclass(frozen=True)
class PendingRevocation:
    key_id: str
    key_name: str
    due_at: datetime
    provider: str = ""  # Kind/name of the provider that issued it
    not_after: datetime | None = None
    attempts: int = 0
    last_error: str = ""
    secret_name: str = ""  # the Secret that held it (deleted with the revocation if it still does)
    # Waits for the restartTargets rollout of this revision (due_at is then the ceiling); 0: it doesn't.
    awaiting_rollout: int = 0
    not_before: datetime | None = None  # the grace period's end: the earliest an adopted rollout revokes

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PendingRevocation:
        return cls(
            key_id=raw["keyId"],
            key_name=raw.get("keyName", ""),
            provider=raw.get("provider", ""),
            due_at=parse_time(raw.get("dueAt")) or datetime.min.replace(tzinfo=UTC),
            not_after=parse_time(raw.get("notAfter")),
            attempts=int(raw.get("attempts", 0)),
            last_error=raw.get("lastError", ""),
            secret_name=raw.get("secretName", ""),
            awaiting_rollout=int(raw.get("awaitingRollout") or 0),
            not_before=parse_time(raw.get("notBefore")),
        )

    def to_status(self) -> dict[str, Any]:
        # The rollout fields are written only while the entry waits for one.
        return encode_fields(self, omit=frozenset() if self.awaiting_rollout else _NO_ROLLOUT)


_NO_ROLLOUT = frozenset({"awaiting_rollout", "not_before"})


@dataclass(frozen=True)
class Intent:
    key_name: str
    revision: int
    since: datetime | None
    spec_hash: str = ""  # the spec the key was asked for: recovery adopts only for the same spec
    provider: str = ""  # Kind/name asked for the key: the intent is resolved there, whatever the spec says now

    def to_status(self) -> dict[str, Any]:
        return encode_fields(self)


@dataclass(frozen=True)
class TokenStatus:
    """What the operator recorded; empty for a new token."""

    key_id: str = ""
    key_name: str = ""
    secret_name: str = ""
    provider_type: str = ""
    provider: str = ""  # Kind/name that issued the current key
    handled_renew_request: str = ""
    not_after: datetime | None = None
    issued_at: datetime | None = None
    renewal_time: datetime | None = None
    next_renewal_window: datetime | None = None  # the renewal window the next renewal starts in (or waits for)
    revision: int = 0
    spec_hash: str = ""
    intent: Intent | None = None
    failed_attempts: int = 0
    next_attempt: datetime | None = None
    pending_revocations: tuple[PendingRevocation, ...] = ()
    observed_generation: int = 0

    @classmethod
    def parse(cls, status: Mapping[str, Any] | None) -> TokenStatus:
        status = status or {}
        intent = status.get("intent") or None
        return cls(
            key_id=status.get("keyId") or "",
            key_name=status.get("keyName") or "",
            secret_name=status.get("secretName") or "",
            provider_type=status.get("providerType") or "",
            provider=status.get("provider") or "",
            handled_renew_request=status.get("handledRenewRequest") or "",
            not_after=parse_time(status.get("notAfter")),
            issued_at=parse_time(status.get("issuedAt")),
            renewal_time=parse_time(status.get("renewalTime")),
            next_renewal_window=parse_time(status.get("nextRenewalWindow")),
            revision=int(status.get("revision") or 0),
            spec_hash=status.get("specHash") or "",
            intent=(
                Intent(
                    intent.get("keyName", ""),
                    int(intent.get("revision") or 0),
                    parse_time(intent.get("since")),
                    intent.get("specHash") or "",
                    intent.get("provider") or "",
                )
                if intent and intent.get("keyName")
                else None
            ),
            failed_attempts=int(status.get("failedAttempts") or 0),
            next_attempt=parse_time(status.get("nextAttempt")),
            pending_revocations=tuple(PendingRevocation.parse(p) for p in status.get("pendingRevocations") or ()),
            observed_generation=int(status.get("observedGeneration") or 0),
        )

    def earliest_due(self) -> datetime | None:
        """The first moment the recorded state needs work: a renewal, an expiry, a revocation."""
        moments = [self.renewal_time, self.not_after]
        for pending in self.pending_revocations:
            moments += [pending.due_at, pending.not_after]
        present = [moment for moment in moments if moment is not None]
        return min(present) if present else None
