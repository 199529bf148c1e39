"""Wires the reconcilers to watch events: caches, queues, workers, the periodic sweep."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from storage_token.api.naming import parse_key_name
from storage_token.api.provider import CLUSTER_KIND, ProviderSpec
from storage_token.api.token import TokenStatus
from storage_token.controllers.gather import cached_token
from storage_token.controllers.provider_release import ProviderRelease
from storage_token.controllers.providers import ProviderController
from storage_token.controllers.secret_writer import LABEL_TOKEN
from storage_token.controllers.steps.restarts import last_restart
from storage_token.controllers.sweep import References, Sweeper
from storage_token.controllers.tokens import TokenController
from storage_token.kube.api import ApiError, Conflict, Kube, NamespaceTerminating
from storage_token.kube.events import EventRecorder
from storage_token.policy.rollout import workload_event_moves
from storage_token.providers.errors import ProviderError
from storage_token.runtime import metrics
from storage_token.runtime.index import Index
from storage_token.runtime.provider_pool import ProviderPool
from storage_token.runtime.ratelimit import claiming
from storage_token.runtime.settings import Settings
from storage_token.runtime.shared_state import ProviderKey, SharedState
from storage_token.runtime.workers import Leadership, RetryLater, Workers, WorkQueue

log = logging.getLogger(__name__)

TokenKey = tuple[str, str]  # namespace, name
CONFLICT_RETRY = timedelta(seconds=5)  # fallback if the newer version's watch event never comes
MIN_REQUEUE = timedelta(seconds=1)  # the floor under every token's next reconcile


def _resource_version(body: dict[str, Any]) -> int:
    value = (body.get("metadata") or {}).get("resourceVersion") or "0"
    return int(value) if value.isdigit() else 0


class Manager:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        leading: asyncio.Event | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube, self.settings, self.clock = kube, settings, clock
        # Without leader election this process always leads.
        self.leading = leading or asyncio.Event()
        if leading is None:
            self.leading.set()
        self.pool = ProviderPool(kube, timeout=settings.provider_timeout)
        self.events = EventRecorder(kube, settings.operator_namespace, routine=settings.routine_events)
        self.shared = SharedState(on_written=self._remember_token)
        self.tokens = TokenController(kube, self.pool, self.events, settings, clock=clock, shared=self.shared)
        release = ProviderRelease(
            kube, self.list_tokens, lambda: list(self.shared.providers.values()), settings.operator_namespace
        )
        self.providers = ProviderController(kube, self.pool, self.events, settings, release=release)
        self.sweeper = Sweeper(settings)
        self.token_cache: dict[TokenKey, dict[str, Any]] = {}
        # Events that reached a token while it was being reconciled, judged when the reconcile ends: most
        # are the echo of its own writes, whose responses had not arrived yet (see `_queue_token`).
        self._rechecks: dict[TokenKey, list[tuple[Callable[[], bool], float | None]]] = {}
        self._reconciling: set[TokenKey] = set()  # exactly while `_reconcile_token` runs, not a loop turn longer
        self._written: dict[TokenKey, int] = {}  # resourceVersion of the last token write of ours
        self._secrets: Index[TokenKey, tuple[str, str]] = Index()  # token -> (namespace, Secret name) it writes
        self._followed: Index[TokenKey, tuple[str, str, str]] = Index()  # token -> workloads its rollout names
        self.provider_cache = self.shared.providers
        # Namespaces take turns for workers (and for each provider's request budget, see `_reconcile_token`);
        # within one, the token whose key expires soonest goes first.
        self.token_queue: WorkQueue[TokenKey] = WorkQueue(
            wall_clock=lambda: self.clock().timestamp(), lane=lambda key: key[0], deadline=self._token_deadline
        )
        self.provider_queue: WorkQueue[ProviderKey] = WorkQueue()
        self._token_workers = Workers(
            "tokens", self.token_queue, self._reconcile_token, settings.workers, gate=self.leading, now=clock
        )
        self._provider_workers = Workers(
            "providers", self.provider_queue, self._reconcile_provider, 2, gate=self.leading
        )
        self._sweep_task: asyncio.Task[None] | None = None
        self._sweeping: asyncio.Task[None] | None = None  # the sweep in progress, cancelled on step-down
        if isinstance(self.leading, Leadership):
            self.leading.add_step_down_callback(self._cancel_sweep)

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self._token_workers.start()
        self._provider_workers.start()
        self._sweep_task = asyncio.create_task(self._sweep_forever(), name="sweep")

    async def stop(self) -> None:
        await self._token_workers.stop()
        await self._provider_workers.stop()
        if self._sweep_task is not None:
            self._sweep_task.cancel()
            await asyncio.gather(self._sweep_task, return_exceptions=True)
        await self.pool.aclose()
        await self.tokens.renderer.aclose()
        await self.kube.aclose()

    def resync(self) -> None:
        """Queue everything cached: a new leader rebuilds every schedule from status."""
        for key in list(self.provider_cache):
            self.provider_queue.add(key)
        for token_key in list(self.token_cache):
            self.token_queue.add(token_key)

    # -- watch events -----------------------------------------------------------------
    def _remember(self, cache: dict[Any, dict[str, Any]], key: Any, body: dict[str, Any]) -> None:
        """Keep the newest body: a watch event may arrive after our own write's response."""
        current = cache.get(key)
        if current is None or _resource_version(body) >= _resource_version(current):
            cache[key] = body

    def _cache_token(self, key: TokenKey, body: dict[str, Any]) -> None:
        """Keep the newest body, and index the workloads its rollout follows."""
        self._remember(self.token_cache, key, body)
        self._index_followed(key, self.token_cache.get(key))

    def _index_followed(self, key: TokenKey, body: dict[str, Any] | None) -> None:
        """(namespace, kind, name) of each workload a token's rollout names -> the tokens: a workload event
        looks at its own tokens, not at every cached one (with 1,000 tokens that scan was a ninth of the
        operator's CPU during a rotation wave)."""
        rollout = (((body or {}).get("status") or {}).get("rollout")) or {}
        targets = rollout.get("targets") or ()
        self._followed.set(key, ((key[0], str(t.get("kind")), str(t.get("name"))) for t in targets))

    def _remember_token(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        self._written[key] = max(self._written.get(key, 0), _resource_version(body))
        self._cache_token(key, cached_token(body))

    def _queue_token(
        self, key: TokenKey, still_news: Callable[[], bool] | None = None, due: float | None = None
    ) -> None:
        """Queue a token for an event. One arriving while the token is being reconciled is judged when that
        reconcile ends (`still_news`): the watch often delivers a write before its own response does, and
        queuing that echo cost a whole reconcile (a Secret read, a render) per write."""
        if still_news is not None and key in self._reconciling:
            self._rechecks.setdefault(key, []).append((still_news, due))
            return
        self.token_queue.add(key, due)

    def _recheck(self, key: TokenKey) -> None:
        """After a reconcile: queue it again only for what it did not write or see itself, as due as the
        earliest such event said. Called as the reconcile leaves `_reconciling`, with no await between:
        a later event finds the key still processing in the queue, which runs it again afterwards."""
        dues = [due for still_news, due in self._rechecks.pop(key, ()) if still_news()]
        if dues:
            known = [due for due in dues if due is not None]
            self.token_queue.add(key, min(known) if known else None)

    def on_token_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.token_cache.pop(key, None)
            self._rechecks.pop(key, None)
            self._index_followed(key, None)
            self._written.pop(key, None)
            self.token_queue.forget(key)
            self._index_secret_name(key, None)
            metrics.forget_token(*key)
            # A provider being deleted may have waited for this token's revocations.
            for provider_key, provider in list(self.provider_cache.items()):
                if provider["metadata"].get("deletionTimestamp"):
                    self.provider_queue.add(provider_key)
            return
        self._index_secret_name(key, body)
        current = self.token_cache.get(key)
        if current is not None and _resource_version(body) <= _resource_version(current):
            return  # our own write (already cached from its response) or an older version: nothing new
        self._cache_token(key, cached_token(body))
        # Overdue work (e.g. a revocation that came due while no operator ran) goes ahead of the rest.
        earliest = TokenStatus.parse(body.get("status")).earliest_due()
        version = _resource_version(body)
        self._queue_token(
            key,
            lambda: version > self._written.get(key, 0),  # newer than our own last write: someone else's
            min(earliest.timestamp(), self.token_queue.wall_clock()) if earliest else None,
        )

    def on_provider_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        kind = body.get("kind") or "StorageProvider"
        key = (kind, "" if kind == CLUSTER_KIND else meta.get("namespace", ""), meta["name"])
        if event_type == "DELETED":
            self.provider_cache.pop(key, None)
            self.provider_queue.forget(key)
            self._enqueue_tokens_of(key)
            return
        previous = self.provider_cache.get(key)
        self._remember(self.provider_cache, key, body)
        # Status-only changes (our own writes) don't need a new credentials check.
        deleting = bool(meta.get("deletionTimestamp")) and not (previous or {}).get("metadata", {}).get(
            "deletionTimestamp"
        )
        if deleting or previous is None or previous["metadata"].get("generation") != meta.get("generation"):
            self.provider_queue.add(key)
            if previous is not None:
                # A changed ceiling or endpoint applies to every token of this provider.
                self._enqueue_tokens_of(key)

    def on_secret_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        token = (meta.get("labels") or {}).get(LABEL_TOKEN)
        version = meta.get("resourceVersion")
        own_write = self.shared.own_secret_writes.get((namespace, name)) == version
        if event_type == "DELETED":
            self.shared.own_secret_writes.pop((namespace, name), None)
        if token and not own_write:
            secret = (namespace, name)
            deleted = event_type == "DELETED"
            self._queue_token(
                (namespace, token), lambda: deleted or self.shared.own_secret_writes.get(secret) != version
            )
        if not token:
            self.pool.invalidate(namespace, name)
            for key, provider in list(self.provider_cache.items()):
                spec = ProviderSpec.parse(provider, credentials_namespace=self.settings.operator_namespace)
                if spec.namespace == namespace and spec.credentials_secret == name:
                    self.provider_queue.add(key)
        # A Secret of a token's name may appear or vanish without our label (conflicts, deletions).
        for token_key in self._secrets.keys_of((namespace, name)):
            if token_key[1] != token:
                self.token_queue.add(token_key)

    def on_workload_event(self, kind: str, body: dict[str, Any], event_type: str | None = None) -> None:
        """A Deployment, StatefulSet or DaemonSet changed: queue the tokens whose rollout follows it."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        cached = self.shared.workloads.get((kind, namespace, name))
        if event_type == "DELETED" or (cached is not None and cached["metadata"].get("uid") != meta.get("uid")):
            self.shared.workloads.pop((kind, namespace, name), None)  # gone, or another object of that name
        restarted = last_restart(body)
        moved = False
        for key in self._followed.keys_of((namespace, kind, name)):
            token = self.token_cache.get(key)
            if token is not None and workload_event_moves(token.get("status"), kind, name, body, restarted):
                self._queue_token(key, self._still_moves(key, kind, name, body, restarted))
                moved = True
        if moved and event_type != "DELETED":
            self.shared.workloads[(kind, namespace, name)] = body  # what those reconciles will read

    def _still_moves(
        self, key: TokenKey, kind: str, name: str, body: dict[str, Any], restarted: datetime | None
    ) -> Callable[[], bool]:
        """Whether the workload event still moves the token once its reconcile in flight is done."""

        def check() -> bool:
            token = self.token_cache.get(key)
            return token is not None and workload_event_moves(token.get("status"), kind, name, body, restarted)

        return check

    def credentials_secrets(self) -> set[tuple[str, str]]:
        """(namespace, name) of every credentials Secret a known provider names: the Secrets to watch."""
        wanted = set()
        for provider in self.provider_cache.values():
            spec = ProviderSpec.parse(provider, credentials_namespace=self.settings.operator_namespace)
            if spec.namespace and spec.credentials_secret:
                wanted.add((spec.namespace, spec.credentials_secret))
        return wanted

    def _index_secret_name(self, key: TokenKey, body: dict[str, Any] | None) -> None:
        """Which tokens write which Secret name, so a Secret event finds its tokens without a scan."""
        if body is None:
            self._secrets.set(key, ())
            return
        secret = ((body.get("spec") or {}).get("secret") or {}).get("name") or key[1]
        self._secrets.set(key, [(key[0], secret)])

    def _enqueue_tokens_of(self, provider: ProviderKey) -> None:
        kind, namespace, name = provider
        for key, body in list(self.token_cache.items()):
            ref = (body.get("spec") or {}).get("providerRef") or {}
            same = (ref.get("kind") or "StorageProvider") == kind and ref.get("name") == name
            if same and (kind == CLUSTER_KIND or key[0] == namespace):
                self.token_queue.add(key)

    # -- reconciles ----------------------------------------------------------------------
    def _token_deadline(self, key: TokenKey) -> float | None:
        """When the token's work must be done by (epoch seconds): its current key's expiry, or sooner the
        due time of a queued revocation. Without the latter a just-rotated token (the latest expiry) ranked
        behind every other token of its namespace, so after a restart relisted them all its overdue
        revocation waited for their check-ups (chaos: 10-40 s late)."""
        body = self.token_cache.get(key)
        if body is None:
            return None
        status = TokenStatus.parse(body.get("status"))
        moments = [
            status.not_after,
            *(
                (entry.not_before or entry.due_at) if entry.awaiting_rollout else entry.due_at
                for entry in status.pending_revocations
            ),
        ]
        present = [moment.timestamp() for moment in moments if moment is not None]
        return min(present) if present else None

    async def _reconcile_token(self, key: TokenKey) -> datetime | None:
        self._reconciling.add(key)
        try:
            return await self._reconcile_token_once(key)
        finally:
            self._reconciling.discard(key)
            self._recheck(key)

    async def _reconcile_token_once(self, key: TokenKey) -> datetime | None:
        body = self.token_cache.get(key)
        if body is None:
            return None
        # The provider's budget is shared by namespace, most urgent call first within one (runtime/ratelimit).
        deadline = self.token_queue.rank(key, self.token_queue.wall_clock())
        try:
            with claiming(key[0], deadline):
                outcome = await self.tokens.reconcile(body)
        except NamespaceTerminating:
            log.debug("token %s/%s: its namespace is terminating; waiting for the token's deletion", *key)
            return None
        except ApiError as error:
            # e.g. 429/5xx from an overloaded API server
            raise RetryLater(f"API server answered {error.status} {error.reason}") from None
        except Conflict:
            # Our cached copy is behind: the watch event of the newer version queues this key again.
            log.debug("token %s/%s changed while being reconciled; waiting for the newer version", *key)
            return self.clock() + CONFLICT_RETRY
        if outcome.body is not None:
            self._cache_token(key, cached_token(outcome.body))
            self._publish_token_metrics(key, outcome.body)
        if outcome.wakeup is None:
            return None
        # A floor under every wakeup: no token, whatever its state, can make a worker spin on it.
        return max(outcome.wakeup, self.clock() + MIN_REQUEUE)

    def _publish_token_metrics(self, key: TokenKey, body: dict[str, Any]) -> None:
        raw = body.get("status") or {}
        status = TokenStatus.parse(raw)
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in raw.get("conditions") or ())
        rollout = raw.get("rollout") or {}
        rolling = not rollout.get("completedAt")  # a finished rollout leaves nothing pending
        metrics.record_token(
            key[0],
            key[1],
            ready,
            status.not_after.timestamp() if status.not_after else None,
            status.renewal_time.timestamp() if status.renewal_time else None,
            len(status.pending_revocations),
            rollout_adopted=int(rollout.get("adopted") or 0) if rolling else 0,
            rollout_total=int(rollout.get("total") or 0) if rolling else 0,
        )

    async def _reconcile_provider(self, key: ProviderKey) -> datetime | None:
        body = self.provider_cache.get(key)
        if body is None:
            return None
        try:
            wakeup, changed = await self.providers.reconcile(body)
        except NamespaceTerminating:
            log.debug("provider %s/%s/%s: its namespace is terminating", *key)
            return None
        except ApiError as error:
            raise RetryLater(f"API server answered {error.status} {error.reason}") from None
        except Conflict:
            return datetime.now(UTC) + CONFLICT_RETRY
        if changed:
            self._enqueue_tokens_of(key)
        return wakeup

    # -- sweep -----------------------------------------------------------------------------
    def _is_leading(self) -> bool:
        # The elector's gate also judges its renew deadline; a plain Event is only set or not.
        return self.leading.is_leading() if isinstance(self.leading, Leadership) else self.leading.is_set()

    def _cancel_sweep(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()

    async def _sweep_forever(self) -> None:
        interval = self.settings.sweep_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            if not self._is_leading():
                continue
            started = time.monotonic()
            self._sweeping = asyncio.create_task(self.sweep_once(), name="sweep-once")
            try:
                await self._sweeping
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the Manager is stopping
                log.warning("sweep cancelled: stepped down")
            except Exception:
                log.exception("sweep failed")
            finally:
                self._sweeping = None
            log.debug("sweep took %.2fs", time.monotonic() - started)

    async def list_tokens(self) -> list[dict[str, Any]]:
        """Every StorageToken this install watches, read from the API server (the sweep's references)."""
        if not self.settings.namespaces:
            return await self.kube.list_objects("StorageToken")
        tokens: list[dict[str, Any]] = []
        for namespace in self.settings.namespaces:
            tokens += await self.kube.list_objects("StorageToken", namespace)
        return tokens

    async def _relist_references(self) -> References:
        return References.of(await self.list_tokens())

    async def sweep_once(self) -> None:
        # A failed listing (RBAC, API server down) raises: no listing, no sweep.
        tokens = await self.list_tokens()
        digest = self.settings.install_digest
        now = self.sweeper.clock()
        # Parsed once for every provider below.
        references = References.of(tokens)
        # A current key is checked for being missing once it is named by this install (keys named before
        # an upgrade aren't listed) and settled (a key issued moments ago may not be in a listing yet).
        current = [
            (token["metadata"]["namespace"], token["metadata"]["name"], status)
            for token in tokens
            if (status := TokenStatus.parse(token.get("status"))).key_id
            and parse_key_name(digest, status.key_name) is not None
            and status.issued_at is not None
            and status.issued_at <= now - self.settings.sweep_min_age
        ]
        for body in list(self.provider_cache.values()):
            if not any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (body.get("status") or {}).get("conditions") or ()
            ):
                continue
            spec = ProviderSpec.parse(body, credentials_namespace=self.settings.operator_namespace)
            provider_name = f"{spec.kind}/{spec.name}"
            mine = {
                status.key_id: (namespace, name)
                for namespace, name, status in current
                if status.provider == provider_name and (spec.kind == CLUSTER_KIND or namespace == spec.namespace)
            }
            try:
                handle = await self.pool.get(spec)
                result = await self.sweeper.sweep(handle, references, self._relist_references, set(mine))
            except ProviderError as error:
                log.warning("sweep of %s skipped: %s", provider_name, error)
                continue
            metrics.record_unowned_keys(provider_name, len(result.unowned))
            for key_id in result.missing:
                self.shared.missing_keys.add(key_id)
                self.token_queue.add(mine[key_id])
