"""Both emulators' key journal and pair check on the control surface (what the chaos run reads instead of
their internals): every API create and delete in order with times, never a secret."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from storage_token.dev.emulators.b2 import B2Emulator
from storage_token.dev.emulators.us3 import US3Emulator
from storage_token.providers.us3.signing import flatten, sign

B2_ID, B2_KEY = "000a1b2c3d4e0000000000001", "K000masterSecretForJournalTests"
US3_PUBLIC, US3_PRIVATE = "journal@example.com", "0123456789abcdef0123456789abcdef"
AT = 1_800_000_000.0


@pytest.fixture
def b2() -> Iterator[B2Emulator]:
    with B2Emulator({B2_ID: B2_KEY}, ["photos"], auth_token_ttl=600) as running:
        assert isinstance(running, B2Emulator)
        running.clock.freeze(AT)
        yield running


@pytest.fixture
def us3() -> Iterator[US3Emulator]:
    emulator = US3Emulator({US3_PUBLIC: US3_PRIVATE}, {"photos": "cn-bj2"})
    emulator.start()
    emulator.clock.freeze(AT)
    yield emulator
    emulator.stop()


def control(url: str, method: str, route: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{url}/_emulator/{route}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def b2_call(emulator: B2Emulator, call: str, **body: Any) -> dict[str, Any]:
    basic = base64.b64encode(f"{B2_ID}:{B2_KEY}".encode()).decode()
    auth = httpx.get(f"{emulator.url}/b2api/v3/b2_authorize_account", headers={"Authorization": f"Basic {basic}"})
    token, account = auth.json()["authorizationToken"], auth.json()["accountId"]
    payload = body if call == "b2_delete_key" else {"accountId": account, **body}
    answer = httpx.post(f"{emulator.url}/b2api/v3/{call}", json=payload, headers={"Authorization": token})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def us3_call(emulator: US3Emulator, action: str, **params: Any) -> dict[str, Any]:
    answer = httpx.post(emulator.url, data=sign(flatten({"Action": action, **params}), US3_PUBLIC, US3_PRIVATE))
    result: dict[str, Any] = answer.json()
    assert result["RetCode"] == 0, result
    return result


def test_b2_journal_lists_creates_and_deletes_with_times_and_no_secret(b2: B2Emulator) -> None:
    created = b2_call(b2, "b2_create_key", keyName="k1", capabilities=["listFiles"], validDurationInSeconds=60)
    b2.clock.advance(5)
    b2_call(b2, "b2_delete_key", applicationKeyId=created["applicationKeyId"])
    entries = control(b2.url, "GET", "journal")["entries"]
    assert [(e["event"], e["keyName"], e["at"]) for e in entries] == [("created", "k1", AT), ("deleted", "k1", AT + 5)]
    assert entries[0]["keyId"] == entries[0]["accessKeyId"] == created["applicationKeyId"]
    assert entries[0]["expires"] == AT + 60
    assert created["applicationKey"] not in str(entries)
    assert control(b2.url, "GET", "journal?since=1")["entries"] == entries[1:]


def test_b2_verify_tells_an_issued_live_pair_from_a_wrong_or_revoked_one(b2: B2Emulator) -> None:
    created = b2_call(b2, "b2_create_key", keyName="k1", capabilities=["listFiles"])
    key_id, secret = created["applicationKeyId"], created["applicationKey"]
    pairs = [{"accessKeyId": key_id, "secret": secret}, {"accessKeyId": key_id, "secret": secret + "x"}]
    answer = control(b2.url, "POST", "keys/verify", {"pairs": pairs})
    assert answer["results"] == [{"keyId": key_id, "live": True}, {"keyId": None, "live": False}]
    assert secret not in str(answer)
    b2_call(b2, "b2_delete_key", applicationKeyId=key_id)
    assert control(b2.url, "POST", "keys/verify", {"pairs": pairs[:1]})["results"] == [{"keyId": None, "live": False}]


def test_us3_journal_and_verify(us3: US3Emulator) -> None:
    created = us3_call(us3, "CreateUFileToken", TokenName="t1", ExpireTime=int(AT) + 600)
    token = created["UFileTokenSet"]
    pair = {"accessKeyId": token["PublicKey"], "secret": token["PrivateKey"]}
    assert control(us3.url, "POST", "keys/verify", {"pairs": [pair]})["results"] == [
        {"keyId": created["TokenId"], "live": True}
    ]
    us3.clock.advance(3)
    us3_call(us3, "DeleteUFileToken", TokenId=created["TokenId"], Region="cn-bj2", ProjectId="org-default")
    entries = control(us3.url, "GET", "journal")["entries"]
    assert [(e["event"], e["keyId"], e["at"]) for e in entries] == [
        ("created", created["TokenId"], AT),
        ("deleted", created["TokenId"], AT + 3),
    ]
    assert entries[0]["accessKeyId"] == token["PublicKey"] and entries[0]["expires"] == AT + 600
    assert token["PrivateKey"] not in str(entries)
    assert control(us3.url, "POST", "keys/verify", {"pairs": [pair]})["results"] == [{"keyId": None, "live": False}]
    control(us3.url, "POST", "reset")
    assert control(us3.url, "GET", "journal")["entries"] == []
