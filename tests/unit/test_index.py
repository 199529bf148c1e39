"""The two-way index the Manager finds tokens by (their Secret, the workloads their rollout follows)."""

from __future__ import annotations

from storage_token.runtime.index import Index


def test_keys_follow_what_each_key_names_now_and_forgotten_keys_leave_no_trace() -> None:
    index: Index[str, str] = Index()
    index.set("a", ["web", "worker"])
    index.set("b", ["web"])
    assert sorted(index.keys_of("web")) == ["a", "b"] and index.keys_of("worker") == ["a"]
    index.set("a", ["worker"])  # a rollout's targets changed
    assert index.keys_of("web") == ["b"] and index.keys_of("worker") == ["a"]
    index.set("a", ())
    index.set("b", ())
    assert index.keys_of("web") == [] and index.keys_of("worker") == []
    assert not index._keys and not index._values
