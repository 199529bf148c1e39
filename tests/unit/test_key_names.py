"""Key names carry an install identity no other install can share or be a prefix of (design invariant 4)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage_token.api.naming import DIGEST_LENGTH, install_digest, key_name, key_prefix, parse_key_name
from storage_token.runtime.settings import Settings

B2_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}$")
NAMESPACES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", fullmatch=True)
DIGEST = install_digest("c1", "sto-system/sto")


@given(
    cluster=st.text(min_size=1, max_size=63),
    install=st.text(max_size=80),
    namespace=NAMESPACES,
    name=NAMES,
    uid=st.uuids().map(str),
    revision=st.integers(min_value=1, max_value=10**9),
)
def test_key_names_fit_b2_and_parse_back_exactly(
    cluster: str, install: str, namespace: str, name: str, uid: str, revision: int
) -> None:
    digest = install_digest(cluster, install)
    issued = key_name(digest, namespace, name, uid, revision)
    assert B2_NAME.match(issued)
    assert issued.startswith(key_prefix(digest))
    parsed = parse_key_name(digest, issued)
    assert parsed is not None
    assert parsed.revision == revision
    assert parsed.uid8 == uid.replace("-", "")[:8]


def test_key_names_differ_per_revision_and_per_token() -> None:
    names = {key_name(DIGEST, "ns", "t", "0f3c9a1e-1", r) for r in range(1, 50)}
    assert len(names) == 49
    assert key_name(DIGEST, "ns", "t", "aaaaaaaa", 1) != key_name(DIGEST, "ns", "t", "bbbbbbbb", 1)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        pytest.param(("prod", "sto-system/sto"), ("prod-eu-1", "sto-system/sto"), id="cluster id prod vs prod-eu-1"),
        pytest.param(("default", "team-a/sto"), ("default", "team-b/sto"), id="two namespaced installs, same id"),
        pytest.param(("a", "x/b"), ("a/x", "b"), id="the separator can't be shifted between the parts"),
    ],
)
def test_no_install_selects_or_parses_another_installs_keys(ours: tuple[str, str], theirs: tuple[str, str]) -> None:
    mine, other = install_digest(*ours), install_digest(*theirs)
    assert mine != other and len(mine) == len(other) == DIGEST_LENGTH
    # Fixed length: neither prefix is a prefix of the other, so no listing by prefix can cross over.
    assert not key_prefix(other).startswith(key_prefix(mine))
    assert not key_prefix(mine).startswith(key_prefix(other))
    for namespace in ("eu-team-a", "team-a"):
        their_key = key_name(other, namespace, "app", "0123abcd-0000", 1)
        assert parse_key_name(mine, their_key) is None


@pytest.mark.parametrize(
    "name",
    [
        "sto-default-x",  # a human's key in the old format
        f"sto-{DIGEST}-x",  # our prefix, but not our shape
        f"sto-{DIGEST}-team-a-app-0123abcd",  # no revision
        f"sto-{DIGEST}-team-a-app-0123ABCD-r1",  # not a uid part
        f"sto-{DIGEST}-team-a-app-0123abcd-r0",  # revisions start at 1
        f"sto-{DIGEST}--0123abcd-r1",  # no token part
        f"sto-{DIGEST}-team-a-app-0123abcd-r1-copy",  # something appended
        f"sto-{DIGEST}-" + "a" * 80 + "-0123abcd-r1",  # longer than B2 allows
    ],
)
def test_names_not_of_our_exact_shape_are_never_ours(name: str) -> None:
    assert parse_key_name(DIGEST, name) is None


def test_settings_derive_the_digest_from_cluster_and_install() -> None:
    cluster = Settings(cluster_id="prod", operator_namespace="ops")
    assert cluster.effective_install_id == "ops"
    namespaced = Settings(cluster_id="prod", operator_namespace="ops", namespaces=("b", "a"))
    assert namespaced.effective_install_id == "ops/a/b"
    assert cluster.install_digest != namespaced.install_digest
    chart = Settings(cluster_id="prod", install_id="ops/sto")
    assert chart.install_digest == install_digest("prod", "ops/sto")
    with pytest.raises(RuntimeError):
        _ = Settings().install_digest  # no key may be named before the cluster id is known
    with pytest.raises(ValueError):
        Settings(cluster_id="-bad")
