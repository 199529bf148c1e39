"""The US3 emulator is strict about the documented rules, and its test-control surface works.

Requests here are built by hand (signed with the client's `signing`, checked by
the emulator's own verifier) so each rule is hit directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from storage_token.dev.emulators.us3 import US3Emulator, main
from storage_token.providers.us3.signing import Value, flatten, sign

PUBLIC_KEY = "ops@example.com"
PRIVATE_KEY = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"
MAX_EXPIRE = 4102416000
FROZEN_AT = 1_800_000_000


@pytest.fixture(scope="module")
def server() -> Iterator[US3Emulator]:
    emulator = US3Emulator(
        {PUBLIC_KEY: PRIVATE_KEY}, {"photos": "cn-bj2", "backups": "cn-sh2"}, token_limit=3, projects={"org-a"}
    )
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(server: US3Emulator) -> US3Emulator:
    server.reset()
    server.clock.freeze(FROZEN_AT)
    return server


def send(emulator: US3Emulator, params: dict[str, Value], private_key: str = PRIVATE_KEY) -> dict[str, Any]:
    body = sign(flatten(params), PUBLIC_KEY, private_key)
    response = httpx.post(emulator.url, data=body)
    assert response.status_code == 200  # the API answers errors as HTTP 200 + RetCode
    answer: dict[str, Any] = response.json()
    return answer


def call(emulator: US3Emulator, action: str | None, private_key: str = PRIVATE_KEY, **params: Value) -> dict[str, Any]:
    return send(emulator, {"Action": action, **params}, private_key)


def create(emulator: US3Emulator, **params: Value) -> dict[str, Any]:
    return send(emulator, {"Action": "CreateUFileToken", "TokenName": "t", **params})


def control(emulator: US3Emulator, method: str, route: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, f"{emulator.url}/_emulator/{route}", json=body)


# -- signature and actions -------------------------------------------------------
def test_answers_name_the_action_and_retcode_zero(emulator: US3Emulator) -> None:
    answer = call(emulator, "DescribeUFileToken")
    assert answer == {"Action": "DescribeUFileTokenResponse", "RetCode": 0, "DataSet": []}


def test_missing_action_is_160(emulator: US3Emulator) -> None:
    assert call(emulator, None)["RetCode"] == 160


def test_unknown_action_is_161(emulator: US3Emulator) -> None:
    assert call(emulator, "UpdateUFileToken")["RetCode"] == 161


def test_missing_signature_is_170(emulator: US3Emulator) -> None:
    response = httpx.post(emulator.url, data={"Action": "DescribeUFileToken", "PublicKey": PUBLIC_KEY})
    assert response.json()["RetCode"] == 170


def test_wrong_signature_is_171(emulator: US3Emulator) -> None:
    assert call(emulator, "DescribeUFileToken", private_key="wrong")["RetCode"] == 171


def test_a_parameter_changed_after_signing_is_171(emulator: US3Emulator) -> None:
    body = sign(flatten({"Action": "DescribeUFileToken", "TokenName": "a"}), PUBLIC_KEY, PRIVATE_KEY)
    body["TokenName"] = "b"
    assert httpx.post(emulator.url, data=body).json()["RetCode"] == 171


def test_unknown_public_key_is_172(emulator: US3Emulator) -> None:
    body = sign({"Action": "DescribeUFileToken"}, "nobody", PRIVATE_KEY)
    assert httpx.post(emulator.url, data=body).json()["RetCode"] == 172


def test_get_with_a_query_string_works_too(emulator: US3Emulator) -> None:
    body = sign({"Action": "DescribeUFileToken"}, PUBLIC_KEY, PRIVATE_KEY)
    assert httpx.get(emulator.url, params=body).json()["RetCode"] == 0


def test_other_paths_are_404(emulator: US3Emulator) -> None:
    assert httpx.post(f"{emulator.url}/v1/anything", data={}).status_code == 404


# -- CreateUFileToken rules ------------------------------------------------------
def test_create_with_every_seed_parameter(emulator: US3Emulator) -> None:
    answer = create(
        emulator,
        Region="cn-bj2",
        ProjectId="org-a",
        TokenName="full",
        AllowedOps=["TOKEN_ALLOW_READ", "TOKEN_ALLOW_IOP", "TOKEN_DENY_UPDATE"],
        AllowedPrefixes=["a/", "b/"],
        AllowedBuckets=["photos"],
        ExpireTime=FROZEN_AT + 60,
        BlackIPList=["192.0.2.1"],
        WhiteIPList=["2001:db8::/32", "198.51.100.0/24"],
    )
    assert answer["RetCode"] == 0, answer
    token = answer["UFileTokenSet"]
    assert answer["TokenId"] == token["TokenId"]
    assert token["Region"] == "cn-bj2" and token["TokenName"] == "full"
    assert token["PublicKey"].startswith("TOKEN_") and token["PrivateKey"]
    assert token["AllowedOps"] == ["TOKEN_ALLOW_READ", "TOKEN_ALLOW_IOP", "TOKEN_DENY_UPDATE"]
    assert token["AllowedPrefixes"] == ["a/", "b/"] and token["AllowedBuckets"] == ["photos"]
    assert token["ExpireTime"] == FROZEN_AT + 60
    assert token["CreateTime"] == token["ModifyTime"] == FROZEN_AT
    assert token["BlackIPList"] == ["192.0.2.1"]
    assert token["WhiteIPList"] == ["2001:db8::/32", "198.51.100.0/24"]


def test_create_defaults_follow_the_doc(emulator: US3Emulator) -> None:
    token = create(emulator)["UFileTokenSet"]
    assert token["AllowedOps"] == ["TOKEN_ALLOW_NONE"]
    assert token["AllowedPrefixes"] == ["*"] and token["AllowedBuckets"] == ["*"]
    assert token["ExpireTime"] == FROZEN_AT + 86400
    assert token["Region"] == "cn-bj2"  # the emulator's default region


@pytest.mark.parametrize(
    ("params", "retcode"),
    [
        ({"TokenName": None}, 15002),
        ({"TokenName": ""}, 15002),
        ({"AllowedOps": ["TOKEN_ALLOW_EVERYTHING"]}, 15017),
        ({"ExpireTime": FROZEN_AT - 1}, 15018),
        ({"ExpireTime": FROZEN_AT}, 15018),
        ({"ExpireTime": MAX_EXPIRE + 1}, 15018),
        ({"ExpireTime": "tomorrow"}, 15017),
        ({"AllowedBuckets": ["missing"]}, 15039),
        ({"AllowedBuckets": ["photos", "backups"]}, 15018),
        ({"Region": "cn-sh2", "AllowedBuckets": ["photos"]}, 15017),
        ({"Region": "mars-1"}, 15017),
        ({"ProjectId": "org-zzz"}, 292),
        ({"WhiteIPList": ["not-an-ip"]}, 15017),
        ({"BlackIPList": ["300.1.1.1"]}, 15017),
        ({"Colour": "blue"}, 15017),
    ],
    ids=[
        "no TokenName",
        "empty TokenName",
        "an op outside the enum",
        "ExpireTime in the past",
        "ExpireTime now",
        "ExpireTime after 4102416000",
        "ExpireTime not an integer",
        "a bucket that doesn't exist",
        "buckets of two regions",
        "a bucket outside the Region",
        "an unknown Region",
        "an unknown ProjectId",
        "a white-list entry that isn't an IP",
        "a black-list entry that isn't an IP",
        "a parameter the action doesn't take",
    ],
)
def test_create_rejects(emulator: US3Emulator, params: dict[str, Value], retcode: int) -> None:
    answer = create(emulator, **params)
    assert answer["RetCode"] == retcode, answer
    assert answer["Message"]
    assert emulator.store.tokens == {}


def test_expire_time_may_be_exactly_the_maximum(emulator: US3Emulator) -> None:
    assert create(emulator, ExpireTime=MAX_EXPIRE)["RetCode"] == 0


def test_list_indexes_must_be_zero_based_and_contiguous(emulator: US3Emulator) -> None:
    body = sign(
        {"Action": "CreateUFileToken", "TokenName": "t", "AllowedOps.1": "TOKEN_ALLOW_READ"}, PUBLIC_KEY, PRIVATE_KEY
    )
    assert httpx.post(emulator.url, data=body).json()["RetCode"] == 15017


def test_a_list_sent_without_index_is_rejected(emulator: US3Emulator) -> None:
    body = sign(
        {"Action": "CreateUFileToken", "TokenName": "t", "AllowedOps": "TOKEN_ALLOW_READ"}, PUBLIC_KEY, PRIVATE_KEY
    )
    assert httpx.post(emulator.url, data=body).json()["RetCode"] == 15017


def test_token_limit_is_15038(emulator: US3Emulator) -> None:
    for i in range(3):
        assert create(emulator, TokenName=f"t{i}")["RetCode"] == 0
    answer = create(emulator, TokenName="t3")
    assert answer["RetCode"] == 15038
    assert len(emulator.store.tokens) == 3


def test_expired_tokens_still_count_toward_the_limit(emulator: US3Emulator) -> None:
    for i in range(3):
        create(emulator, TokenName=f"t{i}", ExpireTime=FROZEN_AT + 10)
    emulator.clock.advance(60)
    assert create(emulator, TokenName="t3")["RetCode"] == 15038


def test_names_need_not_be_unique(emulator: US3Emulator) -> None:
    # Not documented as unique: that is why the client resolves lost creates by name.
    assert create(emulator, TokenName="same")["RetCode"] == 0
    assert create(emulator, TokenName="same")["RetCode"] == 0
    assert len(call(emulator, "DescribeUFileToken", TokenName="same")["DataSet"]) == 2


# -- DescribeUFileToken / DeleteUFileToken ---------------------------------------------
def test_describe_is_full_unless_display_is_0(emulator: US3Emulator) -> None:
    # describe_ufile_token.md: "0 shows partial info; absent or any other value shows everything".
    token_id = create(emulator)["TokenId"]
    private_key = emulator.store.tokens[token_id].private_key
    partial = call(emulator, "DescribeUFileToken", TokenId=token_id, Display=0)["DataSet"][0]
    assert "PrivateKey" not in partial
    for display in ({}, {"Display": 1}, {"Display": 2}):
        assert (
            call(emulator, "DescribeUFileToken", TokenId=token_id, **display)["DataSet"][0]["PrivateKey"] == private_key
        )


def test_describe_filters_by_name_region_and_project(emulator: US3Emulator) -> None:
    create(emulator, TokenName="a", AllowedBuckets=["photos"])
    create(emulator, TokenName="b", AllowedBuckets=["backups"])
    create(emulator, TokenName="c", ProjectId="org-a")
    assert [t["TokenName"] for t in call(emulator, "DescribeUFileToken")["DataSet"]] == ["a", "b"]
    assert [t["TokenName"] for t in call(emulator, "DescribeUFileToken", Region="cn-sh2")["DataSet"]] == ["b"]
    assert [t["TokenName"] for t in call(emulator, "DescribeUFileToken", ProjectId="org-a")["DataSet"]] == ["c"]


@pytest.mark.parametrize("lookup", ["TokenId", "TokenName"])
def test_describe_of_something_missing_is_15040(emulator: US3Emulator, lookup: str) -> None:
    assert call(emulator, "DescribeUFileToken", **{lookup: "nope"})["RetCode"] == 15040


def test_delete_needs_project_region_and_token_id(emulator: US3Emulator) -> None:
    token_id = create(emulator)["TokenId"]
    where = {"ProjectId": "org-default", "Region": "cn-bj2"}
    assert call(emulator, "DeleteUFileToken", Region="cn-bj2", TokenId=token_id)["RetCode"] == 15002  # no ProjectId
    assert call(emulator, "DeleteUFileToken", ProjectId="org-default", TokenId=token_id)["RetCode"] == 15002
    assert call(emulator, "DeleteUFileToken", **where)["RetCode"] == 15002
    assert call(emulator, "DeleteUFileToken", **{**where, "Region": "cn-sh2"}, TokenId=token_id)["RetCode"] == 15040
    assert call(emulator, "DeleteUFileToken", **{**where, "ProjectId": "org-a"}, TokenId=token_id)["RetCode"] == 15040
    assert call(emulator, "DeleteUFileToken", **where, TokenId=token_id)["RetCode"] == 0
    assert call(emulator, "DeleteUFileToken", **where, TokenId=token_id)["RetCode"] == 15040


def test_an_absent_project_id_is_the_default_project(emulator: US3Emulator) -> None:
    create(emulator, TokenName="implicit")
    create(emulator, TokenName="explicit", ProjectId="org-default")
    names = {t["TokenName"] for t in call(emulator, "DescribeUFileToken", ProjectId="org-default")["DataSet"]}
    assert (
        names == {"implicit", "explicit"} == {t["TokenName"] for t in call(emulator, "DescribeUFileToken")["DataSet"]}
    )


def test_get_project_list_marks_the_default_project() -> None:
    with US3Emulator({PUBLIC_KEY: PRIVATE_KEY}, {}, projects={"org-a"}, default_project="org-home") as emulator:
        answer = call(emulator, "GetProjectList")
    assert answer["RetCode"] == 0 and answer["ProjectCount"] == 2
    assert [(p["ProjectId"], p["IsDefault"]) for p in answer["ProjectSet"]] == [("org-home", True), ("org-a", False)]


@pytest.mark.parametrize("action", ["CreateUFileToken", "DescribeUFileToken", "DeleteUFileToken"])
def test_a_sub_account_must_name_the_project_on_every_action(action: str) -> None:
    with US3Emulator({PUBLIC_KEY: PRIVATE_KEY}, {}, sub_accounts={PUBLIC_KEY}) as emulator:
        params = (
            {"TokenName": "t", "Region": "cn-bj2"}
            if action != "DeleteUFileToken"
            else {"Region": "cn-bj2", "TokenId": "x"}
        )
        if action == "DescribeUFileToken":
            params = {}
        assert call(emulator, action, **params)["RetCode"] == 15002
        assert call(emulator, action, ProjectId="org-default", **params)["RetCode"] in (0, 15040)


def test_another_account_cannot_see_or_delete_tokens() -> None:
    with US3Emulator({"a": "ka", "b": "kb"}, {}) as emulator:
        body = sign({"Action": "CreateUFileToken", "TokenName": "mine"}, "a", "ka")
        token_id = httpx.post(emulator.url, data=body).json()["TokenId"]
        seen = httpx.post(emulator.url, data=sign({"Action": "DescribeUFileToken"}, "b", "kb")).json()
        assert seen["DataSet"] == []
        delete = sign(
            {"Action": "DeleteUFileToken", "ProjectId": "org-default", "Region": "cn-bj2", "TokenId": token_id},
            "b",
            "kb",
        )
        assert httpx.post(emulator.url, data=delete).json()["RetCode"] == 15040


# -- faults and test control ------------------------------------------------------------
def test_retcode_fault_answers_http_200_with_the_retcode(emulator: US3Emulator) -> None:
    emulator.faults.inject("retcode", "DescribeUFileToken", retcode=153)
    answer = call(emulator, "DescribeUFileToken")
    assert answer["RetCode"] == 153 and answer["Action"] == "DescribeUFileTokenResponse"
    assert call(emulator, "DescribeUFileToken")["RetCode"] == 0  # times=1 by default


def test_status_fault_sends_retry_after(emulator: US3Emulator) -> None:
    emulator.faults.inject("status", None, status=429, retry_after=2)
    response = httpx.post(emulator.url, data=sign({"Action": "DescribeUFileToken"}, PUBLIC_KEY, PRIVATE_KEY))
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"


def test_state_lists_tokens_without_private_keys(emulator: US3Emulator) -> None:
    token = create(emulator, TokenName="visible", ExpireTime=FROZEN_AT + 10)["UFileTokenSet"]
    state = control(emulator, "GET", "state").json()
    assert state["now"] == FROZEN_AT
    [listed] = state["tokens"]
    assert listed["TokenId"] == token["TokenId"] and listed["TokenName"] == "visible"
    assert listed["Account"] == PUBLIC_KEY and listed["Expired"] is False
    assert "PrivateKey" not in listed and token["PrivateKey"] not in str(state)
    assert {"call": "CreateUFileToken", "outcome": "ok", "count": 1} in state["counters"]


def test_clock_can_be_advanced_over_http_and_tokens_expire(emulator: US3Emulator) -> None:
    create(emulator, ExpireTime=FROZEN_AT + 10)
    assert control(emulator, "POST", "clock/advance", {"seconds": 11}).json()["now"] == FROZEN_AT + 11
    assert control(emulator, "GET", "state").json()["tokens"][0]["Expired"] is True
    assert control(emulator, "POST", "clock/freeze", {"at": FROZEN_AT}).json()["now"] == FROZEN_AT
    unfrozen = control(emulator, "POST", "clock/unfreeze").json()["now"]
    assert FROZEN_AT <= unfrozen < FROZEN_AT + 5


def test_faults_can_be_injected_and_cleared_over_http(emulator: US3Emulator) -> None:
    added = control(emulator, "POST", "faults", {"kind": "retcode", "calls": ["CreateUFileToken"], "retcode": 150})
    assert added.status_code == 200
    assert create(emulator)["RetCode"] == 150
    control(emulator, "POST", "faults", {"kind": "status", "status": 503, "times": None})
    # A fault aimed at every call leaves the control surface alone.
    assert control(emulator, "GET", "state").status_code == 200
    assert control(emulator, "DELETE", "faults").status_code == 200
    assert create(emulator)["RetCode"] == 0


@pytest.mark.parametrize(
    "body",
    [{"kind": "meteor"}, {"kind": "status", "colour": "red"}, {"calls": "x"}],
    ids=["an unknown kind", "an unknown field", "no kind"],
)
def test_bad_fault_requests_are_400(emulator: US3Emulator, body: dict[str, Any]) -> None:
    assert control(emulator, "POST", "faults", body).status_code == 400


def test_tokens_can_be_revoked_out_of_band(emulator: US3Emulator) -> None:
    token_id = create(emulator)["TokenId"]
    assert control(emulator, "DELETE", f"tokens/{token_id}").json() == {"removed": True}
    assert control(emulator, "DELETE", f"tokens/{token_id}").status_code == 404
    assert emulator.store.tokens == {}


def test_reset_forgets_everything(emulator: US3Emulator) -> None:
    create(emulator)
    emulator.faults.inject("latency", None, latency=0.01, times=None)
    assert control(emulator, "POST", "reset").status_code == 200
    state = control(emulator, "GET", "state").json()
    assert state["tokens"] == []
    assert abs(state["now"] - FROZEN_AT) > 1000  # back on real time
    assert emulator.faults.draw("CreateUFileToken") == []


def test_unknown_control_route_is_404(emulator: US3Emulator) -> None:
    assert control(emulator, "GET", "nothing").status_code == 404


# -- command line -----------------------------------------------------------------------
def test_main_needs_an_account(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bucket", "photos:cn-bj2"]) == 2
    assert "--account" in capsys.readouterr().err


def test_main_rejects_a_malformed_pair() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--account", "no-colon"])
    assert caught.value.code == 2
