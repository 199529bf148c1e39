"""A `KeySpec` checked against B2's rules and turned into a b2_create_key body (no call made).

Zero or one bucket goes through v3 with `bucketId`: a key created through v4
with any bucket restriction is a multi-bucket key that v1-v3 clients can't
authorize with. Only several buckets use v4 `bucketIds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage_token.providers.b2.capabilities import PROVIDER, capabilities_for, check_bucket_capabilities
from storage_token.providers.b2.models import KEY_NAME, MAX_DURATION_SECONDS
from storage_token.providers.base import KeySpec
from storage_token.providers.errors import BadRequestError


@dataclass(frozen=True)
class CreateRequest:
    name: str
    capabilities: tuple[str, ...]
    duration_seconds: int
    buckets: tuple[str, ...]  # names, resolved to ids just before the call
    name_prefix: str | None

    @property
    def version(self) -> int:
        return 4 if len(self.buckets) > 1 else 3

    def body(self, bucket_ids: tuple[str, ...]) -> dict[str, Any]:
        """The b2_create_key body for `version` (accountId is added by the API layer)."""
        body: dict[str, Any] = {
            "keyName": self.name,
            "capabilities": list(self.capabilities),
            "validDurationInSeconds": self.duration_seconds,
        }
        if self.version == 4:
            body["bucketIds"] = list(bucket_ids)
        elif bucket_ids:
            body["bucketId"] = bucket_ids[0]
        if self.name_prefix:
            body["namePrefix"] = self.name_prefix
        return body


def _bad(message: str) -> BadRequestError:
    return BadRequestError(message, provider=PROVIDER, call="issue")


def create_request(spec: KeySpec) -> CreateRequest:
    """Validate `spec`; BadRequestError names the first rule it breaks."""
    if not KEY_NAME.fullmatch(spec.name):
        raise _bad(f"key name {spec.name!r} must be 1-100 letters, digits or '-'")
    if not 1 <= spec.duration_seconds <= MAX_DURATION_SECONDS:
        raise _bad(f"duration {spec.duration_seconds}s is outside 1..{MAX_DURATION_SECONDS}s (1000 days)")
    if spec.allow_ips or spec.deny_ips:
        raise _bad("b2 keys can't be limited by IP address")
    capabilities = capabilities_for(spec.permissions, spec.raw_capabilities)
    buckets = tuple(dict.fromkeys(b for b in spec.buckets if b))
    prefixes = tuple(dict.fromkeys(p for p in spec.prefixes if p))
    if len(prefixes) > 1:
        raise _bad("b2 keys take at most one name prefix")
    if prefixes and not buckets:
        raise _bad("a name prefix needs a bucket restriction")
    if buckets:
        check_bucket_capabilities(capabilities)
    return CreateRequest(
        name=spec.name,
        capabilities=capabilities,
        duration_seconds=spec.duration_seconds,
        buckets=buckets,
        name_prefix=prefixes[0] if prefixes else None,
    )
