"""Design invariants 1-3, checked against FakeKube and the emulators' stores after every injected fault.

1. Every live key a provider holds under this install's prefix is referenced by some StorageToken's
   status (current keyId/keyName, intent keyName, pendingRevocations) or allowed by the caller
   (retained by `deletionPolicy: Retain`, knowingly in flight).
2. No Secret holds a revoked (absent at the provider) or expired key. A Secret "holds" a key when a
   data value equals a key secret the provider ever issued, so every preset and template is covered;
   the key-id-hash annotation the writer sets must name that same key. A previous key pair
   (`secret.keepPrevious`, under `render.PREVIOUS_KEY_NAMES`) must be a live key's, named by the
   previous-key-id-hash annotation, and queued for revocation by the token owning the Secret.
3. Outside a grace period a token has exactly one live key: its current key, plus only revocations
   whose due time has not come (or which failed and are being retried), plus its in-flight intent.

Expired keys grant nothing, so (1) and (3) look at live keys only; (2) flags a Secret holding one.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from fake_kube import FakeKube
from harness import PROVIDER_TYPES, Emulators, ProviderKey

from storage_token.api.naming import uid8
from storage_token.api.token import TokenStatus
from storage_token.controllers.secret_writer import (
    ANNOTATION_KEY_ID_HASH,
    ANNOTATION_PREVIOUS_KEY_ID_HASH,
    LABEL_TOKEN,
    key_id_hash,
)
from storage_token.secrets.render import PREVIOUS_KEY_NAMES

PREVIOUS_NAMES = frozenset(name for names in PREVIOUS_KEY_NAMES.values() for name in names.values())

_TOKEN_PART = re.compile(r"-(?P<uid>[0-9a-f]{8})-r[0-9]+$")


def violations(
    kube: FakeKube, emulators: Emulators, now: datetime, *, prefix: str, allowed: Iterable[str] = ()
) -> list[str]:
    """Every broken invariant as one sentence each (empty when all hold). `allowed`: key ids or names."""
    allowed = set(allowed)
    keys = [k for provider in PROVIDER_TYPES for k in emulators.keys(provider)]
    tokens = kube.list_of("StorageToken")
    found: list[str] = []
    found += _unreferenced_keys(keys, tokens, now, prefix, allowed)
    found += _secrets_with_dead_keys(kube, emulators, keys)
    found += _previous_pairs_not_live(kube, keys)
    found += _tokens_without_one_live_key(keys, tokens, now, prefix, allowed)
    return found


def check_invariants(
    kube: FakeKube, emulators: Emulators, now: datetime, *, prefix: str, allowed: Iterable[str] = ()
) -> None:
    """Assert invariants 1-3; the message lists every violation."""
    found = violations(kube, emulators, now, prefix=prefix, allowed=allowed)
    assert not found, "invariants violated:\n- " + "\n- ".join(found)


def _references(status: TokenStatus) -> set[str]:
    refs = {status.key_id, status.key_name}
    if status.intent is not None:
        refs.add(status.intent.key_name)
    for pending in status.pending_revocations:
        refs |= {pending.key_id, pending.key_name}
    return refs - {""}


def _unreferenced_keys(
    keys: list[ProviderKey], tokens: list[dict[str, Any]], now: datetime, prefix: str, allowed: set[str]
) -> list[str]:
    referenced: set[str] = set()
    for token in tokens:
        referenced |= _references(TokenStatus.parse(token.get("status")))
    return [
        f"(1) {k.provider} key {k.name} ({k.key_id}) is live but no StorageToken references it"
        for k in keys
        if k.name.startswith(prefix)
        and not k.expired
        and not ({k.key_id, k.name} & referenced)
        and not ({k.key_id, k.name} & allowed)
    ]


def _secret_values(secret: dict[str, Any]) -> set[str]:
    values: set[str] = set()
    for raw in (secret.get("data") or {}).values():
        try:
            text = base64.b64decode(raw).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
        values.add(text.strip())
        # Presets such as rclone / s3cmd embed the secret inside a file: look at every word too.
        values |= set(re.split(r"[\s=:\"',]+", text))
    return values


def _secrets_with_dead_keys(kube: FakeKube, emulators: Emulators, keys: list[ProviderKey]) -> list[str]:
    found: list[str] = []
    by_secret = {k.secret: k for k in keys}
    ever_issued = {s: p for p in PROVIDER_TYPES for s in emulators.issued_secrets(p)}
    for secret in kube.list_of("Secret"):
        meta = secret["metadata"]
        owned = any(r.get("kind") == "StorageToken" for r in meta.get("ownerReferences") or ())
        if LABEL_TOKEN not in (meta.get("labels") or {}) and not owned:
            continue
        where = f"Secret {meta['namespace']}/{meta['name']}"
        held = [value for value in _secret_values(secret) if value in ever_issued]
        for value in held:
            key = by_secret.get(value)
            if key is None:
                found.append(f"(2) {where} holds a {ever_issued[value]} key that was revoked")
            elif key.expired:
                found.append(f"(2) {where} holds {key.provider} key {key.name}, which expired")
        annotation = (meta.get("annotations") or {}).get(ANNOTATION_KEY_ID_HASH)
        live_held = [by_secret[v] for v in held if v in by_secret]
        if annotation and live_held and all(key_id_hash(k.key_id) != annotation for k in live_held):
            found.append(f"(2) {where}: its key-id-hash annotation names another key than the one it holds")
    return found


def _tokens_without_one_live_key(
    keys: list[ProviderKey], tokens: list[dict[str, Any]], now: datetime, prefix: str, allowed: set[str]
) -> list[str]:
    found: list[str] = []
    live = [k for k in keys if not k.expired]
    for token in tokens:
        meta = token["metadata"]
        if meta.get("deletionTimestamp"):
            continue  # being finalized: (1) and the caller's reconcile-to-gone cover it
        where = f"StorageToken {meta['namespace']}/{meta['name']}"
        status = TokenStatus.parse(token.get("status"))
        mark = uid8(meta["uid"])
        own = {
            k.key_id: k
            for k in live
            if k.name.startswith(prefix) and (m := _TOKEN_PART.search(k.name)) is not None and m["uid"] == mark
        }
        own |= {k.key_id: k for k in live if k.key_id in _references(status)}
        if status.key_id and status.key_id not in own:
            found.append(f"(3) {where}: its current key {status.key_name} ({status.key_id}) is not live")
        waiting = {p.key_id for p in status.pending_revocations if p.due_at > now or p.attempts > 0}
        in_flight = {status.intent.key_name} if status.intent is not None else set()
        extra = [
            k
            for key_id, k in own.items()
            if key_id != status.key_id
            and key_id not in waiting
            and k.name not in in_flight
            and not ({k.key_id, k.name} & allowed)
        ]
        for k in extra:
            found.append(f"(3) {where}: key {k.name} ({k.key_id}) is live besides the current key, past any grace")
    return found


def _previous_pairs_not_live(kube: FakeKube, keys: list[ProviderKey]) -> list[str]:
    """(2) for the previous pair: its access key id (or secret, or file) names a live key that the
    owning token still has queued; revoked, expired or forgotten previous keys are violations."""
    found: list[str] = []
    live = [k for k in keys if not k.expired]
    tokens = {t["metadata"]["uid"]: TokenStatus.parse(t.get("status")) for t in kube.list_of("StorageToken")}
    for secret in kube.list_of("Secret"):
        meta = secret["metadata"]
        previous = {name: value for name, value in (secret.get("data") or {}).items() if name in PREVIOUS_NAMES}
        if not previous:
            continue
        where = f"Secret {meta['namespace']}/{meta['name']}"
        words = _secret_values({"data": previous})
        held = [k for k in live if {k.access_key_id, k.secret} & words]
        if not held:
            found.append(f"(2) {where} keeps a previous key pair ({', '.join(sorted(previous))}) of no live key")
            continue
        annotation = (meta.get("annotations") or {}).get(ANNOTATION_PREVIOUS_KEY_ID_HASH)
        if all(key_id_hash(k.key_id) != annotation for k in held):
            found.append(f"(2) {where}: its previous-key-id-hash annotation names another key than the pair it keeps")
        owners = [r.get("uid") for r in meta.get("ownerReferences") or () if r.get("kind") == "StorageToken"]
        queued = {p.key_id for uid in owners if uid in tokens for p in tokens[uid].pending_revocations}
        if not {k.key_id for k in held} & queued:
            found.append(f"(2) {where} keeps a previous key pair its token no longer queues for revocation")
    return found
