"""The Secret as the operator writes it, and how it recognises its own Secret later."""

from __future__ import annotations

import base64
import json

from storage_token.api.token import SecretSpec
from storage_token.controllers.secret_writer import (
    ANNOTATION_DATA_HASH,
    ANNOTATION_KEY_ID_HASH,
    LABEL_MANAGED_BY,
    build_secret,
    key_id_hash,
    secret_state,
)

TOKEN = {"metadata": {"name": "app", "namespace": "team-a", "uid": "uid-1"}}
SPEC = SecretSpec(name="app-s3", labels={"team": "a"}, annotations={"note": "x"})


def built() -> dict[str, object]:
    return build_secret(
        TOKEN, SPEC, {"accessKeyId": "AK", "secretAccessKey": "s3cr3t"}, "key-1", 3, "2026-12-01T00:00:00Z"
    )


def test_the_secret_is_owned_labelled_and_annotated_without_key_material_in_metadata() -> None:
    secret = built()
    meta = secret["metadata"]
    assert isinstance(meta, dict)
    assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["controller"] is True
    assert meta["labels"] == {"team": "a", LABEL_MANAGED_BY: "storage-token-operator", "storagetoken.dev/token": "app"}
    assert meta["annotations"]["note"] == "x"
    assert meta["annotations"][ANNOTATION_KEY_ID_HASH] == key_id_hash("key-1")
    assert "s3cr3t" not in json.dumps(meta)
    assert base64.b64decode(secret["data"]["secretAccessKey"]).decode() == "s3cr3t"  # type: ignore[index]


def test_our_own_untouched_secret_is_recognised() -> None:
    state = secret_state(built(), "uid-1")
    assert state.exists and state.owned and state.intact
    assert state.key_id_hash == key_id_hash("key-1")


def test_edited_data_or_another_owner_is_noticed() -> None:
    edited = built()
    edited["data"]["secretAccessKey"] = base64.b64encode(b"other").decode()  # type: ignore[index]
    assert not secret_state(edited, "uid-1").intact
    assert not secret_state(built(), "uid-2").owned
    stripped = built()
    del stripped["metadata"]["annotations"][ANNOTATION_DATA_HASH]  # type: ignore[index]
    assert not secret_state(stripped, "uid-1").intact
    assert not secret_state(None, "uid-1").exists
