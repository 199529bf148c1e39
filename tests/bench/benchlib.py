"""Plumbing shared by `bench.py` and `chaos.py`.

A fresh local control plane, the in-process provider emulators, the operator
as its own process, HTTP clients that speak to the kube-apiserver with the
admin kubeconfig's client certificate, and WATCH-driven trackers that
timestamp each Secret and each StorageToken transition as the apiserver
announces it (no polling LISTs: they would load the apiserver being measured).

Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil
import yaml

from storage_token.dev.cluster.controlplane import LocalControlPlane, free_port
from storage_token.dev.sandbox import Emulators, OperatorProcess

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
GROUP, VERSION = "storagetoken.dev", "v1alpha1"
API = f"{GROUP}/{VERSION}"
OPERATOR_NAMESPACE = "storage-token-system"
LABEL_TOKEN = f"{GROUP}/token"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"})
READ_VERBS = frozenset({"GET", "LIST"})
OPERATOR_RESOURCES = frozenset({"storagetokens", "secrets", "events", "storageproviders"})
# The providers' client-side rate limit out of the way of a measurement.
FAST_LIMIT = {"requestsPerSecond": 1000, "burst": 1000}
# The sweep and the provider re-check stay out of the measured phases.
QUIET_BACKGROUND = {"STO_SWEEP_INTERVAL": "10m", "STO_SWEEP_MIN_AGE": "10m", "STO_PROVIDER_RECHECK_INTERVAL": "30m"}
# A token scope each emulator accepts (its demo bucket, read and list).
SCOPES = {
    "b2": {"permissions": ["read", "list"], "buckets": ["demo-b2-data"]},
    "us3": {"permissions": ["read", "list"], "buckets": ["demo-us3-data"]},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- numbers -----------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Iterable[float]) -> dict[str, float | int | None]:
    data = list(values)
    return {
        "count": len(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": max(data) if data else None,
        "mean": sum(data) / len(data) if data else None,
    }


def rounded(value: Any, digits: int = 3) -> Any:
    """JSON-friendly: floats rounded, containers recursed."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


