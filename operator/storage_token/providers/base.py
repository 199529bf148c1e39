"""The shape every provider client has, and the values it takes and returns.

Permissions are portable names (`read`, `write`, `delete`, `list`) plus
provider extras (US3 `image-processing`, `deny-overwrite`; B2 `share`); each
client maps them to its own vocabulary and rejects names it doesn't know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

PORTABLE_PERMISSIONS = ("read", "write", "delete", "list")


@dataclass(frozen=True)
class KeySpec:
    """What key to issue. `name` must be unique per intent (it is the recovery handle)."""

    name: str
    permissions: tuple[str, ...]
    duration_seconds: int
    buckets: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    allow_ips: tuple[str, ...] = ()  # US3 only
    deny_ips: tuple[str, ...] = ()  # US3 only
    raw_capabilities: tuple[str, ...] = ()  # B2 experts: explicit capability names


@dataclass(frozen=True)
class IssuedKey:
    """A freshly issued key. The secret is excluded from repr and equality dumps."""

    key_id: str  # the provider's handle for revoke (US3 TokenId, B2 applicationKeyId)
    key_name: str
    access_key_id: str  # the S3 access key id (US3 PublicKey, B2 applicationKeyId)
    secret_access_key: str = field(repr=False)
    not_after: datetime | None  # timezone-aware
    endpoint: str | None = None  # S3-compatible endpoint URL
    region: str | None = None
    buckets: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    # The provider's own variable names, e.g. B2_APPLICATION_KEY_ID; may hold the secret.
    native: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed by the provider: never carries the secret."""

    key_id: str
    key_name: str
    not_after: datetime | None
    created_at: datetime | None = None
    buckets: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()  # provider vocabulary (ops / capabilities)


@dataclass(frozen=True)
class AccountInfo:
    """The result of a credentials check."""

    provider: str
    account_id: str
    endpoint: str | None = None  # S3-compatible endpoint, when the provider tells it
    detail: str = ""
    project_id: str | None = None  # US3: the project every call names (configured, or the account's default)


@runtime_checkable
class Provider(Protocol):
    """A storage provider's key API, as the operator needs it."""

    kind: str

    async def check(self) -> AccountInfo:
        """Verify the account credentials with a real call."""
        ...

    async def issue(self, spec: KeySpec) -> IssuedKey:
        """Create a key. Never retried blind: a lost response is resolved by name."""
        ...

    async def recover(self, name: str) -> IssuedKey | None:
        """Resolve an intent whose create may have happened.

        Returns the key when it can be adopted with its secret (US3), or None
        after removing every key of that name (B2: the secret is shown once).
        """
        ...

    async def revoke(self, key_id: str) -> None:
        """Delete a key. A key that is already gone is not an error."""
        ...

    async def get_key(self, key_id: str) -> KeyInfo | None:
        """The key if it exists at the provider (expired keys included), else None."""
        ...

    async def list_keys(self, name_prefix: str = "") -> list[KeyInfo]:
        """Every key whose name starts with `name_prefix` (all pages, all API versions)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def require_known_permissions(permissions: tuple[str, ...], known: Mapping[str, object], provider: str) -> None:
    """Raise BadRequestError naming the first permission `known` doesn't map."""
    from storage_token.providers.errors import BadRequestError

    for permission in permissions:
        if permission not in known:
            raise BadRequestError(
                f"unknown permission {permission!r}; known: {', '.join(sorted(known))}",
                provider=provider,
                call="issue",
            )
