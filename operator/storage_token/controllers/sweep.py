"""The orphan sweep: list this cluster's keys at each provider, revoke the ones nothing references,
and notice current keys that vanished at the provider (so their tokens re-issue)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage_token import metrics
from storage_token.config import Settings
from storage_token.model.token import TokenStatus
from storage_token.naming import cluster_prefix
from storage_token.provider_pool import ProviderHandle
from storage_token.providers.errors import NotFoundError, ProviderError

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    listed: int = 0
    revoked: list[str] = field(default_factory=list)  # key names
    missing: set[str] = field(default_factory=set)  # referenced current key ids not at the provider


@dataclass(frozen=True)
class References:
    key_ids: frozenset[str]
    key_names: frozenset[str]  # intents and recorded names
    current_ids: frozenset[str]

    @classmethod
    def of(cls, tokens: Iterable[dict[str, Any]]) -> References:
        ids: set[str] = set()
        names: set[str] = set()
        current: set[str] = set()
        for token in tokens:
            status = TokenStatus.parse(token.get("status"))
            if status.key_id:
                ids.add(status.key_id)
                current.add(status.key_id)
            if status.key_name:
                names.add(status.key_name)
            if status.intent is not None:
                names.add(status.intent.key_name)
            for pending in status.pending_revocations:
                ids.add(pending.key_id)
                names.add(pending.key_name)
        return cls(frozenset(ids), frozenset(names), frozenset(current))


class Sweeper:
    def __init__(self, settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings, self.clock = settings, clock
        self._first_seen: dict[str, datetime] = {}  # orphan key id -> first sweep that saw it

    async def sweep(self, handle: ProviderHandle, references: References, issued_here: set[str]) -> SweepResult:
        """`issued_here`: key ids this provider is responsible for among `references.current_ids`."""
        now = self.clock()
        keys = await handle.call(lambda p: p.list_keys(cluster_prefix(self.settings.cluster_id)), "list")
        result = SweepResult(listed=len(keys))
        present = {k.key_id for k in keys}
        result.missing = {key_id for key_id in issued_here if key_id not in present}
        for key in keys:
            if key.key_id in references.key_ids or key.key_name in references.key_names:
                self._first_seen.pop(key.key_id, None)
                continue
            seen = self._first_seen.setdefault(key.key_id, now)
            # An issuance may still be recording this key: leave it alone until it is old enough.
            age = now - (key.created_at or seen)
            if age < self.settings.sweep_min_age:
                continue
            try:
                await handle.call(lambda p, orphan=key.key_id: p.revoke(orphan), "revoke")  # type: ignore[misc]
            except NotFoundError:
                pass
            except ProviderError as error:
                log.warning("sweep could not revoke orphan key %s: %s", key.key_name, error)
                continue
            self._first_seen.pop(key.key_id, None)
            metrics.record_revocation("orphan")
            result.revoked.append(key.key_name)
        if result.revoked:
            log.info("sweep revoked %d orphan key(s) at %s: %s", len(result.revoked), handle.spec.name, result.revoked)
        return result
