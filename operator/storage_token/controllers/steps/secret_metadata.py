"""A label- or annotation-only edit of `spec.secret`: the Secret is rewritten around the key it holds."""

from __future__ import annotations

import base64
from typing import Any

from storage_token.api.status_patch import StatusPatch
from storage_token.controllers.secret_writer import (
    ANNOTATION_EXPIRES_AT,
    ANNOTATION_PREVIOUS_KEY_ID_HASH,
    ANNOTATION_PREVIOUS_KEYS,
    ANNOTATION_REVISION,
    build_secret,
    write_secret,
)
from storage_token.controllers.steps.base import TokenSteps
from storage_token.kube.api import Conflict
from storage_token.policy.inputs import PolicyInput


class SecretMetadataSteps(TokenSteps):
    async def _sync_secret_metadata(
        self, token: dict[str, Any], value: PolicyInput, secret: dict[str, Any] | None
    ) -> dict[str, Any]:
        """A label- or annotation-only edit: the Secret is rewritten around the key it holds (no new key),
        and a specHash recorded under the legacy hash is brought up to date. Returns the token as written."""
        state, status = value.secret, value.status
        if secret is None or not (state.owned and state.intact and status.key_id):
            return token
        if state.key_id_hash != value.current_key_id_hash:
            return token
        meta = secret.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        revision = int(annotations.get(ANNOTATION_REVISION) or status.revision)
        body = build_secret(
            token, value.spec.secret, data, status.key_id, revision, annotations.get(ANNOTATION_EXPIRES_AT)
        )
        del data
        wanted = body["metadata"]
        # A kept previous pair stays in the data, so its annotations stay too: the revocation step
        # finds the pair by them and removes it before that key is revoked.
        for kept in (ANNOTATION_PREVIOUS_KEY_ID_HASH, ANNOTATION_PREVIOUS_KEYS):
            if kept in annotations:
                wanted["annotations"][kept] = annotations[kept]
        if wanted["labels"] != (meta.get("labels") or {}) or wanted["annotations"] != annotations:
            self.shared.touch_secret(token["metadata"]["namespace"], value.spec.secret.name)
            try:
                written = await write_secret(self.kube, body, secret)
            except Conflict:
                return token  # someone wrote it meanwhile: its watch event brings us back
            self.shared.own_secret_writes[(token["metadata"]["namespace"], value.spec.secret.name)] = written
        if (token.get("status") or {}).get("specHash") != value.spec_hash == status.spec_hash:
            return await self._patch_status(token, StatusPatch(spec_hash=value.spec_hash)) or token
        return token
