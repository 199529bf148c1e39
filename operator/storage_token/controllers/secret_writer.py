"""The Secret a StorageToken owns: build it, tell whether it still holds our key, write it in one step."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from storage_token.api.token import API_GROUP, API_VERSION, SecretSpec
from storage_token.kube.api import Conflict, Kube
from storage_token.policy.inputs import SecretState

MANAGED_BY = "storage-token-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TOKEN = f"{API_GROUP}/token"
ANNOTATION_KEY_ID_HASH = f"{API_GROUP}/key-id-hash"  # changes on every rotation (Reloader-style tools watch it)
ANNOTATION_DATA_HASH = f"{API_GROUP}/data-hash"  # detects edits of the data
ANNOTATION_REVISION = f"{API_GROUP}/revision"
ANNOTATION_EXPIRES_AT = f"{API_GROUP}/expires-at"


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


def build_secret(
    token: Mapping[str, Any],
    spec: SecretSpec,
    data: Mapping[str, str],
    key_id: str,
    revision: int,
    expires_at: str | None,
) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
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
