"""Gather, then decide: read everything a token's checks need into one frozen PolicyInput."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from storage_token.api.conditions import condition
from storage_token.api.provider import CLUSTER_KIND, ProviderSpec
from storage_token.api.token import ProviderRef, TokenSpec, TokenStatus
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


def spec_hash(spec: dict[str, Any]) -> str:
    relevant = {k: spec.get(k) for k in _KEY_FIELDS}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


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
    status = TokenStatus.parse(token.get("status"))
    provider = await resolve_provider(kube, settings, spec.provider_ref, meta["namespace"], cache)
    secret = await kube.get_secret(meta["namespace"], spec.secret.name)
    value = PolicyInput(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        spec=spec,
        spec_hash=spec_hash(token.get("spec") or {}),
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
