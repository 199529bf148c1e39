"""US3 token vocabulary and payload shapes: ops, the token record, the create request.

Raw JSON stays in `TokenSetPayload`; everything past `UFileToken.from_payload`
is a frozen value whose private key is kept out of repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

from storage_token.providers.us3.signing import Value

MAX_EXPIRE_TIME = 4102416000  # the API rejects a later ExpireTime

OPS = (
    "TOKEN_ALLOW_NONE",
    "TOKEN_ALLOW_READ",
    "TOKEN_ALLOW_WRITE",
    "TOKEN_ALLOW_DELETE",
    "TOKEN_ALLOW_LIST",
    "TOKEN_ALLOW_IOP",
    "TOKEN_DENY_UPDATE",
)

# Portable permission names (and the US3 extras) -> AllowedOps values.
PERMISSION_OPS: dict[str, str] = {
    "read": "TOKEN_ALLOW_READ",
    "write": "TOKEN_ALLOW_WRITE",
    "delete": "TOKEN_ALLOW_DELETE",
    "list": "TOKEN_ALLOW_LIST",
    "image-processing": "TOKEN_ALLOW_IOP",
    "deny-overwrite": "TOKEN_DENY_UPDATE",
}

# API region -> the region in the ufileos.com host names, where the two differ.
_DOMAIN_REGIONS = {"cn-bj2": "cn-bj"}


def s3_endpoint_for(region: str | None) -> str | None:
    """The S3-compatible gateway of an API region, e.g. cn-bj2 -> https://s3-cn-bj.ufileos.com."""
    if not region:
        return None
    return f"https://s3-{_DOMAIN_REGIONS.get(region, region)}.ufileos.com"


class TokenSetPayload(TypedDict, total=False):
    """`UFileTokenSet` as the API sends it."""

    Region: str
    TokenId: str
    TokenName: str
    PublicKey: str
    PrivateKey: str
    AllowedOps: list[str]
    AllowedPrefixes: list[str]
    AllowedBuckets: list[str]
    ExpireTime: int
    CreateTime: int
    ModifyTime: int
    BlackIPList: list[str]
    WhiteIPList: list[str]


@dataclass(frozen=True)
class UFileToken:
    """One token as the API describes it. `private_key` is empty when the answer left it out."""

    token_id: str
    token_name: str
    region: str
    public_key: str
    private_key: str = field(repr=False, compare=False)
    expire_time: int = 0
    allowed_ops: tuple[str, ...] = ()
    allowed_prefixes: tuple[str, ...] = ()
    allowed_buckets: tuple[str, ...] = ()
    create_time: int | None = None
    modify_time: int | None = None
    black_ips: tuple[str, ...] = ()
    white_ips: tuple[str, ...] = ()

    @classmethod
    def from_payload(cls, raw: Mapping[str, Any]) -> UFileToken:
        def strings(name: str) -> tuple[str, ...]:
            return tuple(str(item) for item in raw.get(name) or ())

        def number(name: str) -> int | None:
            value = raw.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                return None
            try:
                return int(float(value))
            except ValueError:
                return None

        return cls(
            token_id=str(raw.get("TokenId") or ""),
            token_name=str(raw.get("TokenName") or ""),
            region=str(raw.get("Region") or ""),
            public_key=str(raw.get("PublicKey") or ""),
            private_key=str(raw.get("PrivateKey") or ""),
            expire_time=number("ExpireTime") or 0,
            allowed_ops=strings("AllowedOps"),
            allowed_prefixes=strings("AllowedPrefixes"),
            allowed_buckets=strings("AllowedBuckets"),
            create_time=number("CreateTime"),
            modify_time=number("ModifyTime"),
            black_ips=strings("BlackIPList"),
            white_ips=strings("WhiteIPList"),
        )

    @property
    def expires_at(self) -> datetime | None:
        return datetime.fromtimestamp(self.expire_time, UTC) if self.expire_time else None

    @property
    def created_at(self) -> datetime | None:
        return datetime.fromtimestamp(self.create_time, UTC) if self.create_time else None

    @property
    def has_key_pair(self) -> bool:
        return bool(self.public_key and self.private_key)


@dataclass(frozen=True)
class TokenRequest:
    """The CreateUFileToken parameters (Region and ProjectId come from the client)."""

    name: str
    ops: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    buckets: tuple[str, ...] = ()
    expire_time: int | None = None
    black_ips: tuple[str, ...] = ()
    white_ips: tuple[str, ...] = ()

    def params(self) -> dict[str, Value]:
        return {
            "TokenName": self.name,
            "AllowedOps": list(self.ops),
            "AllowedPrefixes": list(self.prefixes),
            "AllowedBuckets": list(self.buckets),
            "ExpireTime": self.expire_time,
            "BlackIPList": list(self.black_ips),
            "WhiteIPList": list(self.white_ips),
        }


@dataclass(frozen=True)
class Project:
    """One entry of GetProjectList's ProjectSet."""

    project_id: str
    name: str
    is_default: bool

    @classmethod
    def from_payload(cls, raw: Mapping[str, Any]) -> Project:
        default = raw.get("IsDefault")
        return cls(
            project_id=str(raw.get("ProjectId") or ""),
            name=str(raw.get("ProjectName") or ""),
            # The SDK schema says Bool; tolerate the string forms the gateway uses elsewhere.
            is_default=default is True or (isinstance(default, str) and default.lower() in ("true", "yes", "1")),
        )
