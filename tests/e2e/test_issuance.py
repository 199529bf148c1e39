"""A StorageToken becomes a key at the provider and a Secret in its namespace; changes and deletion follow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from e2e_support import (
    apply_provider,
    condition,
    create_token,
    delete_token,
    get_token,
    patch_token,
    secret_data,
    us3_token_id,
    wait_condition,
    wait_event,
    wait_for,
    wait_gone,
)
from kubernetes import client

from storage_token.dev.sandbox import Emulators, OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")


KINDS = ("b2", "us3")
BUCKET = {"b2": "demo-b2-data", "us3": "demo-us3-data"}


def live_key_ids(emulators: Emulators, kind: str) -> set[str]:
    return emulators.live_keys(kind)


def key_id_in_secret(emulators: Emulators, kind: str, data: dict[str, str]) -> str:
    """The provider's id of the key a Secret (default layout) holds; "" when the provider has no such key."""
    if kind == "b2":
        return data["accessKeyId"]  # B2's application key id is the S3 access key id
    return us3_token_id(emulators.us3, data["accessKeyId"])  # a US3 token's S3 access key is its public key


def test_b2_token_issues_a_key_into_an_owned_secret(
    api: client.ApiClient, namespace: str, emulators: Emulators, operator: OperatorProcess
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(
        api, namespace, "app", providerRef={"name": "b2"}, permissions=["read", "list"], buckets=["demo-b2-data"]
    )
    token = wait_condition(api, namespace, "app", "True", "Issued")
    status = token["status"]
    assert status["revision"] == 1
    assert status["keyName"].startswith(f"{operator.key_prefix}{namespace}-app-")
    assert status["keyId"] in live_key_ids(emulators, "b2")
    assert status["providerType"] == "b2"
    assert status["observedGeneration"] == token["metadata"]["generation"]
    assert "intent" not in status or status["intent"] is None
    assert status["notAfter"] > status["renewalTime"]
    data = secret_data(api, namespace, "app")
    assert data["accessKeyId"] == status["keyId"]
    assert data["secretAccessKey"]
    assert data["bucket"] == "demo-b2-data"
    assert data["expiresAt"] == status["notAfter"]
    assert data["B2_APPLICATION_KEY_ID"] == status["keyId"]
    secret = client.CoreV1Api(api).read_namespaced_secret("app", namespace)
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("StorageToken", "app", True)
    assert "valid until" in wait_event(api, namespace, "app", "Issued")[1]


def test_us3_token_with_the_aws_preset(api: client.ApiClient, namespace: str, emulators: Emulators) -> None:
    apply_provider(api, emulators, "us3", namespace, "us3")
    create_token(
        api,
        namespace,
        "reader",
        providerRef={"name": "us3"},
        permissions=["read", "list"],
        buckets=["demo-us3-data"],
        prefixes=["reports/"],
        duration="2h",
        secret={"name": "reader-env", "labels": {"team": "a"}, "template": {"preset": "aws"}},
    )
    token = wait_condition(api, namespace, "reader", "True", "Issued")
    data = secret_data(api, namespace, "reader-env")
    assert data["AWS_ACCESS_KEY_ID"]
    assert data["AWS_SECRET_ACCESS_KEY"]
    assert data["AWS_REGION"] == "cn-bj2"
    assert token["status"]["keyId"] in live_key_ids(emulators, "us3")
    secret = client.CoreV1Api(api).read_namespaced_secret("reader-env", namespace)
    assert secret.metadata.labels["team"] == "a"


def test_a_foreign_secret_of_the_same_name_is_never_overwritten(
    api: client.ApiClient, namespace: str, emulators: Emulators
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="taken"), string_data={"mine": "keep"})
    )
    calls_before = emulators.b2.count("b2_create_key")
    create_token(api, namespace, "taken", providerRef={"name": "b2"}, permissions=["read"])
    token = wait_condition(api, namespace, "taken", "False", "SecretConflict")
    assert "not owned by this StorageToken" in condition(token, "Ready")["message"]
    assert secret_data(api, namespace, "taken") == {"mine": "keep"}
    assert emulators.b2.count("b2_create_key") == calls_before
    assert wait_event(api, namespace, "taken", "SecretConflict")[0] == "Warning"


