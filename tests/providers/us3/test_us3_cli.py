"""`storage-token provider ... --kind us3` and `storage-token emulator us3` from the command line."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from storage_token.dev.emulators.us3 import US3Emulator
from storage_token.process.cli import main

PUBLIC_KEY = "cli@example.com"
PRIVATE_KEY = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1"


@pytest.fixture(scope="module")
def server() -> Iterator[US3Emulator]:
    emulator = US3Emulator({PUBLIC_KEY: PRIVATE_KEY}, {"photos": "cn-bj2"}, token_limit=3)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(server: US3Emulator, monkeypatch: pytest.MonkeyPatch) -> US3Emulator:
    server.reset()
    monkeypatch.setenv("UCLOUD_PUBLIC_KEY", PUBLIC_KEY)
    monkeypatch.setenv("UCLOUD_PRIVATE_KEY", PRIVATE_KEY)
    return server


def run(capsys: pytest.CaptureFixture[str], emulator: US3Emulator, action: str, *args: str) -> tuple[int, Any, str]:
    code = main(
        [
            "provider",
            action,
            "--kind",
            "us3",
            "--endpoint",
            emulator.url,
            "--allow-insecure",
            "--region",
            "cn-bj2",
            *args,
        ]
    )
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else out, err


def test_check_prints_the_account(emulator: US3Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, result, _ = run(capsys, emulator, "check")
    assert code == 0
    assert result == {
        "ok": True,
        "provider": "us3",
        "accountId": "pk-" + hashlib.sha256(PUBLIC_KEY.encode()).hexdigest()[:12],
        "endpoint": "https://s3-cn-bj.ufileos.com",
        "projectId": "org-default",  # resolved through GetProjectList
    }
    assert PUBLIC_KEY not in json.dumps(result)


def test_issue_list_revoke(emulator: US3Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, issued, _ = run(
        capsys,
        emulator,
        "issue",
        "--name",
        "st-cli-1",
        "--permission",
        "read",
        "--permission",
        "deny-overwrite",
        "--bucket",
        "photos",
        "--prefix",
        "in/",
        "--allow-ip",
        "10.0.0.0/8",
        "--duration",
        "2h",
    )
    assert code == 0
    stored = emulator.store.tokens[issued["keyId"]]
    assert issued["keyName"] == "st-cli-1"
    assert issued["accessKeyId"] == stored.public_key
    assert issued["secretAccessKey"] == stored.private_key
    assert issued["expiresAt"].endswith("Z")
    assert issued["region"] == "cn-bj2" and issued["buckets"] == ["photos"] and issued["prefixes"] == ["in/"]
    assert stored.ops == ["TOKEN_ALLOW_READ", "TOKEN_DENY_UPDATE"] and stored.white_ips == ["10.0.0.0/8"]

    code, listed, _ = run(capsys, emulator, "list", "--name-prefix", "st-cli-")
    assert code == 0
    assert [k["keyId"] for k in listed] == [issued["keyId"]]
    assert "secretAccessKey" not in listed[0] and stored.private_key not in json.dumps(listed)

    code, revoked, _ = run(capsys, emulator, "revoke", "--key-id", issued["keyId"])
    assert (code, revoked) == (0, {"revoked": issued["keyId"]})
    assert emulator.store.tokens == {}
    # Revoking it again is not a second success: the key is no longer there.
    code, out, err = run(capsys, emulator, "revoke", "--key-id", issued["keyId"])
    assert (code, out) == (1, "")
    assert err == f"error: not-found: us3/revoke: key {issued['keyId']!r} not found in this account; nothing revoked\n"


def test_revoking_an_unknown_key_says_so_and_leaves_the_others(
    emulator: US3Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, issued, _ = run(capsys, emulator, "issue", "--name", "st-cli-keep")
    assert code == 0
    code, out, err = run(capsys, emulator, "revoke", "--key-id", "ufiletoken-doesnotexist")
    assert (code, out) == (1, "")
    assert err.startswith("error: not-found: ") and "'ufiletoken-doesnotexist' not found" in err
    assert err.count("\n") == 1
    assert list(emulator.store.tokens) == [issued["keyId"]]


def test_the_endpoint_defaults_as_for_a_storage_provider(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --endpoint the CLI uses the endpoint a StorageProvider without spec.endpoint gets."""
    from storage_token.api.provider import ProviderSpec
    from storage_token.process import provider_cli

    monkeypatch.setenv("UCLOUD_PUBLIC_KEY", PUBLIC_KEY)
    monkeypatch.setenv("UCLOUD_PRIVATE_KEY", PRIVATE_KEY)
    endpoints: list[object] = []

    def build_provider(kind: str, **settings: object) -> object:
        endpoints.append(settings["endpoint"])
        raise ValueError("stop before any request")

    monkeypatch.setattr(provider_cli, "build_provider", build_provider)
    assert main(["provider", "check", "--kind", "us3"]) == 2
    assert "needs an endpoint" not in capsys.readouterr().err
    crd_default = ProviderSpec.parse({"spec": {"type": "us3", "credentialsSecretRef": {"name": "c"}}}).endpoint
    assert endpoints == [crd_default] == ["https://api.ucloud.cn"]


