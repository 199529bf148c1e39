"""The Secret a StorageToken owns: build it, tell whether it still holds our key, write it in one step.

With `secret.keepPrevious` the Secret also carries the replaced key pair (copied from the Secret being
replaced, under `render.previous_key_names`) until that key is revoked; `drop_previous` then rewrites
the Secret without it, before the revocation.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storage_token.api.token import API_GROUP, API_VERSION, SecretSpec
from storage_token.kube.api import Conflict, Kube
from storage_token.policy.inputs import SecretState
from storage_token.secrets.render import previous_key_names

MANAGED_BY = "storage-token-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TOKEN = f"{API_GROUP}/token"
ANNOTATION_KEY_ID_HASH = f"{API_GROUP}/key-id-hash"  # changes on every rotation (Reloader-style tools watch it)
ANNOTATION_DATA_HASH = f"{API_GROUP}/data-hash"  # detects edits of the data
ANNOTATION_REVISION = f"{API_GROUP}/revision"
ANNOTATION_EXPIRES_AT = f"{API_GROUP}/expires-at"
# Which key the previous pair belongs to, and the data keys holding it (keepPrevious).
ANNOTATION_PREVIOUS_KEY_ID_HASH = f"{API_GROUP}/previous-key-id-hash"
ANNOTATION_PREVIOUS_KEYS = f"{API_GROUP}/previous-keys"
# The data keys the token's own template wrote: a template can put the secret under any name, so
# tools that show a Secret (`kubectl storage-token inspect`) mask these whatever the spec says now.
ANNOTATION_TEMPLATE_KEYS = f"{API_GROUP}/template-keys"


def key_id_hash(key_id: str) -> str:
    return hashlib.sha256(key_id.encode()).hexdigest()[:16]


def data_hash(data: Mapping[str, str]) -> str:
    """Hash of the base64 data as stored; one-way, so it reveals nothing of the key."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return digest.hexdigest()[:32]


def owner_reference(token: Mapping[str, Any]) -> dict[str, Any]:
    meta = token["metadata"]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "StorageToken",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_owned_by(secret: Mapping[str, Any], uid: str) -> bool:
    references = (secret.get("metadata") or {}).get("ownerReferences") or ()
    return any(r.get("uid") == uid and r.get("controller") for r in references)


def secret_state(secret: Mapping[str, Any] | None, token_uid: str) -> SecretState:
    if secret is None:
        return SecretState()
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    data = secret.get("data") or {}
    return SecretState(
        exists=True,
        owned=is_owned_by(secret, token_uid),
        key_id_hash=annotations.get(ANNOTATION_KEY_ID_HASH, ""),
        intact=bool(data) and annotations.get(ANNOTATION_DATA_HASH) == data_hash(data),
    )


@dataclass(frozen=True)
class PreviousPair:
    """The replaced key's pair as the old Secret stored it (base64 data values), never decoded here."""

    key_id_hash: str
    data: Mapping[str, str]

    def __repr__(self) -> str:
        return f"PreviousPair({self.key_id_hash}, {sorted(self.data)})"


def carry_previous(
    current: Mapping[str, Any] | None, spec: SecretSpec, token_uid: str, old_key_id: str, alive: bool
) -> PreviousPair | None:
    """The pair to keep when replacing `current`: only with keepPrevious, only a live key, and only
    from our own untouched Secret that holds exactly that key."""
    if not (spec.keep_previous and alive and old_key_id and spec.template.include_preset):
        return None
    state = secret_state(current, token_uid)
    if current is None or not state.owned or not state.intact or state.key_id_hash != key_id_hash(old_key_id):
        return None
    data = current.get("data") or {}
    names = previous_key_names(spec.template.preset)
    pair = {previous: data[name] for name, previous in names.items() if name in data}
    return PreviousPair(key_id_hash(old_key_id), pair) if pair else None


def build_secret(
    token: Mapping[str, Any],
    spec: SecretSpec,
    data: Mapping[str, str],
    key_id: str,
    revision: int,
    expires_at: str | None,
    previous: PreviousPair | None = None,
) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    carried = {name: value for name, value in (previous.data if previous else {}).items() if name not in encoded}
    encoded.update(carried)
    meta = token["metadata"]
    labels = {**spec.labels, LABEL_MANAGED_BY: MANAGED_BY, LABEL_TOKEN: meta["name"]}
    annotations = {
        **spec.annotations,
        ANNOTATION_KEY_ID_HASH: key_id_hash(key_id),
        ANNOTATION_DATA_HASH: data_hash(encoded),
        ANNOTATION_REVISION: str(revision),
    }
    if expires_at:
        annotations[ANNOTATION_EXPIRES_AT] = expires_at
    templated = sorted(set(spec.template.data) & set(encoded))
    if templated:
        annotations[ANNOTATION_TEMPLATE_KEYS] = ",".join(templated)
    if previous is not None and carried:
        annotations[ANNOTATION_PREVIOUS_KEY_ID_HASH] = previous.key_id_hash
        annotations[ANNOTATION_PREVIOUS_KEYS] = ",".join(sorted(carried))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": spec.name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(token)],
        },
        "data": encoded,
    }


async def write_secret(kube: Kube, body: dict[str, Any], current: Mapping[str, Any] | None) -> str:
    """Create, or replace whole (data swapped in one write) at the version read; Conflict if it moved.

    Returns the resourceVersion written, so the watch event of our own write can be told apart.
    """
    namespace = body["metadata"]["namespace"]
    if current is None:
        written = await kube.create_secret(namespace, body)
    else:
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        written = await kube.replace_secret(namespace, body["metadata"]["name"], body)
        if written is None:
            raise Conflict("the Secret was deleted while it was being replaced")
    return str(((written or {}).get("metadata") or {}).get("resourceVersion") or "")


async def drop_previous(
    kube: Kube, token_meta: Mapping[str, Any], secret: Mapping[str, Any] | None, key_ids: set[str]
) -> str | None:
    """Rewrite our Secret (as read) without the previous pair if it belongs to one of `key_ids`.

    Returns the resourceVersion written, None when there was nothing to drop; Conflict if it moved."""
    if secret is None or not is_owned_by(secret, token_meta["uid"]):
        return None
    annotations = dict((secret.get("metadata") or {}).get("annotations") or {})
    if annotations.get(ANNOTATION_PREVIOUS_KEY_ID_HASH) not in {key_id_hash(key_id) for key_id in key_ids}:
        return None
    carried = set(annotations.pop(ANNOTATION_PREVIOUS_KEYS, "").split(","))
    annotations.pop(ANNOTATION_PREVIOUS_KEY_ID_HASH, None)
    data = {key: value for key, value in (secret.get("data") or {}).items() if key not in carried}
    intact = annotations.get(ANNOTATION_DATA_HASH) == data_hash(secret.get("data") or {})
    if intact:  # an edited Secret stays detectably edited (drift repair re-issues it)
        annotations[ANNOTATION_DATA_HASH] = data_hash(data)
    body = {**secret, "data": data, "metadata": {**secret["metadata"], "annotations": annotations}}
    name = str(secret["metadata"]["name"])
    written = await kube.replace_secret(token_meta["namespace"], name, body)
    if written is None:
        raise Conflict("the Secret was deleted while its previous key was being dropped")
    return str(((written or {}).get("metadata") or {}).get("resourceVersion") or "")
