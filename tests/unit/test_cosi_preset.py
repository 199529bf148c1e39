"""The `cosi` preset: exactly the keys of a COSI v1alpha2 S3 BucketAccess Secret, or a clear refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from storage_token.api.token import SecretTemplate
from storage_token.secrets.render import COSI_KEYS, KeyMaterial, TemplateError, render_secret_data, validate_template
from storage_token.secrets.worker import BoundedRenderer, placeholder_material

COSI = SecretTemplate(preset="cosi")
EXPECTED_KEYS = {
    "COSI_PROTOCOL",
    "BUCKET_NAME",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_S3_ADDRESSING_STYLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}

B2_SECRET = "K004abcdefghijklmnopqrstuvwxyz1"
US3_SECRET = "c2VjcmV0LXByaXZhdGUta2V5LW1hdGVyaWFs"

B2_KEY = KeyMaterial(
    provider="b2",
    key_id="0041a2b3c4d5e6f0000000007",
    key_name="sto-abc-team-a-app-1",
    access_key_id="0041a2b3c4d5e6f0000000007",
    secret_access_key=B2_SECRET,
    endpoint="https://s3.us-west-004.backblazeb2.com",
    region="us-west-004",
    buckets=("media",),
    prefixes=("web/",),
    expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    native={"B2_APPLICATION_KEY_ID": "0041a2b3c4d5e6f0000000007", "B2_APPLICATION_KEY": B2_SECRET},
)
US3_KEY = KeyMaterial(
    provider="us3",
    key_id="tok-9f8e7d",
    key_name="sto-abc-team-a-app-1",
    access_key_id="TOKEN_6a1c0f7e-1111-2222-3333-444455556666",
    secret_access_key=US3_SECRET,
    endpoint="https://s3-cn-bj.ufileos.com",
    region="cn-bj2",
    buckets=("us3-data",),
    prefixes=(),
    expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    native={"US3_PUBLIC_KEY": "TOKEN_6a1c0f7e-1111-2222-3333-444455556666", "US3_PRIVATE_KEY": US3_SECRET},
)


@pytest.mark.parametrize("key", [B2_KEY, US3_KEY], ids=["b2", "us3"])
def test_the_secret_holds_exactly_the_cosi_s3_keys(key: KeyMaterial) -> None:
    data = render_secret_data(key, COSI)

    assert set(data) == EXPECTED_KEYS
    assert tuple(data) == COSI_KEYS  # the order COSI documents them in
    # None of our own keys, nor the provider's native names: COSI apps see what COSI writes.
    assert "expiresAt" not in data and not any(name.startswith(("B2_", "US3_")) for name in data)


def test_b2_values() -> None:
    assert render_secret_data(B2_KEY, COSI) == {
        "COSI_PROTOCOL": "S3",
        "BUCKET_NAME": "media",
        "AWS_ENDPOINT_URL": "https://s3.us-west-004.backblazeb2.com",
        "AWS_DEFAULT_REGION": "us-west-004",
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY_ID": "0041a2b3c4d5e6f0000000007",
        "AWS_SECRET_ACCESS_KEY": B2_SECRET,
    }


def test_us3_values() -> None:
    assert render_secret_data(US3_KEY, COSI) == {
        "COSI_PROTOCOL": "S3",
        "BUCKET_NAME": "us3-data",
        "AWS_ENDPOINT_URL": "https://s3-cn-bj.ufileos.com",
        "AWS_DEFAULT_REGION": "cn-bj2",
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY_ID": "TOKEN_6a1c0f7e-1111-2222-3333-444455556666",
        "AWS_SECRET_ACCESS_KEY": US3_SECRET,
    }


def test_the_addressing_style_is_one_cosi_allows() -> None:
    assert render_secret_data(B2_KEY, COSI)["AWS_S3_ADDRESSING_STYLE"] in ("path", "virtual")


def test_free_templates_may_add_keys_next_to_the_cosi_ones() -> None:
    template = SecretTemplate(preset="cosi", data={"expiresAt": "{{ expiresAt }}"})
    data = render_secret_data(B2_KEY, template)
    assert set(data) == EXPECTED_KEYS | {"expiresAt"}
    assert data["expiresAt"] == "2030-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("buckets", "count"),
    [(("media", "backups"), "2 buckets"), ((), "no bucket")],
    ids=["several-buckets", "account-wide"],
)
def test_a_key_with_several_buckets_or_none_has_no_cosi_shape(buckets: tuple[str, ...], count: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_secret_data(replace(B2_KEY, buckets=buckets), COSI)

    error = caught.value
    assert error.reason == TemplateError.PRESET_MISMATCH
    assert count in str(error) and "exactly one bucket" in str(error) and "spec.buckets" in str(error)
    assert B2_SECRET not in str(error) and B2_KEY.access_key_id not in str(error)


def test_a_key_without_an_endpoint_is_refused() -> None:
    with pytest.raises(TemplateError) as caught:
        render_secret_data(replace(B2_KEY, endpoint=None), COSI)
    assert caught.value.reason == TemplateError.PRESET_MISMATCH


def test_a_key_without_a_region_gets_the_s3_default_region() -> None:
    """COSI requires the key; an endpoint naming no region (a custom s3Endpoint) gets us-east-1."""
    assert render_secret_data(replace(B2_KEY, region=None), COSI)["AWS_DEFAULT_REGION"] == "us-east-1"


def test_the_preset_is_known_to_validation() -> None:
    validate_template(COSI)  # no UnknownPreset


def test_without_the_preset_keys_nothing_is_checked() -> None:
    template = SecretTemplate(preset="cosi", data={"bucket": "{{ bucket }}"}, include_preset=False)
    assert render_secret_data(replace(B2_KEY, buckets=()), template) == {"bucket": ""}


@pytest_asyncio.fixture
async def renderer() -> AsyncIterator[BoundedRenderer]:
    bounded = BoundedRenderer()
    yield bounded
    await bounded.aclose()


async def test_the_rehearsal_refuses_a_multi_bucket_token_before_any_key_exists(renderer: BoundedRenderer) -> None:
    """The controller rehearses with placeholder keys of the spec's buckets before any provider call."""
    with pytest.raises(TemplateError) as caught:
        await renderer.rehearse(COSI, ("a", "b"), ())
    assert caught.value.reason == TemplateError.PRESET_MISMATCH

    data = await renderer.rehearse(COSI, ("a",), ())
    assert set(data) == EXPECTED_KEYS


@pytest.mark.parametrize("provider", ["b2", "us3"])
async def test_the_worker_renders_what_the_function_does(renderer: BoundedRenderer, provider: str) -> None:
    key = placeholder_material(provider, ("bucket-1",), ())
    assert await renderer.render(key, COSI) == render_secret_data(key, COSI)
