"""Provider clients per provider object, built from its credentials Secret and rebuilt when that changes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from storage_token.api.provider import ProviderSpec
from storage_token.kube.api import Kube
from storage_token.providers.base import Provider
from storage_token.providers.errors import CredentialsError, ProviderError
from storage_token.providers.registry import CREDENTIAL_KEYS, build_provider
from storage_token.runtime import metrics
from storage_token.runtime.ratelimit import TokenBucket
from storage_token.secrets.data import decode_secret_data

log = logging.getLogger(__name__)
T = TypeVar("T")


class CredentialsSecretMissing(CredentialsError):
    """The credentials Secret named by the provider does not exist."""


@dataclass
class ProviderHandle:
    spec: ProviderSpec
    client: Provider
    limiter: TokenBucket
    credentials_version: str
    credentials_digest: str = ""  # of the credential values: a metadata-only change keeps the client
    _in_flight: int = field(default=0, repr=False)
    _retired: bool = field(default=False, repr=False)

    async def call(self, operation: Callable[[Provider], Awaitable[T]], name: str = "call") -> T:
        """Run one provider operation under this account's rate limit, timed for the metrics."""
        self._in_flight += 1
        try:
            metrics.record_rate_limit_wait(self.spec.type, await self.limiter.acquire())
            started = time.monotonic()
            outcome = "ok"
            try:
                return await operation(self.client)
            except ProviderError as error:
                outcome = error.kind
                raise
            except Exception:
                outcome = "error"  # not a provider answer at all (a bug, or a library failing unmapped)
                raise
            finally:
                metrics.record_provider_call(self.spec.type, name, outcome, time.monotonic() - started)
        finally:
            self._in_flight -= 1
            if self._retired and not self._in_flight:
                await self.client.aclose()

    async def retire(self) -> None:
        """Replaced by a newer client: close now if idle, else when the last call in flight ends."""
        self._retired = True
        if not self._in_flight:
            await self.client.aclose()


class ProviderPool:
    def __init__(self, kube: Kube, timeout: float = 10.0, recheck_after: float = 300.0) -> None:
        self.kube = kube
        self.timeout = timeout
        self.recheck_after = recheck_after
        self._handles: dict[tuple[str, str, str], ProviderHandle] = {}
        # When each provider's credentials Secret was last read; `invalidate` drops the entry.
        self._checked: dict[tuple[str, str, str], float] = {}
        self._lock = asyncio.Lock()

    async def get(self, spec: ProviderSpec) -> ProviderHandle:
        """A client for `spec`, rebuilt when the spec or its credentials Secret changed.

        The Secret is re-read only when the watch said it changed (`invalidate`) or after
        `recheck_after` seconds, not on every call: a busy operator would otherwise read it per key.
        """
        key = (spec.kind, spec.namespace if spec.kind == "StorageProvider" else "", spec.name)
        handle = self._handles.get(key)
        fresh = time.monotonic() - self._checked.get(key, float("-inf")) < self.recheck_after
        if handle is not None and handle.spec == spec and fresh:
            return handle
        secret = await self.kube.get_secret(spec.namespace, spec.credentials_secret)
        if secret is None:
            raise CredentialsSecretMissing(
                f"credentials Secret {spec.namespace}/{spec.credentials_secret} not found", provider=spec.type
            )
        version = secret["metadata"].get("resourceVersion", "")
        async with self._lock:
            self._checked[key] = time.monotonic()
            handle = self._handles.get(key)
            if handle is not None and handle.spec == spec and handle.credentials_version == version:
                return handle
            data = decode_secret_data(secret)
            wanted = CREDENTIAL_KEYS[spec.type]
            digest = hashlib.sha256(json.dumps([data.get(k, "") for k in wanted]).encode()).hexdigest()
            if handle is not None and handle.spec == spec and handle.credentials_digest == digest:
                # Only metadata changed (e.g. our finalizer on it): the client stays.
                handle.credentials_version = version
                return handle
            client = build_provider(
                spec.type,
                credentials={k: data.get(k, "") for k in wanted},
                endpoint=spec.endpoint,
                region=spec.region,
                project_id=spec.project_id,
                s3_endpoint=spec.s3_endpoint,
                timeout=self.timeout,
                allow_insecure=spec.allow_insecure,
            )
            del data  # hold account credentials only inside the client
            limiter = (
                handle.limiter
                if handle is not None and handle.spec.requests_per_second == spec.requests_per_second
                else TokenBucket(spec.requests_per_second, spec.burst)
            )
            if handle is not None:
                await handle.retire()  # calls already running on it finish first
            handle = ProviderHandle(spec, client, limiter, version, digest)
            self._handles[key] = handle
            return handle

    def invalidate(self, secret_namespace: str, secret_name: str) -> None:
        """A credentials Secret changed: the next `get` of a provider using it re-reads it."""
        for key, handle in self._handles.items():
            if handle.spec.namespace == secret_namespace and handle.spec.credentials_secret == secret_name:
                self._checked.pop(key, None)

    async def forget(self, kind: str, namespace: str, name: str) -> None:
        handle = self._handles.pop((kind, namespace if kind == "StorageProvider" else "", name), None)
        if handle is not None:
            await handle.retire()

    async def aclose(self) -> None:
        for handle in self._handles.values():
            await handle.client.aclose()
        self._handles.clear()
