"""SecretConflict never advises deleting a provider's account credentials."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from storage_token.api.provider import CLUSTER_KIND, Ceiling, ProviderSpec
from storage_token.api.token import ProviderRef, SecretSpec, TokenSpec, TokenStatus
from storage_token.policy import reasons
from storage_token.policy.checks import decide
from storage_token.policy.inputs import PolicyInput, ProviderState, SecretState

PROVIDER = ProviderSpec(
    kind="StorageProvider",
    name="b2",
    namespace="team-a",
    type="b2",
    endpoint="https://api.example.test",
    credentials_secret="b2-account",
    ceiling=Ceiling(allowed_buckets=("*",), min_duration=timedelta(0)),
)
NEW_TOKEN = PolicyInput(
    namespace="team-a",
    name="app",
    uid="1234abcd-0000",
    generation=1,
    spec=TokenSpec(
        provider_ref=ProviderRef("StorageProvider", "b2"),
        permissions=("read",),
        duration=timedelta(hours=24),
        secret=SecretSpec(name="app-storage"),
        buckets=("team-a-logs",),
    ),
    spec_hash="H",
    status=TokenStatus(),
    secret=SecretState(exists=True, owned=False),  # a Secret of that name exists and is not the token's
    provider=ProviderState(spec=PROVIDER, ready=True),
    now=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
)


def conflict(secret_name: str, provider: ProviderSpec = PROVIDER) -> str:
    value = replace(
        NEW_TOKEN,
        spec=replace(NEW_TOKEN.spec, secret=SecretSpec(name=secret_name)),
        provider=ProviderState(spec=provider, ready=True),
    )
    blocked = decide(value).blocked
    assert blocked is not None and blocked.reason == reasons.SECRET_CONFLICT
    return blocked.message


def test_the_credentials_secret_is_named_and_never_offered_for_deletion() -> None:
    message = conflict(PROVIDER.credentials_secret)
    assert message == (
        f"Secret {PROVIDER.credentials_secret!r} holds the account credentials of StorageProvider "
        f"{PROVIDER.name!r}; choose another spec.secret.name"
    )
    assert "delete" not in message


def test_another_foreign_secret_may_be_deleted_only_if_unused() -> None:
    message = conflict("someone-elses")
    assert "'someone-elses' exists and is not owned by this StorageToken" in message
    assert "choose another spec.secret.name" in message
    assert message.index("choose another") < message.index("delete that Secret if nothing else uses it")


def test_a_cluster_provider_credentials_name_in_another_namespace_is_an_ordinary_conflict() -> None:
    # A ClusterStorageProvider's credentials live in the operator's namespace, not the token's.
    cluster = replace(PROVIDER, kind=CLUSTER_KIND, namespace="storage-token-system")
    message = conflict(PROVIDER.credentials_secret, cluster)
    assert "account credentials" not in message
    assert "not owned by this StorageToken" in message