def test_a_token_beyond_the_policy_ceiling_is_refused_without_a_provider_call(
    api: client.ApiClient, namespace: str, emulators: Emulators
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2", policy={"allowedBuckets": ["demo-b2-logs"]})
    calls_before = emulators.b2.count("b2_create_key")
    create_token(api, namespace, "greedy", providerRef={"name": "b2"}, permissions=["read"], buckets=["demo-b2-data"])
    token = wait_condition(api, namespace, "greedy", "False", "PolicyViolation")
    assert "spec.buckets" in condition(token, "Ready")["message"]
    assert emulators.b2.count("b2_create_key") == calls_before


def test_bad_credentials_make_the_provider_and_its_tokens_not_ready(
    api: client.ApiClient, namespace: str, emulators: Emulators
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="wrong"),
            string_data={"applicationKeyId": emulators.b2_account[0], "applicationKey": "not-the-key"},
        ),
    )
    body = emulators.provider("b2", "b2", namespace, "wrong")
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "storagetoken.dev", "v1alpha1", namespace, "storageproviders", body
    )
    create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
    token = wait_condition(api, namespace, "app", "False", "ProviderNotReady")
    assert "CredentialsInvalid" not in str(token["status"].get("keyId", ""))

    def provider_says_why() -> dict[str, Any] | None:
        provider = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "storagetoken.dev", "v1alpha1", namespace, "storageproviders", "b2"
        )
        ready = condition(provider, "Ready")
        return ready if ready.get("reason") == "CredentialsInvalid" else None

    wait_for(provider_says_why, 30, "provider Ready=False CredentialsInvalid")
    # Fixing the Secret re-verifies the account and the token gets its key.
    core.patch_namespaced_secret("wrong", namespace, {"stringData": {"applicationKey": emulators.b2_account[1]}})
    wait_condition(api, namespace, "app", "True", "Issued")


@pytest.mark.parametrize("kind", KINDS)
def test_a_spec_change_issues_a_new_key_and_revokes_the_old_after_grace(
    api: client.ApiClient, namespace: str, emulators: Emulators, kind: str
) -> None:
    apply_provider(api, emulators, kind, namespace, kind)
    create_token(
        api,
        namespace,
        "app",
        providerRef={"name": kind},
        permissions=["read"],
        buckets=[BUCKET[kind]],
        revokeGracePeriod="2s",
    )
    first = wait_condition(api, namespace, "app", "True", "Issued")["status"]
    patch_token(api, namespace, "app", {"spec": {"permissions": ["read", "write"]}})
    second = wait_for(
        lambda: (t := get_token(api, namespace, "app"))["status"].get("revision") == 2 and t["status"], 60, "revision 2"
    )
    assert second["keyId"] != first["keyId"]
    assert key_id_in_secret(emulators, kind, secret_data(api, namespace, "app")) == second["keyId"]
    wait_for(lambda: first["keyId"] not in live_key_ids(emulators, kind), 30, "the old key revoked")
    wait_for(lambda: not get_token(api, namespace, "app")["status"].get("pendingRevocations"), 30, "queue drained")
    assert second["keyId"] in live_key_ids(emulators, kind)


def test_manual_renewal_by_annotation(api: client.ApiClient, namespace: str, emulators: Emulators) -> None:
    apply_provider(api, emulators, "us3", namespace, "us3")
    create_token(api, namespace, "app", providerRef={"name": "us3"}, permissions=["read"], buckets=["demo-us3-data"])
    first = wait_condition(api, namespace, "app", "True", "Issued")["status"]
    patch_token(api, namespace, "app", {"metadata": {"annotations": {"storagetoken.dev/renew": "1"}}})
    status = wait_for(
        lambda: (t := get_token(api, namespace, "app"))["status"].get("revision") == 2 and t["status"], 60, "renewal"
    )
    assert status["keyId"] != first["keyId"]
    assert status["handledRenewRequest"] == "1"


