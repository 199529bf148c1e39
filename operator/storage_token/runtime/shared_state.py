"""What the Manager and the token reconciler share, made once by the Manager and handed in (never reached into)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ProviderKey = tuple[str, str, str]  # kind, namespace ("" for cluster-scoped), name
SecretKey = tuple[str, str]  # namespace, name


def _ignore(body: dict[str, Any]) -> None:
    return None


@dataclass
class SharedState:
    # The providers' watch cache (kind, namespace, name) -> body, filled by the Manager, read by reconciles.
    providers: dict[ProviderKey, dict[str, Any]] = field(default_factory=dict)
    # (namespace, Secret name) -> resourceVersion of our last write: its watch event needs no reconcile.
    own_secret_writes: dict[SecretKey, str] = field(default_factory=dict)
    # (namespace, Secret name) -> how many writes or deletes of it we have tried: a read taken before
    # the count last moved no longer stands (steps/base.SecretRead).
    secret_touches: dict[SecretKey, int] = field(default_factory=dict)
    # (kind, namespace, name) -> the latest watched (slim) body of a workload a rollout follows: a rollout
    # it shows finished needs no GET (a finished rollout stays a fact; anything else is read fresh).
    workloads: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    # Key ids the sweep found gone at their provider (the reconcile re-issues; a revocation forgets them).
    missing_keys: set[str] = field(default_factory=set)
    # Called with every token body a reconcile writes, so the Manager's cache runs ahead of the watch.
    on_written: Callable[[dict[str, Any]], None] = _ignore

    def touch_secret(self, namespace: str, name: str) -> None:
        """Called before every write or delete of a Secret of ours, whatever its result."""
        key = (namespace, name)
        self.secret_touches[key] = self.secret_touches.get(key, 0) + 1
