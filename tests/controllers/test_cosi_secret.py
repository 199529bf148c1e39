"""The `cosi` preset through the real controllers: a COSI-shaped Secret, or a refusal before any provider call."""

from __future__ import annotations

import base64

from harness import Harness

from storage_token.policy import reasons

NS, NAME = "team-a", "app"
COSI_KEYS = {
    "COSI_PROTOCOL",
    "BUCKET_NAME",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_S3_ADDRESSING_STYLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}


async def test_the_secret_holds_exactly_the_cosi_keys(harness: Harness, provider_type: str) -> None:
    provider = await harness.create_provider(provider_type)
    await harness.create_token(NS, NAME, provider, secret={"template": {"preset": "cosi"}}, reconcile=True)

    secret = harness.secret(NS, NAME)
    assert secret is not None and harness.condition(NS, NAME)["status"] == "True"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(data) == COSI_KEYS
    assert data["COSI_PROTOCOL"] == "S3" and data["BUCKET_NAME"] == provider.buckets[0]
    assert data["AWS_S3_ADDRESSING_STYLE"] == "path" and data["AWS_ENDPOINT_URL"] and data["AWS_DEFAULT_REGION"]
    key_id = harness.status(NS, NAME)["keyId"]
    assert data["AWS_ACCESS_KEY_ID"] == next(
        k.access_key_id for k in harness.keys_at_provider(provider_type) if k.key_id == key_id
    )
    harness.check_invariants()


async def test_a_multi_bucket_token_is_refused_before_any_provider_call(harness: Harness, provider_type: str) -> None:
    provider = await harness.create_provider(provider_type)
    template = {"template": {"preset": "cosi"}}
    await harness.create_token(NS, NAME, provider, buckets=provider.buckets, secret=template, reconcile=True)

    ready = harness.condition(NS, NAME)
    assert ready["status"] == "False" and ready["reason"] == reasons.TEMPLATE_ERROR
    assert "exactly one bucket" in ready["message"]
    assert harness.keys_at_provider(provider_type) == [] and harness.secret(NS, NAME) is None
