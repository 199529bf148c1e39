"""The B2 emulator's state and rules: one account, its buckets, application keys and auth tokens.

Written apart from the client (`providers.b2`) so each checks the other.
Strict where the real service is documented to be (see b2-api.md):
key names, known capabilities only (creating a key needs writeKeys and
nothing more: B2 documents no rule about the capabilities the caller holds),
durations of 1 s to 1000 days, existing buckets, a prefix only with a bucket,
only the documented allow-list of capabilities on bucket-restricted keys,
b2_list_buckets needing listBuckets and hiding restricted and shared buckets
unless `bucketTypes` asks for them, multi-bucket keys (created
through v4 with bucketIds) authorize on v4 only and are listed and deleted
through v4 only while v3 sees only the others, expired keys disappear, and a
deleted key's tokens stop working. The master keys are never listed.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The documented capability list is a fact of the API, shared with the client (the emulator
# still decides on its own which of them a caller may grant).
from storage_token.providers.b2.capabilities import KNOWN_CAPABILITIES

# b2-create-key, bucketId: "Only the following capabilities can be specified" (kept here
# apart from the client's copy, so each checks the other).
BUCKET_KEY_CAPABILITIES = frozenset(
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
BUCKET_TYPES = frozenset({"allPublic", "allPrivate", "snapshot", "restricted", "shared"})
# b2-list-buckets: without bucketTypes "only allPublic, allPrivate and snapshot" buckets are listed.
DEFAULT_LISTED_TYPES = frozenset({"allPublic", "allPrivate", "snapshot"})
KEY_NAME = re.compile(r"[A-Za-z0-9-]{1,100}")
MAX_DURATION_SECONDS = 86_400_000
DEFAULT_KEY_COUNT, MAX_KEY_COUNT = 100, 10_000
_SECRET_ALPHABET = string.ascii_letters + string.digits
_FIELDS = {
    3: {"accountId", "capabilities", "keyName", "validDurationInSeconds", "bucketId", "namePrefix"},
    4: {"accountId", "capabilities", "keyName", "validDurationInSeconds", "bucketIds", "namePrefix"},
}


class ApiError(Exception):
    """An error answer: HTTP status, B2 code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message}