def cell(value: Any) -> str:
    """A figure as both tables print it: three significant digits, whole numbers from 100 on."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for index, row in enumerate(cells):
        out.append(
            "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True)))
        )
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- apiserver access --------------------------------------------------------------------
@dataclass(frozen=True)
class Access:
    server: str
    ca: str
    cert: str
    key: str

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Access:
        config = yaml.safe_load(path.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        return cls(cluster["server"], cluster["certificate-authority"], user["client-certificate"], user["client-key"])

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client(self, timeout: float | None = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.server, verify=self.ssl_context(), timeout=timeout)

    def async_client(self, connections: int = 32) -> AsyncApi:
        return AsyncApi(self, connections)


ASYNC_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class AsyncApi:
    """A minimal asyncio client (aiohttp: several times the request rate of httpx's async client in one core)."""

    def __init__(self, access: Access, connections: int = 32, timeout: float = 120.0) -> None:
        self.access, self.connections, self.timeout = access, connections, timeout
        self.session: aiohttp.ClientSession

    async def __aenter__(self) -> AsyncApi:
        connector = aiohttp.TCPConnector(ssl=self.access.ssl_context(), limit=self.connections)
        self.session = aiohttp.ClientSession(
            self.access.server, connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, body: Any = None, merge: bool = False) -> tuple[int, bytes]:
        headers = MERGE if merge else None
        async with self.session.request(method, path, json=body, headers=headers) as response:
            return response.status, await response.read()

    async def post(self, path: str, body: Any) -> tuple[int, bytes]:
        return await self.request("POST", path, body)

    async def patch(self, path: str, body: Any) -> tuple[int, bytes]:
        return await self.request("PATCH", path, body, merge=True)


def tokens_path(namespace: str, name: str = "") -> str:
    return f"/apis/{API}/namespaces/{namespace}/storagetokens" + (f"/{name}" if name else "")


def providers_path(namespace: str, name: str = "") -> str:
    return f"/apis/{API}/namespaces/{namespace}/storageproviders" + (f"/{name}" if name else "")


def secrets_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/secrets" + (f"/{name}" if name else "")


MERGE = {"Content-Type": "application/merge-patch+json"}


class Api:
    """Small synchronous helpers for setup and checks (never used on the measured hot path)."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self.http = access.client()

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        response = self.http.request(method, path, json=body, **kw)
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("POST", path, body)

    def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("PATCH", path, body, headers=MERGE)

    def namespace(self, name: str) -> None:
        self.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def apply_crds(self, timeout: float = 60) -> None:
        names = []
        for path in sorted((REPO / "crds").glob("*.yaml")):
            body = yaml.safe_load(path.read_text())
            names.append(body["metadata"]["name"])
            self.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                crd = self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") or {}
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not established")
                time.sleep(0.2)
        # The resource must also be served (discovery) before creates succeed.
        while self.http.get(f"/apis/{API}/storagetokens").status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("storagetokens not served")
            time.sleep(0.2)

    def request_totals(self, metric: str = "apiserver_request_total") -> collections.Counter[tuple[str, str, str]]:
        """A counter of the apiserver summed over other labels: (verb, resource, subresource) -> value."""
        text = self.http.get("/metrics").text
        totals: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for line in text.splitlines():
            if not line.startswith(metric + "{"):
                continue
            labels_text, _, value = line.rpartition(" ")
            labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
            totals[(labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))] += float(value)
        return totals

    def durations(self) -> tuple[collections.Counter[tuple[str, str, str]], collections.Counter[tuple[str, str, str]]]:
        """(sum, count) of apiserver_request_duration_seconds by (verb, resource, subresource)."""
        return (
            self.request_totals("apiserver_request_duration_seconds_sum"),
            self.request_totals("apiserver_request_duration_seconds_count"),
        )

    def list_items(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self.get(f"{path}?limit=500" + (f"&continue={token}" if token else "")) or {}
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items


def request_delta(
    before: collections.Counter[tuple[str, str, str]], after: collections.Counter[tuple[str, str, str]]
) -> dict[tuple[str, str, str], float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}


def mean_latency_ms(
    before: tuple[collections.Counter[tuple[str, str, str]], collections.Counter[tuple[str, str, str]]],
    after: tuple[collections.Counter[tuple[str, str, str]], collections.Counter[tuple[str, str, str]]],
    resources: Iterable[str] = OPERATOR_RESOURCES,
) -> dict[str, float]:
    """Mean server-side latency per request kind between two `Api.durations()` readings."""
    wanted = set(resources)
    out = {}
    for key, count in after[1].items():
        n = count - before[1].get(key, 0)
        verb, resource, sub = key
        if n > 0 and resource in wanted and verb != "WATCH":
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] = 1000 * (after[0][key] - before[0].get(key, 0)) / n
    return out


def metric_delta(before: dict[str, float], after: dict[str, float], prefix: str) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix) and v - before.get(k, 0.0)}


def writes_of(delta: dict[tuple[str, str, str], float], resources: Iterable[str] | None = None) -> dict[str, float]:
    """Write requests by "VERB resource[/subresource]" (only `resources` when given)."""
    wanted = None if resources is None else set(resources)
    out: dict[str, float] = {}
    for (verb, resource, sub), n in sorted(delta.items()):
        if verb in WRITE_VERBS and (wanted is None or resource in wanted):
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] = n
    return out


def reads_of(delta: dict[tuple[str, str, str], float], resources: Iterable[str]) -> dict[str, float]:
    wanted = set(resources)
    out: dict[str, float] = {}
    for (verb, resource, sub), n in sorted(delta.items()):
        if verb in READ_VERBS and resource in wanted:
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] = n
    return out


# -- watches -----------------------------------------------------------------------------
class Watch(threading.Thread):
    """One WATCH stream; `on_event(type, object, received_at)` for each event, resumed after timeouts."""

    def __init__(self, access: Access, path: str, on_event: Callable[[str, dict[str, Any], float], None]) -> None:
        super().__init__(name=f"watch {path}", daemon=True)
        self.access, self.path, self.on_event = access, path, on_event
        self.stopped = threading.Event()
        self.synced = threading.Event()
        self.errors = 0
        self._client = access.client(timeout=None)
        listing = self._client.get(path, params={"limit": "1"})
        listing.raise_for_status()
        self.resource_version = listing.json()["metadata"]["resourceVersion"]

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            params = {
                "watch": "1",
                "resourceVersion": self.resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "3000",
            }
            try:
                with self._client.stream("GET", self.path, params=params) as response:
                    if response.status_code != 200:
                        raise RuntimeError(f"watch {self.path}: {response.status_code}")
                    self.synced.set()
                    for line in response.iter_lines():
                        if self.stopped.is_set():
                            return
                        if not line:
                            continue
                        received = time.time()
                        event = json.loads(line)
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            if obj.get("code") == 410:  # too old: never expected on a fresh namespace
                                raise RuntimeError(f"watch {self.path} expired: {obj.get('message')}")
                            break
                        self.resource_version = obj["metadata"]["resourceVersion"]
                        if kind != "BOOKMARK":
                            self.on_event(kind, obj, received)
            except (httpx.HTTPError, RuntimeError, OSError) as error:
                if self.stopped.is_set():
                    return
                self.errors += 1
                log(f"watch {self.path}: {type(error).__name__}: {error}; resuming")
                time.sleep(0.5)


def ready_status(obj: dict[str, Any]) -> str | None:
    for entry in (obj.get("status") or {}).get("conditions") or ():
        if entry.get("type") == "Ready":
            return str(entry.get("status"))
    return None


@dataclass
class TokenTrack:
    name: str
    sent: float | None = None  # when the benchmark sent the create
    secret_at: float | None = None  # first ADDED of its Secret
    ready_at: float | None = None  # first event with Ready=True
    ready: bool = False
    key_id: str = ""
    revision: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)
    intent: str = ""
    renewal_time: float | None = None
    not_after: float | None = None
    deleted: bool = False
    # revision -> first time seen Ready with that revision
    revision_ready: dict[int, float] = field(default_factory=dict)
    # (received, keyId, revision, renewalTime, notAfter) whenever keyId changes
    keys: list[tuple[float, str, int, float | None, float | None]] = field(default_factory=list)
    # keyId -> dueAt of its pending revocation as first seen
    pending_due: dict[str, float] = field(default_factory=dict)


class Tracker:
    """Token and Secret state as the watches report it, with arrival timestamps."""

    def __init__(self, keep_secret_history: bool = False) -> None:
        self.lock = threading.Lock()
        self.tokens: dict[str, TokenTrack] = {}
        self.secret_first: dict[str, float] = {}
        self.secret_data: dict[str, dict[str, str]] = {}
        self.secret_history: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)
        self.keep_secret_history = keep_secret_history
        self.events = 0

    def track(self, name: str) -> TokenTrack:
        track = self.tokens.get(name)
        if track is None:
            track = self.tokens[name] = TokenTrack(name)
        return track

    def sent(self, name: str, at: float) -> None:
        with self.lock:
            track = self.track(name)
            if track.sent is None:
                track.sent = at

    def on_token(self, kind: str, obj: dict[str, Any], received: float) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        with self.lock:
            self.events += 1
            track = self.track(name)
            if kind == "DELETED":
                track.deleted = True
                return
            track.ready = ready_status(obj) == "True"
            key_id = status.get("keyId") or ""
            revision = int(status.get("revision") or 0)
            if key_id != track.key_id:
                track.keys.append(
                    (
                        received,
                        key_id,
                        revision,
                        parse_time(status.get("renewalTime")),
                        parse_time(status.get("notAfter")),
                    )
                )
            track.key_id, track.revision = key_id, revision
            track.pending = list(status.get("pendingRevocations") or [])
            for entry in track.pending:
                track.pending_due.setdefault(entry["keyId"], parse_time(entry.get("dueAt")) or 0.0)
            track.intent = ((status.get("intent") or {}).get("keyName")) or ""
            track.renewal_time = parse_time(status.get("renewalTime"))
            track.not_after = parse_time(status.get("notAfter"))
            if track.ready:
                if track.ready_at is None:
                    track.ready_at = received
                track.revision_ready.setdefault(revision, received)

    def on_secret(self, kind: str, obj: dict[str, Any], received: float) -> None:
        meta = obj["metadata"]
        token = (meta.get("labels") or {}).get(LABEL_TOKEN)
        if not token:
            return
        with self.lock:
            self.events += 1
            name = meta["name"]
            if kind == "DELETED":
                self.secret_data.pop(name, None)
                if self.keep_secret_history:
                    self.secret_history[name].append((received, ""))
                return
            self.secret_first.setdefault(name, received)
            track = self.track(token)
            if track.secret_at is None:
                track.secret_at = received
            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            self.secret_data[name] = data
            if self.keep_secret_history:
                history = self.secret_history[name]
                access = data.get("accessKeyId", "")
                if not history or history[-1][1] != access:
                    history.append((received, access))

    def snapshot(self) -> dict[str, TokenTrack]:
        with self.lock:
            return dict(self.tokens)

    def count(self, predicate: Callable[[TokenTrack], bool], names: Iterable[str] | None = None) -> int:
        with self.lock:
            tracks = self.tokens.values() if names is None else [self.tokens[n] for n in names if n in self.tokens]
            return sum(1 for t in tracks if predicate(t))

    def wait(
        self,
        predicate: Callable[[TokenTrack], bool],
        names: list[str],
        timeout: float,
        what: str,
        progress: float = 10.0,
    ) -> bool:
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while True:
            done = self.count(predicate, names)
            if done >= len(names):
                return True
            now = time.monotonic()
            if now > deadline:
                log(f"timed out waiting for {what}: {done}/{len(names)}")
                return False
            if now - last >= progress:
                log(f"  {what}: {done}/{len(names)}")
                last = now
            time.sleep(0.1)


# -- objects -----------------------------------------------------------------------------
def token_body(name: str, provider: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "StorageToken",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": provider}, **spec},
    }


async def create_many(
    access: Access,
    path: str,
    bodies: list[dict[str, Any]],
    concurrency: int = 32,
    on_sent: Callable[[str, float], None] | None = None,
) -> tuple[float, int]:
    """POST every body with `concurrency` requests in flight; (seconds, failures)."""
    semaphore = asyncio.Semaphore(concurrency)
    failures = 0
    async with access.async_client(concurrency) as client:

        async def one(body: dict[str, Any]) -> None:
            nonlocal failures
            async with semaphore:
                for attempt in range(5):
                    if on_sent is not None and attempt == 0:
                        on_sent(body["metadata"]["name"], time.time())
                    try:
                        status, _ = await client.post(path, body)
                    except ASYNC_ERRORS:
                        await asyncio.sleep(0.5)
                        continue
                    if status in (200, 201, 409):
                        return
                    if status not in (429, 500, 503, 504):
                        break
                    await asyncio.sleep(0.5)
                failures += 1

        started = time.monotonic()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.monotonic() - started, failures


async def patch_many(access: Access, paths: list[str], patch: dict[str, Any], concurrency: int = 32) -> float:
    semaphore = asyncio.Semaphore(concurrency)
    async with access.async_client(concurrency) as client:

        async def one(path: str) -> None:
            async with semaphore:
                for _ in range(5):
                    with contextlib.suppress(*ASYNC_ERRORS):
                        status, _ = await client.patch(path, patch)
                        if status == 200:
                            return
                    await asyncio.sleep(0.5)

        started = time.monotonic()
        await asyncio.gather(*(one(p) for p in paths))
        return time.monotonic() - started


# -- the environment ---------------------------------------------------------------------
class Environment:
    """Control plane + emulators + watches + the operator process, torn down in reverse."""

    def __init__(self, name: str, cluster_id: str, env: dict[str, str] | None = None, workers: int | None = None):
        self.name, self.cluster_id = name, cluster_id
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sto-{name}-"))
        self.operator_env = dict(env or {})
        self.workers = workers
        self.keep = os.environ.get("STO_BENCH_KEEP") == "1"  # keep the work directory (operator log)
        self._stack = contextlib.ExitStack()
        self.plane: LocalControlPlane
        self.access: Access
        self.api: Api
        self.emulators: Emulators
        self.operator: OperatorProcess | None = None
        self.metrics_port = 0
        self.watches: list[Watch] = []

    def __enter__(self) -> Environment:
        try:
            started = time.monotonic()
            self.plane = self._stack.enter_context(LocalControlPlane())
            self.access = Access.from_kubeconfig(self.plane.access.kubeconfig)
            self.api = Api(self.access)
            self._stack.callback(self.api.close)
            self.emulators = Emulators.start()
            self._stack.callback(self.emulators.stop)
            for emulator in (self.emulators.b2, self.emulators.us3):
                # Injected timeouts and lost responses drop connections; don't print each BrokenPipe.
                server = emulator._httpd
                if server is not None:
                    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
            self.api.apply_crds()
            self.api.namespace(OPERATOR_NAMESPACE)
            log(f"control plane and emulators ready in {time.monotonic() - started:.1f}s ({self.workdir})")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for watch in self.watches:
            watch.stop()
        if self.operator is not None:
            self.operator.stop(timeout=10)
        self._stack.close()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- setup helpers
    def provider(self, namespace: str, kind: str, name: str, **extra: Any) -> None:
        secret = self.emulators.credentials_secret(kind, f"{name}-credentials", namespace)
        self.api.create(secrets_path(namespace), secret)
        body = self.emulators.provider(kind, name, namespace, f"{name}-credentials", **extra)
        self.api.create(providers_path(namespace), body)

    def wait_provider_ready(self, namespace: str, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj = self.api.get(providers_path(namespace, name)) or {}
            if ready_status(obj) == "True":
                return
            time.sleep(0.2)
        raise TimeoutError(f"provider {namespace}/{name} not Ready")

    def watch(self, tracker: Tracker, namespace: str) -> None:
        for path, callback in (
            (tokens_path(namespace), tracker.on_token),
            (secrets_path(namespace), tracker.on_secret),
        ):
            watch = Watch(self.access, path, callback)
            watch.start()
            self.watches.append(watch)
        for watch in self.watches:
            watch.synced.wait(10)

    # -- the operator
    def start_operator(self) -> OperatorProcess:
        if self.operator is None:
            self.metrics_port = free_port()
            args = [f"--log-level={os.environ.get('STO_BENCH_LOG_LEVEL', 'INFO')}"]  # DEBUG to trace one token
            if self.workers:
                args.append(f"--workers={self.workers}")
            self.operator = OperatorProcess(
                self.plane.access.kubeconfig,
                self.workdir / "operator.log",
                cluster_id=self.cluster_id,
                operator_namespace=OPERATOR_NAMESPACE,
                metrics_port=self.metrics_port,
                extra_args=args,
                env=self.operator_env,
            )
        self.operator.start()
        return self.operator

    def operator_pid(self) -> int:
        assert self.operator is not None and self.operator.process is not None
        return self.operator.process.pid

    def operator_metrics(self) -> dict[str, float]:
        """The operator's own Prometheus samples: "name{labels}" -> value."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return {}
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    samples[name] = float(value)
        return samples


def emulator_counts(emulators: Emulators) -> collections.Counter[tuple[str, str, str]]:
    """(emulator, call, outcome) -> count, control calls excluded."""
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for emulator in (emulators.b2, emulators.us3):
        with emulator.lock:
            for (call, outcome), n in emulator.counters.items():
                if not call.startswith("_emulator"):
                    counts[(emulator.name, call, outcome)] += n
    return counts


def counts_delta(
    before: collections.Counter[tuple[str, str, str]], after: collections.Counter[tuple[str, str, str]]
) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in sorted(after):
        n = after[key] - before.get(key, 0)
        if n:
            out["/".join(key)] = n
    return out


# -- process sampling --------------------------------------------------------------------
class ProcessSampler(threading.Thread):
    """RSS and CPU% of one process (children included) every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(name="sampler", daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (t, rss MiB, cpu %)
        self._halt = threading.Event()
        self.cpu_start = self._cpu()
        self.t_start = time.monotonic()
        self.cpu_total = 0.0
        self.elapsed = 0.0

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def run(self) -> None:
        previous_cpu, previous_t = self.cpu_start, self.t_start
        while not self._halt.wait(self.interval):
            try:
                cpu, now = self._cpu(), time.monotonic()
                rss = self.process.memory_info().rss / 2**20
            except psutil.Error:
                return
            self.samples.append((now - self.t_start, rss, 100 * (cpu - previous_cpu) / max(now - previous_t, 1e-9)))
            previous_cpu, previous_t = cpu, now

    def finish(self) -> dict[str, Any]:
        self._halt.set()
        self.join()
        with contextlib.suppress(psutil.Error):
            self.cpu_total = self._cpu() - self.cpu_start
        self.elapsed = time.monotonic() - self.t_start
        rss = [s[1] for s in self.samples]
        return {
            "seconds": self.elapsed,
            "cpu_seconds": self.cpu_total,
            "cpu_percent_mean": 100 * self.cpu_total / max(self.elapsed, 1e-9),
            "cpu_percent_max_1s": max((s[2] for s in self.samples), default=None),
            "rss_mib_start": rss[0] if rss else None,
            "rss_mib_end": rss[-1] if rss else None,
            "rss_mib_max": max(rss) if rss else None,
        }


class MachineLoad(threading.Thread):
    """CPU used by processes outside this benchmark's process tree (other jobs sharing the machine)."""

    def __init__(self, interval: float = 2.0) -> None:
        super().__init__(name="machine-load", daemon=True)
        self.interval = interval
        self._halt = threading.Event()
        self.foreign = 0.0
        self.ours = 0.0
        self.started = time.monotonic()
        self._last: dict[int, float] = {}
        self.by_role: dict[str, float] = {}  # CPU seconds of the tree's processes, by what they are
        self._roles: dict[int, str] = {}

    def _role(self, process: psutil.Process, me: int) -> str:
        """etcd, kube-apiserver, kube-controller-manager, operator, or bench (this process: the client,
        the watches and the in-process provider emulators)."""
        if process.pid == me:
            return "bench"
        try:
            name, argv = str(process.name()), " ".join(process.cmdline())
        except psutil.Error:
            return "other"
        if name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            return name
        if "storage_token" in argv or "storage-token" in argv:
            return "operator"  # with its render workers
        return self._roles.get(process.ppid(), "other")

    def _sample(self) -> None:
        me = psutil.Process()
        tree = {me.pid, *(p.pid for p in me.children(recursive=True))}
        current: dict[int, float] = {}
        for process in psutil.process_iter(["pid", "cpu_times"]):
            times = process.info.get("cpu_times")
            if times is None:
                continue
            used = times.user + times.system
            current[process.pid] = used
            delta = used - self._last.get(process.pid, used)
            if process.pid in tree:
                self.ours += delta
                role = self._roles.get(process.pid) or self._roles.setdefault(process.pid, self._role(process, me.pid))
                self.by_role[role] = self.by_role.get(role, 0.0) + delta
            else:
                self.foreign += delta
        self._last = current

    def run(self) -> None:
        self._sample()
        while not self._halt.wait(self.interval):
            with contextlib.suppress(psutil.Error):
                self._sample()

    def finish(self) -> dict[str, Any]:
        self._halt.set()
        self.join()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "other_processes_cpu_cores": self.foreign / elapsed,
            "benchmark_tree_cpu_cores": self.ours / elapsed,
            "loadavg_1m_end": os.getloadavg()[0],
            "cpu_cores_by_role": {role: used / elapsed for role, used in sorted(self.by_role.items())},
            "seconds": elapsed,
        }


