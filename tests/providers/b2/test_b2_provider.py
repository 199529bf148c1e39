"""`B2Provider` against the loopback emulator: check, issue, list, get, revoke, recover."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from storage_token.dev.emulators.b2 import B2Emulator
from storage_token.providers.b2 import B2Provider
from storage_token.providers.base import KeySpec
from storage_token.providers.errors import BadRequestError, MissingCapabilitiesError, PermissionDeniedError
from storage_token.providers.registry import build_provider
from storage_token.providers.retry import RetryPolicy

MASTER_ID, MASTER_KEY = "000f00dfeed0000000000001", "K000masterSecretForProviderTests"
BUCKETS = ["photos", "logs", "backup"]
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)


@pytest.fixture
def emulator() -> Iterator[B2Emulator]:
    with B2Emulator({MASTER_ID: MASTER_KEY}, list(BUCKETS)) as running:
        assert isinstance(running, B2Emulator)
        yield running


@pytest.fixture
async def provider(emulator: B2Emulator) -> AsyncIterator[B2Provider]:
    client = B2Provider(MASTER_ID, MASTER_KEY, endpoint=emulator.url, retry=FAST, timeout=5, allow_insecure=True)
    yield client
    await client.aclose()


def spec(name: str = "sto-c1-ns-app-1234abcd-r1", **changes: object) -> KeySpec:
    values: dict[str, object] = {"name": name, "permissions": ("read", "list"), "duration_seconds": 3600}
    values.update(changes)
    return KeySpec(**values)  # type: ignore[arg-type]


def authorize(url: str, key_id: str, key: str, version: int = 4) -> httpx.Response:
    basic = base64.b64encode(f"{key_id}:{key}".encode()).decode()
    with httpx.Client(timeout=5) as http:
        return http.get(f"{url}/b2api/v{version}/b2_authorize_account", headers={"Authorization": f"Basic {basic}"})


# -- check ----------------------------------------------------------------------------------
async def test_b2_check_reports_the_account_from_authorize(emulator: B2Emulator, provider: B2Provider) -> None:
    info = await provider.check()
    assert info.provider == "b2"
    assert info.account_id == emulator.account_id != MASTER_ID
    assert info.endpoint == emulator.url + "/s3"


async def test_b2_check_refuses_an_account_key_that_cannot_manage_keys(
    emulator: B2Emulator, provider: B2Provider
) -> None:
    weak = await provider.issue(spec(name="weak", permissions=("read",)))
    client = B2Provider(weak.key_id, weak.secret_access_key, endpoint=emulator.url, retry=FAST, allow_insecure=True)
    try:
        with pytest.raises(PermissionDeniedError, match="writeKeys"):
            await client.check()
    finally:
        await client.aclose()


async def test_b2_registry_builds_the_b2_provider(emulator: B2Emulator) -> None:
    s3 = "https://s3.us-east-005.backblazeb2.com"
    credentials = {"applicationKeyId": MASTER_ID, "applicationKey": MASTER_KEY}
    built = build_provider("b2", credentials=credentials, endpoint=emulator.url, s3_endpoint=s3, allow_insecure=True)
    try:
        info = await built.check()
    finally:
        await built.aclose()
    assert info.account_id == emulator.account_id and info.endpoint == s3


@pytest.mark.parametrize("endpoint", ["ftp://api.example", "api.example"])
def test_b2_unusable_endpoint_is_refused_when_built(endpoint: str) -> None:
    with pytest.raises(BadRequestError, match=r"not an http\(s\) URL"):
        B2Provider(MASTER_ID, MASTER_KEY, endpoint=endpoint, retry=FAST, allow_insecure=True)


# -- issue -------------------------------------------------------------------------------------
async def test_b2_issue_without_bucket_uses_v3(emulator: B2Emulator, provider: B2Provider) -> None:
    before = datetime.now(UTC)
    key = await provider.issue(spec(duration_seconds=7200))
    assert emulator.version_count("b2_create_key", 3) == 1 and emulator.version_count("b2_create_key", 4) == 0
    assert key.key_id == key.access_key_id and key.key_name == "sto-c1-ns-app-1234abcd-r1"
    assert key.not_after is not None and key.not_after.tzinfo is not None
    assert timedelta(seconds=7190) < key.not_after - before < timedelta(seconds=7210)
    assert key.endpoint == emulator.url + "/s3" and key.region is None
    assert dict(key.native) == {"B2_APPLICATION_KEY_ID": key.key_id, "B2_APPLICATION_KEY": key.secret_access_key}
    assert key.buckets == () and key.prefixes == ()


async def test_b2_issue_with_one_bucket_uses_v3_with_bucket_id(emulator: B2Emulator, provider: B2Provider) -> None:
    key = await provider.issue(spec(buckets=("photos",), prefixes=("2024/",)))
    assert emulator.version_count("b2_create_key", 3) == 1 and emulator.version_count("b2_create_key", 4) == 0
    assert key.buckets == ("photos",) and key.prefixes == ("2024/",)
    (stored,) = emulator.keys_named(key.key_name)
    assert stored["bucketNames"] == ["photos"] and stored["namePrefix"] == "2024/"
    assert not stored["multiBucket"]
    # A single-bucket key must keep working for v3 clients (rclone, restic, ...).
    assert authorize(emulator.url, key.key_id, key.secret_access_key, version=3).status_code == 200


async def test_b2_issue_with_several_buckets_uses_v4(emulator: B2Emulator, provider: B2Provider) -> None:
    key = await provider.issue(spec(buckets=("photos", "logs")))
    assert emulator.version_count("b2_create_key", 4) == 1 and emulator.version_count("b2_create_key", 3) == 0
    (stored,) = emulator.keys_named(key.key_name)
    assert stored["multiBucket"] and stored["bucketNames"] == ["photos", "logs"]
    assert authorize(emulator.url, key.key_id, key.secret_access_key, version=4).status_code == 200


async def test_b2_issued_key_authorizes_with_its_capabilities(emulator: B2Emulator, provider: B2Provider) -> None:
    key = await provider.issue(spec(permissions=("read", "share"), buckets=("logs",)))
    answer = authorize(emulator.url, key.key_id, key.secret_access_key).json()
    allowed = answer["apiInfo"]["storageApi"]["allowed"]
    assert sorted(allowed["capabilities"]) == ["readFiles", "shareFiles"]
    assert allowed["buckets"][0]["name"] == "logs"


async def test_b2_bucket_ids_are_looked_up_once(emulator: B2Emulator, provider: B2Provider) -> None:
    await provider.issue(spec(name="a", buckets=("photos",)))
    await provider.issue(spec(name="b", buckets=("photos",)))
    assert emulator.count("b2_list_buckets") == 1


async def test_b2_issue_into_a_missing_bucket_is_a_bad_request(emulator: B2Emulator, provider: B2Provider) -> None:
    with pytest.raises(BadRequestError, match="nope"):
        await provider.issue(spec(buckets=("nope",)))
    assert emulator.count("b2_create_key") == 0


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"raw_capabilities": ("writeKeys",)}, id="a raw key-management capability"),
        pytest.param({"raw_capabilities": ("deleteBuckets",)}, id="a raw bucket-admin capability"),
        pytest.param({"name": "bad name"}, id="a name with a space"),
        pytest.param({"duration_seconds": 86_400_001}, id="over 1000 days"),
        pytest.param({"prefixes": ("x/",)}, id="a prefix without a bucket"),
    ],
)
async def test_b2_invalid_spec_makes_no_call(
    emulator: B2Emulator, provider: B2Provider, changes: dict[str, object]
) -> None:
    with pytest.raises(BadRequestError):
        await provider.issue(spec(**changes))
    assert emulator.count("b2_create_key") == 0 and emulator.count("b2_authorize_account") == 0


async def admin_key(emulator: B2Emulator, capabilities: list[str]) -> tuple[str, str]:
    """A key with exactly `capabilities`, made by the master through the API (the client never issues these)."""
    basic = base64.b64encode(f"{MASTER_ID}:{MASTER_KEY}".encode()).decode()
    async with httpx.AsyncClient(timeout=5) as http:
        auth = (
            await http.get(f"{emulator.url}/b2api/v4/b2_authorize_account", headers={"Authorization": f"Basic {basic}"})
        ).json()
        made = await http.post(
            f"{auth['apiInfo']['storageApi']['apiUrl']}/b2api/v3/b2_create_key",
            headers={"Authorization": auth["authorizationToken"]},
            json={"accountId": auth["accountId"], "keyName": "admin", "capabilities": capabilities},
        )
    assert made.status_code == 200, made.text
    return made.json()["applicationKeyId"], made.json()["applicationKey"]


LEAST_PRIVILEGE = ["writeKeys", "listKeys", "deleteKeys", "listBuckets"]


async def test_b2_least_privilege_admin_key_is_ready_and_issues_what_it_lacks(emulator: B2Emulator) -> None:
    key_id, key = await admin_key(emulator, LEAST_PRIVILEGE)
    client = B2Provider(key_id, key, endpoint=emulator.url, retry=FAST, allow_insecure=True)
    try:
        await client.check()
        issued = await client.issue(spec(name="rw", permissions=("read", "write", "delete"), buckets=("photos",)))
        info = await client.get_key(issued.key_id)
        assert info is not None and set(info.permissions) == {"readFiles", "writeFiles", "deleteFiles"}
        assert [k.key_id for k in await client.list_keys("rw")] == [issued.key_id]
        await client.revoke(issued.key_id)
        assert await client.get_key(issued.key_id) is None
    finally:
        await client.aclose()


@pytest.mark.parametrize("lacking", LEAST_PRIVILEGE)
async def test_b2_check_names_every_capability_the_operator_needs(emulator: B2Emulator, lacking: str) -> None:
    key_id, key = await admin_key(emulator, [c for c in LEAST_PRIVILEGE if c != lacking] + ["readFiles"])
    client = B2Provider(key_id, key, endpoint=emulator.url, retry=FAST, allow_insecure=True)
    try:
        with pytest.raises(MissingCapabilitiesError) as caught:
            await client.check()
    finally:
        await client.aclose()
    assert caught.value.missing == (lacking,)
    assert lacking in str(caught.value) and isinstance(caught.value, PermissionDeniedError)


async def test_b2_issue_without_writekeys_is_refused_before_the_call(emulator: B2Emulator) -> None:
    key_id, key = await admin_key(emulator, ["listKeys", "deleteKeys", "listBuckets", "readFiles"])
    client = B2Provider(key_id, key, endpoint=emulator.url, retry=FAST, allow_insecure=True)
    try:
        with pytest.raises(MissingCapabilitiesError, match="writeKeys"):
            await client.issue(spec(name="no", permissions=("read",)))
    finally:
        await client.aclose()
    assert emulator.count("b2_create_key") == 1  # only admin_key's own


async def test_b2_restricted_and_shared_buckets_are_found_by_name() -> None:
    types = {"club": "restricted", "mates": "shared"}
    with B2Emulator({MASTER_ID: MASTER_KEY}, list(types), bucket_types=types) as emulator:
        client = B2Provider(MASTER_ID, MASTER_KEY, endpoint=emulator.url, retry=FAST, allow_insecure=True)
        try:
            for bucket in types:
                issued = await client.issue(spec(name=f"k-{bucket}", buckets=(bucket,)))
                assert issued.buckets == (bucket,)
            assert sorted(b for k in await client.list_keys("k-") for b in k.buckets) == ["club", "mates"]
        finally:
            await client.aclose()


@pytest.mark.parametrize("endpoint", ["http://api.example", "http://127.0.0.1:1"])
def test_b2_plain_http_is_refused_unless_allowed(endpoint: str) -> None:
    with pytest.raises(BadRequestError, match="plain http"):
        B2Provider(MASTER_ID, MASTER_KEY, endpoint=endpoint)


async def test_b2_plain_http_api_url_from_authorize_is_refused() -> None:
    answer = {
        "accountId": "acc",
        "authorizationToken": "tok",
        "apiInfo": {"storageApi": {"apiUrl": "http://api.example", "allowed": {"capabilities": LEAST_PRIVILEGE}}},
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    client = B2Provider("id", "key", endpoint="https://auth.example", transport=transport, retry=FAST)
    try:
        with pytest.raises(BadRequestError, match="apiUrl"):
            await client.check()
    finally:
        await client.aclose()


async def test_b2_region_comes_from_the_s3_api_url() -> None:
    s3 = "https://s3.us-west-004.backblazeb2.com"
    with B2Emulator({MASTER_ID: MASTER_KEY}, [], s3_api_url=s3) as emulator:
        client = B2Provider(MASTER_ID, MASTER_KEY, endpoint=emulator.url, retry=FAST, allow_insecure=True)
        try:
            key = await client.issue(spec())
        finally:
            await client.aclose()
    assert key.endpoint == s3 and key.region == "us-west-004"


async def test_b2_configured_s3_endpoint_wins(emulator: B2Emulator) -> None:
    client = B2Provider(
        MASTER_ID,
        MASTER_KEY,
        endpoint=emulator.url,
        s3_endpoint="https://s3.eu-central-003.backblazeb2.com",
        allow_insecure=True,
    )
    try:
        key = await client.issue(spec())
    finally:
        await client.aclose()
    assert key.region == "eu-central-003"


# -- list, get -------------------------------------------------------------------------------------
async def test_b2_list_goes_through_v3_and_v4_and_every_page(emulator: B2Emulator) -> None:
    client = B2Provider(MASTER_ID, MASTER_KEY, endpoint=emulator.url, retry=FAST, page_size=2, allow_insecure=True)
    try:
        single = [await client.issue(spec(name=f"sto-x-s{i}", buckets=("photos",))) for i in range(3)]
        multi = [await client.issue(spec(name=f"sto-x-m{i}", buckets=("photos", "logs"))) for i in range(3)]
        other = await client.issue(spec(name="other-key"))
        keys = await client.list_keys()
        listed = await client.list_keys("sto-x-")
    finally:
        await client.aclose()
    assert sorted(k.key_id for k in keys) == sorted(k.key_id for k in [*single, *multi, other])
    assert len({k.key_id for k in keys}) == len(keys)
    assert sorted(k.key_name for k in listed) == sorted(k.key_name for k in [*single, *multi])
    # 4 standard keys in pages of 2 and 3 multi-bucket keys in pages of 2: 2 calls per version and listing.
    assert emulator.version_count("b2_list_keys", 3) == 4 and emulator.version_count("b2_list_keys", 4) == 4
    by_name = {k.key_name: k for k in keys}
    assert by_name["sto-x-m0"].buckets == ("photos", "logs")
    assert "readFiles" in by_name["sto-x-s0"].permissions
    assert by_name["other-key"].not_after is not None


async def test_b2_list_never_shows_secrets(provider: B2Provider) -> None:
    key = await provider.issue(spec())
    assert key.secret_access_key not in repr(await provider.list_keys())


async def test_b2_get_key_finds_both_kinds_and_nothing_else(provider: B2Provider) -> None:
    single = await provider.issue(spec(name="single", buckets=("photos",)))
    multi = await provider.issue(spec(name="multi", buckets=("photos", "logs")))
    fresh = B2Provider(
        MASTER_ID, MASTER_KEY, endpoint=provider.endpoint, retry=FAST, allow_insecure=True
    )  # knows no versions yet
    try:
        found_single, found_multi = await fresh.get_key(single.key_id), await fresh.get_key(multi.key_id)
        missing = await fresh.get_key(single.key_id[:-1] + "9")
    finally:
        await fresh.aclose()
    assert found_single is not None and found_single.key_name == "single"
    assert found_multi is not None and found_multi.buckets == ("photos", "logs")
    assert missing is None


# -- revoke, recover, expiry ------------------------------------------------------------------------
@pytest.mark.parametrize("buckets", [(), ("photos",), ("photos", "logs")], ids=["account-wide", "one bucket", "multi"])
async def test_b2_revoke_deletes_and_already_gone_is_fine(
    emulator: B2Emulator, provider: B2Provider, buckets: tuple[str, ...]
) -> None:
    key = await provider.issue(spec(buckets=buckets))
    fresh = B2Provider(
        MASTER_ID, MASTER_KEY, endpoint=emulator.url, retry=FAST, allow_insecure=True
    )  # must find the right version itself
    try:
        await fresh.revoke(key.key_id)
        assert emulator.keys_named(key.key_name) == []
        await fresh.revoke(key.key_id)
        await provider.revoke(key.key_id)
    finally:
        await fresh.aclose()


async def test_b2_recover_deletes_every_key_of_the_name(emulator: B2Emulator, provider: B2Provider) -> None:
    name = "sto-c1-ns-app-1234abcd-r7"
    await provider.issue(spec(name=name))
    await provider.issue(spec(name=name, buckets=("photos", "logs")))  # names need not be unique
    keep = await provider.issue(spec(name=name + "0"))
    assert len(emulator.keys_named(name)) == 2
    assert await provider.recover(name) is None
    assert emulator.keys_named(name) == []
    assert [k.key_id for k in await provider.list_keys()] == [keep.key_id]
    assert await provider.recover("never-issued") is None


async def test_b2_expired_key_cannot_authorize_and_disappears(emulator: B2Emulator, provider: B2Provider) -> None:
    key = await provider.issue(spec(duration_seconds=60))
    assert authorize(emulator.url, key.key_id, key.secret_access_key).status_code == 200
    emulator.clock.advance(61)
    assert authorize(emulator.url, key.key_id, key.secret_access_key).status_code == 401
    assert await provider.get_key(key.key_id) is None
    await provider.revoke(key.key_id)  # gone already: not an error


async def test_b2_revoked_key_token_stops_working(emulator: B2Emulator, provider: B2Provider) -> None:
    key = await provider.issue(spec(permissions=("list",)))
    token = authorize(emulator.url, key.key_id, key.secret_access_key).json()
    list_buckets = f"{emulator.url}/b2api/v3/b2_list_buckets"
    with httpx.Client(timeout=5) as http:
        headers = {"Authorization": token["authorizationToken"]}
        assert http.post(list_buckets, json={"accountId": token["accountId"]}, headers=headers).status_code == 200
        await provider.revoke(key.key_id)
        answer = http.post(list_buckets, json={"accountId": token["accountId"]}, headers=headers)
    assert answer.status_code == 401 and answer.json()["code"] == "bad_auth_token"
