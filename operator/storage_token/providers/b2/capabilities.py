"""Portable permissions -> B2 capabilities, and the capabilities an issued key may never carry.

The mapping follows the capability table of the B2 key API (capability ->
calls it unlocks): `read` downloads and copies (readFiles), `write` uploads
and hides (writeFiles), `delete` deletes versions (deleteFiles; deleting by
name also lists, so pair it with `list`), `list` lists buckets and files,
`share` mints download authorizations (shareFiles).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from storage_token.providers.base import require_known_permissions
from storage_token.providers.errors import BadRequestError

PROVIDER = "b2"

# Every capability the API documents today; the API may add more.
KNOWN_CAPABILITIES: frozenset[str] = frozenset(
    {
        "listKeys",
        "writeKeys",
        "deleteKeys",
        "listAllBucketNames",
        "listBuckets",
        "readBuckets",
        "writeBuckets",
        "deleteBuckets",
        "readBucketRetentions",
        "writeBucketRetentions",
        "readBucketEncryption",
        "writeBucketEncryption",
        "readBucketNotifications",
        "writeBucketNotifications",
        "readBucketReplications",
        "writeBucketReplications",
        "readBucketLogging",
        "writeBucketLogging",
        "listFiles",
        "readFiles",
        "shareFiles",
        "writeFiles",
        "deleteFiles",
        "readFileLegalHolds",
        "writeFileLegalHolds",
        "readFileRetentions",
        "writeFileRetentions",
        "bypassGovernance",
    }
)

# Key management (writeKeys would let the key mint itself anything), account and
# bucket administration, and the object-lock override: never handed to a workload.
FORBIDDEN_CAPABILITIES: frozenset[str] = frozenset(
    {
        "listKeys",
        "writeKeys",
        "deleteKeys",
        "writeBuckets",
        "deleteBuckets",
        "writeBucketRetentions",
        "writeBucketEncryption",
        "writeBucketNotifications",
        "writeBucketReplications",
        "writeBucketLogging",
        "bypassGovernance",
    }
)

# What the account key itself needs: b2_create_key, b2_list_keys (sweep, recovery),
# b2_delete_key, and b2_list_buckets to turn bucket names into ids. Creating a key
# needs only writeKeys, whatever the new key may do (B2 documents no other rule).
REQUIRED_ACCOUNT_CAPABILITIES: tuple[str, ...] = ("writeKeys", "listKeys", "deleteKeys", "listBuckets")

# b2_create_key with a bucket restriction: "Only the following capabilities can be
# specified" (the current b2-create-key page lists these 19).
BUCKET_KEY_CAPABILITIES: frozenset[str] = frozenset(
    {
        "listAllBucketNames",
        "listBuckets",
        "readBuckets",
        "readBucketEncryption",
        "writeBucketEncryption",
        "readBucketNotifications",
        "writeBucketNotifications",
        "readBucketRetentions",
        "writeBucketRetentions",
        "listFiles",
        "readFiles",
        "shareFiles",
        "writeFiles",
        "deleteFiles",
        "readFileLegalHolds",
        "writeFileLegalHolds",
        "readFileRetentions",
        "writeFileRetentions",
        "bypassGovernance",
    }
)

PERMISSION_CAPABILITIES: Mapping[str, tuple[str, ...]] = {
    "read": ("readFiles",),
    "write": ("writeFiles",),
    "delete": ("deleteFiles",),
    "list": ("listBuckets", "listFiles"),
    "share": ("shareFiles",),
}


def capabilities_for(permissions: Iterable[str], raw_capabilities: Iterable[str] = ()) -> tuple[str, ...]:
    """The capabilities to request, in a stable order; BadRequestError for anything unknown or forbidden."""
    permissions = tuple(permissions)
    require_known_permissions(permissions, PERMISSION_CAPABILITIES, PROVIDER)
    raw = tuple(raw_capabilities)
    for capability in raw:
        check_raw_capability(capability)
    wanted = [c for p in permissions for c in PERMISSION_CAPABILITIES[p]] + list(raw)
    if not wanted:
        raise BadRequestError("a key needs at least one permission or capability", provider=PROVIDER, call="issue")
    return tuple(sorted(set(wanted)))


def check_bucket_capabilities(capabilities: Iterable[str]) -> None:
    """A bucket-restricted key may carry only BUCKET_KEY_CAPABILITIES (B2 answers 400 otherwise)."""
    outside = sorted(set(capabilities) - BUCKET_KEY_CAPABILITIES)
    if outside:
        raise BadRequestError(
            f"a key restricted to buckets can't have {', '.join(outside)} (not on B2's list for bucket keys)",
            provider=PROVIDER,
            call="issue",
        )


def check_raw_capability(capability: str) -> None:
    """An expert's explicit capability must be known and not forbidden."""
    if capability in FORBIDDEN_CAPABILITIES:
        raise BadRequestError(
            f"capability {capability!r} is never issued (key, account or bucket administration)",
            provider=PROVIDER,
            call="issue",
        )
    if capability not in KNOWN_CAPABILITIES:
        allowed = ", ".join(sorted(KNOWN_CAPABILITIES - FORBIDDEN_CAPABILITIES))
        raise BadRequestError(
            f"unknown capability {capability!r}; allowed: {allowed}",
            provider=PROVIDER,
            call="issue",
        )
