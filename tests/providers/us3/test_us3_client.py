"""US3Provider against the loopback emulator: the Provider contract and US3's rules."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from storage_token.dev.emulators.us3 import US3Emulator
from storage_token.providers.base import KeySpec
from storage_token.providers.errors import (
    BadRequestError,
    CredentialsError,
    QuotaExceededError,
)
from storage_token.providers.registry import build_provider
from storage_token.providers.retry import RetryPolicy
from storage_token.providers.us3 import US3Provider

PUBLIC_KEY = "ops@example.com"
PRIVATE_KEY = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
BUCKETS = {"photos": "cn-bj2", "logs": "cn-bj2", "backups": "cn-sh2"}
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
HOUR = 3600


def fingerprint(public_key: str) -> str:
    """How check() names an account: never the public key itself."""
    return "pk-" + hashlib.sha256(public_key.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def server() -> Iterator[US3Emulator]:
    emulator = US3Emulator({PUBLIC_KEY: PRIVATE_KEY}, BUCKETS, token_limit=5, projects={"org-a", "org-b"})
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(server: US3Emulator) -> US3Emulator:
    server.reset()
    return server


def make_provider(emulator: US3Emulator, **kwargs: object) -> US3Provider:
    options: dict[str, object] = {"region": "cn-bj2", "retry": FAST, "timeout": 2.0, "now": emulator.clock.now}
    options.update(kwargs)
    return US3Provider(emulator.url, PUBLIC_KEY, PRIVATE_KEY, **options, allow_insecure=True)  # type: ignore[arg-type]


@pytest.fixture
async def provider(emulator: US3Emulator) -> AsyncIterator[US3Provider]:
    client = make_provider(emulator)
    yield client
    await client.aclose()


def spec(name: str = "st-ns-app-1", **kwargs: object) -> KeySpec:
    options: dict[str, object] = {"permissions": ("read",), "duration_seconds": HOUR, "buckets": ("photos",)}
    options.update(kwargs)
    return KeySpec(name=name, **options)  # type: ignore[arg-type]


async def test_registry_builds_it_from_plain_settings(emulator: US3Emulator) -> None:
    """The settings reach the client: its keys land in the project named, an empty id meaning the default."""
    projects: dict[str, str] = {}
    for project_id in ("", "org-a"):
        built = build_provider(
            "us3",
            credentials={"publicKey": PUBLIC_KEY, "privateKey": PRIVATE_KEY},
            endpoint=emulator.url,
            region="cn-bj2",
            project_id=project_id,
            retry=FAST,
            allow_insecure=True,
        )
        try:
            assert (await built.check()).account_id == fingerprint(PUBLIC_KEY)
            issued = await built.issue(spec(name=f"st-built-{project_id or 'default'}"))
        finally:
            await built.aclose()
        tokens = {t["TokenId"]: t for t in emulator.state()["tokens"]}
        projects[project_id] = tokens[issued.key_id]["ProjectId"]
    assert projects == {"": "org-default", "org-a": "org-a"}


async def test_check_verifies_the_credentials_with_a_real_call(provider: US3Provider, emulator: US3Emulator) -> None:
    info = await provider.check()
    assert info.provider == "us3"
    assert info.account_id == fingerprint(PUBLIC_KEY)
    assert info.endpoint == "https://s3-cn-bj.ufileos.com"
    assert emulator.count("DescribeUFileToken", "ok") == 1


async def test_issue_get_list_revoke_happy_path(provider: US3Provider, emulator: US3Emulator) -> None:
    issued = await provider.issue(
        spec(
            permissions=("read", "write", "list"),
            buckets=("photos", "logs"),
            prefixes=("team-a/",),
            allow_ips=("10.0.0.0/8",),
            deny_ips=("10.1.2.3",),
        )
    )
    stored = emulator.store.tokens[issued.key_id]
    assert issued.key_name == "st-ns-app-1"
    assert issued.access_key_id == stored.public_key and issued.access_key_id.startswith("TOKEN_")
    assert issued.secret_access_key == stored.private_key
    assert issued.not_after is not None and issued.not_after.tzinfo is not None
    assert issued.not_after == datetime.fromtimestamp(int(emulator.clock.now()) + HOUR, UTC)
    assert issued.region == "cn-bj2"
    assert issued.endpoint == "https://s3-cn-bj.ufileos.com"
    assert issued.buckets == ("photos", "logs") and issued.prefixes == ("team-a/",)
    assert issued.native == {
        "US3_PUBLIC_KEY": stored.public_key,
        "US3_PRIVATE_KEY": stored.private_key,
        "US3_REGION": "cn-bj2",
        "US3_S3_ENDPOINT": "https://s3-cn-bj.ufileos.com",
    }
    assert stored.ops == ["TOKEN_ALLOW_READ", "TOKEN_ALLOW_WRITE", "TOKEN_ALLOW_LIST"]
    assert stored.white_ips == ["10.0.0.0/8"] and stored.black_ips == ["10.1.2.3"]

    info = await provider.get_key(issued.key_id)
    assert info is not None
    assert (info.key_id, info.key_name, info.not_after) == (issued.key_id, issued.key_name, issued.not_after)
    assert info.permissions == ("TOKEN_ALLOW_READ", "TOKEN_ALLOW_WRITE", "TOKEN_ALLOW_LIST")
    assert info.created_at is not None and info.created_at.tzinfo is not None

    assert [k.key_id for k in await provider.list_keys()] == [issued.key_id]

    await provider.revoke(issued.key_id)
    assert await provider.get_key(issued.key_id) is None
    await provider.revoke(issued.key_id)  # already gone: not an error
    assert emulator.store.tokens == {}


async def test_list_keys_filters_by_name_prefix(provider: US3Provider) -> None:
    for name in ("st-a-web-1", "st-a-web-2", "st-b-db-1"):
        await provider.issue(spec(name))
    assert sorted(k.key_name for k in await provider.list_keys("st-a-")) == ["st-a-web-1", "st-a-web-2"]
    assert len(await provider.list_keys()) == 3
    assert await provider.list_keys("nothing-") == []


async def test_everything_scope_is_reported_as_empty(provider: US3Provider) -> None:
    issued = await provider.issue(spec(buckets=()))
    assert issued.buckets == () and issued.prefixes == ()


@pytest.mark.parametrize(
    ("permission", "op"),
    [
        ("read", "TOKEN_ALLOW_READ"),
        ("write", "TOKEN_ALLOW_WRITE"),
        ("delete", "TOKEN_ALLOW_DELETE"),
        ("list", "TOKEN_ALLOW_LIST"),
        ("image-processing", "TOKEN_ALLOW_IOP"),
        ("deny-overwrite", "TOKEN_DENY_UPDATE"),
    ],
)
async def test_each_permission_maps_to_its_op(
    provider: US3Provider, emulator: US3Emulator, permission: str, op: str
) -> None:
    issued = await provider.issue(spec(permissions=(permission,)))
    assert emulator.store.tokens[issued.key_id].ops == [op]


async def test_raw_capabilities_accept_us3_op_names(provider: US3Provider, emulator: US3Emulator) -> None:
    issued = await provider.issue(
        spec(permissions=("read",), raw_capabilities=("TOKEN_DENY_UPDATE", "TOKEN_ALLOW_READ"))
    )
    assert emulator.store.tokens[issued.key_id].ops == ["TOKEN_ALLOW_READ", "TOKEN_DENY_UPDATE"]


@pytest.mark.parametrize(
    "bad",
    [
        {"permissions": ("share",)},
        {"permissions": ("read", "admin")},
        {"raw_capabilities": ("writeFiles",)},
        {"duration_seconds": 0},
        {"duration_seconds": 200 * 365 * 86400},
    ],
    ids=[
        "a B2-only permission",
        "an unknown permission",
        "a B2 capability",
        "a zero duration",
        "an expiry past 4102416000",
    ],
)
async def test_bad_specs_are_rejected_before_any_call(
    provider: US3Provider, emulator: US3Emulator, bad: dict[str, Any]
) -> None:
    with pytest.raises(BadRequestError):
        await provider.issue(spec(**bad))
    assert emulator.count("CreateUFileToken") == 0


async def test_expired_token_is_reported_expired(provider: US3Provider, emulator: US3Emulator) -> None:
    issued = await provider.issue(spec(duration_seconds=60))
    emulator.clock.advance(120)
    info = await provider.get_key(issued.key_id)
    assert info is not None and info.not_after is not None
    assert info.not_after < datetime.fromtimestamp(emulator.clock.now(), UTC)
    assert emulator.state()["tokens"][0]["Expired"] is True


async def test_recover_adopts_the_token_of_that_name_with_its_secret(
    provider: US3Provider, emulator: US3Emulator
) -> None:
    issued = await provider.issue(spec("st-intent-7"))
    recovered = await provider.recover("st-intent-7")
    assert recovered is not None
    assert recovered.key_id == issued.key_id
    assert recovered.secret_access_key == issued.secret_access_key
    assert await provider.recover("st-never-created") is None


async def test_recover_keeps_the_newest_of_duplicates_and_deletes_the_rest(
    provider: US3Provider, emulator: US3Emulator
) -> None:
    first = await provider.issue(spec("st-dup"))
    emulator.clock.advance(5)
    second = await provider.issue(spec("st-dup"))
    recovered = await provider.recover("st-dup")
    assert recovered is not None and recovered.key_id == second.key_id
    assert list(emulator.store.tokens) == [second.key_id]
    assert first.key_id not in emulator.store.tokens


async def test_recover_deletes_an_expired_token_instead_of_adopting_it(
    provider: US3Provider, emulator: US3Emulator
) -> None:
    await provider.issue(spec("st-old", duration_seconds=60))
    emulator.clock.advance(120)
    assert await provider.recover("st-old") is None
    assert emulator.store.tokens == {}


async def test_token_limit_is_a_quota_error_until_old_tokens_go(provider: US3Provider, emulator: US3Emulator) -> None:
    keys = [await provider.issue(spec(f"st-{i}")) for i in range(5)]
    with pytest.raises(QuotaExceededError) as caught:
        await provider.issue(spec("st-6"))
    assert caught.value.code == 15038 and "limit" in caught.value.message
    assert emulator.count("CreateUFileToken", "15038") == 1  # not retried
    await provider.revoke(keys[0].key_id)
    assert (await provider.issue(spec("st-6"))).key_name == "st-6"


async def test_missing_bucket_is_a_bad_request_naming_it(provider: US3Provider) -> None:
    with pytest.raises(BadRequestError) as caught:
        await provider.issue(spec(buckets=("photos", "no-such-bucket")))
    assert caught.value.code == 15039
    assert "no-such-bucket" in str(caught.value)


async def test_buckets_of_two_regions_are_rejected(emulator: US3Emulator) -> None:
    client = make_provider(emulator, region=None)
    with pytest.raises(BadRequestError) as caught:
        await client.issue(spec(buckets=("photos", "backups")))
    assert caught.value.code == 15018
    await client.aclose()


async def test_a_bucket_outside_the_provider_region_is_rejected(provider: US3Provider) -> None:
    with pytest.raises(BadRequestError) as caught:
        await provider.issue(spec(buckets=("backups",)))
    assert caught.value.code == 15017 and "cn-sh2" in caught.value.message


async def test_without_a_region_the_token_takes_its_buckets_region(emulator: US3Emulator) -> None:
    client = make_provider(emulator, region=None)
    issued = await client.issue(spec(buckets=("backups",)))
    assert issued.region == "cn-sh2" and issued.endpoint == "https://s3-cn-sh2.ufileos.com"
    await client.revoke(issued.key_id)  # Delete needs the Region: the client looks it up
    assert emulator.store.tokens == {}
    await client.revoke(issued.key_id)
    await client.aclose()


async def test_s3_endpoint_setting_wins_over_the_derived_one(emulator: US3Emulator) -> None:
    client = make_provider(emulator, s3_endpoint="https://s3.internal.example")
    issued = await client.issue(spec())
    assert issued.endpoint == "https://s3.internal.example"
    assert (await client.check()).endpoint == "https://s3.internal.example"
    await client.aclose()


async def test_projects_keep_their_tokens_apart(emulator: US3Emulator) -> None:
    in_a = make_provider(emulator, project_id="org-a")
    in_b = make_provider(emulator, project_id="org-b")
    issued = await in_a.issue(spec())
    assert await in_b.get_key(issued.key_id) is None
    assert [k.key_id for k in await in_a.list_keys()] == [issued.key_id]
    await in_b.revoke(issued.key_id)  # not found in org-b: nothing happens there
    assert issued.key_id in emulator.store.tokens
    await in_a.revoke(issued.key_id)
    assert emulator.store.tokens == {}
    await in_a.aclose()
    await in_b.aclose()


async def test_unknown_project_is_a_bad_request(emulator: US3Emulator) -> None:
    client = make_provider(emulator, project_id="org-missing")
    with pytest.raises(BadRequestError) as caught:
        await client.check()
    assert caught.value.code == 292
    await client.aclose()


async def test_wrong_private_key_is_a_credentials_error(emulator: US3Emulator) -> None:
    client = US3Provider(emulator.url, PUBLIC_KEY, "not-the-key", retry=FAST, allow_insecure=True)
    with pytest.raises(CredentialsError) as caught:
        await client.check()
    assert caught.value.code == 171
    await client.aclose()


async def test_unknown_public_key_is_a_credentials_error(emulator: US3Emulator) -> None:
    client = US3Provider(emulator.url, "nobody@example.com", PRIVATE_KEY, retry=FAST, allow_insecure=True)
    with pytest.raises(CredentialsError) as caught:
        await client.issue(spec())
    assert caught.value.code == 172
    await client.aclose()


async def test_a_create_answer_without_the_key_pair_is_read_back_by_id() -> None:
    """The seed's example answers `"UFileTokenSet": {}`: the client reads the token back."""
    token = {
        "TokenId": "tok-1",
        "TokenName": "st-x",
        "Region": "cn-bj2",
        "PublicKey": "TOKEN_1",
        "PrivateKey": "secret-1",
        "ExpireTime": 4000000000,
    }
    actions: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        actions.append(form["Action"])
        if form["Action"] == "CreateUFileToken":
            return httpx.Response(200, json={"RetCode": 0, "TokenId": "tok-1", "UFileTokenSet": {}})
        assert form["TokenId"] == "tok-1" and form["Display"] == "1"
        return httpx.Response(200, json={"RetCode": 0, "DataSet": [token]})

    client = US3Provider(
        "https://api.example.test", "pub", "priv", project_id="org-1", transport=httpx.MockTransport(handler)
    )
    issued = await client.issue(spec("st-x"))
    assert actions == ["CreateUFileToken", "DescribeUFileToken"]
    assert (issued.key_id, issued.access_key_id, issued.secret_access_key) == ("tok-1", "TOKEN_1", "secret-1")
    await client.aclose()
