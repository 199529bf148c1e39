"""Gather, then decide: read everything a token's checks need into one frozen PolicyInput."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from storage_token.api.conditions import condition
from storage_token.api.provider import CLUSTER_KIND, ProviderSpec
from storage_token.api.token import API_GROUP, ProviderRef, TokenSpec, TokenStatus
from storage_token.controllers.secret_writer import key_id_hash, secret_state
from storage_token.kube.api import Kube
from storage_token.policy import reasons
from storage_token.policy.inputs import PolicyInput, ProviderState
from storage_token.policy.namespaces import namespace_admitted
from storage_token.runtime.settings import Settings

RENEW_ANNOTATION = "storagetoken.dev/renew"
# Spec fields whose change needs a new key; timing, grace and restart targets apply without one.
_KEY_FIELDS = (
    "providerRef",
    "permissions",
    "rawCapabilities",
    "buckets",
    "prefixes",
    "allowIPs",
    "denyIPs",
    "duration",
    "secret",
)


# Parts of spec.secret that are only the Secret's metadata: an edit rewrites the Secret around the same key.
_METADATA_ONLY = ("labels", "annotations")


def _hash_of(spec: dict[str, Any], metadata_too: bool) -> str:
    relevant = {k: spec.get(k) for k in _KEY_FIELDS}
    secret = relevant.get("secret")
    if not metadata_too and isinstance(secret, dict):
        relevant["secret"] = {k: v for k, v in secret.items() if k not in _METADATA_ONLY}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def spec_hash(spec: dict[str, Any]) -> str:
    """What the key was asked for: a change means a new key (Secret labels and annotations excluded)."""
    return _hash_of(spec, metadata_too=False)


def legacy_spec_hash(spec: dict[str, Any]) -> str:
    """The hash as recorded before labels and annotations left it: such a status still matches its spec."""
    return _hash_of(spec, metadata_too=True)


def _current_hashes(status: TokenStatus, spec: dict[str, Any], current: str) -> TokenStatus:
    """Read a status (and intent) recorded under the legacy hash of this very spec as recorded under `current`,
    so an upgrade re-issues nothing."""
    legacy = legacy_spec_hash(spec)
    if legacy == current:
        return status
    if status.spec_hash == legacy:
        status = replace(status, spec_hash=current)
    if status.intent is not None and status.intent.spec_hash == legacy:
        status = replace(status, intent=replace(status.intent, spec_hash=current))
    return status


# What of a token's metadata the controllers read; the rest (labels, managedFields, others'
# annotations) is dropped from the cache, so a token's cached size is bounded by its schema.
_CACHED_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
)
# The token annotations a controller reads (a controller reading a new one adds it here).
TOKEN_ANNOTATIONS = frozenset({RENEW_ANNOTATION, f"{API_GROUP}/abandon-keys"})
MAX_CACHED_ANNOTATION = 256  # characters; a longer value is cached as its digest (it still compares)


def cached_token(body: dict[str, Any]) -> dict[str, Any]:
    """The part of a StorageToken the operator keeps in memory: spec, status, the metadata it reads."""
    meta = body.get("metadata") or {}
    slim: dict[str, Any] = {k: meta[k] for k in _CACHED_METADATA if k in meta}
    ours = {
        key: value
        if len(value) <= MAX_CACHED_ANNOTATION
        else "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        for key, value in (meta.get("annotations") or {}).items()
        if key in TOKEN_ANNOTATIONS and isinstance(value, str)
    }
    if ours:
        slim["annotations"] = ours
    return {k: v for k, v in body.items() if k != "metadata"} | {"metadata": slim}


ProviderCache = Mapping[tuple[str, str, str], dict[str, Any]]  # (kind, namespace or "", name) -> body


async def resolve_provider(
    kube: Kube, settings: Settings, ref: ProviderRef, namespace: str, cache: ProviderCache | None = None
) -> ProviderState:
    """The provider a token references, from the watch cache when it is there (one GET fewer per reconcile)."""
    cluster = ref.kind == CLUSTER_KIND
    body = (cache or {}).get((ref.kind, "" if cluster else namespace, ref.name))
    if body is None:
        body = await kube.get_object(ref.kind, None if cluster else namespace, ref.name)
    if body is None:
        where = "" if cluster else f" in namespace {namespace!r}"
        return ProviderState(
            problem_reason=reasons.PROVIDER_NOT_FOUND, problem_message=f"{ref.kind} {ref.name!r} not found{where}"
        )
    provider = ProviderSpec.parse(body, credentials_namespace=settings.operator_namespace)
    labels: dict[str, str] = {}
    if cluster:
        ns = await kube.get_namespace(namespace)
        labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return ProviderState(
            spec=provider,
            problem_reason=reasons.PROVIDER_DELETED,
            problem_message=f"{ref.kind} {ref.name!r} is being deleted",
        )
    refusal = namespace_admitted(provider, namespace, labels)
    if refusal:
        return ProviderState(spec=provider, problem_reason=reasons.NAMESPACE_NOT_ALLOWED, problem_message=refusal)
    ready = condition((body.get("status") or {}).get("conditions"), "Ready")
    if ready is None or ready.get("status") != "True":
        message = (ready or {}).get("message") or "its credentials were not verified yet"
        return ProviderState(
            spec=provider,
            problem_reason=reasons.PROVIDER_NOT_READY,
            problem_message=f"{ref.kind} {ref.name!r} is not ready: {message}",
        )
    return ProviderState(spec=provider, ready=True)


async def gather(
    kube: Kube,
    settings: Settings,
    token: dict[str, Any],
    spec: TokenSpec,
    now: datetime,
    key_live: bool | None,
    cache: ProviderCache | None = None,
) -> tuple[PolicyInput, dict[str, Any] | None]:
    """The policy input and the Secret as read (the writer replaces it at that version)."""
    meta = token["metadata"]
    current_hash = spec_hash(token.get("spec") or {})
    status = _current_hashes(TokenStatus.parse(token.get("status")), token.get("spec") or {}, current_hash)
    provider = await resolve_provider(kube, settings, spec.provider_ref, meta["namespace"], cache)
    # Before a first key (nothing recorded, nothing intended) the read only looks for a Secret in the
    # way: the watch cache's answer serves, as a Secret created after it makes our create fail anyway.
    first = not (status.key_id or status.intent or status.secret_name or status.pending_revocations)
    secret = await kube.get_secret(meta["namespace"], spec.secret.name, any_version=first)
    value = PolicyInput(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        spec=spec,
        spec_hash=current_hash,
        status=status,
        secret=secret_state(secret, meta["uid"]),
        provider=provider,
        now=now,
        renew_request=(meta.get("annotations") or {}).get(RENEW_ANNOTATION, ""),
        handled_renew_request=status.handled_renew_request,
        key_live=key_live,
        current_key_id_hash=key_id_hash(status.key_id) if status.key_id else "",
    )
    return value, secret
