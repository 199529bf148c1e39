"""A StorageToken's cached size is bounded by its CRD (#14): computed here from the schema itself, so a
CRD change that drops or loosens a bound fails this test rather than the operator's memory."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from storage_token.api.token import MAX_PENDING_REVOCATIONS, PENDING_REVOCATIONS_MAX_ITEMS
from storage_token.controllers.gather import MAX_CACHED_ANNOTATION, TOKEN_ANNOTATIONS, cached_token
from storage_token.controllers.steps.base import ABANDON_ANNOTATION, FINALIZER

CRDS = Path(__file__).resolve().parents[2] / "crds"
SCALAR = 24  # characters of the longest integer, boolean or enum-free fixed scalar in JSON
# Worst-case spec size, in characters of its JSON (every field at its maximum, ignoring the CEL totals that
# cut annotations and templates to 64 KiB each). Measured: see test output; raise only on purpose.
SPEC_BUDGET = 1024 * 1024
# Map keys are bounded by CEL rules, not by the structural schema: the bound each rule must state.
MAP_KEYS = {"labels": 317, "annotations": 317, "data": 253}
# Strings bounded only by an anchored, fixed-length pattern (checked below against the pattern itself).
FIXED_PATTERNS = {"^([01][0-9]|2[0-3]):[0-5][0-9]$": 5}


def schema(name: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / name).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def worst_case(node: dict[str, Any], path: str, field: str = "") -> int:
    """Most JSON characters a value admitted by `node` can take; fails on anything unbounded."""
    assert not node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: unknown fields are unbounded"
    kind = node.get("type")
    if "enum" in node:
        return max(len(json.dumps(value)) for value in node["enum"])
    if kind == "string":
        if "maxLength" in node:
            return 2 + int(node["maxLength"])  # characters (a cached str holds each in at most 4 bytes)
        if node.get("format") == "date-time":
            return 2 + 35
        pattern = node.get("pattern", "")
        assert pattern in FIXED_PATTERNS, f"{path}: a string with no maxLength"
        return 2 + FIXED_PATTERNS[pattern]
    if kind in ("integer", "boolean", "number"):
        return SCALAR
    if kind == "array":
        assert "maxItems" in node, f"{path}: an array with no maxItems"
        return 2 + int(node["maxItems"]) * (worst_case(node["items"], path + "[]") + 1)
    assert kind == "object", f"{path}: type {kind!r}"
    total = 2
    for key, child in (node.get("properties") or {}).items():
        total += len(json.dumps(key)) + 1 + worst_case(child, f"{path}.{key}", key) + 1
    values = node.get("additionalProperties")
    if isinstance(values, dict):
        assert "maxProperties" in node, f"{path}: a map with no maxProperties"
        rules = " ".join(r["rule"] for r in node.get("x-kubernetes-validations") or ())
        key_bound = MAP_KEYS[field]
        assert f"k.size() <= {key_bound}" in rules, f"{path}: map keys not bounded to {key_bound} by CEL"
        per_entry = 2 + key_bound + 1 + worst_case(values, path + "{}") + 1
        total += int(node["maxProperties"]) * per_entry
    return total


def test_fixed_patterns_really_are_that_long() -> None:
    for pattern, length in FIXED_PATTERNS.items():
        assert re.fullmatch(pattern.strip("^$"), "23:59") and length == 5


def test_every_field_a_tenant_sets_is_bounded_and_the_spec_fits_the_budget() -> None:
    spec = schema("storagetoken.dev_storagetokens.yaml")["properties"]["spec"]
    bound = worst_case(spec, "spec")
    print(f"worst-case StorageToken spec: {bound} JSON characters")
    assert bound <= SPEC_BUDGET


def test_loosening_a_bound_fails_this_test() -> None:
    spec = schema("storagetoken.dev_storagetokens.yaml")["properties"]["spec"]
    labels = spec["properties"]["secret"]["properties"]["labels"]
    del labels["maxProperties"]
    with pytest.raises(AssertionError, match="maxProperties"):
        worst_case(spec, "spec")


def huge_token() -> dict[str, Any]:
    return {
        "apiVersion": "storagetoken.dev/v1alpha1",
        "kind": "StorageToken",
        "metadata": {
            "name": "app",
            "namespace": "team-a",
            "uid": "0" * 36,
            "resourceVersion": "7",
            "generation": 3,
            "finalizers": [FINALIZER],
            "labels": {f"l{i}": "x" * 63 for i in range(60_000)},
            "annotations": {
                **{f"example.com/a{i}": "y" * 200 for i in range(1000)},
                "storagetoken.dev/renew": "z" * 250_000,
                ABANDON_ANNOTATION: "true",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {f"f:{i}": {} for i in range(10_000)}}],
        },
        "spec": {"providerRef": {"name": "p"}},
        "status": {"revision": 1},
    }


def test_the_cache_keeps_only_the_metadata_the_operator_reads() -> None:
    body = huge_token()
    cached = cached_token(body)
    meta = cached["metadata"]
    assert "labels" not in meta and "managedFields" not in meta
    assert set(meta["annotations"]) == {"storagetoken.dev/renew", ABANDON_ANNOTATION}
    assert len(meta["annotations"]["storagetoken.dev/renew"]) <= MAX_CACHED_ANNOTATION
    assert meta["annotations"][ABANDON_ANNOTATION] == "true"
    assert cached["spec"] == body["spec"] and cached["status"] == body["status"]
    assert (meta["uid"], meta["resourceVersion"], meta["finalizers"]) == ("0" * 36, "7", [FINALIZER])
    assert len(json.dumps(meta)) < 2048
    assert ABANDON_ANNOTATION in TOKEN_ANNOTATIONS
    # A long value still tells one renew request from another.
    other = huge_token()
    other["metadata"]["annotations"]["storagetoken.dev/renew"] = "z" * 250_001
    assert cached_token(other)["metadata"]["annotations"] != meta["annotations"]


def test_pending_revocations_are_bounded_in_the_crd_above_what_the_operator_ever_writes() -> None:
    status = schema("storagetoken.dev_storagetokens.yaml")["properties"]["status"]
    assert status["properties"]["pendingRevocations"]["maxItems"] == PENDING_REVOCATIONS_MAX_ITEMS
    policy = schema("storagetoken.dev_storageproviders.yaml")["properties"]["spec"]["properties"]["policy"]
    max_live_keys = policy["properties"]["maxLiveKeys"]["maximum"]
    # Issuing stops at MAX_PENDING_REVOCATIONS; a blocked token adds its current key and an intent's at most.
    assert max_live_keys < MAX_PENDING_REVOCATIONS and MAX_PENDING_REVOCATIONS + 2 <= PENDING_REVOCATIONS_MAX_ITEMS
