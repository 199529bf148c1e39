"""Our US3 client and emulator checked against UCloud's own Python SDK (ucloud-sdk-python3).

For every action the client sends, the SDK's signer must produce the same Signature,
the SDK's request schema must accept the parameters (no unknown names, every required
one present) and re-encode them to the very same form. The emulator must accept
requests the SDK builds and signs, and answer what the SDK's response schemas require.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("ucloud")

from ucloud.client import Client
from ucloud.core.auth import _cfg as sdk_auth
from ucloud.core.exc import ValidationException
from ucloud.core.typesystem import encoder
from ucloud.services.uaccount.schemas import apis as uaccount_apis
from ucloud.services.ufile.schemas import apis as ufile_apis
from us3_recording import RecordingTransport

from storage_token.dev.emulators.us3 import US3Emulator
from storage_token.providers.base import KeySpec
from storage_token.providers.retry import RetryPolicy
from storage_token.providers.us3 import US3Provider

PUBLIC_KEY = "ops@example.com"
PRIVATE_KEY = "46f09bb9fab4f12dfc160dae12273d5332b5debe"
SCHEMAS: dict[str, Any] = {
    "CreateUFileToken": ufile_apis.CreateUFileTokenRequestSchema,
    "DescribeUFileToken": ufile_apis.DescribeUFileTokenRequestSchema,
    "DeleteUFileToken": ufile_apis.DeleteUFileTokenRequestSchema,
    "GetProjectList": uaccount_apis.GetProjectListRequestSchema,
}
ENVELOPE = ("Action", "PublicKey", "Signature")
_INDEXED = re.compile(r"^(?P<name>[A-Za-z]+)\.(?P<index>\d+)$")


@pytest.fixture(scope="module")
def emulator() -> Iterator[US3Emulator]:
    running = US3Emulator({PUBLIC_KEY: PRIVATE_KEY}, {"photos": "cn-bj2", "logs": "cn-bj2"}, projects={"org-a"})
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sent(emulator: US3Emulator) -> list[dict[str, str]]:
    """Every form the client sends in a full lifecycle, recorded on the way to the emulator."""
    import asyncio

    async def lifecycle() -> list[dict[str, str]]:
        recorder = RecordingTransport()
        provider = US3Provider(
            emulator.url,
            PUBLIC_KEY,
            PRIVATE_KEY,
            region="cn-bj2",
            transport=recorder,
            retry=RetryPolicy(attempts=2, base_delay=0.001),
            allow_insecure=True,
        )
        spec = KeySpec(
            name="st-sdk-1",
            permissions=("read", "write", "list", "deny-overwrite"),
            duration_seconds=3600,
            buckets=("photos", "logs"),
            prefixes=("a/", "b/"),
            allow_ips=("10.0.0.0/8",),
            deny_ips=("10.1.2.3",),
        )
        try:
            await provider.check()
            issued = await provider.issue(spec)
            await provider.list_keys("st-")
            await provider.get_key(issued.key_id)
            await provider.recover("st-sdk-1")
            await provider.revoke(issued.key_id)
        finally:
            await provider.aclose()
        return recorder.forms

    return asyncio.run(lifecycle())


def unflatten(form: dict[str, str]) -> dict[str, Any]:
    """`Name.N` back into lists (0-based, in order), everything else as is; the envelope dropped."""
    plain: dict[str, Any] = {}
    lists: dict[str, dict[int, str]] = {}
    for name, value in form.items():
        if name in ENVELOPE:
            continue
        match = _INDEXED.match(name)
        if match:
            lists.setdefault(match["name"], {})[int(match["index"])] = value
        else:
            plain[name] = value
    for name, items in lists.items():
        assert sorted(items) == list(range(len(items))), f"{name}.N is not 0-based and contiguous"
        plain[name] = [items[i] for i in range(len(items))]
    return plain


def test_the_client_sends_every_action_we_check(sent: list[dict[str, str]]) -> None:
    assert {form["Action"] for form in sent} == set(SCHEMAS)


def test_every_request_is_signed_as_the_sdk_signs(sent: list[dict[str, str]]) -> None:
    for form in sent:
        unsigned = {k: v for k, v in form.items() if k != "Signature"}
        assert sdk_auth.verify_ac(PRIVATE_KEY, unsigned) == form["Signature"], form["Action"]


def test_every_request_matches_the_sdk_request_schema(sent: list[dict[str, str]]) -> None:
    for form in sent:
        schema = SCHEMAS[form["Action"]]()
        params = unflatten(form)
        unknown = sorted(set(params) - set(schema.fields))
        assert not unknown, f"{form['Action']} sends {unknown}, which the SDK schema does not know"
        dumped = schema.dumps(params)  # raises ValidationException on a missing required field or a bad type
        # The SDK re-encodes the same values to byte-for-byte the same form.
        assert encoder.encode(dumped) == {k: v for k, v in form.items() if k not in ENVELOPE}, form["Action"]


def test_every_request_names_the_project(sent: list[dict[str, str]]) -> None:
    token_calls = [form for form in sent if form["Action"] != "GetProjectList"]
    assert token_calls and all(form.get("ProjectId") == "org-default" for form in token_calls)


def test_the_sdk_itself_refuses_a_delete_without_project(sent: list[dict[str, str]]) -> None:
    with pytest.raises(ValidationException, match="ProjectId"):
        ufile_apis.DeleteUFileTokenRequestSchema().dumps({"Region": "cn-bj2", "TokenId": "t"})


# -- the emulator against requests the SDK builds -------------------------------------------
@pytest.fixture
def sdk(emulator: US3Emulator) -> Client:
    emulator.reset()
    return Client(
        {
            "region": "cn-bj2",
            "project_id": "org-default",
            "public_key": PUBLIC_KEY,
            "private_key": PRIVATE_KEY,
            "base_url": emulator.url,
            "max_retries": 0,
        }
    )


def test_the_emulator_serves_the_sdk_token_lifecycle(sdk: Client, emulator: US3Emulator) -> None:
    ufile = sdk.ufile()
    created = ufile.create_ufile_token(
        {
            "TokenName": "sdk-made",
            "AllowedOps": ["TOKEN_ALLOW_READ", "TOKEN_ALLOW_LIST"],
            "AllowedBuckets": ["photos"],
            "AllowedPrefixes": ["x/"],
            "ExpireTime": int(emulator.clock.now()) + 600,
        }
    )
    token_id = created["TokenId"]
    described = ufile.describe_ufile_token({"TokenId": token_id})  # no Display: the full form
    assert described["DataSet"][0]["TokenName"] == "sdk-made" and described["DataSet"][0]["PrivateKey"]
    ufile.delete_ufile_token({"TokenId": token_id})
    assert token_id not in emulator.store.tokens


def test_the_emulator_serves_get_project_list_as_the_sdk_expects(sdk: Client) -> None:
    answer = sdk.uaccount().get_project_list({})  # the response schema marks every field it needs required
    defaults = [p["ProjectId"] for p in answer["ProjectSet"] if p["IsDefault"]]
    assert defaults == ["org-default"] and answer["ProjectCount"] == len(answer["ProjectSet"])
