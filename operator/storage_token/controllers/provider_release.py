"""Providers and their credentials Secrets stay until no token needs them to revoke a key.

A StorageProvider (or ClusterStorageProvider) carries the finalizer `PROVIDER_FINALIZER`, and the
credentials Secret it names carries `CREDENTIALS_FINALIZER`. Deleting either one (directly, by
`kubectl delete -f` in any file order, or by deleting the namespace) therefore waits while a token
still holds a current key, a queued revocation or an unresolved intent of that provider: those
tokens revoke through it first, and only then are the finalizers released. The decision to release
is made on a fresh listing from the API server, never on the watch cache.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from storage_token.api.provider import CLUSTER_KIND, ProviderSpec
from storage_token.api.token import TokenStatus
from storage_token.kube.api import Kube

log = logging.getLogger(__name__)

PROVIDER_FINALIZER = "storagetoken.dev/revoke-keys-first"
CREDENTIALS_FINALIZER = "storagetoken.dev/provider-credentials"

ListTokens = Callable[[], Awaitable[list[dict[str, Any]]]]
ListProviders = Callable[[], list[dict[str, Any]]]


def provider_label(spec: ProviderSpec) -> str:
    """How token status names the provider that issued a key ("Kind/name")."""
    return f"{spec.kind}/{spec.name}"


def _issued_by(recorded: str, label: str, refers: bool) -> bool:
    # Entries written before status named the provider belong to the one the spec names.
    return recorded == label or (not recorded and refers)


def tokens_needing(spec: ProviderSpec, tokens: list[dict[str, Any]]) -> list[str]:
    """`namespace/name` of every token that still needs `spec` to revoke or resolve a key."""
    label = provider_label(spec)
    needing: list[str] = []
    for token in tokens:
        meta = token.get("metadata") or {}
        if spec.kind != CLUSTER_KIND and meta.get("namespace") != spec.namespace:
            continue
        status = TokenStatus.parse(token.get("status"))
        ref = (token.get("spec") or {}).get("providerRef") or {}
        refers = (ref.get("kind") or "StorageProvider") == spec.kind and ref.get("name") == spec.name
        holds = (
            (bool(status.key_id) and _issued_by(status.provider, label, refers))
            or any(_issued_by(p.provider, label, refers) for p in status.pending_revocations)
            or (status.intent is not None and _issued_by(status.intent.provider, label, refers))
        )
        if holds:
            needing.append(f"{meta.get('namespace')}/{meta.get('name')}")
    return needing


def _without(finalizers: list[str], name: str) -> list[str]:
    return [f for f in finalizers if f != name]


class ProviderRelease:
    def __init__(self, kube: Kube, list_tokens: ListTokens, list_providers: ListProviders, operator_ns: str) -> None:
        self.kube, self.list_tokens, self.list_providers = kube, list_tokens, list_providers
        self.operator_ns = operator_ns

    async def protect(self, body: dict[str, Any], spec: ProviderSpec) -> dict[str, Any]:
        """Put the finalizers on the provider and its credentials Secret (idempotent)."""
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or ())
        if PROVIDER_FINALIZER not in finalizers:
            patched = await self.kube.patch_object(
                spec.kind,
                None if spec.kind == CLUSTER_KIND else meta.get("namespace"),
                meta["name"],
                {
                    "metadata": {
                        "finalizers": [*finalizers, PROVIDER_FINALIZER],
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
            body = patched or body
        secret = await self.kube.get_secret(spec.namespace, spec.credentials_secret)
        if secret is not None and not secret["metadata"].get("deletionTimestamp"):
            held = list(secret["metadata"].get("finalizers") or ())
            if CREDENTIALS_FINALIZER not in held:
                await self.kube.set_secret_finalizers(
                    spec.namespace,
                    spec.credentials_secret,
                    [*held, CREDENTIALS_FINALIZER],
                    secret["metadata"]["resourceVersion"],
                )
        return body

    async def release(self, body: dict[str, Any], spec: ProviderSpec) -> list[str]:
        """A provider being deleted: drop its finalizers once no token needs it; returns who still does."""
        meta = body["metadata"]
        needing = tokens_needing(spec, await self.list_tokens())
        if needing:
            return needing
        await self._release_credentials(spec)
        finalizers = list(meta.get("finalizers") or ())
        if PROVIDER_FINALIZER in finalizers:
            await self.kube.patch_object(
                spec.kind,
                None if spec.kind == CLUSTER_KIND else meta.get("namespace"),
                meta["name"],
                {
                    "metadata": {
                        "finalizers": _without(finalizers, PROVIDER_FINALIZER),
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
            log.info("released %s %s: no token needs it any more", spec.kind, spec.name)
        return []

    async def _release_credentials(self, spec: ProviderSpec) -> None:
        """The credentials Secret keeps its finalizer while another live provider names it."""
        for other in self.list_providers():
            if other["metadata"].get("deletionTimestamp"):
                continue
            theirs = ProviderSpec.parse(other, credentials_namespace=self.operator_ns)
            same = theirs.namespace == spec.namespace and theirs.credentials_secret == spec.credentials_secret
            if same and (theirs.kind, theirs.name) != (spec.kind, spec.name):
                return
        secret = await self.kube.get_secret(spec.namespace, spec.credentials_secret)
        if secret is None:
            return
        held = list(secret["metadata"].get("finalizers") or ())
        if CREDENTIALS_FINALIZER in held:
            await self.kube.set_secret_finalizers(
                spec.namespace,
                spec.credentials_secret,
                _without(held, CREDENTIALS_FINALIZER),
                secret["metadata"]["resourceVersion"],
            )
