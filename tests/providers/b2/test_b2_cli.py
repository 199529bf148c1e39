"""`storage-token provider ... --kind b2` in-process against the emulator: JSON out, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage_token.dev.emulators.b2 import B2Emulator
from storage_token.process.cli import main

MASTER_ID, MASTER_KEY = "000c11000000000000000001", "K000masterSecretForCliTests"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[B2Emulator]:
    monkeypatch.setenv("B2_APPLICATION_KEY_ID", MASTER_ID)
    monkeypatch.setenv("B2_APPLICATION_KEY", MASTER_KEY)
    with B2Emulator({MASTER_ID: MASTER_KEY}, ["photos", "logs"]) as running:
        assert isinstance(running, B2Emulator)
        yield running


def run(capsys: pytest.CaptureFixture[str], emulator: B2Emulator, *args: str) -> tuple[int, Any, str]:
    code = main(["provider", args[0], "--kind", "b2", "--endpoint", emulator.url, "--allow-insecure", *args[1:]])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else out, err


def test_b2_cli_check(emulator: B2Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, emulator, "check")
    assert code == 0
    assert out == {"ok": True, "provider": "b2", "accountId": emulator.account_id, "endpoint": emulator.url + "/s3"}


def test_b2_cli_issue_list_revoke(emulator: B2Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, issued, _ = run(
        capsys,
        emulator,
        "issue",
        "--name",
        "cli-key-1",
        "--permission",
        "read",
        "--permission",
        "list",
        "--bucket",
        "photos",
        "--prefix",
        "2024/",
        "--duration",
        "2h",
    )
    assert code == 0
    assert issued["keyId"] == issued["accessKeyId"] and issued["secretAccessKey"]
    assert issued["keyName"] == "cli-key-1" and issued["endpoint"] == emulator.url + "/s3"
    assert issued["buckets"] == ["photos"] and issued["prefixes"] == ["2024/"]
    expires = issued["expiresAt"]
    assert expires.endswith("Z")
    remaining = datetime.fromisoformat(expires.replace("Z", "+00:00")) - datetime.now(UTC)
    assert timedelta(minutes=119) < remaining <= timedelta(hours=2)

    code, listed, _ = run(capsys, emulator, "list", "--name-prefix", "cli-")
    assert code == 0
    assert [k["keyId"] for k in listed] == [issued["keyId"]]
    assert listed[0]["buckets"] == ["photos"] and "readFiles" in listed[0]["permissions"]
    assert issued["secretAccessKey"] not in json.dumps(listed)

    code, revoked, _ = run(capsys, emulator, "revoke", "--key-id", issued["keyId"])
    assert code == 0 and revoked == {"revoked": issued["keyId"]}
    assert emulator.keys_named("cli-key-1") == []
    assert run(capsys, emulator, "list")[1] == []

    # A second revoke finds nothing to revoke, and says so.
    code, out, err = run(capsys, emulator, "revoke", "--key-id", issued["keyId"])
    assert (code, out) == (1, "")
    assert err == f"error: not-found: b2/revoke: key {issued['keyId']!r} not found in this account; nothing revoked\n"


def test_b2_cli_revoke_of_an_unknown_key_fails_and_deletes_nothing(
    emulator: B2Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, issued, _ = run(capsys, emulator, "issue", "--name", "cli-keep")
    assert code == 0
    code, out, err = run(capsys, emulator, "revoke", "--key-id", "000c11000000000000000099")
    assert (code, out) == (1, "")
    assert err.startswith("error: not-found: b2/revoke: ") and err.count("\n") == 1
    assert emulator.count("b2_delete_key") == 0
    assert [k["keyId"] for k in run(capsys, emulator, "list")[1]] == [issued["keyId"]]


def test_b2_cli_issue_several_buckets_goes_through_v4(emulator: B2Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, issued, _ = run(capsys, emulator, "issue", "--name", "multi", "--bucket", "photos", "--bucket", "logs")
    assert code == 0 and issued["buckets"] == ["photos", "logs"]
    assert emulator.version_count("b2_create_key", 4) == 1


@pytest.mark.parametrize(
    ("args", "exit_code", "reason"),
    [
        pytest.param(("issue", "--name", "bad name"), 1, "error: bad-request: ", id="a bad key name"),
        pytest.param(
            ("issue", "--name", "k", "--capability", "writeKeys"), 1, "writeKeys", id="a forbidden capability"
        ),
        pytest.param(("issue", "--name", "k", "--bucket", "nope"), 1, "'nope' does not exist", id="a missing bucket"),
        pytest.param(("issue", "--name", "k", "--prefix", "x/"), 1, "needs a bucket", id="a prefix without bucket"),
        pytest.param(("issue", "--name", "k", "--duration", "1001d"), 1, "duration", id="over 1000 days"),
        pytest.param(("issue", "--name", "k", "--duration", "soon"), 2, "bad duration", id="an unreadable duration"),
        pytest.param(("issue", "--name", "k", "--permission", "admin"), 1, "unknown permission", id="unknown perm"),
    ],
)
def test_b2_cli_errors_are_one_line(
    emulator: B2Emulator, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], exit_code: int, reason: str
) -> None:
    code, out, err = run(capsys, emulator, *args)
    assert code == exit_code and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and reason in err
    assert MASTER_KEY not in err
    assert emulator.count("b2_create_key") == 0


def test_b2_cli_wrong_credentials(
    emulator: B2Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("B2_APPLICATION_KEY", "K000wrongWrongWrong")
    code, out, err = run(capsys, emulator, "check")
    assert code == 1 and out == ""
    assert err.startswith("error: credentials: ") and err.count("\n") == 1
    assert "K000wrongWrongWrong" not in err


def test_b2_cli_missing_environment(
    emulator: B2Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("B2_APPLICATION_KEY")
    code, _, err = run(capsys, emulator, "check")
    assert code == 2 and "B2_APPLICATION_KEY" in err
