"""B2 rules without a server: capability mapping, forbidden capabilities, request validation, error kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage_token.providers.b2 import (
    FORBIDDEN_CAPABILITIES,
    KNOWN_CAPABILITIES,
    PERMISSION_CAPABILITIES,
    capabilities_for,
    create_request,
)
from storage_token.providers.b2.codes import error_for, parse_retry_after
from storage_token.providers.b2.models import Authorization, KeyRecord, from_millis, region_of
from storage_token.providers.base import KeySpec
from storage_token.providers.errors import (
    BadRequestError,
    CredentialsError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RetryableError,
)


def spec(**changes: object) -> KeySpec:
    values: dict[str, object] = {
        "name": "sto-c1-ns-app-1234abcd-r1",
        "permissions": ("read",),
        "duration_seconds": 3600,
    }
    values.update(changes)
    return KeySpec(**values)  # type: ignore[arg-type]


# -- capabilities ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("permissions", "expected"),
    [
        pytest.param(("read",), ("readFiles",), id="read downloads, copies and reads file info"),
        pytest.param(("write",), ("writeFiles",), id="write uploads and hides"),
        pytest.param(("delete",), ("deleteFiles",), id="delete removes file versions"),
        pytest.param(("list",), ("listBuckets", "listFiles"), id="list lists buckets and files"),
        pytest.param(("share",), ("shareFiles",), id="share mints download authorizations"),
        pytest.param(
            ("read", "write", "list", "read"),
            ("listBuckets", "listFiles", "readFiles", "writeFiles"),
            id="several permissions merge without duplicates in a stable order",
        ),
    ],
)
def test_b2_permission_maps_to_capabilities(permissions: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert capabilities_for(permissions) == expected


def test_b2_mapping_never_yields_a_forbidden_capability() -> None:
    for capabilities in PERMISSION_CAPABILITIES.values():
        assert not set(capabilities) & FORBIDDEN_CAPABILITIES
        assert set(capabilities) <= KNOWN_CAPABILITIES


def test_b2_forbidden_set_covers_key_and_bucket_administration() -> None:
    must = {"writeKeys", "listKeys", "deleteKeys", "writeBuckets", "deleteBuckets", "writeBucketRetentions"}
    assert must <= FORBIDDEN_CAPABILITIES <= KNOWN_CAPABILITIES


@pytest.mark.parametrize("capability", sorted(FORBIDDEN_CAPABILITIES))
def test_b2_forbidden_raw_capability_is_refused_by_name(capability: str) -> None:
    with pytest.raises(BadRequestError, match=capability):
        capabilities_for(("read",), (capability,))


def test_b2_raw_capabilities_from_the_known_set_are_added() -> None:
    assert capabilities_for(("read",), ("listAllBucketNames", "readFileRetentions")) == (
        "listAllBucketNames",
        "readFileRetentions",
        "readFiles",
    )
    assert capabilities_for((), ("readFiles",)) == ("readFiles",)


def test_b2_unknown_raw_capability_is_refused() -> None:
    with pytest.raises(BadRequestError, match="readEverything"):
        capabilities_for(("read",), ("readEverything",))


def test_b2_unknown_permission_is_refused() -> None:
    with pytest.raises(BadRequestError, match="image-processing"):
        capabilities_for(("image-processing",))


def test_b2_a_key_without_any_capability_is_refused() -> None:
    with pytest.raises(BadRequestError, match="at least one"):
        capabilities_for(())


# -- request validation ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"name": ""}, "key name", id="an empty name"),
        pytest.param({"name": "a" * 101}, "key name", id="a name over 100 characters"),
        pytest.param(
            {"name": "team_a.key"}, "key name", id="a name with characters other than letters digits and dash"
        ),
        pytest.param({"duration_seconds": 0}, "duration", id="a zero duration"),
        pytest.param({"duration_seconds": 86_400_001}, "duration", id="a duration over 1000 days"),
        pytest.param({"prefixes": ("logs/",)}, "needs a bucket", id="a prefix without a bucket"),
        pytest.param({"buckets": ("a",), "prefixes": ("x/", "y/")}, "one name prefix", id="two prefixes"),
        pytest.param({"allow_ips": ("10.0.0.0/8",)}, "IP", id="an IP allow list"),
        pytest.param({"deny_ips": ("10.0.0.1",)}, "IP", id="an IP deny list"),
        pytest.param({"raw_capabilities": ("writeKeys",)}, "writeKeys", id="a key-management capability"),
    ],
)
def test_b2_invalid_spec_is_a_bad_request(changes: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        create_request(spec(**changes))


@pytest.mark.parametrize("name", ["a", "A-1-b", "x" * 100])
def test_b2_valid_names(name: str) -> None:
    assert create_request(spec(name=name)).name == name


@pytest.mark.parametrize("duration", [1, 86_400_000])
def test_b2_duration_bounds_are_inclusive(duration: int) -> None:
    assert create_request(spec(duration_seconds=duration)).body(())["validDurationInSeconds"] == duration


def test_b2_no_bucket_goes_through_v3_without_a_bucket_field() -> None:
    request = create_request(spec())
    assert request.version == 3
    assert "bucketId" not in request.body(()) and "bucketIds" not in request.body(())


def test_b2_one_bucket_goes_through_v3_with_bucket_id() -> None:
    request = create_request(spec(buckets=("photos",), prefixes=("2024/",)))
    body = request.body(("id-photos",))
    assert request.version == 3
    assert body["bucketId"] == "id-photos" and "bucketIds" not in body
    assert body["namePrefix"] == "2024/"


def test_b2_several_buckets_go_through_v4_with_bucket_ids() -> None:
    request = create_request(spec(buckets=("a", "b", "a")))
    assert request.buckets == ("a", "b")
    assert request.version == 4
    body = request.body(("id-a", "id-b"))
    assert body["bucketIds"] == ["id-a", "id-b"] and "bucketId" not in body


# -- payloads ---------------------------------------------------------------------------
def test_b2_expiration_milliseconds_become_an_aware_datetime() -> None:
    assert from_millis(1_700_000_000_123) == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert from_millis(None) is None


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://s3.us-west-004.backblazeb2.com", "us-west-004"),
        ("https://s3.eu-central-003.backblazeb2.com/", "eu-central-003"),
        ("http://127.0.0.1:8080/s3", None),
        (None, None),
    ],
)
def test_b2_region_comes_from_the_s3_host(url: str | None, region: str | None) -> None:
    assert region_of(url) == region


def test_b2_authorization_reads_v3_and_v4_shapes_and_hides_the_token() -> None:
    common = {"accountId": "acc", "authorizationToken": "tok-secret"}
    v4 = Authorization.from_payload(
        {
            **common,
            "apiInfo": {
                "storageApi": {
                    "apiUrl": "https://api004.example/",
                    "s3ApiUrl": "https://s3.us-west-004.backblazeb2.com",
                    "allowed": {"buckets": [{"id": "b1", "name": "x"}], "capabilities": ["readFiles"]},
                }
            },
        }
    )
    v3 = Authorization.from_payload(
        {
            **common,
            "apiInfo": {"storageApi": {"apiUrl": "https://a", "allowed": {"bucketId": "b1", "capabilities": []}}},
        }
    )
    assert v4.api_url == "https://api004.example" and v4.bucket_ids == ("b1",)
    assert v4.capabilities == frozenset({"readFiles"})
    assert v3.bucket_ids == ("b1",)
    assert "tok-secret" not in repr(v4)


def test_b2_key_record_reads_both_bucket_fields() -> None:
    v3 = KeyRecord.from_payload({"applicationKeyId": "k", "keyName": "n", "bucketId": "b"}, 3)
    v4 = KeyRecord.from_payload({"applicationKeyId": "k", "keyName": "n", "bucketIds": ["b", "c"]}, 4)
    assert v3.bucket_ids == ("b",) and v4.bucket_ids == ("b", "c")


# -- error kinds ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "code", "authorizing", "kind"),
    [
        pytest.param(400, "bad_request", False, BadRequestError, id="400 is a bad request"),
        pytest.param(400, "bad_bucket_id", False, BadRequestError, id="an unknown bucket id is a bad request"),
        pytest.param(401, "unauthorized", True, CredentialsError, id="401 while authorizing is about credentials"),
        pytest.param(401, "bad_auth_token", True, CredentialsError, id="a bad token while authorizing too"),
        pytest.param(401, "unauthorized", False, PermissionDeniedError, id="401 unauthorized on a call is permission"),
        pytest.param(401, "expired_auth_token", False, CredentialsError, id="a token refused twice is credentials"),
        pytest.param(403, "transaction_cap_exceeded", False, QuotaExceededError, id="a cap exceeded is quota"),
        pytest.param(403, "access_denied", False, PermissionDeniedError, id="403 access denied is permission"),
        pytest.param(404, "not_found", False, NotFoundError, id="404 is not found"),
        pytest.param(408, "request_timeout", False, RetryableError, id="408 is retried"),
        pytest.param(429, "too_many_requests", False, RetryableError, id="429 is retried"),
        pytest.param(500, "internal_error", False, RetryableError, id="500 is retried"),
        pytest.param(503, "service_unavailable", False, RetryableError, id="503 is retried"),
    ],
)
def test_b2_error_kinds(status: int, code: str, authorizing: bool, kind: type[ProviderError]) -> None:
    error = error_for(status, code, "said the server", call="b2_list_keys", authorizing=authorizing)
    assert type(error) is kind
    assert error.code == code and "said the server" in str(error)


def test_b2_unexpected_status_is_a_plain_provider_error() -> None:
    assert type(error_for(409, "conflict", "", call="c")) is ProviderError


def test_b2_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:07 GMT", now=now) == 7.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
