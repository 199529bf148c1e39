"""Typed writes of StorageToken status: values in, the API's camelCase merge patch out, in one place.

A field left `UNSET` is not written; `None` removes it from status (JSON merge patch semantics).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from storage_token.api.times import format_time


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET
Unset = Literal[_Unset.UNSET]


class StatusValue(Protocol):
    """A value that writes itself into status (e.g. a rollout)."""

    def to_status(self) -> dict[str, Any]: ...


def camel(name: str) -> str:
    """`next_renewal_window` -> `nextRenewalWindow`: the one spelling rule between Python and the API."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def encode(value: object) -> object:
    """A status value as JSON: times as RFC 3339, typed values by their own `to_status`, dataclasses by field."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return format_time(value)
    to_status = getattr(value, "to_status", None)
    if callable(to_status):
        return to_status()
    if is_dataclass(value) and not isinstance(value, type):
        return encode_fields(value)
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [encode(item) for item in value]
    raise TypeError(f"no status encoding for {type(value).__name__}")


def encode_fields(value: object, omit: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A dataclass as a status object: every field but `omit` and the UNSET ones, camelCased."""
    assert is_dataclass(value)
    return {
        camel(f.name): encode(getattr(value, f.name))
        for f in fields(value)
        if f.name not in omit and getattr(value, f.name) is not UNSET
    }


@dataclass(frozen=True)
class Failure:
    """`status.lastFailure`."""

    time: datetime
    reason: str
    message: str


@dataclass
class StatusPatch:
    """The fields of `StorageToken.status` one write changes."""

    conditions: Sequence[Mapping[str, Any]] | Unset = UNSET
    observed_generation: int | Unset = UNSET
    provider_type: str | Unset = UNSET
    provider: str | Unset = UNSET
    secret_name: str | Unset = UNSET
    key_id: str | Unset | None = UNSET
    key_name: str | Unset | None = UNSET
    issued_at: datetime | Unset | None = UNSET
    not_after: datetime | Unset | None = UNSET
    renewal_time: datetime | Unset | None = UNSET
    next_renewal_window: datetime | Unset | None = UNSET
    revision: int | Unset = UNSET
    spec_hash: str | Unset | None = UNSET
    intent: StatusValue | Unset | None = UNSET
    failed_attempts: int | Unset = UNSET
    last_failure: Failure | Unset | None = UNSET
    next_attempt: datetime | Unset | None = UNSET
    handled_renew_request: str | Unset | None = UNSET
    pending_revocations: Sequence[StatusValue] | Unset = UNSET
    rollout: StatusValue | Unset | None = UNSET

    def __bool__(self) -> bool:
        """Whether the write would change anything at all."""
        return any(getattr(self, f.name) is not UNSET for f in fields(self))

    def to_status(self) -> dict[str, Any]:
        return encode_fields(self)

    def then(self, later: StatusPatch) -> StatusPatch:
        """One write of both: every field `later` sets wins over this one's."""
        merged = {f.name: getattr(self, f.name) for f in fields(self)}
        merged.update({f.name: getattr(later, f.name) for f in fields(later) if getattr(later, f.name) is not UNSET})
        return StatusPatch(**merged)

    def applied_to(self, status: Mapping[str, Any] | None) -> dict[str, Any]:
        """The status this write would leave (RFC 7386 merge patch), to act on before it is written."""
        return _merged(status or {}, self.to_status())


def _merged(target: object, patch: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merged(result.get(key), value) if isinstance(value, Mapping) else value
    return result


@dataclass
class ProviderStatusPatch:
    """The fields of a StorageProvider's (or ClusterStorageProvider's) status one write changes."""

    conditions: Sequence[Mapping[str, Any]] | Unset = UNSET
    observed_generation: int | Unset = UNSET
    last_checked: datetime | Unset = UNSET
    account_id: str | Unset = UNSET
    s3_endpoint: str | Unset | None = UNSET

    def to_status(self) -> dict[str, Any]:
        return encode_fields(self)
