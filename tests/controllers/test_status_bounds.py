"""status.pendingRevocations stays bounded whatever asks for a key (#14)."""

from __future__ import annotations

from harness import Harness

from storage_token.api.token import MAX_PENDING_REVOCATIONS

NS, NAME = "team-a", "app"


async def test_no_key_is_issued_while_the_revocation_queue_is_full(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="1h")
    # As a run of failed renders whose revocations the provider kept refusing would leave it.
    queued = [
        {
            "keyId": f"k{i:04}",
            "keyName": f"gone-{i}",
            "provider": provider.label,
            "dueAt": "2099-01-01T00:00:00Z",
            "notAfter": "2099-01-01T00:00:00Z",
        }
        for i in range(MAX_PENDING_REVOCATIONS)
    ]
    await h.kube.patch_status("StorageToken", NS, NAME, {"status": {"pendingRevocations": queued}})
    creates = len(h.emulators.issued_secrets("b2"))

    await h.reconcile_token(NS, NAME)

    assert len(h.emulators.issued_secrets("b2")) == creates, "a key was issued with the revocation queue full"
    assert len(h.status(NS, NAME)["pendingRevocations"]) == MAX_PENDING_REVOCATIONS
    assert h.condition(NS, NAME, "Issuing")["reason"] == "TooManyLiveKeys"
