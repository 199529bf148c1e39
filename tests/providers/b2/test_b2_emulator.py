"""The B2 emulator on its own, spoken to in raw HTTP: it must be strict where the API is documented to be."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from storage_token.dev.emulators.b2 import B2Emulator

MASTER_ID, MASTER_KEY = "000a1b2c3d4e0000000000001", "K000masterSecretForEmulatorTests"
BUCKETS = ["photos", "logs", "backup"]


@pytest.fixture
def emulator() -> Iterator[B2Emulator]:
    with B2Emulator({MASTER_ID: MASTER_KEY}, list(BUCKETS), auth_token_ttl=600) as running:
        assert isinstance(running, B2Emulator)
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def authorize(http: httpx.Client, url: str, key_id: str, key: str, version: int = 4) -> httpx.Response:
    basic = base64.b64encode(f"{key_id}:{key}".encode()).decode()
    return http.get(f"{url}/b2api/v{version}/b2_authorize_account", headers={"Authorization": f"Basic {basic}"})


class Session:
    """An authorized raw caller."""

    def __init__(self, http: httpx.Client, url: str, key_id: str = MASTER_ID, key: str = MASTER_KEY) -> None:
        answer = authorize(http, url, key_id, key)
        assert answer.status_code == 200, answer.text
        self.auth = answer.json()
        self.http, self.url = http, url
        self.token = self.auth["authorizationToken"]
        self.account_id = self.auth["accountId"]

    def call(self, version: int, call: str, **body: Any) -> httpx.Response:
        return self.http.post(
            f"{self.url}/b2api/v{version}/{call}",
            json={"accountId": self.account_id, **body} if call != "b2_delete_key" else body,
            headers={"Authorization": self.token},
        )

    def ok(self, version: int, call: str, **body: Any) -> dict[str, Any]:
        answer = self.call(version, call, **body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def bucket_id(self, name: str) -> str:
        bucket_id: str = self.ok(3, "b2_list_buckets", bucketName=name)["buckets"][0]["bucketId"]
        return bucket_id

    def create(self, version: int = 3, **body: Any) -> dict[str, Any]:
        body.setdefault("keyName", "k")
        body.setdefault("capabilities", ["readFiles"])
        return self.ok(version, "b2_create_key", **body)


def error(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["code"]


# -- authorize ---------------------------------------------------------------------------
def test_b2_emulator_authorize_v4_and_v3_shapes(emulator: B2Emulator, http: httpx.Client) -> None:
    v4 = authorize(http, emulator.url, MASTER_ID, MASTER_KEY, 4).json()
    v3 = authorize(http, emulator.url, MASTER_ID, MASTER_KEY, 3).json()
    assert v4["accountId"] == emulator.account_id != MASTER_ID
    storage = v4["apiInfo"]["storageApi"]
    assert storage["apiUrl"] == emulator.url and storage["s3ApiUrl"] == emulator.url + "/s3"
    assert storage["allowed"]["buckets"] is None and "writeKeys" in storage["allowed"]["capabilities"]
    # v3 has no `allowed` object: what the key may do sits flat beside apiUrl (b2-authorize-account v3).
    flat = v3["apiInfo"]["storageApi"]
    assert "allowed" not in flat and flat["bucketId"] is None and flat["namePrefix"] is None
    assert "writeKeys" in flat["capabilities"]
    assert v4["authorizationToken"] != v3["authorizationToken"]


def test_b2_emulator_wrong_credentials_are_unauthorized(emulator: B2Emulator, http: httpx.Client) -> None:
    assert error(authorize(http, emulator.url, MASTER_ID, "wrong")) == (401, "unauthorized")
    assert error(authorize(http, emulator.url, "nobody", MASTER_KEY)) == (401, "unauthorized")
    no_basic = http.get(f"{emulator.url}/b2api/v4/b2_authorize_account")
    assert error(no_basic) == (401, "unauthorized")


def test_b2_emulator_speaks_only_v3_and_v4(emulator: B2Emulator, http: httpx.Client) -> None:
    assert authorize(http, emulator.url, MASTER_ID, MASTER_KEY, 2).status_code == 404


def test_b2_emulator_s3_url_can_be_configured(http: httpx.Client) -> None:
    s3 = "https://s3.us-west-004.backblazeb2.com"
    with B2Emulator({MASTER_ID: MASTER_KEY}, [], s3_api_url=s3) as emulator:
        answer = authorize(http, emulator.url, MASTER_ID, MASTER_KEY).json()
    assert answer["apiInfo"]["storageApi"]["s3ApiUrl"] == s3


# -- create: validation ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"keyName": "has space"}, (400, "bad_request"), id="a name with a space"),
        pytest.param({"keyName": "x" * 101}, (400, "bad_request"), id="a name over 100 characters"),
        pytest.param({"keyName": ""}, (400, "bad_request"), id="an empty name"),
        pytest.param({"validDurationInSeconds": 0}, (400, "bad_request"), id="a zero duration"),
        pytest.param({"validDurationInSeconds": 86_400_001}, (400, "bad_request"), id="over 1000 days"),
        pytest.param({"validDurationInSeconds": "60"}, (400, "bad_request"), id="a duration that is not a number"),
        pytest.param({"capabilities": []}, (400, "bad_request"), id="no capabilities"),
        pytest.param({"capabilities": ["readAll"]}, (400, "bad_request"), id="an unknown capability"),
        pytest.param({"namePrefix": "x/"}, (400, "bad_request"), id="a prefix without a bucket"),
        pytest.param({"bucketId": "nope"}, (400, "bad_bucket_id"), id="a bucket that does not exist"),
        pytest.param({"bucketIds": ["x"]}, (400, "bad_request"), id="v3 does not take bucketIds"),
    ],
)
def test_b2_emulator_create_refuses(
    emulator: B2Emulator, http: httpx.Client, body: dict[str, Any], expected: Any
) -> None:
    session = Session(http, emulator.url)
    payload = {"keyName": "k", "capabilities": ["readFiles"], **body}
    assert error(session.call(3, "b2_create_key", **payload)) == expected


def test_b2_emulator_v4_does_not_take_bucket_id(emulator: B2Emulator, http: httpx.Client) -> None:
    session = Session(http, emulator.url)
    answer = session.call(
        4, "b2_create_key", keyName="k", capabilities=["readFiles"], bucketId=session.bucket_id("logs")
    )
    assert error(answer) == (400, "bad_request")


def test_b2_emulator_bucket_keys_cannot_manage_keys(emulator: B2Emulator, http: httpx.Client) -> None:
    session = Session(http, emulator.url)
    answer = session.call(
        3, "b2_create_key", keyName="k", capabilities=["writeKeys"], bucketId=session.bucket_id("logs")
    )
    assert error(answer) == (400, "bad_request")


def test_b2_emulator_create_answers_the_secret_once_and_ms_expiry(emulator: B2Emulator, http: httpx.Client) -> None:
    session = Session(http, emulator.url)
    now_ms = emulator.clock.now() * 1000
    created = session.create(validDurationInSeconds=3600, bucketId=session.bucket_id("photos"), namePrefix="a/")
    assert created["applicationKey"] and created["bucketId"] == session.bucket_id("photos")
    assert abs(created["expirationTimestamp"] - (now_ms + 3_600_000)) < 5_000
    listed = session.ok(3, "b2_list_keys")["keys"]
    assert [k["applicationKeyId"] for k in listed] == [created["applicationKeyId"]]
    assert "applicationKey" not in listed[0]
    assert created["applicationKey"] not in json.dumps(emulator.state())


def test_b2_emulator_writekeys_may_grant_capabilities_it_lacks(emulator: B2Emulator, http: httpx.Client) -> None:
    # b2-create-key asks only for writeKeys; the capability page says it "does not impose any
    # restrictions on what those keys can do".
    master = Session(http, emulator.url)
    minter = master.create(keyName="minter", capabilities=["writeKeys", "readFiles"])
    session = Session(http, emulator.url, minter["applicationKeyId"], minter["applicationKey"])
    assert session.call(3, "b2_create_key", keyName="x", capabilities=["readFiles"]).status_code == 200
    made = session.ok(3, "b2_create_key", keyName="y", capabilities=["writeFiles", "deleteFiles"])
    assert made["capabilities"] == ["writeFiles", "deleteFiles"]
    reader = master.create(keyName="reader", capabilities=["readFiles", "listKeys"])
    denied = Session(http, emulator.url, reader["applicationKeyId"], reader["applicationKey"])
    assert error(denied.call(3, "b2_create_key", keyName="z", capabilities=["readFiles"])) == (401, "unauthorized")


@pytest.mark.parametrize(
    "capability",
    ["readBucketReplications", "writeBucketReplications", "readBucketLogging", "writeBucketLogging", "listKeys"],
)
def test_b2_emulator_bucket_key_takes_only_the_documented_capabilities(
    emulator: B2Emulator, http: httpx.Client, capability: str
) -> None:
    master = Session(http, emulator.url)
    photos = master.bucket_id("photos")
    answer = master.call(3, "b2_create_key", keyName="x", capabilities=["readFiles", capability], bucketId=photos)
    assert error(answer) == (400, "bad_request")
    assert master.call(3, "b2_create_key", keyName="x", capabilities=[capability]).status_code == 200  # no bucket: fine
    allowed = ["readBucketNotifications", "writeBucketNotifications", "bypassGovernance", "listAllBucketNames"]
    assert master.call(3, "b2_create_key", keyName="y", capabilities=allowed, bucketId=photos).status_code == 200


def test_b2_emulator_list_buckets_hides_restricted_and_shared_unless_asked() -> None:
    types = {"open": "allPublic", "closed": "allPrivate", "club": "restricted", "mates": "shared"}
    with (
        B2Emulator({MASTER_ID: MASTER_KEY}, list(types), bucket_types=types) as emulator,
        httpx.Client(timeout=5) as http,
    ):
        master = Session(http, emulator.url)
        listed = lambda **body: sorted(b["bucketName"] for b in master.ok(3, "b2_list_buckets", **body)["buckets"])  # noqa: E731
        assert listed() == ["closed", "open"]
        assert listed(bucketName="club") == []
        assert listed(bucketTypes=["all"]) == ["closed", "club", "mates", "open"]
        assert listed(bucketName="club", bucketTypes=["all"]) == ["club"]
        assert listed(bucketTypes=["shared", "restricted"]) == ["club", "mates"]
        assert error(master.call(3, "b2_list_buckets", bucketTypes=["everything"])) == (400, "bad_request")


def test_b2_emulator_list_buckets_needs_listbuckets_not_listallbucketnames(
    emulator: B2Emulator, http: httpx.Client
) -> None:
    master = Session(http, emulator.url)
    key = master.create(keyName="names", capabilities=["listAllBucketNames"])
    session = Session(http, emulator.url, key["applicationKeyId"], key["applicationKey"])
    assert error(session.call(3, "b2_list_buckets")) == (401, "unauthorized")


# -- issued keys and their tokens ------------------------------------------------------------
def test_b2_emulator_issued_key_token_is_limited_to_its_capabilities(emulator: B2Emulator, http: httpx.Client) -> None:
    master = Session(http, emulator.url)
    photos = master.bucket_id("photos")
    key = master.create(capabilities=["listBuckets", "readFiles"], bucketId=photos)
    session = Session(http, emulator.url, key["applicationKeyId"], key["applicationKey"])
    assert session.auth["apiInfo"]["storageApi"]["allowed"]["buckets"] == [{"id": photos, "name": "photos"}]
    assert error(session.call(3, "b2_list_keys")) == (401, "unauthorized")
    assert error(session.call(3, "b2_create_key", keyName="x", capabilities=["readFiles"])) == (401, "unauthorized")
    assert error(session.call(3, "b2_list_buckets")) == (401, "unauthorized")  # unfiltered
    assert session.ok(3, "b2_list_buckets", bucketName="photos")["buckets"][0]["bucketId"] == photos
    assert error(session.call(3, "b2_list_buckets", bucketName="logs")) == (401, "unauthorized")


def test_b2_emulator_expired_key_cannot_authorize(emulator: B2Emulator, http: httpx.Client) -> None:
    master = Session(http, emulator.url)
    key = master.create(validDurationInSeconds=60)
    assert authorize(http, emulator.url, key["applicationKeyId"], key["applicationKey"]).status_code == 200
    emulator.clock.advance(61)
    assert error(authorize(http, emulator.url, key["applicationKeyId"], key["applicationKey"])) == (401, "unauthorized")
    assert Session(http, emulator.url).ok(3, "b2_list_keys")["keys"] == []  # expired keys disappear


def test_b2_emulator_deleted_key_token_stops_working(emulator: B2Emulator, http: httpx.Client) -> None:
    master = Session(http, emulator.url)
    key = master.create(capabilities=["listBuckets"])
    session = Session(http, emulator.url, key["applicationKeyId"], key["applicationKey"])
    assert session.call(3, "b2_list_buckets").status_code == 200
    master.ok(3, "b2_delete_key", applicationKeyId=key["applicationKeyId"])
    assert error(session.call(3, "b2_list_buckets")) == (401, "bad_auth_token")
    assert error(authorize(http, emulator.url, key["applicationKeyId"], key["applicationKey"])) == (401, "unauthorized")


def test_b2_emulator_auth_tokens_expire_with_the_clock(emulator: B2Emulator, http: httpx.Client) -> None:
    session = Session(http, emulator.url)
    emulator.clock.advance(601)
    assert error(session.call(3, "b2_list_keys")) == (401, "expired_auth_token")
    assert error(session.call(4, "b2_list_keys")) == (401, "expired_auth_token")
    assert Session(http, emulator.url).call(4, "b2_list_keys").status_code == 200


# -- v3 / v4 -------------------------------------------------------------------------------------
def test_b2_emulator_multi_bucket_keys_live_in_v4_only(emulator: B2Emulator, http: httpx.Client) -> None:
    master = Session(http, emulator.url)
    ids = [master.bucket_id("photos"), master.bucket_id("logs")]
    multi = master.create(4, keyName="multi", bucketIds=ids)
    master.create(4, keyName="single-v4", bucketIds=ids[:1])  # any v4 bucket restriction is multi-bucket
    plain = master.create(3, keyName="plain", bucketId=ids[0])
    assert multi["bucketIds"] == ids
    assert {k["keyName"] for k in master.ok(4, "b2_list_keys")["keys"]} == {"multi", "single-v4"}
    assert {k["keyName"] for k in master.ok(3, "b2_list_keys")["keys"]} == {"plain"}
    assert error(authorize(http, emulator.url, multi["applicationKeyId"], multi["applicationKey"], 3)) == (
        401,
        "unauthorized",
    )
    assert authorize(http, emulator.url, multi["applicationKeyId"], multi["applicationKey"], 4).status_code == 200
    assert error(master.call(3, "b2_delete_key", applicationKeyId=multi["applicationKeyId"]))[0] == 400
    assert error(master.call(4, "b2_delete_key", applicationKeyId=plain["applicationKeyId"]))[0] == 400
    master.ok(4, "b2_delete_key", applicationKeyId=multi["applicationKeyId"])
    master.ok(3, "b2_delete_key", applicationKeyId=plain["applicationKeyId"])
    assert error(master.call(3, "b2_delete_key", applicationKeyId=plain["applicationKeyId"])) == (400, "bad_request")


def test_b2_emulator_pagination(emulator: B2Emulator, http: httpx.Client) -> None:
    master = Session(http, emulator.url)
    created = [master.create(keyName=f"k{i}")["applicationKeyId"] for i in range(5)]
    first = master.ok(3, "b2_list_keys", maxKeyCount=2)
    second = master.ok(3, "b2_list_keys", maxKeyCount=2, startApplicationKeyId=first["nextApplicationKeyId"])
    third = master.ok(3, "b2_list_keys", maxKeyCount=2, startApplicationKeyId=second["nextApplicationKeyId"])
    pages = [first, second, third]
    assert [k["applicationKeyId"] for p in pages for k in p["keys"]] == sorted(created)
    assert third["nextApplicationKeyId"] is None
    assert error(master.call(3, "b2_list_keys", maxKeyCount=10_001)) == (400, "bad_request")


def test_b2_emulator_account_id_must_match(emulator: B2Emulator, http: httpx.Client) -> None:
    session = Session(http, emulator.url)
    answer = http.post(
        f"{emulator.url}/b2api/v3/b2_list_keys", json={"accountId": MASTER_ID}, headers={"Authorization": session.token}
    )
    assert error(answer) == (401, "unauthorized")


def test_b2_emulator_get_with_query_parameters(emulator: B2Emulator, http: httpx.Client) -> None:
    session = Session(http, emulator.url)
    session.create(keyName="one")
    answer = http.get(
        f"{emulator.url}/b2api/v3/b2_list_keys",
        params={"accountId": session.account_id, "maxKeyCount": "1"},
        headers={"Authorization": session.token},
    )
    assert [k["keyName"] for k in answer.json()["keys"]] == ["one"]


# -- faults and test control ----------------------------------------------------------------------
def test_b2_emulator_status_fault_answers_like_b2(emulator: B2Emulator, http: httpx.Client) -> None:
    session = Session(http, emulator.url)
    emulator.faults.inject("status", "b2_list_keys", status=429, retry_after=2)
    answer = session.call(3, "b2_list_keys")
    assert error(answer) == (429, "too_many_requests") and answer.headers["Retry-After"] == "2"
    emulator.faults.inject("status", "b2_list_keys", status=401)
    assert error(session.call(3, "b2_list_keys")) == (401, "expired_auth_token")
    assert session.call(3, "b2_list_keys").status_code == 200


def test_b2_emulator_control_surface(emulator: B2Emulator, http: httpx.Client) -> None:
    control = f"{emulator.url}/_emulator"
    session = Session(http, emulator.url)
    key = session.create(keyName="drift", validDurationInSeconds=100)
    # A fault on every call never hits the control surface.
    assert http.post(f"{control}/faults", json={"kind": "status", "status": 503, "times": None}).status_code == 200
    assert session.call(3, "b2_list_keys").status_code == 503
    state = http.get(f"{control}/state").json()
    assert [k["keyName"] for k in state["keys"]] == ["drift"]
    assert MASTER_KEY not in json.dumps(state) and key["applicationKey"] not in json.dumps(state)
    assert {"call": "b2_create_key", "version": 3, "count": 1} in state["versions"]
    assert http.delete(f"{control}/faults").status_code == 200
    assert http.post(f"{control}/tokens/expire").json() == {"expired": 1}
    assert error(session.call(3, "b2_list_keys")) == (401, "expired_auth_token")
    session = Session(http, emulator.url)
    assert http.post(f"{control}/clock/advance", json={"seconds": 50}).status_code == 200
    assert len(session.ok(3, "b2_list_keys")["keys"]) == 1
    assert http.delete(f"{control}/keys/{key['applicationKeyId']}").json() == {"removed": True}
    assert session.ok(3, "b2_list_keys")["keys"] == []
    assert http.post(f"{control}/faults", json={"kind": "boom"}).status_code == 400
    assert http.post(f"{control}/reset").status_code == 200
    assert http.get(f"{control}/state").json()["versions"] == []


def test_b2_emulator_runs_from_the_command_line() -> None:
    command = [
        sys.executable,
        "-m",
        "storage_token.process.cli",
        "emulator",
        "b2",
        "--master-key",
        f"{MASTER_ID}:{MASTER_KEY}",
        "--bucket",
        "photos",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        with httpx.Client(timeout=5) as http:
            assert authorize(http, started["url"], MASTER_ID, MASTER_KEY).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