@pytest.mark.parametrize(
    ("args", "kind", "words"),
    [
        (["issue", "--name", "x", "--bucket", "missing"], "bad-request", "missing"),
        (["issue", "--name", "x", "--permission", "share"], "bad-request", "share"),
        (["issue", "--name", "x", "--duration", "-5"], None, "duration"),
    ],
    ids=["a missing bucket", "an unknown permission", "a bad duration"],
)
def test_errors_exit_non_zero_with_one_line(
    emulator: US3Emulator, capsys: pytest.CaptureFixture[str], args: list[str], kind: str | None, words: str
) -> None:
    code, out, err = run(capsys, emulator, *args)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert words in err
    if kind:
        assert err.startswith(f"error: {kind}: ")


def test_wrong_credentials_exit_non_zero(
    emulator: US3Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCLOUD_PRIVATE_KEY", "wrong")
    code, out, err = run(capsys, emulator, "check")
    assert code == 1 and out == ""
    assert err.startswith("error: credentials: ") and err.count("\n") == 1
    assert "wrong" not in err  # the private key is never echoed


def test_token_limit_exits_with_a_quota_error(emulator: US3Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        assert run(capsys, emulator, "issue", "--name", f"t{i}")[0] == 0
    code, _, err = run(capsys, emulator, "issue", "--name", "t3")
    assert code == 1 and err.startswith("error: quota: ")


def test_missing_credentials_exit_2(
    emulator: US3Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UCLOUD_PRIVATE_KEY")
    code, _, err = run(capsys, emulator, "check")
    assert code == 2 and "UCLOUD_PRIVATE_KEY" in err


def test_emulator_and_provider_as_processes() -> None:
    """`storage-token emulator us3` prints its URL, serves, and stops cleanly on SIGTERM."""
    cli = [sys.executable, "-m", "storage_token.process.cli"]
    emulator = subprocess.Popen(
        [
            *cli,
            "emulator",
            "us3",
            "--port",
            "0",
            "--account",
            f"{PUBLIC_KEY}:{PRIVATE_KEY}",
            "--bucket",
            "photos:cn-bj2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        started = json.loads(emulator.stdout.readline())
        url = started["url"]
        assert url.startswith("http://127.0.0.1:")
        env = {**os.environ, "UCLOUD_PUBLIC_KEY": PUBLIC_KEY, "UCLOUD_PRIVATE_KEY": PRIVATE_KEY}
        base = ["provider", "--kind", "us3", "--endpoint", url, "--allow-insecure", "--region", "cn-bj2"]

        def provider(action: str, *args: str) -> subprocess.CompletedProcess[str]:
            argv = [*cli, "provider", action, *base[1:], *args]
            return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)

        issued = provider("issue", "--name", "st-proc-1", "--bucket", "photos")
        assert issued.returncode == 0, issued.stderr
        key = json.loads(issued.stdout)
        listed = json.loads(provider("list").stdout)
        assert [k["keyId"] for k in listed] == [key["keyId"]]
        failed = provider("issue", "--name", "x", "--bucket", "nope")
        assert failed.returncode == 1 and failed.stdout == ""
        assert failed.stderr.startswith("error: bad-request: ") and failed.stderr.count("\n") == 1
    finally:
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(timeout=10) == 0