def _bad(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


@dataclass
class Key:
    key_id: str
    secret: str = field(repr=False)
    name: str
    capabilities: tuple[str, ...]
    bucket_ids: tuple[str, ...] = ()
    name_prefix: str | None = None
    expires_ms: int | None = None
    multi_bucket: bool = False  # created through v4 with bucketIds
    master: bool = False

    def expired(self, now: float) -> bool:
        return self.expires_ms is not None and self.expires_ms <= now * 1000

    def describe(self, version: int, account_id: str) -> dict[str, Any]:
        """The key as create/list/delete answer it through `version`, without the secret."""
        body: dict[str, Any] = {
            "accountId": account_id,
            "applicationKeyId": self.key_id,
            "keyName": self.name,
            "capabilities": list(self.capabilities),
            "expirationTimestamp": self.expires_ms,
            "namePrefix": self.name_prefix,
            "options": ["s3"],
        }
        if version >= 4:
            body["bucketIds"] = list(self.bucket_ids) or None
        else:
            body["bucketId"] = self.bucket_ids[0] if self.bucket_ids else None
        return body


@dataclass
class Token:
    key_id: str
    expires_at: float


class KeyStore:
    """Everything the API calls read and change; callers hold the emulator's lock."""

    def __init__(
        self,
        master_keys: dict[str, str],
        buckets: list[str],
        *,
        now: Callable[[], float],
        auth_token_ttl: float = 86400.0,
        account_id: str | None = None,
        bucket_types: dict[str, str] | None = None,
    ) -> None:
        seed = ",".join(sorted(master_keys)).encode()
        self.account_id = account_id or hashlib.sha256(seed).hexdigest()[:12]
        self.now = now
        self.auth_token_ttl = auth_token_ttl
        self.buckets = {
            name: f"b2b{hashlib.sha256((self.account_id + name).encode()).hexdigest()[:21]}" for name in buckets
        }
        self.bucket_types = {name: (bucket_types or {}).get(name, "allPrivate") for name in buckets}
        unknown_types = sorted(set(self.bucket_types.values()) - BUCKET_TYPES)
        if unknown_types:
            raise ValueError(
                f"unknown bucket type(s) {', '.join(unknown_types)}; known: {', '.join(sorted(BUCKET_TYPES))}"
            )
        self.keys: dict[str, Key] = {}
        self.issued_secrets: list[str] = []  # every key secret ever handed out (leak scans look for them)
        self.journal: list[dict[str, Any]] = []  # every key created and removed, with times (never the secret)
        self.tokens: dict[str, Token] = {}
        self._ids = itertools.count(1)
        for key_id, secret in master_keys.items():
            self.keys[key_id] = Key(key_id, secret, "master", tuple(sorted(KNOWN_CAPABILITIES)), master=True)

    # -- helpers ------------------------------------------------------------
    def bucket_name(self, bucket_id: str) -> str | None:
        return next((name for name, bid in self.buckets.items() if bid == bucket_id), None)

    def purge_expired(self) -> None:
        """Expired keys disappear; so do tokens of keys that are gone."""
        now = self.now()
        for key_id in [k for k, key in self.keys.items() if key.expired(now)]:
            del self.keys[key_id]
        for token in [t for t, tok in self.tokens.items() if tok.key_id not in self.keys]:
            del self.tokens[token]

    def expire_tokens(self) -> int:
        """Every auth token handed out so far now answers expired_auth_token."""
        now = self.now()
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, now)
        return len(self.tokens)

    def remove_key(self, key_id: str) -> bool:
        key = self.keys.get(key_id)
        if key is None or key.master:
            return False
        del self.keys[key_id]
        self.journal.append({"at": self.now(), "event": "deleted", "keyId": key_id, "keyName": key.name})
        self.purge_expired()
        return True

    # -- authorization -----------------------------------------------------
    def authorize(self, version: int, key_id: str, secret: str) -> tuple[str, Key]:
        """A new token for the key, or 401 unauthorized."""
        self.purge_expired()
        key = self.keys.get(key_id)
        if key is None or not secrets.compare_digest(key.secret.encode(), secret.encode()):
            raise _unauthorized("the application key id or key is wrong, or the key was deleted or expired")
        if key.multi_bucket and version < 4:
            raise _unauthorized("multi-bucket application keys can only be used with v4 b2_authorize_account")
        token = f"4_{secrets.token_urlsafe(24)}"
        self.tokens[token] = Token(key_id, self.now() + self.auth_token_ttl)
        return token, key

    def caller(self, authorization: str | None) -> Key:
        """The key behind an auth token, or 401 bad_auth_token / expired_auth_token."""
        self.purge_expired()
        token = self.tokens.get(authorization or "")
        if token is None:
            raise ApiError(401, "bad_auth_token", "Invalid authorization token")
        if token.expires_at <= self.now():
            raise ApiError(401, "expired_auth_token", "Authorization token has expired")
        return self.keys[token.key_id]

    @staticmethod
    def require(caller: Key, *capabilities: str) -> None:
        """At least one of `capabilities` (B2 answers 401 unauthorized without it)."""
        if not any(c in caller.capabilities for c in capabilities):
            raise _unauthorized(f"unauthorized for application key with capabilities '{','.join(caller.capabilities)}'")

    def check_account(self, body: dict[str, Any]) -> None:
        account_id = body.get("accountId")
        if not isinstance(account_id, str) or not account_id:
            raise _bad("required field accountId is missing")
        if account_id != self.account_id:
            raise _unauthorized("accountId does not match the authorization token's account")

    # -- calls ----------------------------------------------------------------
    def create_key(self, version: int, caller: Key, body: dict[str, Any]) -> dict[str, Any]:
        self.require(caller, "writeKeys")
        self.check_account(body)
        unknown = sorted(set(body) - _FIELDS[version])
        if unknown:
            raise _bad(f"b2_create_key v{version} does not take {', '.join(unknown)}")
        name = body.get("keyName")
        if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
            raise _bad("keyName must be 1 to 100 characters: letters, numbers and '-'")
        capabilities = self._capabilities(body.get("capabilities"))
        duration = body.get("validDurationInSeconds")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= MAX_DURATION_SECONDS
        ):
            raise _bad(f"validDurationInSeconds must be an integer from 1 to {MAX_DURATION_SECONDS}")
        bucket_ids = self._bucket_ids(version, body)
        if caller.bucket_ids and not (bucket_ids and set(bucket_ids) <= set(caller.bucket_ids)):
            raise _unauthorized("a bucket-restricted key can only create keys for its own buckets")
        prefix = body.get("namePrefix")
        if prefix is not None and not isinstance(prefix, str):
            raise _bad("namePrefix must be a string")
        if prefix and not bucket_ids:
            raise _bad("namePrefix requires a bucket restriction")
        outside = sorted(set(capabilities) - BUCKET_KEY_CAPABILITIES)
        if bucket_ids and outside:
            raise _bad(f"a key restricted to a bucket cannot have {', '.join(outside)}")
        key = Key(
            key_id=f"{self.account_id}{next(self._ids):010d}",
            secret="K005" + "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(27)),
            name=name,
            capabilities=capabilities,
            bucket_ids=bucket_ids,
            name_prefix=prefix or None,
            expires_ms=int((self.now() + duration) * 1000) if duration is not None else None,
            multi_bucket=version >= 4 and bool(bucket_ids),
        )
        self.keys[key.key_id] = key
        self.issued_secrets.append(key.secret)
        self.journal.append(
            {
                "at": self.now(),
                "event": "created",
                "keyId": key.key_id,
                "keyName": name,
                "accessKeyId": key.key_id,
                "expires": key.expires_ms / 1000 if key.expires_ms is not None else None,
            }
        )
        return {**self._describe(key, version), "applicationKey": key.secret}

    def delete_key(self, version: int, caller: Key, body: dict[str, Any]) -> dict[str, Any]:
        self.require(caller, "deleteKeys")
        key_id = body.get("applicationKeyId")
        if not isinstance(key_id, str) or not key_id:
            raise _bad("required field applicationKeyId is missing")
        key = self.keys.get(key_id)
        if key is None or key.master:
            raise _bad(f"application key does not exist: {key_id}")
        if key.multi_bucket and version < 4:
            raise _bad("multi-bucket application keys can only be deleted with v4 b2_delete_key")
        if not key.multi_bucket and version >= 4:
            raise _bad("only multi-bucket application keys can be deleted with v4 b2_delete_key")
        self.remove_key(key_id)
        return self._describe(key, version)

    def list_keys(self, version: int, caller: Key, body: dict[str, Any]) -> dict[str, Any]:
        self.require(caller, "listKeys")
        self.check_account(body)
        count = body.get("maxKeyCount") or DEFAULT_KEY_COUNT
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_KEY_COUNT:
            raise _bad(f"maxKeyCount must be from 1 to {MAX_KEY_COUNT}")
        start = body.get("startApplicationKeyId") or ""
        if not isinstance(start, str):
            raise _bad("startApplicationKeyId must be a string")
        # v4 lists only multi-bucket keys; v1-v3 only the others.
        visible = sorted(
            (k for k in self.keys.values() if not k.master and k.multi_bucket == (version >= 4) and k.key_id >= start),
            key=lambda k: k.key_id,
        )
        page, rest = visible[:count], visible[count:]
        return {
            "keys": [self._describe(k, version) for k in page],
            "nextApplicationKeyId": rest[0].key_id if rest else None,
        }

    def list_buckets(self, version: int, caller: Key, body: dict[str, Any]) -> dict[str, Any]:
        # listAllBucketNames serves only the S3 ListBuckets call, not this one.
        self.require(caller, "listBuckets")
        self.check_account(body)
        name, bucket_id = body.get("bucketName"), body.get("bucketId")
        types = self._listed_types(body.get("bucketTypes"))
        selected = [
            (n, i)
            for n, i in self.buckets.items()
            if (name is None or n == name) and (bucket_id is None or i == bucket_id) and self.bucket_types[n] in types
        ]
        unfiltered = name is None and bucket_id is None
        # A bucket-restricted key must filter on one of its own buckets.
        if caller.bucket_ids and (unfiltered or any(i not in caller.bucket_ids for _, i in selected)):
            raise _unauthorized("this key is restricted to other buckets; filter on bucketName or bucketId")
        return {
            "buckets": [
                {
                    "accountId": self.account_id,
                    "bucketId": i,
                    "bucketName": n,
                    "bucketType": self.bucket_types[n],
                    "bucketInfo": {},
                    "corsRules": [],
                    "lifecycleRules": [],
                    "options": ["s3"],
                    "revision": 1,
                }
                for n, i in selected
            ]
        }

    @staticmethod
    def _listed_types(value: object) -> frozenset[str]:
        if value is None:
            return DEFAULT_LISTED_TYPES
        if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
            raise _bad("bucketTypes must be a non-empty list of bucket types")
        if "all" in value:
            if len(value) > 1:
                raise _bad("bucketTypes: 'all' cannot be combined with other types")
            return BUCKET_TYPES
        unknown = sorted(set(value) - BUCKET_TYPES)
        if unknown:
            raise _bad(f"unknown bucket type(s): {', '.join(unknown)}")
        return frozenset(value)

    def allowed(self, version: int, key: Key) -> dict[str, Any]:
        """What the key may do: v4 puts this under storageApi.allowed, v3 flat in storageApi itself."""
        names = [{"id": b, "name": self.bucket_name(b)} for b in key.bucket_ids]
        if version >= 4:
            return {"buckets": names or None, "capabilities": list(key.capabilities), "namePrefix": key.name_prefix}
        first = names[0] if names else {"id": None, "name": None}
        return {
            "bucketId": first["id"],
            "bucketName": first["name"],
            "capabilities": list(key.capabilities),
            "namePrefix": key.name_prefix,
        }

    # -- validation -------------------------------------------------------------
    def _capabilities(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
            raise _bad("capabilities must be a non-empty list of strings")
        unknown = sorted(set(value) - KNOWN_CAPABILITIES)
        if unknown:
            raise _bad(f"unknown capability: {', '.join(unknown)}")
        return tuple(dict.fromkeys(value))

    def _bucket_ids(self, version: int, body: dict[str, Any]) -> tuple[str, ...]:
        if version >= 4:
            raw = body.get("bucketIds")
            if raw is None:
                return ()
            if not isinstance(raw, list) or not raw or not all(isinstance(b, str) for b in raw):
                raise _bad("bucketIds must be a non-empty list of bucket ids")
            ids = tuple(dict.fromkeys(raw))
        else:
            raw = body.get("bucketId")
            if raw is None:
                return ()
            if not isinstance(raw, str) or not raw:
                raise _bad("bucketId must be a bucket id")
            ids = (raw,)
        known = set(self.buckets.values())
        for bucket_id in ids:
            if bucket_id not in known:
                raise _bad(f"bucket does not exist: {bucket_id}", "bad_bucket_id")
        return ids

    def _describe(self, key: Key, version: int) -> dict[str, Any]:
        return key.describe(version, self.account_id)

    def summary(self, key: Key) -> dict[str, Any]:
        """For the test-control state: never the secret."""
        return {
            **self._describe(key, 4),
            "multiBucket": key.multi_bucket,
            "bucketNames": [self.bucket_name(b) for b in key.bucket_ids],
        }
