"""The fast controller tier: the real controllers over `FakeKube` and the real loopback emulators.

    h = await Harness.start()
    provider = await h.create_provider("b2")            # credentials Secret + StorageProvider, made Ready
    await h.create_token("team-a", "app", provider)     # a StorageToken (namespace created on demand)
    await h.reconcile_token("team-a", "app")            # reconcile until nothing changes any more
    h.advance(hours=1); await h.reconcile_all()         # controller clock and emulator clocks move together
    h.arm_crash(AFTER_CREATE); await h.reconcile_until_crash("team-a", "app"); await h.restart()
    h.check_invariants()
    await h.close()

The operator side is the real `Manager` (so its caches, the sweep and the watch wiring are real),
fed synchronously by FakeKube's watch. Reconciles are driven here, not by the Manager's workers,
so every test is deterministic: `reconcile_token` reads the token fresh and calls the
`TokenController` until a round changes nothing in the API or at either provider.
"""

from __future__ import annotations

import inspect
import json
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fake_kube import Body, FakeKube

from storage_token.api.naming import key_prefix
from storage_token.api.token import API_GROUP, API_VERSION
from storage_token.controllers.manager import Manager
from storage_token.controllers.secret_writer import LABEL_TOKEN
from storage_token.dev import sandbox
from storage_token.dev.emulators.b2 import B2Emulator
from storage_token.dev.emulators.control import CONTROL_PREFIX
from storage_token.dev.emulators.us3 import US3Emulator
from storage_token.kube.api import Conflict
from storage_token.process.handlers import WORKLOAD_PLURALS, slim_workload
from storage_token.runtime.settings import Settings

START = datetime(2030, 1, 1, tzinfo=UTC)  # whole seconds: status keeps whole seconds
CLUSTER_ID = "controller-tests"
OPERATOR_NAMESPACE = "storage-token-system"
US3_REGION = "cn-bj2"
US3_BUCKETS = {"us3-data": US3_REGION, "us3-logs": US3_REGION}
B2_BUCKETS = ["b2-data", "b2-logs"]
PROVIDER_TYPES = ("us3", "b2")
RENEW_ANNOTATION = "storagetoken.dev/renew"

# Crash points: where `arm_crash` makes the operator "die" (raise `Crash`) during an issuance.
AFTER_INTENT = "after-intent"  # the write-ahead intent is in status
AFTER_CREATE = "after-create"  # the provider created the key; nothing recorded it yet
AFTER_SECRET = "after-secret"  # the Secret holds the new key; status does not know it yet
BEFORE_FINAL_STATUS = "before-final-status"  # the status write recording the key is about to go out
CRASH_POINTS = (AFTER_INTENT, AFTER_CREATE, AFTER_SECRET, BEFORE_FINAL_STATUS)


class Crash(BaseException):
    """The operator process died here. A BaseException, so no `except Exception` in the code swallows it."""


class NotQuiescent(AssertionError):
    """A reconcile loop kept changing things after the allowed number of rounds."""


@dataclass(frozen=True)
class ProviderKey:
    """A key as an emulator holds it (read from its store; the secret never leaves the test)."""

    provider: str  # us3 | b2
    key_id: str  # US3 TokenId, B2 applicationKeyId
    name: str
    access_key_id: str  # US3 PublicKey, B2 applicationKeyId
    secret: str = field(repr=False)
    expires_at: float | None = None  # unix seconds
    expired: bool = False


