"""`US3Provider`: the `Provider` contract on top of UCloud's token actions.

    provider = US3Provider("https://api.ucloud.cn", public_key, private_key, region="cn-bj2")
    key = await provider.issue(KeySpec(name="st-abc-1", permissions=("read",), duration_seconds=86400))

CreateUFileToken is not idempotent, so `issue` never retries it blind: after a
timeout, a lost answer or a retryable error it first looks the token up by
name and adopts it (US3's Describe returns the private key with Display=1).
A same-named token that can't be adopted (no key in the answer, expired) is
deleted before creating again, so an intent never leaves two tokens behind.

Every call names a ProjectId: DeleteUFileToken requires it, and sub-account
keys need it on every action. Without a configured one, the account's default
project is looked up once (GetProjectList, IsDefault) and kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from storage_token.providers.base import AccountInfo, IssuedKey, KeyInfo, KeySpec, require_known_permissions
from storage_token.providers.errors import BadRequestError, NotFoundError, RetryableError
from storage_token.providers.retry import RetryPolicy, with_retries
from storage_token.providers.us3.api import US3Api
from storage_token.providers.us3.codes import PROVIDER
from storage_token.providers.us3.models import (
    MAX_EXPIRE_TIME,
    OPS,
    PERMISSION_OPS,
    TokenRequest,
    UFileToken,
    s3_endpoint_for,
)

log = logging.getLogger("storage_token.providers.us3")

T = TypeVar("T")


class US3Provider:
    """UCloud US3 (UFile) tokens. Construct once per account; `aclose()` when done."""

    kind = "us3"

    def __init__(
        self,
        endpoint: str,
        public_key: str,
        private_key: str,
        *,
        region: str | None = None,
        project_id: str | None = None,
        s3_endpoint: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        now: Callable[[], float] | None = None,  # unix seconds; tests share the emulator's clock
        allow_insecure: bool = False,  # plain http endpoints (loopback emulators) are refused unless set
    ) -> None:
        self.endpoint = endpoint
        self.public_key = public_key
        self.region = region or None
        self.project_id = project_id or None
        self._s3_endpoint = s3_endpoint or None
        self._retry = retry or RetryPolicy()
        self._now = now or time.time
        self._api = US3Api(
            endpoint, public_key, private_key, transport=transport, timeout=timeout, allow_insecure=allow_insecure
        )
        self._project: str | None = self.project_id  # resolved once when not configured
        self._project_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"US3Provider(endpoint={self.endpoint!r}, region={self.region!r}, project_id={self.project_id!r})"

    @property
    def s3_endpoint(self) -> str | None:
        """The configured S3 endpoint, else the one of the configured region."""
        return self._s3_endpoint or s3_endpoint_for(self.region)

    # -- Provider ---------------------------------------------------------
    async def check(self) -> AccountInfo:
        project = await self._retrying("GetProjectList", self._project_id)
        tokens = await self._retrying("DescribeUFileToken", self._describe)
        where = f" in {self.region}" if self.region else ""
        source = "configured" if self.project_id else "the account's default"
        return AccountInfo(
            provider=self.kind,
            # The public key is half a credential: name the account by a fingerprint of it.
            account_id=f"pk-{hashlib.sha256(self.public_key.encode()).hexdigest()[:12]}",
            endpoint=self.s3_endpoint,
            detail=f"{len(tokens)} token(s){where}; project {project} ({source})",
            project_id=project,
        )

    async def issue(self, spec: KeySpec) -> IssuedKey:
        request = self.token_request(spec)
        created_once = False

        async def attempt() -> IssuedKey:
            nonlocal created_once
            if created_once:
                adopted = await self._adopt(spec.name)
                if adopted is not None:
                    log.info("us3 adopted token %s (%s) created by an earlier try", adopted.key_id, spec.name)
                    return adopted
            created_once = True
            return await self._create(request)

        return await self._retrying("CreateUFileToken", attempt)

    async def recover(self, name: str) -> IssuedKey | None:
        return await self._retrying("DescribeUFileToken", lambda: self._adopt(name))

    async def revoke(self, key_id: str) -> None:
        async def attempt() -> None:
            region = self.region
            if region is None:
                # DeleteUFileToken needs the Region: ask the token itself.
                found = await self._describe(token_id=key_id)
                if not found:
                    log.debug("us3 token %s already gone", key_id)
                    return
                region = found[0].region or None
            await self._delete(key_id, region)

        await self._retrying("DeleteUFileToken", attempt)

    async def get_key(self, key_id: str) -> KeyInfo | None:
        tokens = await self._retrying("DescribeUFileToken", lambda: self._describe(token_id=key_id))
        return next((_info(t) for t in tokens if t.token_id == key_id), None)

    async def list_keys(self, name_prefix: str = "") -> list[KeyInfo]:
        # There is no List action and no paging: Describe without id or name returns every token.
        tokens = await self._retrying("DescribeUFileToken", self._describe)
        return [_info(t) for t in tokens if t.token_name.startswith(name_prefix)]

    async def aclose(self) -> None:
        await self._api.aclose()

    # -- request building -------------------------------------------------
    def token_request(self, spec: KeySpec) -> TokenRequest:
        """Validate `spec` and turn it into CreateUFileToken parameters (no call made)."""
        if not spec.name:
            raise BadRequestError("a token needs a name", provider=PROVIDER, call="issue")
        if spec.duration_seconds <= 0:
            raise BadRequestError("duration must be positive", provider=PROVIDER, call="issue")
        expire_time = int(self._now()) + spec.duration_seconds
        if expire_time > MAX_EXPIRE_TIME:
            raise BadRequestError(
                f"expiry {expire_time} is after US3's limit {MAX_EXPIRE_TIME} (2100-01-01)",
                provider=PROVIDER,
                call="issue",
            )
        return TokenRequest(
            name=spec.name,
            ops=_ops(spec),
            prefixes=spec.prefixes,
            buckets=spec.buckets,
            expire_time=expire_time,
            black_ips=spec.deny_ips,
            white_ips=spec.allow_ips,
        )

    # -- steps --------------------------------------------------------------
    async def _create(self, request: TokenRequest) -> IssuedKey:
        project = await self._project_id()
        token_id, token = await self._api.create_token(request, region=self.region, project_id=project)
        log.info("us3 created token %s (%s)", token_id, request.name)
        if token is None or not token.has_key_pair:
            # The documented example answers an empty UFileTokenSet: read the token back.
            found = await self._describe(token_id=token_id)
            token = next((t for t in found if t.token_id == token_id and t.has_key_pair), None)
            if token is None:
                # Retrying lands in _adopt, which finds this token by name and resolves it.
                raise RetryableError(
                    f"token {token_id} was created but its key pair could not be read back",
                    provider=PROVIDER,
                    call="CreateUFileToken",
                )
        return self._issued(token)

    async def _adopt(self, name: str) -> IssuedKey | None:
        """The usable token of this name (newest wins); every other token of the name is deleted."""
        tokens = [t for t in await self._describe(token_name=name) if t.token_name == name]
        now = self._now()
        usable = [t for t in tokens if t.has_key_pair and t.expire_time > now]
        keep = max(usable, key=lambda t: (t.create_time or 0, t.token_id), default=None)
        for token in tokens:
            if token is not keep:
                reason = "expired" if token.expire_time <= now else "duplicate or without key pair"
                log.info("us3 deleting token %s (%s): %s", token.token_id, name, reason)
                await self._delete(token.token_id, token.region or self.region)
        return self._issued(keep) if keep is not None else None

    async def _describe(self, *, token_id: str | None = None, token_name: str | None = None) -> list[UFileToken]:
        return await self._api.describe_tokens(
            region=self.region, project_id=await self._project_id(), token_id=token_id, token_name=token_name
        )

    async def _project_id(self) -> str:
        """The configured project, else the account's default (asked once, then kept)."""
        if self._project:
            return self._project
        async with self._project_lock:
            if not self._project:
                projects = await self._api.projects()
                default = next((p for p in projects if p.is_default and p.project_id), None)
                if default is None:
                    raise BadRequestError(
                        f"the account has no default project among {len(projects)}: set the provider's projectId",
                        provider=PROVIDER,
                        call="GetProjectList",
                    )
                log.info("us3 uses the account's default project %s", default.project_id)
                self._project = default.project_id
            return self._project

    async def _delete(self, token_id: str, region: str | None) -> None:
        try:
            await self._api.delete_token(token_id, region=region, project_id=await self._project_id())
        except NotFoundError:
            log.debug("us3 token %s already gone", token_id)
            return
        log.info("us3 deleted token %s", token_id)

    async def _retrying(self, call: str, step: Callable[[], Awaitable[T]]) -> T:
        def on_retry(error: RetryableError, delay: float) -> None:
            log.warning("%s (during %s); trying again in %.2fs", error, call, delay)

        return await with_retries(step, self._retry, on_retry=on_retry)

    def _issued(self, token: UFileToken) -> IssuedKey:
        region = token.region or self.region
        endpoint = self._s3_endpoint or s3_endpoint_for(region)
        native = {"US3_PUBLIC_KEY": token.public_key, "US3_PRIVATE_KEY": token.private_key}
        if region:
            native["US3_REGION"] = region
        if endpoint:
            native["US3_S3_ENDPOINT"] = endpoint
        return IssuedKey(
            key_id=token.token_id,
            key_name=token.token_name,
            access_key_id=token.public_key,
            secret_access_key=token.private_key,
            not_after=token.expires_at,
            endpoint=endpoint,
            region=region,
            buckets=_scope(token.allowed_buckets),
            prefixes=_scope(token.allowed_prefixes),
            native=native,
        )


def _ops(spec: KeySpec) -> tuple[str, ...]:
    """Portable permissions and US3 extras -> AllowedOps; raw capabilities must be US3 op names."""
    require_known_permissions(spec.permissions, PERMISSION_OPS, PROVIDER)
    for raw in spec.raw_capabilities:
        if raw not in OPS:
            raise BadRequestError(f"unknown US3 op {raw!r}; known: {', '.join(OPS)}", provider=PROVIDER, call="issue")
    ops = [PERMISSION_OPS[p] for p in spec.permissions] + list(spec.raw_capabilities)
    return tuple(dict.fromkeys(ops))


def _scope(values: tuple[str, ...]) -> tuple[str, ...]:
    # US3 reports "everything" as ["*"]; the contract says "everything" with ().
    return () if values in ((), ("*",)) else values


def _info(token: UFileToken) -> KeyInfo:
    return KeyInfo(
        key_id=token.token_id,
        key_name=token.token_name,
        not_after=token.expires_at,
        created_at=token.created_at,
        buckets=_scope(token.allowed_buckets),
        prefixes=_scope(token.allowed_prefixes),
        permissions=token.allowed_ops,
    )
