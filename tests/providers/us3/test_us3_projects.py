"""US3: every call names a ProjectId (the configured one, or the default resolved once), Display is
always the documented full form, and every documented RetCode lands in the right error class."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from us3_recording import RecordingTransport

from storage_token.dev.emulators.us3 import US3Emulator
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
from storage_token.providers.retry import RetryPolicy
from storage_token.providers.us3 import US3Provider
from storage_token.providers.us3.codes import retcode_error

PUBLIC_KEY = "sub@example.com"
PRIVATE_KEY = "0123456789abcdef0123456789abcdef"
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)
SPEC = KeySpec(name="st-p-1", permissions=("read",), duration_seconds=3600, buckets=("photos",))


@pytest.fixture
def sub_account() -> Iterator[US3Emulator]:
    """A sub-account: every action without ProjectId is refused, as UCloud documents."""
    with US3Emulator(
        {PUBLIC_KEY: PRIVATE_KEY},
        {"photos": "cn-bj2"},
        projects={"org-team"},
        default_project="org-home",
        sub_accounts={PUBLIC_KEY},
    ) as running:
        assert isinstance(running, US3Emulator)
        yield running


def client(emulator: US3Emulator, recorder: RecordingTransport, **options: object) -> US3Provider:
    return US3Provider(
        emulator.url,
        PUBLIC_KEY,
        PRIVATE_KEY,
        region="cn-bj2",
        retry=FAST,
        transport=recorder,
        allow_insecure=True,
        **options,  # type: ignore[arg-type]
    )


async def test_the_default_project_is_resolved_once_and_sent_on_every_call(sub_account: US3Emulator) -> None:
    recorder = RecordingTransport()
    provider = client(sub_account, recorder)
    try:
        info = await provider.check()
        issued = await provider.issue(SPEC)
        assert [k.key_id for k in await provider.list_keys("st-p-")] == [issued.key_id]
        assert (await provider.get_key(issued.key_id)) is not None
        await provider.revoke(issued.key_id)
        assert await provider.get_key(issued.key_id) is None
    finally:
        await provider.aclose()
    assert info.project_id == "org-home" and "org-home" in info.detail
    actions = recorder.actions()
    assert actions.count("GetProjectList") == 1 and actions[0] == "GetProjectList"
    token_calls = [f for f in recorder.forms if f["Action"] != "GetProjectList"]
    assert token_calls and all(f.get("ProjectId") == "org-home" for f in token_calls)
    assert "DeleteUFileToken" in actions


async def test_a_configured_project_is_used_without_asking(sub_account: US3Emulator) -> None:
    recorder = RecordingTransport()
    provider = client(sub_account, recorder, project_id="org-team")
    try:
        assert (await provider.check()).project_id == "org-team"
        await provider.revoke((await provider.issue(SPEC)).key_id)
    finally:
        await provider.aclose()
    assert "GetProjectList" not in recorder.actions()
    assert all(f["ProjectId"] == "org-team" for f in recorder.forms)
    assert sub_account.store.tokens == {}


async def test_an_account_without_a_default_project_says_to_configure_one() -> None:
    answer = {"RetCode": 0, "ProjectCount": 1, "ProjectSet": [{"ProjectId": "org-x", "IsDefault": False}]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    provider = US3Provider("https://api.example.test", PUBLIC_KEY, PRIVATE_KEY, transport=transport, retry=FAST)
    try:
        with pytest.raises(BadRequestError, match="projectId"):
            await provider.check()
    finally:
        await provider.aclose()


async def test_list_get_and_check_ask_for_the_full_display(sub_account: US3Emulator) -> None:
    recorder = RecordingTransport()
    provider = client(sub_account, recorder)
    try:
        issued = await provider.issue(SPEC)
        await provider.check()
        await provider.list_keys()
        info = await provider.get_key(issued.key_id)
    finally:
        await provider.aclose()
    describes = [f for f in recorder.forms if f["Action"] == "DescribeUFileToken"]
    assert describes and all(f["Display"] == "1" for f in describes)
    assert info is not None and info.not_after == issued.not_after and info.created_at is not None


@pytest.mark.parametrize(
    ("retcode", "error"),
    [
        (110, RetryableError),
        (130, RetryableError),
        (150, RetryableError),
        (153, RetryableError),
        (160, BadRequestError),
        (171, CredentialsError),
        (174, CredentialsError),
        (292, BadRequestError),
        (293, PermissionDeniedError),
        (295, PermissionDeniedError),
        (299, PermissionDeniedError),
        (15002, BadRequestError),
        (15004, RetryableError),
        (15010, BadRequestError),
        (15011, QuotaExceededError),
        (15012, RetryableError),
        (15013, RetryableError),
        (15015, RetryableError),
        (15016, RetryableError),
        (15019, QuotaExceededError),
        (15020, RetryableError),
        (15021, RetryableError),
        (15022, RetryableError),
        (15037, PermissionDeniedError),
        (15038, QuotaExceededError),
        (15039, BadRequestError),
        (15040, NotFoundError),
        (15047, BadRequestError),
        (15050, QuotaExceededError),
    ],
)
def test_every_documented_retcode_has_its_class(retcode: int, error: type[ProviderError]) -> None:
    raised = retcode_error(retcode, "msg", "CreateUFileToken")
    assert type(raised) is error and raised.code == retcode


async def test_a_gateway_timeout_on_create_is_resolved_by_name_not_a_plain_error(sub_account: US3Emulator) -> None:
    # 110: the gateway gave up after 60 s and the token may exist: look it up by name, then create.
    sub_account.faults.inject("retcode", "CreateUFileToken", retcode=110)
    recorder = RecordingTransport()
    provider = client(sub_account, recorder)
    try:
        issued = await provider.issue(SPEC)
    finally:
        await provider.aclose()
    assert len(sub_account.store.tokens) == 1 and issued.key_id in sub_account.store.tokens
    assert recorder.actions()[-3:] == ["CreateUFileToken", "DescribeUFileToken", "CreateUFileToken"]


@pytest.mark.parametrize("endpoint", ["http://api.ucloud.cn", "http://api.service.ucloud.cn"])
def test_plain_http_is_refused_unless_allowed(endpoint: str) -> None:
    with pytest.raises(BadRequestError, match="plain http"):
        US3Provider(endpoint, PUBLIC_KEY, PRIVATE_KEY)
    US3Provider(endpoint, PUBLIC_KEY, PRIVATE_KEY, allow_insecure=True)
