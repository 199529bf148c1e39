"""`kubectl storage-token` / `storage-token plan|status|renew|inspect` against a fake cluster (no API server)."""

from __future__ import annotations

import base64
import copy
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from storage_token.api.naming import install_digest, key_name
from storage_token.api.times import format_time
from storage_token.api.token import SecretSpec, SecretTemplate
from storage_token.controllers.gather import RENEW_ANNOTATION, spec_hash
from storage_token.controllers.secret_writer import build_secret
from storage_token.kube.api import ApiError
from storage_token.process import cli, plugin_cli

Body = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DIGEST = install_digest("prod", "storage-token-system")
SECRET_VALUE = "Zk9vQmFyU2VjcmV0S2V5VGhhdE11c3ROZXZlckxlYWs"  # what inspect must never print, not even in part
TOKEN_SCHEMA = yaml.safe_load((REPO / "crds" / "storagetoken.dev_storagetokens.yaml").read_text())["spec"]["versions"][
    0
]["schema"]["openAPIV3Schema"]


class FakeCluster:
    """The ClusterApi the CLI talks to; records every call, and refuses what `forbidden` names."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Body] = {}
        self.secrets: dict[tuple[str, str], Body] = {}
        self.namespaces: dict[str, Body] = {"team-a": {"metadata": {"name": "team-a", "labels": {}}}}
        self.calls: list[str] = []
        self.forbidden: set[str] = set()

    def _call(self, method: str) -> None:
        self.calls.append(method)
        if method in self.forbidden:
            raise ApiError(403, "Forbidden")

    @property
    def writes(self) -> list[str]:
        return [c for c in self.calls if not c.startswith(("get", "list", "token_schema"))]

    async def get_object(self, kind: str, namespace: str | None, name: str) -> Body | None:
        self._call("get_object")
        found = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(found) if found else None

    async def list_objects(self, kind: str, namespace: str | None = None) -> list[Body]:
        self._call("list_objects")
        return [
            copy.deepcopy(b) for (k, ns, _), b in sorted(self.objects.items()) if k == kind and namespace in (None, ns)
        ]

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        self._call("get_secret")
        found = self.secrets.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def get_namespace(self, name: str) -> Body | None:
        self._call("get_namespace")
        return copy.deepcopy(self.namespaces.get(name))

    async def patch_object(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None:
        self._call("patch_object")
        body = self.objects.get((kind, namespace or "", name))
        if body is None:
            return None
        annotations = body["metadata"].setdefault("annotations", {})
        annotations.update(patch["metadata"]["annotations"])
        return copy.deepcopy(body)

    async def list_secrets(self, namespace: str) -> list[Body]:
        self._call("list_secrets")
        return [copy.deepcopy(s) for (ns, _), s in sorted(self.secrets.items()) if ns == namespace]

    async def token_schema(self) -> Body | None:
        self._call("token_schema")
        return copy.deepcopy(TOKEN_SCHEMA)


def provider_body(name: str = "b2", buckets: list[str] | None = None, ready: bool = True) -> Body:
    return {
        "apiVersion": "storagetoken.dev/v1alpha1",
        "kind": "StorageProvider",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "type": "b2",
            "endpoint": "https://b2.example.invalid",
            "credentialsSecretRef": {"name": f"{name}-credentials"},
            "policy": {"allowedBuckets": buckets or ["*"], "maxDuration": "720h", "minRenewalInterval": "1m"},
        },
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "X"}]},
    }


def token_doc(name: str, bucket: str = "data", **spec: Any) -> Body:
    return {
        "apiVersion": "storagetoken.dev/v1alpha1",
        "kind": "StorageToken",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"providerRef": {"name": "b2"}, "permissions": ["read"], "buckets": [bucket], **spec},
    }


def add_issued_token(
    cluster: FakeCluster,
    name: str,
    bucket: str = "data",
    expires_in: timedelta = timedelta(hours=10),
    template: dict[str, str] | None = None,
    **status: Any,
) -> Body:
    """A token as the API server stores it (defaults applied) and the operator left it: key, status, Secret."""
    body = token_doc(name, bucket)
    if template:
        body["spec"]["secret"] = {"template": {"data": template}}
    body["spec"] = plugin_cli.apply_schema_defaults(body["spec"], TOKEN_SCHEMA["properties"]["spec"])
    uid = f"{abs(hash(name)) % 16**8:08x}-0000-0000-0000-000000000000"
    body["metadata"].update(uid=uid, generation=1, resourceVersion="1")
    key = key_name(DIGEST, "team-a", name, uid, 1)
    body["status"] = {
        "keyId": f"id-{name}",
        "keyName": key,
        "provider": "StorageProvider/b2",
        "providerType": "b2",
        "secretName": name,
        "issuedAt": format_time(NOW - timedelta(hours=1)),
        "notAfter": format_time(NOW + expires_in),
        "renewalTime": format_time(NOW + expires_in / 2),
        "revision": 1,
        "specHash": spec_hash(body["spec"]),
        "conditions": [{"type": "Ready", "status": "True", "reason": "Issued", "message": "ok"}],
        **status,
    }
    data = {
        "accessKeyId": f"id-{name}",
        "secretAccessKey": SECRET_VALUE,
        "endpoint": "https://s3.example.invalid",
        "region": "",
        "bucket": bucket,
        "prefix": "",
        "expiresAt": format_time(NOW + expires_in) or "",
        "rclone.conf": f"[storage]\ntype = s3\naccess_key_id = id-{name}\nsecret_access_key = {SECRET_VALUE}\n",
        **({k: SECRET_VALUE for k in template} if template else {}),
    }
    secret_spec = SecretSpec(name=name, template=SecretTemplate(data=template or {}))
    cluster.secrets[("team-a", name)] = build_secret(
        body, secret_spec, data, f"id-{name}", 1, format_time(NOW + expires_in)
    )
    cluster.objects[("StorageToken", "team-a", name)] = body
    return body


@pytest.fixture
def cluster() -> FakeCluster:
    fake = FakeCluster()
    fake.objects[("StorageProvider", "team-a", "b2")] = provider_body()
    add_issued_token(fake, "logs", bucket="logs", expires_in=timedelta(hours=20))
    add_issued_token(fake, "data", bucket="data", expires_in=timedelta(hours=3))
    return fake


def run(cluster: FakeCluster, *argv: str, stdin: str = "") -> tuple[int, str]:
    args = plugin_cli.build_parser().parse_args(list(argv))
    out = io.StringIO()
    code = plugin_cli.run(args, cluster=cluster, out=out, stdin=io.StringIO(stdin), now=NOW)  # type: ignore[arg-type]
    return code, out.getvalue()


def write(tmp_path: Path, *docs: Body) -> str:
    path = tmp_path / "change.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


# -- plan ------------------------------------------------------------------------------------------
def test_plan_of_a_narrowed_provider_revokes_only_the_tokens_outside_it(cluster: FakeCluster, tmp_path: Path) -> None:
    narrowed = provider_body(buckets=["logs"])
    del narrowed["status"]
    code, out = run(cluster, "plan", "-f", write(tmp_path, narrowed), "-n", "team-a")
    assert code == 0, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("team-a/")}
    assert "REVOKE (PolicyViolation)" in lines["team-a/data"] and "'data' not allowed" in lines["team-a/data"]
    assert "no change" in lines["team-a/logs"]
    assert "1 revoke, 1 none" in out and "0 issue, 1 revoke" in out
    assert cluster.writes == []


def test_plan_of_a_new_token_issues_and_of_an_unchanged_stored_one_does_nothing(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    """The file's spec is compared after the CRD's defaults (duration, grace, secret...), as the API server
    would store it: without them every re-applied token would look changed."""
    code, out = run(cluster, "plan", "-f", write(tmp_path, token_doc("new"), token_doc("data")), "--skip-templates")
    assert code == 0, out
    assert "team-a/new  ISSUE (FirstIssue)" in out
    assert "team-a/data  no change" in out
    assert "team-a/logs" not in out  # not in the file, and its provider is unchanged
    assert cluster.writes == []


def test_plan_of_a_changed_scope_renews_and_names_both_keys(cluster: FakeCluster, tmp_path: Path) -> None:
    changed = token_doc("data", permissions=["read", "write"])
    code, out = run(cluster, "plan", "-f", write(tmp_path, changed), "-o", "json", "--skip-templates")
    assert code == 0
    (plan,) = json.loads(out)["plans"]
    assert (plan["action"], plan["reason"]) == ("renew", "SpecChanged")
    stored = cluster.objects[("StorageToken", "team-a", "data")]
    uid = stored["metadata"]["uid"]
    assert [c["call"] for c in plan["calls"]] == ["issue", "revoke"]
    assert plan["calls"][0]["key_name"] == key_name(DIGEST, "team-a", "data", uid, 2)
    assert plan["calls"][1]["key_name"] == stored["status"]["keyName"]
    assert plan["calls"][1]["at"] == format_time(NOW + timedelta(minutes=5))


def test_plan_rehearses_the_files_templates_like_the_controller(cluster: FakeCluster, tmp_path: Path) -> None:
    broken = token_doc("new", secret={"template": {"data": {"x": "{{ nosuchvariable }}"}}})
    code, out = run(cluster, "plan", "-f", write(tmp_path, broken))
    assert code == 0, out
    assert "team-a/new  BLOCK (TemplateError)" in out


def test_plan_reads_stdin_and_skips_other_kinds(cluster: FakeCluster) -> None:
    text = yaml.safe_dump_all([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, token_doc("n")])
    code, out = run(cluster, "plan", "-f", "-", "--skip-templates", stdin=text)
    assert code == 0 and "not planned (other kinds): ConfigMap x" in out and "team-a/n  ISSUE" in out


def test_plan_without_secret_access_assumes_the_recorded_state(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.forbidden.add("list_secrets")
    code, out = run(cluster, "plan", "-f", write(tmp_path, provider_body()))
    assert code == 0
    assert "not allowed to list Secrets in team-a" in out
    assert out.count("no change") == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("kind: [unclosed", "is not valid YAML at line 1"),
        ("- just\n- a list\n", "expected a Kubernetes object"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "holds no StorageToken"),
        ("apiVersion: v1\nkind: StorageToken\nmetadata: {name: x}\n", "needs apiVersion storagetoken.dev/v1alpha1"),
    ],
)
def test_plan_of_a_bad_file_says_what_is_wrong_without_a_traceback(
    cluster: FakeCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, _ = run(cluster, "plan", "-f", str(path))
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_plan_of_a_missing_file(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(cluster, "plan", "-f", "/nonexistent/x.yaml")
    assert code == 2 and "cannot read /nonexistent/x.yaml" in capsys.readouterr().err


def test_plan_of_a_cluster_provider_follows_its_namespace_selector(cluster: FakeCluster, tmp_path: Path) -> None:
    provider = {
        "apiVersion": "storagetoken.dev/v1alpha1",
        "kind": "ClusterStorageProvider",
        "metadata": {"name": "shared"},
        "spec": {
            "type": "b2",
            "credentialsSecretRef": {"name": "shared-credentials"},
            "namespaceSelector": {"matchLabels": {"storage": "yes"}},
            "policy": {"allowedBuckets": ["*"], "minRenewalInterval": "1m"},
        },
    }
    token = cluster.objects[("StorageToken", "team-a", "data")]
    token["spec"]["providerRef"] = {"kind": "ClusterStorageProvider", "name": "shared"}
    token["status"]["specHash"] = spec_hash(token["spec"])
    path = write(tmp_path, provider)
    code, out = run(cluster, "plan", "-f", path)
    assert code == 0 and "team-a/data  REVOKE (NamespaceNotAllowed)" in out
    assert "planned as if its credentials verify" in out  # a new provider: not verified yet
    cluster.namespaces["team-a"]["metadata"]["labels"] = {"storage": "yes"}
    code, out = run(cluster, "plan", "-f", path)
    assert code == 0 and "team-a/data  no change" in out
    assert "team-a/logs" not in out  # uses the namespaced provider, which the file does not change
    assert cluster.writes == []


def test_plan_of_a_token_being_deleted(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.objects[("StorageToken", "team-a", "data")]["metadata"]["deletionTimestamp"] = format_time(NOW)
    code, out = run(cluster, "plan", "-f", write(tmp_path, provider_body()))
    assert code == 0 and "team-a/data  REVOKE (Deleting)" in out


# -- status ----------------------------------------------------------------------------------------
def test_status_sorts_by_expiry_and_shows_pending_and_rollout(cluster: FakeCluster) -> None:
    due = format_time(NOW + timedelta(minutes=4))
    add_issued_token(
        cluster,
        "rolling",
        expires_in=timedelta(hours=1),
        pendingRevocations=[
            {"keyId": "old", "keyName": "sto-old-key", "dueAt": due, "attempts": 1, "lastError": "503"}
        ],
        rollout={
            "revision": 2,
            "startedAt": format_time(NOW),
            "targets": [
                {"kind": "Deployment", "name": "web", "state": "Adopted"},
                {"kind": "Deployment", "name": "api", "state": "Rolling"},
            ],
        },
    )
    code, out = run(cluster, "status", "-n", "team-a")
    assert code == 0
    rows = [line.split()[0] for line in out.splitlines()[1:4]]
    assert rows == ["rolling", "data", "logs"]
    assert "1 (next in 4m)" in out and "1/2 rolling (r2)" in out
    assert "Pending revocations:" in out and "sto-old-key" in out and "1 failed attempt(s): 503" in out
    logs = next(line for line in out.splitlines() if line.startswith("logs"))
    assert logs.split()[-1] == "-"  # no rollout in status: shown as absent


def test_status_of_an_empty_namespace_says_how_to_see_others(cluster: FakeCluster) -> None:
    code, out = run(cluster, "status", "-n", "elsewhere")
    assert code == 0 and "No StorageTokens in namespace elsewhere (all namespaces: -A)" in out


def test_status_json(cluster: FakeCluster) -> None:
    code, out = run(cluster, "status", "-A", "-o", "json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["data", "logs"]


def test_status_forbidden_says_what_to_ask_for(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.forbidden.add("list_objects")
    code, _ = run(cluster, "status")
    err = capsys.readouterr().err
    assert code == 1 and "forbidden (403)" in err and "kubectl auth can-i list storagetokens" in err


# -- renew -----------------------------------------------------------------------------------------
def test_renew_sets_the_annotation_the_operator_honours(cluster: FakeCluster) -> None:
    code, out = run(cluster, "renew", "data", "-n", "team-a")
    assert code == 0
    annotations = cluster.objects[("StorageToken", "team-a", "data")]["metadata"]["annotations"]
    assert annotations[RENEW_ANNOTATION] == "2026-12-01T10:00:00.000Z"
    assert cluster.writes == ["patch_object"]
    assert "kubectl get storagetoken data -n team-a -w" in out and "grace period" in out


def test_renew_of_a_missing_token_says_how_to_list_them(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(cluster, "renew", "nope", "-n", "team-a")
    err = capsys.readouterr().err
    assert code == 1 and "StorageToken 'nope' not found in namespace team-a" in err and "status -n team-a" in err
    assert cluster.writes == []


def test_renew_within_the_manual_interval_says_when_it_is_acted_on(cluster: FakeCluster) -> None:
    token = cluster.objects[("StorageToken", "team-a", "data")]
    token["status"]["issuedAt"] = format_time(NOW - timedelta(seconds=10))
    code, out = run(cluster, "renew", "data", "-n", "team-a")
    assert code == 0 and "manual renewals are limited to one per 1m" in out


# -- inspect ---------------------------------------------------------------------------------------
def test_inspect_shows_names_and_public_values_and_never_a_secret_byte(cluster: FakeCluster) -> None:
    add_issued_token(cluster, "templated", template={"endpoint": "{{ secretAccessKey }}"})
    for name in ("data", "templated"):
        code, out = run(cluster, "inspect", name, "-n", "team-a")
        assert code == 0, out
        # Not the secret, nor any 6-character piece of it, nor its base64.
        pieces = {SECRET_VALUE[i : i + 6] for i in range(len(SECRET_VALUE) - 5)}
        assert not [p for p in pieces if p in out]
        assert base64.b64encode(SECRET_VALUE.encode()).decode()[:12] not in out
        assert "secretAccessKey" in out and f"******** ({len(SECRET_VALUE)} bytes)" in out
        assert f"id-{name}" in out  # the key id is not secret
    _, out = run(cluster, "inspect", "data", "-n", "team-a")
    assert "https://s3.example.invalid" in out and "bucket" in out
    assert "secret_access_key = ********" in out and "type = s3" in out
    _, out = run(cluster, "inspect", "templated", "-n", "team-a")
    assert "from the template" in out and "https://s3.example.invalid" not in out


def test_inspect_before_the_first_key_says_why(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    del cluster.secrets[("team-a", "data")]
    code, _ = run(cluster, "inspect", "data", "-n", "team-a")
    err = capsys.readouterr().err
    assert code == 1 and "does not exist yet" in err and "kubectl describe storagetoken data -n team-a" in err


# -- the entry points ------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["plan", "status", "renew", "inspect"])
def test_each_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        plugin_cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: kubectl storage-token {command}") and "examples:" in out and "--kubeconfig" in out


def test_the_storage_token_cli_has_the_same_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["plan", "--help"])
    assert "storage-token plan -f provider.yaml" in capsys.readouterr().out


def test_no_kubeconfig_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "missing"), "PATH": "/usr/bin:/bin"}
    script = Path(sys.executable).parent / "kubectl-storage_token"
    result = subprocess.run([str(script), "status"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "no usable Kubernetes configuration" in result.stderr and "set KUBECONFIG" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_api_server_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}}],
                "current-context": "x",
            }
        )
    )
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}
    script = Path(sys.executable).parent / "kubectl-storage_token"
    result = subprocess.run([str(script), "status"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "cannot reach the API server at https://127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr
