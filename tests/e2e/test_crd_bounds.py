"""Every tenant-controlled field is bounded by the CRD, and the API server says so readably.

Hostile StorageTokens (huge label maps, bad durations, long names, wildcard buckets) go through a real
API server with server-side dry run: nothing is stored, every validation runs. That the CRDs were
accepted at all (the session's `api` fixture applies them) proves their CEL cost estimates fit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from e2e_support import GROUP, VERSION, storage_token
from kubernetes import client
from kubernetes.client.rest import ApiException

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("duration_examples", REPO / "tests" / "unit" / "test_durations.py")
assert _spec is not None and _spec.loader is not None
_examples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_examples)
EXAMPLES: list[tuple[str, float | None]] = _examples.EXAMPLES

HINT = "use Go durations such as 168h"
BASE: dict[str, Any] = {"providerRef": {"name": "p"}, "permissions": ["read"], "buckets": ["team-a-data"]}


def dry_run_token(api: client.ApiClient, namespace: str, name: str = "t", **spec: Any) -> str:
    """Create with dryRun=All; "" when admitted, else the API server's message."""
    body = storage_token(name, **{**BASE, **spec})
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "storagetokens", body, dry_run="All"
        )
    except ApiException as error:
        assert error.status == 422, error.body
        return str(error.body)
    return ""


def dry_run_provider(api: client.ApiClient, namespace: str, policy: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StorageProvider",
        "metadata": {"name": "p"},
        "spec": {"type": "b2", "credentialsSecretRef": {"name": "c"}, "policy": policy},
    }
    try:
        created = client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "storageproviders", body, dry_run="All"
        )
    except ApiException as error:
        assert error.status == 422, error.body
        return str(error.body), {}
    return "", created


@pytest.mark.parametrize(("text", "seconds"), EXAMPLES, ids=[repr(t) for t, _ in EXAMPLES])
def test_durations_admitted_are_exactly_those_the_operator_parses(
    api: client.ApiClient, namespace: str, text: str, seconds: float | None
) -> None:
    message = dry_run_token(api, namespace, duration=text, revokeGracePeriod="0s")
    if seconds is None:
        assert HINT in message
    elif 60 <= seconds <= 24000 * 3600:
        assert message == ""
    else:
        assert "duration must be between 1m and 24000h" in message and HINT not in message
    # The policy's durations have no range beyond the grammar: the grammar alone decides.
    refused, _ = dry_run_provider(api, namespace, {"allowedBuckets": ["*"], "minDuration": text})
    assert (HINT in refused) is (seconds is None), refused


def test_a_bad_renew_before_says_so_and_not_something_about_cel(api: client.ApiClient, namespace: str) -> None:
    message = dry_run_token(api, namespace, renewBefore="7d", revokeGracePeriod="1w")
    assert f"renewBefore: {HINT}" in message and f"revokeGracePeriod: {HINT}" in message
    assert "evaluation error" not in message and "no such overload" not in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"secret": {"labels": {f"l{i}": "v" for i in range(65)}}}, "must have at most 64 items", id="65 labels"
        ),
        pytest.param({"secret": {"labels": {"app": "v" * 64}}}, "Too long", id="label value of 64"),
        pytest.param({"secret": {"labels": {"app": "-bad"}}}, "label values are at most 63", id="label value syntax"),
        pytest.param(
            {"secret": {"labels": {"bad key!": "v"}}}, "labels keys must be Kubernetes label keys", id="label key"
        ),
        pytest.param({"secret": {"labels": {"a" * 64: "v"}}}, "labels keys must be", id="label name of 64"),
        pytest.param({"secret": {"labels": {"x" * 254 + "/a": "v"}}}, "labels keys must be", id="label prefix of 254"),
        pytest.param(
            {"secret": {"annotations": {f"a{i}": "v" for i in range(65)}}},
            "must have at most 64 items",
            id="65 annotations",
        ),
        pytest.param({"secret": {"annotations": {"a": "v" * 4097}}}, "Too long", id="annotation of 4097"),
        pytest.param(
            {"secret": {"annotations": {f"a{i}": "v" * 4000 for i in range(17)}}},
            "annotations may hold at most 64 KiB in all",
            id="annotations over 64 KiB",
        ),
        pytest.param(
            {"secret": {"template": {"data": {f"k{i}": "x" * 16000 for i in range(5)}}}},
            "the templates may hold at most 64 KiB in all",
            id="templates over 64 KiB",
        ),
        pytest.param(
            {"secret": {"template": {"data": {f"k{i}": "x" for i in range(33)}}}},
            "must have at most 32 items",
            id="33 templates",
        ),
        pytest.param({"secret": {"template": {"data": {"a/b": "x"}}}}, "template keys are Secret data keys", id="key"),
        pytest.param({"buckets": ["*"]}, "bucket names are literal", id="bucket *"),
        pytest.param({"buckets": ["team-[ab]"]}, "bucket names are literal", id="bucket class"),
        pytest.param({"buckets": ["b" * 64]}, "Too long", id="bucket of 64"),
        pytest.param({"buckets": [f"b-{i}" for i in range(65)]}, "must have at most 64 items", id="65 buckets"),
        pytest.param({"prefixes": ["logs/*"]}, "prefixes are literal", id="prefix glob"),
        pytest.param({"prefixes": ["p" * 1025]}, "Too long", id="prefix of 1025"),
        pytest.param({"allowIPs": ["1" * 44]}, "Too long", id="allowIP of 44"),
        pytest.param({"denyIPs": [f"10.0.0.{i}" for i in range(65)]}, "must have at most 64 items", id="65 denyIPs"),
        pytest.param(
            {"rawCapabilities": [f"cap{chr(97 + i % 26) * (i + 1)}" for i in range(33)]},
            "must have at most 32",
            id="caps",
        ),
        pytest.param(
            {"restartTargets": [{"kind": "Deployment", "name": f"d{i}"} for i in range(33)]},
            "must have at most 32 items",
            id="33 restart targets",
        ),
        pytest.param({"restartTargets": [{"kind": "Deployment", "name": "Bad_Name"}]}, "should match", id="target"),
        pytest.param({"providerRef": {"name": "Bad_Name"}}, "should match", id="provider name"),
    ],
)
def test_hostile_fields_are_refused_readably(
    api: client.ApiClient, namespace: str, spec: dict[str, Any], expected: str
) -> None:
    assert expected in dry_run_token(api, namespace, **spec)


def test_a_name_too_long_for_the_secret_label_is_refused(api: client.ApiClient, namespace: str) -> None:
    assert dry_run_token(api, namespace, name="n" * 63) == ""
    assert "metadata.name must be at most 63 characters" in dry_run_token(api, namespace, name="n" * 64)


def test_a_token_at_every_bound_is_admitted(api: client.ApiClient, namespace: str) -> None:
    """The bounds are ceilings, not traps: the largest legal token fits, and its CEL runs within budget."""
    prefix = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61
    assert len(prefix) == 253
    labels = {f"{prefix}/{str(i).rjust(63, 'n')}": "v" * 63 for i in range(64)}
    annotations = {f"a{i}": "v" * 1000 for i in range(64)}
    data = {f"k{i}": "x" * 2048 for i in range(32)}
    message = dry_run_token(
        api,
        namespace,
        name="n" * 63,
        buckets=[f"bucket-{i}" for i in range(64)],
        prefixes=[f"p{i}/" + "x" * 1000 for i in range(64)],
        denyIPs=[f"10.0.{i}.0/24" for i in range(64)],
        duration="1h30m",
        renewBefore="20m",
        revokeGracePeriod="10m",
        secret={"labels": labels, "annotations": annotations, "template": {"data": data}},
    )
    assert message == ""


def test_provider_policy_defaults_fail_closed_and_show(api: client.ApiClient, namespace: str) -> None:
    refused, created = dry_run_provider(api, namespace, {})
    assert refused == ""
    policy = created["spec"]["policy"]
    assert "allowedBuckets" not in policy
    assert policy["maxDuration"] == "720h"
    assert policy["minDuration"] == "15m"
    assert policy["minRenewalInterval"] == "5m"
    assert policy["maxRevokeGracePeriod"] == "24h"
    assert policy["maxLiveKeys"] == 5
    assert policy["minManualRenewInterval"] == "1m"
    too_few, _ = dry_run_provider(api, namespace, {"maxLiveKeys": 1})
    assert "should be greater than or equal to 2" in too_few