def cpu_ms_per_token(load: dict[str, Any], n: int) -> dict[str, float]:
    """CPU milliseconds per token of each process of the tree, from a `MachineLoad.finish()`."""
    seconds = float(load.get("seconds") or 0.0)
    return {role: cores * seconds / n * 1000 for role, cores in (load.get("cpu_cores_by_role") or {}).items()}


# -- profiling ---------------------------------------------------------------------------
class Profiler:
    """`py-spy record` of a process while a phase runs; summarised from the collapsed stacks."""

    def __init__(self, pid: int, output: Path, rate: int = 50) -> None:
        self.pid, self.output, self.rate = pid, output, rate
        self.process: subprocess.Popen[bytes] | None = None
        self.available = shutil.which("py-spy") is not None

    def start(self) -> Profiler:
        if self.available:
            argv = ["py-spy", "record", "-p", str(self.pid), "-f", "raw", "-o", str(self.output)]
            argv += ["-r", str(self.rate), "--nonblocking", "--threads"]
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> dict[str, Any]:
        if self.process is None:
            return {"available": False}
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if not self.output.exists():
            return {"available": True, "error": "py-spy wrote nothing"}
        return summarise_profile(self.output)


CATEGORIES = (
    ("ssl / TLS", ("ssl.py",)),
    ("json encode/decode", ("json/",)),
    ("kubernetes client + urllib3 (apiserver calls)", ("kubernetes/", "urllib3/", "http/client.py", "socket.py")),
    ("kopf (watch streams, event dispatch)", ("kopf/",)),
    ("aiohttp (kopf's watch/patch transport)", ("aiohttp/", "multidict/", "yarl/")),
    ("httpx / httpcore (provider calls)", ("httpx/", "httpcore/", "h11/", "anyio/")),
    ("logging", ("logging/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
    ("thread pool (run_in_executor hand-off)", ("threading.py", "concurrent/", "queue.py")),
    ("jinja2 (secret templates)", ("jinja2/",)),
    ("yaml", ("yaml/",)),
    ("prometheus_client", ("prometheus_client/",)),
    ("storage_token (operator code)", ("storage_token/",)),
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text.strip())
    if not match:
        return text.strip(), ""
    return match.group("func"), match.group("file")


def _short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "operator/"):
        file = file.split(marker)[-1]
    return file


def _category(file: str, func: str) -> str:
    short = _short(file)
    for label, needles in CATEGORIES:
        if any(short.startswith(n) or f"/{n}" in short for n in needles):
            return label
    return "other"


def summarise_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Self time by function and category, and inclusive time of operator functions."""
    self_time: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[0].startswith(("thread ", "process ")):
            thread, frames = frames[0], frames[1:]
            threads["main/loop" if "MainThread" in thread else thread.split("(")[0].strip()] += count
        if not frames:
            continue
        total += count
        func, file = _frame(frames[-1])
        self_time[f"{func} ({_short(file)})"] += count
        # Attribute a sample to the innermost frame that has a known category.
        for frame in reversed(frames):
            f, fl = _frame(frame)
            category = _category(fl, f)
            if category != "other":
                categories[category] += count
                break
        else:
            categories["other"] += count
        seen = set()
        for frame in frames:
            f, fl = _frame(frame)
            if "storage_token/" in fl:
                label = f"{f} ({fl.split('storage_token/')[-1]})"
                if label not in seen:
                    seen.add(label)
                    inclusive[label] += count

    def share(counter: collections.Counter[str], n: int) -> list[list[Any]]:
        return [[name, count, round(100 * count / max(total, 1), 1)] for name, count in counter.most_common(n)]

    return {
        "samples": total,
        "file": path.name,
        "by_category": share(categories, 20),
        "self_top": share(self_time, top),
        "operator_inclusive_top": share(inclusive, top),
        "threads": share(threads, 10),
    }


def git_revision() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
        dirty = subprocess.run(["git", "status", "--porcelain", "operator"], capture_output=True, text=True, cwd=REPO)
        return head.stdout.strip() + ("+dirty(operator)" if dirty.stdout.strip() else "")
    return "unknown"


def kube_version(api: Api) -> str:
    with contextlib.suppress(Exception):
        return str((api.get("/version") or {}).get("gitVersion"))
    return "unknown"


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    log(f"{label}: {time.monotonic() - started:.1f}s")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rounded(data), indent=2, sort_keys=False) + "\n")


def die(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(2)
