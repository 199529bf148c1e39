"""`B2Provider`: the `Provider` contract on top of B2's application-key calls.

    provider = B2Provider(key_id, key)
    key = await provider.issue(KeySpec(name="sto-a-1", permissions=("read",), duration_seconds=86400, buckets=("b",)))

b2_create_key is not idempotent and shows the secret once, so `issue` never
retries it blind: after a timeout, a lost answer or a transient error it
lists the keys, deletes every key of that exact name, then creates again.
Listing goes through v3 and v4 (each shows only its own kind of key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx

from storage_token.providers.b2.api import B2Api
from storage_token.providers.b2.capabilities import PROVIDER, REQUIRED_ACCOUNT_CAPABILITIES
from storage_token.providers.b2.models import Authorization, KeyRecord, region_of
from storage_token.providers.b2.request import CreateRequest, create_request
from storage_token.providers.base import AccountInfo, IssuedKey, KeyInfo, KeySpec
from storage_token.providers.errors import (
    BadRequestError,
    MissingCapabilitiesError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RetryableError,
)
from storage_token.providers.retry import RetryPolicy, Sleep, with_retries

log = logging.getLogger("storage_token.providers.b2")

DEFAULT_ENDPOINT = "https://api.backblazeb2.com"
VERSIONS = (3, 4)  # v3 lists and deletes standard keys, v4 multi-bucket keys
LIST_BUCKETS_VERSION = 3
# Without bucketTypes B2 leaves out restricted and shared buckets (b2sdk always sends this too).
ALL_BUCKET_TYPES = ["all"]


class B2Provider:
    """Backblaze B2 application keys. Construct once per account; `aclose()` when done."""

    kind = "b2"

    def __init__(
        self,
        key_id: str,
        key: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        s3_endpoint: str | None = None,  # overrides the account's s3ApiUrl
        page_size: int = 1000,  # keys per b2_list_keys call (1000 = one billed transaction)
        sleep: Sleep = asyncio.sleep,  # tests observe the back-off through this
        allow_insecure: bool = False,  # plain http endpoints (loopback emulators) are refused unless set
    ) -> None:
        self.endpoint = endpoint
        self.page_size = page_size
        self._s3_endpoint = s3_endpoint or None
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._api = B2Api(
            key_id,
            key,
            endpoint=endpoint,
            transport=transport,
            timeout=timeout,
            retry=self._retry,
            sleep=sleep,
            allow_insecure=allow_insecure,
        )
        self._bucket_ids: dict[str, str] = {}  # name -> id
        self._bucket_names: dict[str, str] = {}  # id -> name
        self._versions: dict[str, int] = {}  # key id -> the API version that deletes it

    def __repr__(self) -> str:
        return f"B2Provider(endpoint={self.endpoint!r})"

    # -- Provider ---------------------------------------------------------
    async def check(self) -> AccountInfo:
        """Authorize, then verify the key holds every capability the operator will use.

        MissingCapabilitiesError names the ones it lacks (listBuckets included: issuing
        a key for a bucket first turns the bucket's name into its id).
        """
        auth = await self._api.authorization(fresh=True)
        missing = tuple(c for c in REQUIRED_ACCOUNT_CAPABILITIES if c not in auth.capabilities)
        if missing:
            raise MissingCapabilitiesError(missing, provider=PROVIDER, call="check", code="unauthorized")
        scope = "all buckets" if not auth.bucket_ids else f"{len(auth.bucket_ids)} bucket(s)"
        return AccountInfo(
            provider=self.kind,
            account_id=auth.account_id,
            endpoint=self._s3_url(auth),
            detail=f"api {auth.api_url}; {len(auth.capabilities)} capabilities on {scope}",
        )

    async def issue(self, spec: KeySpec) -> IssuedKey:
        request = create_request(spec)
        auth = await self._api.authorization()
        if auth.capabilities and "writeKeys" not in auth.capabilities:
            # The one documented rule: creating a key needs writeKeys, whatever the key may do.
            raise MissingCapabilitiesError(("writeKeys",), provider=PROVIDER, call="issue", code="unauthorized")
        bucket_ids = tuple([await self._bucket_id(name) for name in request.buckets])
        body = request.body(bucket_ids)
        maybe_created = False

        async def attempt() -> IssuedKey:
            nonlocal maybe_created
            if maybe_created:
                await self._delete_named(request.name)
            try:
                answer = await self._api.call(request.version, "b2_create_key", body, retry=False)
                return await self._issued(answer, request)
            except RetryableError:
                maybe_created = True  # the key may exist without its secret being known
                raise

        return await with_retries(attempt, self._retry, sleep=self._sleep, on_retry=_log_create_retry(request.name))

    async def recover(self, name: str) -> IssuedKey | None:
        # The secret was shown once and is lost: nothing of that name can be adopted.
        await self._delete_named(name)
        return None

    async def revoke(self, key_id: str) -> None:
        refusals: list[ProviderError] = []
        for version in self._version_order(key_id):
            try:
                await self._api.call(version, "b2_delete_key", {"applicationKeyId": key_id}, account=False)
            except (BadRequestError, NotFoundError) as error:
                refusals.append(error)  # absent, or a key of the other version
                continue
            self._versions.pop(key_id, None)
            log.info("b2 deleted key %s", key_id)
            return
        if await self.get_key(key_id) is None:
            log.debug("b2 key %s already gone", key_id)
            return
        raise refusals[-1]

    async def get_key(self, key_id: str) -> KeyInfo | None:
        for version in self._version_order(key_id):
            answer = await self._api.call(version, "b2_list_keys", {"startApplicationKeyId": key_id, "maxKeyCount": 1})
            for record in _records(answer, version):
                if record.key_id == key_id:
                    self._versions[key_id] = version
                    await self._learn_bucket_names(set(record.bucket_ids))
                    return self._info(record)
        return None

    async def list_keys(self, name_prefix: str = "") -> list[KeyInfo]:
        records = [r for r in await self._all_keys() if r.key_name.startswith(name_prefix)]
        await self._learn_bucket_names({b for r in records for b in r.bucket_ids})
        return [self._info(r) for r in records]

    async def aclose(self) -> None:
        await self._api.aclose()

    # -- steps --------------------------------------------------------------
    async def _issued(self, answer: dict[str, Any], request: CreateRequest) -> IssuedKey:
        version = request.version
        record = KeyRecord.from_payload(answer, version)
        secret = answer.get("applicationKey")
        if not record.key_id or not isinstance(secret, str) or not secret:
            raise RetryableError(
                "b2_create_key answered without the key id or its secret",
                provider=PROVIDER,
                call="b2_create_key",
            )
        self._versions[record.key_id] = version
        log.info("b2 created key %s (%s) through v%d", record.key_id, record.key_name, version)
        auth = await self._api.authorization()
        endpoint = self._s3_url(auth)
        return IssuedKey(
            key_id=record.key_id,
            key_name=record.key_name or request.name,
            access_key_id=record.key_id,
            secret_access_key=secret,
            not_after=record.expires_at,
            endpoint=endpoint,
            region=region_of(endpoint),
            buckets=request.buckets,
            prefixes=(record.name_prefix,) if record.name_prefix else (),
            native={"B2_APPLICATION_KEY_ID": record.key_id, "B2_APPLICATION_KEY": secret},
        )

    async def _delete_named(self, name: str) -> None:
        """Delete every key called `name` (both API versions)."""
        for record in await self._all_keys():
            if record.key_name == name:
                log.info("b2 deleting key %s (%s) left by an interrupted issue", record.key_id, name)
                await self.revoke(record.key_id)

    async def _all_keys(self) -> list[KeyRecord]:
        """Every key, all pages, through v3 and v4, deduplicated by id."""
        found: dict[str, KeyRecord] = {}
        for version in VERSIONS:
            start: str | None = None
            while True:
                body: dict[str, Any] = {"maxKeyCount": self.page_size}
                if start:
                    body["startApplicationKeyId"] = start
                answer = await self._api.call(version, "b2_list_keys", body)
                for record in _records(answer, version):
                    found.setdefault(record.key_id, record)
                following = answer.get("nextApplicationKeyId")
                if not isinstance(following, str) or not following or following == start:
                    break
                start = following
        self._versions = {key_id: record.version for key_id, record in found.items()}  # forget deleted keys
        return list(found.values())

    async def _bucket_id(self, name: str) -> str:
        if name not in self._bucket_ids:
            answer = await self._api.call(
                LIST_BUCKETS_VERSION, "b2_list_buckets", {"bucketName": name, "bucketTypes": ALL_BUCKET_TYPES}
            )
            self._remember_buckets(answer)
            if name not in self._bucket_ids:
                raise BadRequestError(
                    f"bucket {name!r} does not exist in this account", provider=PROVIDER, call="issue"
                )
        return self._bucket_ids[name]

    async def _learn_bucket_names(self, bucket_ids: set[str]) -> None:
        """One unfiltered bucket listing when a key names a bucket id not seen yet."""
        if not bucket_ids - self._bucket_names.keys():
            return
        try:
            self._remember_buckets(
                await self._api.call(LIST_BUCKETS_VERSION, "b2_list_buckets", {"bucketTypes": ALL_BUCKET_TYPES})
            )
        except PermissionDeniedError:
            log.debug("b2 may not list buckets; keys show bucket ids")

    def _remember_buckets(self, answer: dict[str, Any]) -> None:
        buckets = answer.get("buckets")
        for bucket in buckets if isinstance(buckets, list) else []:
            if isinstance(bucket, dict) and isinstance(bucket.get("bucketName"), str):
                bucket_id = str(bucket.get("bucketId") or "")
                if bucket_id:
                    self._bucket_ids[bucket["bucketName"]] = bucket_id
                    self._bucket_names[bucket_id] = bucket["bucketName"]

    def _version_order(self, key_id: str) -> tuple[int, ...]:
        known = self._versions.get(key_id)
        return VERSIONS if known is None else (known, *(v for v in VERSIONS if v != known))

    def _s3_url(self, auth: Authorization) -> str | None:
        return self._s3_endpoint or auth.s3_api_url

    def _info(self, record: KeyRecord) -> KeyInfo:
        return KeyInfo(
            key_id=record.key_id,
            key_name=record.key_name,
            not_after=record.expires_at,
            buckets=tuple(self._bucket_names.get(b, b) for b in record.bucket_ids),
            prefixes=(record.name_prefix,) if record.name_prefix else (),
            permissions=record.capabilities,
        )


def _records(answer: dict[str, Any], version: int) -> list[KeyRecord]:
    keys = answer.get("keys")
    return [KeyRecord.from_payload(k, version) for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []


def _log_create_retry(name: str) -> Callable[[RetryableError, float], None]:
    def on_retry(error: RetryableError, delay: float) -> None:
        log.warning("b2 create %s: %s; deleting keys of that name and creating again in %.2fs", name, error, delay)

    return on_retry
