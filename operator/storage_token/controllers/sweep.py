"""The orphan sweep: list this install's keys at each provider, revoke the leftovers of interrupted
issuances, and notice current keys that vanished at the provider (so their tokens re-issue).

What the sweep may touch is narrow on purpose (design invariant 4):
- only names `naming.parse_key_name` accepts for this install's digest (no other install, no human key);
- only keys of a token that exists *now* (its uid is in the fresh listing): a key whose token is
  gone was revoked by the token's finalizer, or retained by `deletionPolicy: Retain`, or had its
  finalizer removed by hand; none of those is the sweep's to undo, so it is counted, not revoked;
- references come from a fresh list of the API server, not from the watch cache, and are listed
  again just before revoking, so a key recorded meanwhile is never revoked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storage_token.api.naming import key_prefix, parse_key_name, uid8
from storage_token.api.token import TokenStatus
from storage_token.providers.base import KeyInfo
from storage_token.providers.errors import NotFoundError, ProviderError
from storage_token.runtime import metrics
from storage_token.runtime.provider_pool import ProviderHandle
from storage_token.runtime.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    listed: int = 0
    revoked: list[str] = field(default_factory=list)  # key names
    unowned: list[str] = field(default_factory=list)  # this install's keys whose token no longer exists
    missing: set[str] = field(default_factory=set)  # referenced current key ids not at the provider


@dataclass(frozen=True)
class References:
    """What tokens hold: keys by id (current and queued); by name only an intent, whose id is unknown yet.

    A key sharing a recorded key's name but not its id (a duplicate from a lost create response) is
    not held: it is a leftover like any other."""

    key_ids: frozenset[str]
    intent_names: frozenset[str]
    current_ids: frozenset[str]
    token_uids: frozenset[str]  # uid8 of every token that exists

    @classmethod
    def of(cls, tokens: Iterable[dict[str, Any]]) -> References:
        ids: set[str] = set()
        names: set[str] = set()
        current: set[str] = set()
        uids: set[str] = set()
        for token in tokens:
            uids.add(uid8((token.get("metadata") or {}).get("uid") or ""))
            status = TokenStatus.parse(token.get("status"))
            if status.key_id:
                ids.add(status.key_id)
                current.add(status.key_id)
            if status.intent is not None:
                names.add(status.intent.key_name)
            for pending in status.pending_revocations:
                ids.add(pending.key_id)
        return cls(frozenset(ids), frozenset(names), frozenset(current), frozenset(uids))

    def holds(self, key: KeyInfo) -> bool:
        return key.key_id in self.key_ids or key.key_name in self.intent_names


Relist = Callable[[], Awaitable[References]]  # the references of a new listing


class Sweeper:
    def __init__(self, settings: Settings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings, self.clock = settings, clock
        self._first_seen: dict[str, datetime] = {}  # orphan key id -> first sweep that saw it

    async def sweep(
        self, handle: ProviderHandle, references: References, relist: Relist, issued_here: set[str]
    ) -> SweepResult:
        """`references`: of a fresh listing from the API server (not the watch cache); `relist` lists again.

        `issued_here`: current key ids (named by this install) this provider is responsible for.
        """
        now = self.clock()
        digest = self.settings.install_digest
        keys = await handle.call(lambda p: p.list_keys(key_prefix(digest)), "list")
        result = SweepResult(listed=len(keys))
        present = {k.key_id for k in keys}
        for key_id in issued_here - present:
            # A listing may lag behind a create: only the provider's own "no such key" makes it missing.
            if await handle.call(lambda p, k=key_id: p.get_key(k), "get") is None:  # type: ignore[misc]
                result.missing.add(key_id)
        candidates: list[KeyInfo] = []
        for key in keys:
            parsed = parse_key_name(digest, key.key_name)
            if parsed is None or references.holds(key):
                self._first_seen.pop(key.key_id, None)
                continue
            if parsed.uid8 not in references.token_uids:
                result.unowned.append(key.key_name)
                continue
            seen = self._first_seen.setdefault(key.key_id, now)
            # An issuance names its key in status before the create, so an in-flight key is referenced;
            # the minimum age is a second guard against a provider whose listing runs ahead.
            if now - (key.created_at or seen) < self.settings.sweep_min_age:
                continue
            candidates.append(key)
        if candidates:
            # The listing above may be seconds old: a key recorded meanwhile must not be revoked.
            references = await relist()
        for key in candidates:
            if references.holds(key):
                self._first_seen.pop(key.key_id, None)
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
        if result.unowned:
            log.debug("sweep left %d key(s) of deleted tokens at %s alone", len(result.unowned), handle.spec.name)
        return result