class Emulators(sandbox.Emulators):
    """The sandbox's two emulators, on this tier's buckets, with frozen clocks the harness moves."""

    @classmethod
    def start_at(cls, at: datetime) -> Emulators:
        # Auth tokens that never expire: long clock jumps would otherwise churn re-authorization.
        return cls.start(us3_buckets=US3_BUCKETS, b2_buckets=B2_BUCKETS, at=at.timestamp(), b2_auth_token_ttl=10**9)

    def set_time(self, timestamp: float) -> None:
        self.us3.clock.freeze(timestamp)
        self.b2.clock.freeze(timestamp)

    def emulator(self, provider: str) -> US3Emulator | B2Emulator:
        return self.us3 if provider == "us3" else self.b2

    def buckets(self, provider: str) -> list[str]:
        return list(US3_BUCKETS) if provider == "us3" else list(B2_BUCKETS)

    def keys(self, provider: str) -> list[ProviderKey]:
        """Every non-master key the emulator holds now, expired US3 tokens included (B2 drops expired keys).

        Read from the stores, not `GET /_emulator/state`: the invariants need each key's secret, which
        the control surface never shows.
        """
        if provider == "us3":
            with self.us3.lock:
                now = self.us3.clock.now()
                return [
                    ProviderKey(
                        "us3", t.token_id, t.token_name, t.public_key, t.private_key, t.expire_time, t.expired(now)
                    )
                    for t in self.us3.store.tokens.values()
                ]
        with self.b2.lock:
            self.b2.store.purge_expired()
            now = self.b2.clock.now()
            return [
                ProviderKey(
                    "b2",
                    k.key_id,
                    k.name,
                    k.key_id,
                    k.secret,
                    k.expires_ms / 1000 if k.expires_ms is not None else None,
                    k.expired(now),
                )
                for k in self.b2.store.keys.values()
                if not k.master
            ]

    def issued_secrets(self, provider: str) -> set[str]:
        """Every key secret the emulator ever handed out, revoked ones included."""
        emulator = self.emulator(provider)
        with emulator.lock:
            return set(emulator.store.issued_secrets)

    def credentials(self, provider: str) -> dict[str, str]:
        if provider == "us3":
            return {"publicKey": self.us3_account[0], "privateKey": self.us3_account[1]}
        return {"applicationKeyId": self.b2_account[0], "applicationKey": self.b2_account[1]}

    def delete_key(self, provider: str, key_id: str) -> None:
        """Revoke out of band (drift): somebody deleted the key at the provider (its control route)."""
        route = "tokens" if provider == "us3" else "keys"
        request = urllib.request.Request(
            f"{self.emulator(provider).url}{CONTROL_PREFIX}{route}/{key_id}", method="DELETE"
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # a key that isn't there answers 404: raises
            assert json.loads(response.read())["removed"], key_id


@dataclass(frozen=True)
class ProviderInfo:
    """A StorageProvider / ClusterStorageProvider the harness created."""

    type: str
    kind: str
    namespace: str  # of the object; "" for the cluster kind
    name: str
    secret_namespace: str
    secret_name: str
    buckets: tuple[str, ...]

    @property
    def ref(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name}

    @property
    def label(self) -> str:
        """How token status names it ("Kind/name")."""
        return f"{self.kind}/{self.name}"


def install_prefix(settings: Settings) -> str:
    """The name prefix of every key this install issues (the one place the tier derives it)."""
    return key_prefix(settings.install_digest)


class Operator:
    """One operator "process": a Manager over the shared FakeKube, its provider calls instrumented."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        kube, settings, clock = harness.kube, harness.settings, harness.clock
        accepts_clock = "clock" in inspect.signature(Manager).parameters
        self.manager = Manager(kube, settings, clock=clock) if accepts_clock else Manager(kube, settings)  # type: ignore[arg-type,call-arg]
        # The controllers take a clock; the Manager (today) builds them with the real one.
        for part in (self.manager.tokens, self.manager.providers, self.manager.sweeper):
            if hasattr(part, "clock"):
                part.clock = clock
        self.pool = self.manager.pool
        self._pool_get = self.pool.get
        self.pool.get = self._get  # type: ignore[method-assign]
        self._unsubscribe = kube.watch(self._dispatch)
        kube.replay(self._dispatch)  # a new process starts with a full list

    @property
    def tokens(self) -> Any:
        return self.manager.tokens

    @property
    def providers(self) -> Any:
        return self.manager.providers

    @property
    def sweeper(self) -> Any:
        return self.manager.sweeper

    def _dispatch(self, event_type: str, body: Body) -> None:
        kind = body.get("kind")
        if kind == "StorageToken":
            self.manager.on_token_event(event_type, body)
        elif kind in ("StorageProvider", "ClusterStorageProvider"):
            self.manager.on_provider_event(event_type, body)
        elif kind == "Secret":
            # kopf hands the operator metadata only (handlers._metadata_only).
            self.manager.on_secret_event(event_type, {k: v for k, v in body.items() if k not in ("data", "stringData")})
        elif kind in WORKLOAD_PLURALS:
            self.manager.on_workload_event(str(kind), slim_workload(body), event_type)

    async def _get(self, spec: Any) -> Any:
        handle = await self._pool_get(spec)
        if not getattr(handle, "_harness", False):
            client = handle.client
            if hasattr(client, "_now"):
                # US3's client computes ExpireTime from its own clock; share the emulator's.
                client._now = self.harness.timestamp
            original = handle.call
            harness = self.harness

            async def call(operation: Callable[[Any], Awaitable[Any]], name: str = "call") -> Any:
                harness._provider_point(name, "before")
                result = await original(operation, name)
                harness._provider_point(name, "after")
                return result

            object.__setattr__(handle, "call", call)
            object.__setattr__(handle, "_harness", True)
        return handle

    async def stop(self) -> None:
        self._unsubscribe()
        await self.pool.aclose()
        await self.manager.tokens.renderer.aclose()  # its worker processes go with this "process"


class Harness:
    def __init__(self, kube: FakeKube, emulators: Emulators, settings: Settings, start: datetime) -> None:
        self._now = start
        self.kube = kube
        self.kube.clock = self.clock
        self.emulators = emulators
        self.settings = settings
        self.prefix = install_prefix(settings)
        self.wakeups: dict[tuple[str, str], datetime | None] = {}  # last Outcome.wakeup per token
        self._provider_crashes: list[tuple[str, str, str]] = []  # (call name, "before" | "after", label)
        self.operator = Operator(self)

    @classmethod
    async def start(cls, start: datetime = START, **settings: Any) -> Harness:
        """Fresh emulators and API; `settings` override `Settings` fields (cluster_id, sweep_min_age, ...)."""
        values: dict[str, Any] = {"cluster_id": CLUSTER_ID, "operator_namespace": OPERATOR_NAMESPACE}
        values.update(settings)
        emulators = Emulators.start_at(start)
        kube = FakeKube()
        kube.create_namespace(values["operator_namespace"])
        return cls(kube, emulators, Settings(**values), start)

    async def close(self) -> None:
        await self.operator.stop()
        self.emulators.stop()

    # -- time ----------------------------------------------------------------------------
    def clock(self) -> datetime:
        return self._now

    def timestamp(self) -> float:
        return self._now.timestamp()

    @property
    def now(self) -> datetime:
        return self._now

    def set_now(self, moment: datetime) -> None:
        """Move the operator's clock and both emulators' clocks to `moment` (timezone-aware)."""
        if moment.tzinfo is None:
            raise ValueError("set_now needs a timezone-aware datetime")
        self._now = moment.astimezone(UTC)
        self.emulators.set_time(self._now.timestamp())

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        """`advance(timedelta(minutes=5))` or `advance(minutes=5)`; returns the new now."""
        self.set_now(self._now + (delta or timedelta()) + timedelta(**parts))
        return self._now

    def slow_secret_writes(self, seconds: float) -> list[datetime]:
        """From now on every Secret replace takes `seconds` of the clock (a loaded API server); the moments
        the writes landed, filled in as they happen."""
        original = self.kube.replace_secret
        landed: list[datetime] = []

        async def slow(namespace: str, name: str, body: Body) -> Body | None:
            self.advance(seconds=seconds)
            landed.append(self.now)
            return await original(namespace, name, body)

        self.kube.replace_secret = slow  # type: ignore[method-assign]
        return landed

    # -- the operator ----------------------------------------------------------------------
    async def restart(self, **settings: Any) -> None:
        """A new operator process over the same API and providers (in-memory state is lost)."""
        await self.operator.stop()
        self.kube.clear_faults()
        self._provider_crashes.clear()
        if settings:
            self.settings = replace(self.settings, **settings)
            self.prefix = install_prefix(self.settings)
        self.operator = Operator(self)

    # -- providers ---------------------------------------------------------------------------
    async def create_provider(
        self,
        provider_type: str,
        namespace: str = "team-a",
        name: str | None = None,
        *,
        cluster: bool = False,
        policy: dict[str, Any] | None = None,
        ready: bool = True,
        **spec: Any,
    ) -> ProviderInfo:
        """Credentials Secret + StorageProvider (or ClusterStorageProvider) for that emulator, reconciled.

        `policy` defaults to allowedBuckets = every emulator bucket (the ceiling fails closed without it).
        """
        name = name or f"{provider_type}-provider"
        kind = "ClusterStorageProvider" if cluster else "StorageProvider"
        secret_namespace = self.settings.operator_namespace if cluster else namespace
        self.kube.create_namespace(secret_namespace)
        secret_name = f"{name}-credentials"
        self.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret_name, "namespace": secret_namespace},
                "stringData": self.emulators.credentials(provider_type),
            }
        )
        emulator = self.emulators.emulator(provider_type)
        body_spec: dict[str, Any] = {
            "type": provider_type,
            "endpoint": emulator.url,
            "credentialsSecretRef": {"name": secret_name},
            # The ceiling fails closed: name the emulator's buckets. Renewals and edits are not rate-limited
            # here (tests rotate back to back); tests of those limits set their own policy.
            "policy": policy
            if policy is not None
            else {
                "allowedBuckets": self.emulators.buckets(provider_type),
                "minManualRenewInterval": "0s",
                "minRenewalInterval": "0s",
                "allowRetain": True,  # deletionPolicy: Retain is refused unless the provider allows it
            },
            "allowInsecure": True,  # the emulators speak plain http on loopback
            # No real waiting on the token bucket in fast tests.
            "rateLimit": {"requestsPerSecond": 1000, "burst": 1000},
        }
        if provider_type == "us3":
            body_spec.update(region=US3_REGION, s3Endpoint="http://s3-cn-bj2.example.invalid")
        body_spec.update(spec)
        metadata: dict[str, Any] = {"name": name} if cluster else {"name": name, "namespace": namespace}
        self.kube.create(
            {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": kind, "metadata": metadata, "spec": body_spec}
        )
        info = ProviderInfo(
            provider_type,
            kind,
            "" if cluster else namespace,
            name,
            secret_namespace,
            secret_name,
            tuple(self.emulators.buckets(provider_type)),
        )
        await self.reconcile_provider(info)
        if ready:
            body = self.provider(info)
            conditions = ((body or {}).get("status") or {}).get("conditions") or []
            assert any(c["type"] == "Ready" and c["status"] == "True" for c in conditions), conditions
        return info

    def provider(self, info: ProviderInfo) -> Body | None:
        return self.kube.get(info.kind, info.namespace or None, info.name)

    async def reconcile_provider(self, info: ProviderInfo, rounds: int = 6) -> Body | None:
        """Run the ProviderController on the provider until a round changes nothing."""
        for _ in range(rounds):
            body = self.provider(info)
            if body is None:
                return None
            before = self._snapshot()
            try:
                await self.operator.providers.reconcile(body)
            except Conflict:
                continue
            if self._snapshot() == before:
                return self.provider(info)
        raise NotQuiescent(f"provider {info.label} kept changing after {rounds} reconciles")

    async def delete_provider(self, info: ProviderInfo, reconcile: bool = True) -> None:
        self.kube.delete(info.kind, info.namespace or None, info.name)
        if reconcile:
            await self.reconcile_all()

    # -- tokens --------------------------------------------------------------------------------
    async def create_token(
        self,
        namespace: str,
        name: str,
        provider: ProviderInfo,
        *,
        buckets: Iterable[str] | None = None,
        permissions: Iterable[str] = ("read", "list"),
        duration: str = "1h",
        reconcile: bool = False,
        **spec: Any,
    ) -> Body:
        """A StorageToken of `provider`; extra camelCase spec fields pass through (revokeGracePeriod, ...)."""
        self.kube.create_namespace(namespace)
        body_spec: dict[str, Any] = {
            "providerRef": provider.ref,
            "permissions": list(permissions),
            "buckets": list(buckets) if buckets is not None else [provider.buckets[0]],
            "duration": duration,
        }
        body_spec.update(spec)
        created = self.kube.create(
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": "StorageToken",
                "metadata": {"name": name, "namespace": namespace},
                "spec": body_spec,
            }
        )
        if reconcile:
            return await self.reconcile_token(namespace, name) or created
        return created

    def token(self, namespace: str, name: str) -> Body | None:
        return self.kube.get("StorageToken", namespace, name)

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        return (self.token(namespace, name) or {}).get("status") or {}

    def condition(self, namespace: str, name: str, type_: str = "Ready") -> dict[str, Any]:
        return next((c for c in self.status(namespace, name).get("conditions") or () if c["type"] == type_), {})

    def secret(self, namespace: str, name: str) -> Body | None:
        return self.kube.get("Secret", namespace, name)

    async def reconcile_token(self, namespace: str, name: str, rounds: int = 12) -> Body | None:
        """Reconcile until a round changes nothing in the API or at the providers; the token, or None if gone.

        A Conflict (the object moved under the reconcile) is what the Manager waits out; here the next
        round simply reads the newer version.
        """
        for _ in range(rounds):
            body = self.token(namespace, name)
            if body is None:
                self.wakeups.pop((namespace, name), None)
                return None
            before = self._snapshot()
            try:
                outcome = await self.operator.tokens.reconcile(body)
            except Conflict:
                continue
            self.wakeups[(namespace, name)] = getattr(outcome, "wakeup", None)
            if self._snapshot() == before:
                return self.token(namespace, name)
        raise NotQuiescent(
            f"token {namespace}/{name} kept changing after {rounds} reconciles; status: {self.status(namespace, name)}"
        )

    async def reconcile_all(self, passes: int = 8) -> None:
        """Reconcile every token and provider until one whole pass changes nothing."""
        for _ in range(passes):
            before = self._snapshot()
            for body in self.kube.list_of("StorageProvider") + self.kube.list_of("ClusterStorageProvider"):
                meta = body["metadata"]
                kind = body["kind"]
                namespace = meta.get("namespace", "") if kind == "StorageProvider" else ""
                await self.reconcile_provider(ProviderInfo("", kind, namespace, meta["name"], "", "", ()))
            for body in self.kube.list_of("StorageToken"):
                await self.reconcile_token(body["metadata"]["namespace"], body["metadata"]["name"])
            if self._snapshot() == before:
                return
        raise NotQuiescent(f"objects kept changing after {passes} passes")

    async def run_until(self, moment: datetime) -> None:
        """Step the clocks from wakeup to wakeup (as the work queue's timers would) until `moment`."""
        await self.reconcile_all()
        while True:
            due = [w for w in self.wakeups.values() if w is not None and self._now < w <= moment]
            if not due:
                break
            self.set_now(min(due))
            await self.reconcile_all()
        if self._now < moment:
            self.set_now(moment)
            await self.reconcile_all()

    async def renew(self, namespace: str, name: str, value: str | None = None, reconcile: bool = True) -> None:
        """Ask for a new key with the renew annotation, as `kubectl annotate` would."""
        stamp = value or self._now.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.kube.update("StorageToken", namespace, name, {"metadata": {"annotations": {RENEW_ANNOTATION: stamp}}})
        if reconcile:
            await self.reconcile_token(namespace, name)

    async def update_spec(self, namespace: str, name: str, spec: dict[str, Any], reconcile: bool = True) -> None:
        """A user's merge patch of the spec (bumps generation)."""
        self.kube.update("StorageToken", namespace, name, {"spec": spec})
        if reconcile:
            await self.reconcile_token(namespace, name)

    async def delete_token(self, namespace: str, name: str, reconcile: bool = True) -> Body | None:
        """`kubectl delete`; with `reconcile`, finalize until gone (returns the token if it is still there)."""
        self.kube.delete("StorageToken", namespace, name)
        if reconcile:
            return await self.reconcile_token(namespace, name)
        return self.token(namespace, name)

    async def delete_namespace(self, namespace: str, reconcile: bool = True) -> None:
        """Delete the namespace (everything in it is deleted; finalizers hold what they hold)."""
        self.kube.delete_namespace(namespace)
        if reconcile:
            await self.reconcile_all()

    async def sweep(self, reconcile: bool = True) -> None:
        """One run of the Manager's periodic sweep (then reconcile what it queued)."""
        await self.operator.manager.sweep_once()
        if reconcile:
            await self.reconcile_all()

    # -- providers' view -------------------------------------------------------------------------
    def keys_at_provider(self, provider: str, *, live_only: bool = True, ours: bool = True) -> list[ProviderKey]:
        """Keys the emulator holds; `live_only` drops expired ones, `ours` keeps this install's prefix."""
        keys = self.emulators.keys(provider)
        return [k for k in keys if (not live_only or not k.expired) and (not ours or k.name.startswith(self.prefix))]

    def live_key_ids(self, provider: str) -> set[str]:
        return {k.key_id for k in self.keys_at_provider(provider)}

    def check_invariants(self, allowed: Iterable[str] = ()) -> None:
        from invariants import check_invariants

        check_invariants(self.kube, self.emulators, self._now, prefix=self.prefix, allowed=allowed)

    # -- crash points --------------------------------------------------------------------------------
    def arm_crash(self, point: str, token: str | None = None) -> None:
        """The next time the operator reaches `point` (during `token`'s reconcile, if named) it dies."""
        crash = Crash(point)

        def for_token(args: dict[str, Any]) -> bool:
            return token is None or args.get("name") == token

        if point == AFTER_INTENT:
            self.kube.fail_next(
                "patch_status",
                crash,
                after=True,
                when=lambda a: for_token(a) and bool((a["patch"].get("status") or {}).get("intent") or {}),
            )
        elif point == BEFORE_FINAL_STATUS:
            self.kube.fail_next(
                "patch_status",
                crash,
                when=lambda a: for_token(a) and bool((a["patch"].get("status") or {}).get("keyId")),
            )
        elif point == AFTER_SECRET:

            def token_secret(args: dict[str, Any]) -> bool:
                labels = (args["body"].get("metadata") or {}).get("labels") or {}
                return LABEL_TOKEN in labels and (token is None or labels[LABEL_TOKEN] == token)

            self.kube.fail_next("create_secret", crash, after=True, when=token_secret)
            self.kube.fail_next("replace_secret", crash, after=True, when=token_secret)
        elif point == AFTER_CREATE:
            self._provider_crashes.append(("issue", "after", AFTER_CREATE))
        else:
            raise ValueError(f"unknown crash point {point!r}; known: {', '.join(CRASH_POINTS)}")

    def crash_on_provider_call(self, call: str, when: str = "after") -> None:
        """Die before or after the provider call named `call` (issue, recover, revoke, list, check)."""
        self._provider_crashes.append((call, when, f"{when}-{call}"))

    def _provider_point(self, call: str, when: str) -> None:
        for armed in self._provider_crashes:
            if armed[:2] == (call, when):
                self._provider_crashes.remove(armed)
                raise Crash(armed[2])

    async def reconcile_until_crash(self, namespace: str, name: str, rounds: int = 6) -> Crash:
        """Reconcile until the armed crash fires; fails the test if it never does."""
        for _ in range(rounds):
            body = self.token(namespace, name)
            assert body is not None, f"token {namespace}/{name} is gone before the crash"
            try:
                await self.operator.tokens.reconcile(body)
            except Crash as crash:
                self.kube.clear_faults()  # a process dies once: disarm the sibling faults of this point
                self._provider_crashes.clear()
                return crash
            except Conflict:
                continue
        raise AssertionError(f"the armed crash never happened for {namespace}/{name}")

    # -- internals -------------------------------------------------------------------------------------
    def _snapshot(self) -> tuple[int, frozenset[tuple[str, str]]]:
        """What a quiet round leaves unchanged: API writes that changed something, and provider keys."""
        keys = frozenset((k.provider, k.key_id) for p in PROVIDER_TYPES for k in self.emulators.keys(p))
        return self.kube.changes, keys