def test_drift_a_deleted_or_edited_secret_is_restored_with_a_new_key(
    api: client.ApiClient, namespace: str, emulators: Emulators
) -> None:
    apply_provider(api, emulators, "b2", namespace, "b2")
    create_token(api, namespace, "app", providerRef={"name": "b2"}, permissions=["read"])
    wait_condition(api, namespace, "app", "True", "Issued")
    core = client.CoreV1Api(api)
    core.delete_namespaced_secret("app", namespace)
    status = wait_for(
        lambda: (t := get_token(api, namespace, "app"))["status"].get("revision") == 2 and t["status"], 60, "re-issue"
    )
    assert secret_data(api, namespace, "app")["accessKeyId"] == status["keyId"]
    core.patch_namespaced_secret("app", namespace, {"stringData": {"secretAccessKey": "tampered"}})
    wait_for(lambda: get_token(api, namespace, "app")["status"].get("revision") == 3, 60, "re-issue after an edit")
    assert secret_data(api, namespace, "app")["secretAccessKey"] != "tampered"


@pytest.mark.parametrize("kind", KINDS)
def test_short_lived_keys_are_renewed_on_schedule_and_the_secret_always_holds_a_live_key(
    api: client.ApiClient, namespace: str, emulators: Emulators, kind: str
) -> None:
    apply_provider(api, emulators, kind, namespace, kind)
    create_token(
        api,
        namespace,
        "app",
        providerRef={"name": kind},
        permissions=["read"],
        buckets=[BUCKET[kind]],
        duration="1m",
        renewBefore="50s",
        revokeGracePeriod="2s",
    )
    first = wait_condition(api, namespace, "app", "True", "Issued")["status"]
    seen: set[str] = set()

    def check_secret_then_renewed() -> dict[str, Any] | None:
        # Every sample: the Secret's key is live at the provider and not past its expiry.
        data = secret_data(api, namespace, "app")
        key_id = key_id_in_secret(emulators, kind, data)
        assert key_id in live_key_ids(emulators, kind), "the Secret held a key the provider no longer has"
        assert data["expiresAt"] > datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "the Secret held an expired key"
        seen.add(key_id)
        status = get_token(api, namespace, "app")["status"]
        return status if status.get("revision", 0) >= 3 else None

    # Two renewals ~10 s apart (1m keys renewed 50s before expiry, minus jitter).
    third = wait_for(check_secret_then_renewed, 60, "two renewals", interval=0.5)
    assert len(seen) >= 2
    assert third["issuedAt"] < first["notAfter"]
    assert "RenewalDue" in wait_event(api, namespace, "app", "Renewed")[1]
    wait_for(lambda: first["keyId"] not in live_key_ids(emulators, kind), 30, "the first key revoked after grace")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("policy", ["Revoke", "Retain"])
def test_deleting_the_token_revokes_or_retains_its_key_and_the_secret_goes_with_it(
    api: client.ApiClient, namespace: str, emulators: Emulators, policy: str, kind: str
) -> None:
    apply_provider(api, emulators, kind, namespace, kind, policy={"allowRetain": policy == "Retain"})
    create_token(
        api,
        namespace,
        "app",
        providerRef={"name": kind},
        permissions=["read"],
        buckets=[BUCKET[kind]],
        deletionPolicy=policy,
    )
    key_id = wait_condition(api, namespace, "app", "True", "Issued")["status"]["keyId"]
    assert "storagetoken.dev/revoke-keys" in get_token(api, namespace, "app")["metadata"]["finalizers"]
    delete_token(api, namespace, "app")

    wait_gone(lambda: get_token(api, namespace, "app"), 60, "the token to be deleted")
    assert (key_id in live_key_ids(emulators, kind)) == (policy == "Retain")

    wait_gone(
        lambda: client.CoreV1Api(api).read_namespaced_secret("app", namespace), 60, "the Secret to be garbage-collected"
    )


def test_the_operator_log_has_no_tracebacks(operator: OperatorProcess) -> None:
    text = operator.log_text()
    at = text.find("Traceback")
    assert at < 0, text[max(0, at - 300) : at + 3000]
