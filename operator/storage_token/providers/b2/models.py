"""B2 payloads as values: the account authorization and application keys (v3 and v4 shapes)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

KEY_NAME = re.compile(r"[A-Za-z0-9-]{1,100}")
MAX_DURATION_SECONDS = 86_400_000  # 1000 days
_S3_HOST = re.compile(r"s3\.([a-z0-9-]+)\.backblazeb2\.com")


def from_millis(value: object) -> datetime | None:
    """B2 timestamps are milliseconds since the epoch; null means never."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def region_of(s3_api_url: str | None) -> str | None:
    """`https://s3.us-west-004.backblazeb2.com` -> `us-west-004`; None for any other host."""
    if not s3_api_url:
        return None
    match = _S3_HOST.fullmatch(urlsplit(s3_api_url).hostname or "")
    return match.group(1) if match else None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Authorization:
    """What b2_authorize_account answered; the token is kept out of reprs."""

    account_id: str
    token: str = field(repr=False)
    api_url: str
    s3_api_url: str | None
    capabilities: frozenset[str]
    bucket_ids: tuple[str, ...] = ()  # the key's bucket restriction; () = all buckets
    name_prefix: str | None = None

    @classmethod
    def from_payload(cls, body: dict[str, Any]) -> Authorization:
        """v3/v4 nest the URLs under apiInfo.storageApi. What the key may do is the
        `allowed` object there in v4 (`buckets: [{id, name}]`), and flat in storageApi
        itself in v3 (`bucketId`, `bucketName`, `capabilities`, `namePrefix`)."""
        api_info = body.get("apiInfo")
        storage = api_info.get("storageApi") if isinstance(api_info, dict) else None
        storage = storage if isinstance(storage, dict) else body  # v1/v2 answered flat, with `allowed`
        allowed = storage.get("allowed")
        allowed = allowed if isinstance(allowed, dict) else storage  # v3: the restrictions sit beside apiUrl
        buckets = allowed.get("buckets")
        if isinstance(buckets, list):
            bucket_ids = tuple(b["id"] for b in buckets if isinstance(b, dict) and isinstance(b.get("id"), str))
        else:
            bucket_id = _text(allowed.get("bucketId"))
            bucket_ids = (bucket_id,) if bucket_id else ()
        return cls(
            account_id=str(body.get("accountId") or ""),
            token=str(body.get("authorizationToken") or ""),
            api_url=str(storage.get("apiUrl") or "").rstrip("/"),
            s3_api_url=_text(storage.get("s3ApiUrl")),
            capabilities=frozenset(_strings(allowed.get("capabilities"))),
            bucket_ids=bucket_ids,
            name_prefix=_text(allowed.get("namePrefix")),
        )

    @property
    def complete(self) -> bool:
        return bool(self.account_id and self.token and self.api_url)


@dataclass(frozen=True)
class KeyRecord:
    """An application key as create, list and delete describe it (never the secret)."""

    key_id: str
    key_name: str
    capabilities: tuple[str, ...]
    bucket_ids: tuple[str, ...]
    name_prefix: str | None
    expires_at: datetime | None
    version: int  # the API version that lists and deletes it: 4 for multi-bucket keys, else 3

    @classmethod
    def from_payload(cls, body: dict[str, Any], version: int) -> KeyRecord:
        if "bucketIds" in body:
            bucket_ids = _strings(body.get("bucketIds"))
        else:
            bucket_id = _text(body.get("bucketId"))
            bucket_ids = (bucket_id,) if bucket_id else ()
        return cls(
            key_id=str(body.get("applicationKeyId") or ""),
            key_name=str(body.get("keyName") or ""),
            capabilities=_strings(body.get("capabilities")),
            bucket_ids=bucket_ids,
            name_prefix=_text(body.get("namePrefix")),
            expires_at=from_millis(body.get("expirationTimestamp")),
            version=version,
        )
