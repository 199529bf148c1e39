"""Benchmark the operator on a fresh local control plane: `python tests/bench/bench.py [--sizes 1000,5000] [--quick]`.

For every size N, on its own fresh etcd + kube-apiserver + kube-controller-manager,
with the B2 emulator as the provider and the operator as a process:

burst       N StorageTokens created at once (32 requests in flight): time until every
            token is Ready, tokens/s, apply→Secret and apply→Ready latency p50/p95/p99.
            Timestamps come from WATCH streams on the Secrets and StorageTokens.
efficiency  provider calls and apiserver writes per issuance, then per rotation (all N
            renewed through the `storagetoken.dev/renew` annotation, old keys revoked);
            apiserver counts are `apiserver_request_total` deltas minus this client's writes.
steady      operator RSS and CPU% over 60 s with the N tokens idle between renewals.
arrival     20 new tokens/s for 30 s on top of the N: apply→Secret p50/p95/p99.
limit       the operator stopped, a minimal async client (aiohttp, 32 in flight) replays the
            same apiserver writes per token (token create, Secret create, status patches,
            metadata patches, events) with the operator's own bodies, read back from a token
            the arrival phase issued: what this machine's apiserver can take, in tokens/s
            (done twice, the better run counts; then once with smaller hand-written bodies,
            as the limit sent before, reported apart).

CPU used by other processes on the machine during each size, burst and limit is recorded:
on a shared machine a number measured next to someone else's job says so.

Then once, on another fresh control plane, a renewal storm: 1,000 tokens (200 with
--quick) whose renewals come due within about a minute while the B2 emulator answers
20% of create/delete calls with 429 + Retry-After and the provider's rateLimit is 10/s.

Writes tests/bench/results/latest.{json,md,png} (--output names another set). With
--profile (py-spy on PATH) the operator is sampled during each burst and a summary of
where its CPU goes is added; py-spy itself takes about a third of a core on this kind
of machine, so profiled runs are reported apart from the plain ones.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    ASYNC_ERRORS,
    FAST_LIMIT,
    OPERATOR_RESOURCES,
    QUIET_BACKGROUND,
    RESULTS,
    Access,
    Api,
    Environment,
    MachineLoad,
    ProcessSampler,
    Profiler,
    Tracker,
    Watch,
    counts_delta,
    cpu_ms_per_token,
    create_many,
    emulator_counts,
    git_revision,
    iso,
    kube_version,
    log,
    machine,
    markdown_table,
    mean_latency_ms,
    metric_delta,
    patch_many,
    percentile,
    reads_of,
    request_delta,
    secrets_path,
    summary,
    text_table,
    token_body,
    tokens_path,
    write_json,
    writes_of,
)

NAMESPACE = "bench"
POLICY = {"allowedBuckets": ["demo-b2-*"], "maxDuration": "168h"}


def start_b2(env: Environment) -> Tracker:
    """The benchmark namespace with a Ready B2 provider, the operator running, and a tracker watching."""
    env.api.namespace(NAMESPACE)
    env.provider(NAMESPACE, "b2", "b2", policy=POLICY, rateLimit=FAST_LIMIT)
    tracker = Tracker()
    env.watch(tracker, NAMESPACE)
    env.start_operator()
    env.wait_provider_ready(NAMESPACE, "b2")
    return tracker


TOKEN_SPEC = {
    "permissions": ["read", "list"],
    "buckets": ["demo-b2-data"],
    "duration": "24h",
    "revokeGracePeriod": "5s",
}
RENEW = "storagetoken.dev/renew"


def settle_writes(api: Api, quiet: float = 2.0, timeout: float = 30.0) -> None:
    """Wait until the operator's resources see no new writes for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last_total = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        totals = api.request_totals()
        total = sum(n for (verb, res, _), n in totals.items() if res in OPERATOR_RESOURCES and verb != "WATCH")
        if total != last_total:
            last_total, quiet_since = total, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return
        time.sleep(0.5)


def cdf(values: list[float]) -> list[float]:
    return [percentile(values, q) or 0.0 for q in range(0, 101)] if values else []


def efficiency(
    api_delta: dict[tuple[str, str, str], float],
    em_delta: dict[str, int],
    n: int,
    own_writes: dict[str, float],
) -> dict[str, Any]:
    writes = writes_of(api_delta, OPERATOR_RESOURCES)
    for label, count in own_writes.items():
        writes[label] = writes.get(label, 0) - count
        if writes[label] <= 0:
            del writes[label]
    other_writes = {
        k: v for k, v in writes_of(api_delta).items() if k.split(" ")[1].split("/")[0] not in OPERATOR_RESOURCES
    }
    reads = reads_of(api_delta, OPERATOR_RESOURCES)
    provider_calls = dict(em_delta)
    return {
        "operator_writes_per_token": {k: v / n for k, v in writes.items()},
        "operator_writes_per_token_total": sum(writes.values()) / n,
        "reads_per_token": {k: v / n for k, v in reads.items()},
        "reads_per_token_total": sum(reads.values()) / n,
        "other_writes_total": other_writes,
        "provider_calls_per_token": {k: v / n for k, v in provider_calls.items()},
        "provider_calls_per_token_total": sum(provider_calls.values()) / n,
        "own_writes": own_writes,
    }


def operator_breakdown(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, Any]:
    """Reconciles per token and the operator's own view of provider call latency."""
    reconciles = metric_delta(before, after, "storage_token_reconciles_total")
    sums = metric_delta(before, after, "storage_token_provider_call_seconds_sum")
    counts = metric_delta(before, after, "storage_token_provider_call_seconds_count")
    calls = {}
    for key, total in sums.items():
        count = counts.get(key.replace("_sum", "_count"), 0)
        if count:
            label = key.split("{", 1)[1].rstrip("}")
            calls[label] = {"count": count, "mean_ms": 1000 * total / count}
    return {
        "reconciles_per_token": {k.split("{", 1)[1].rstrip("}"): v / n for k, v in reconciles.items()},
        "provider_calls": calls,
    }


def args_workers(env: Environment) -> int:
    return env.workers or 16


# -- phases -----------------------------------------------------------------------------
def burst(env: Environment, tracker: Tracker, n: int, profile: bool) -> dict[str, Any]:
    names = [f"t{i:05d}" for i in range(n)]
    bodies = [token_body(name, "b2", **TOKEN_SPEC) for name in names]
    api_before, em_before = env.api.request_totals(), emulator_counts(env.emulators)
    durations_before, metrics_before = env.api.durations(), env.operator_metrics()
    sampler = ProcessSampler(env.operator_pid(), 1.0)
    sampler.start()
    load = MachineLoad(interval=1.0)
    load.start()
    own = ProcessSampler(os.getpid(), 1.0)
    own.start()
    profiler = Profiler(env.operator_pid(), env.workdir / f"profile-burst-{n}.txt").start() if profile else None
    log(f"burst: creating {n} StorageTokens")
    create_s, failures = asyncio.run(create_many(env.access, tokens_path(NAMESPACE), bodies, 32, tracker.sent))
    log(f"burst: created in {create_s:.1f}s ({failures} failures); waiting for Ready")
    ok = tracker.wait(lambda t: t.ready_at is not None and t.secret_at is not None, names, 180 + n * 0.5, "Ready")
    process = sampler.finish()
    client_process = own.finish()
    machine_load = load.finish()
    latency = mean_latency_ms(durations_before, env.api.durations())
    operator_metrics = operator_breakdown(metrics_before, env.operator_metrics(), n)
    profile_summary = profiler.stop() if profiler else None
    settle_writes(env.api)
    api_delta = request_delta(api_before, env.api.request_totals())
    em_delta = counts_delta(em_before, emulator_counts(env.emulators))
    tracks = tracker.snapshot()
    sent = [tracks[nm].sent for nm in names if tracks[nm].sent]
    secret = [t.secret_at - t.sent for nm in names if (t := tracks[nm]).secret_at and t.sent]
    ready = [t.ready_at - t.sent for nm in names if (t := tracks[nm]).ready_at and t.sent]
    ready_times = [tracks[nm].ready_at for nm in names if tracks[nm].ready_at]
    start = min(sent)
    all_ready = max(ready_times) - start if ready_times else None
    result = {
        "tokens": n,
        "complete": ok,
        "ready": len(ready_times),
        "create_seconds": create_s,
        "create_failures": failures,
        "first_ready_seconds": min(ready_times) - start if ready_times else None,
        "all_ready_seconds": all_ready,
        "tokens_per_second": n / all_ready if all_ready else None,
        "apply_to_secret": summary(secret),
        "apply_to_ready": summary(ready),
        "apply_to_secret_cdf": cdf(secret),
        "operator_process": process,
        "benchmark_process": client_process,
        "machine_load": machine_load,
        "cpu_ms_per_token": cpu_ms_per_token(machine_load, n),
        "apiserver_mean_latency_ms": latency,
        "operator_metrics": operator_metrics,
        "worker_seconds_per_token": (args_workers(env) * all_ready / n) if all_ready else None,
        "efficiency": efficiency(api_delta, em_delta, n, {"POST storagetokens": n}),
    }
    if profile_summary is not None:
        result["profile"] = profile_summary
    log(
        f"burst: {n} Ready in {all_ready or 0:.1f}s = {result['tokens_per_second'] or 0:.1f}/s; "
        f"apply→Secret p50 {result['apply_to_secret']['p50'] or 0:.2f}s "
        f"p99 {result['apply_to_secret']['p99'] or 0:.2f}s"
    )
    return result


def steady(env: Environment, seconds: float) -> dict[str, Any]:
    log(f"steady: sampling the idle operator for {seconds:.0f}s")
    api_before, em_before = env.api.request_totals(), emulator_counts(env.emulators)
    sampler = ProcessSampler(env.operator_pid(), 1.0)
    sampler.start()
    time.sleep(seconds)
    process = sampler.finish()
    api_delta = request_delta(api_before, env.api.request_totals())
    requests = sum(n for (verb, res, _), n in api_delta.items() if res in OPERATOR_RESOURCES and verb != "WATCH")
    result = {
        **process,
        "apiserver_requests_per_second": requests / seconds,
        "provider_calls": sum(counts_delta(em_before, emulator_counts(env.emulators)).values()),
    }
    log(
        f"steady: CPU {result['cpu_percent_mean']:.1f}% RSS {result['rss_mib_max'] or 0:.0f} MiB, "
        f"{result['apiserver_requests_per_second']:.2f} apiserver req/s"
    )
    return result


def rotation(env: Environment, tracker: Tracker, n: int) -> dict[str, Any]:
    names = [f"t{i:05d}" for i in range(n)]
    api_before, em_before = env.api.request_totals(), emulator_counts(env.emulators)
    durations_before, metrics_before = env.api.durations(), env.operator_metrics()
    log(f"rotation: annotating {n} tokens with {RENEW}")
    started = time.time()
    patch = {"metadata": {"annotations": {RENEW: "bench-1"}}}
    patch_s = asyncio.run(patch_many(env.access, [tokens_path(NAMESPACE, nm) for nm in names], patch))
    ok = tracker.wait(lambda t: t.revision_ready.get(2) is not None, names, 180 + n * 0.5, "renewed")
    renewed_at = max((t.revision_ready.get(2) or 0) for t in tracker.snapshot().values() if t.name in set(names))
    ok_revoked = tracker.wait(lambda t: t.revision >= 2 and not t.pending, names, 120 + n * 0.2, "old keys revoked")
    revoked_at = time.time()
    settle_writes(env.api)
    api_delta = request_delta(api_before, env.api.request_totals())
    em_delta = counts_delta(em_before, emulator_counts(env.emulators))
    result = {
        "complete": ok and ok_revoked,
        "patch_seconds": patch_s,
        "all_renewed_seconds": renewed_at - started,
        "renewals_per_second": n / (renewed_at - started),
        "all_revoked_seconds": revoked_at - started,
        "efficiency": efficiency(api_delta, em_delta, n, {"PATCH storagetokens": n}),
        "apiserver_mean_latency_ms": mean_latency_ms(durations_before, env.api.durations()),
        "operator_metrics": operator_breakdown(metrics_before, env.operator_metrics(), n),
    }
    log(
        f"rotation: {n} renewed in {result['all_renewed_seconds']:.1f}s, "
        f"old keys revoked after {revoked_at - started:.1f}s"
    )
    return result


async def paced_creates(access: Access, bodies: list[dict[str, Any]], rate: float, tracker: Tracker) -> int:
    failures = 0
    async with access.async_client(64) as client:

        async def one(body: dict[str, Any]) -> None:
            nonlocal failures
            tracker.sent(body["metadata"]["name"], time.time())
            try:
                status, _ = await client.post(tokens_path(NAMESPACE), body)
                failures += status not in (200, 201)
            except ASYNC_ERRORS:
                failures += 1

        start = time.monotonic()
        tasks = []
        for index, body in enumerate(bodies):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
    return failures


def arrival(env: Environment, tracker: Tracker, rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    names = [f"a{i:05d}" for i in range(count)]
    bodies = [token_body(name, "b2", **TOKEN_SPEC) for name in names]
    log(f"arrival: {rate:.0f} tokens/s for {seconds:.0f}s")
    sampler = ProcessSampler(env.operator_pid(), 1.0)
    sampler.start()
    failures = asyncio.run(paced_creates(env.access, bodies, rate, tracker))
    ok = tracker.wait(lambda t: t.ready_at is not None and t.secret_at is not None, names, 120, "arrivals Ready")
    process = sampler.finish()
    tracks = tracker.snapshot()
    secret = [t.secret_at - t.sent for nm in names if (t := tracks[nm]).secret_at and t.sent]
    ready = [t.ready_at - t.sent for nm in names if (t := tracks[nm]).ready_at and t.sent]
    result = {
        "rate": rate,
        "seconds": seconds,
        "tokens": count,
        "complete": ok,
        "create_failures": failures,
        "apply_to_secret": summary(secret),
        "apply_to_ready": summary(ready),
        "apply_to_secret_cdf": cdf(secret),
        "operator_cpu_percent_mean": process["cpu_percent_mean"],
    }
    log(
        f"arrival: apply→Secret p50 {result['apply_to_secret']['p50']:.3f}s p99 {result['apply_to_secret']['p99']:.3f}s"
    )
    return result


# -- the apiserver's own limit ------------------------------------------------------------------
def plan(mix: dict[str, float], n: int) -> dict[str, list[int]]:
    """Per write kind, how many each of the n tokens does so the totals match `mix` * n."""
    out = {}
    for label, per_token in mix.items():
        total = round(per_token * n)
        base, extra = divmod(total, n)
        out[label] = [base + (1 if i < extra else 0) for i in range(n)]
    return out


SECRET_DATA = {
    "accessKeyId": "0000000000000000000001",
    "secretAccessKey": "K005" + "x" * 27,
    "endpoint": "http://127.0.0.1:1/s3",
    "region": "us-west-004",
    "bucket": "demo-b2-data",
    "prefix": "",
    "expiresAt": "2030-01-01T00:00:00Z",
    "B2_APPLICATION_KEY_ID": "0000000000000000000001",
    "B2_APPLICATION_KEY": "K005" + "x" * 27,
}


class HandWrittenBodies:
    """The replay's bodies as first written: an annotation for the metadata patch, an intent and a
    one-condition status, a Secret with one label and annotation. Smaller than the operator's."""

    label = "hand-written bodies"

    def __init__(self) -> None:
        self.data = {k: base64.b64encode(v.encode()).decode() for k, v in SECRET_DATA.items()}

    def metadata_patch(self, name: str, j: int) -> dict[str, Any]:
        return {"metadata": {"annotations": {"bench/step": str(j)}}}

    def intent_patch(self, name: str, now: str) -> dict[str, Any]:
        return {"status": {"intent": {"keyName": f"sto-limit-{name}-r1", "revision": 1, "since": now}}}

    def secret(self, name: str, j: int, uid: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name if j == 0 else f"{name}-{j}",
                "labels": {"storagetoken.dev/token": name},
                "annotations": {"storagetoken.dev/key-id-hash": "0" * 16},
            },
            "type": "Opaque",
            "data": self.data,
        }

    def record_patch(self, name: str, i: int, j: int, now: str) -> dict[str, Any]:
        return {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Issued",
                        "message": f"key sto-limit-{name}-r1 valid until 2030-01-01T00:00:00Z",
                        "lastTransitionTime": now,
                    }
                ],
                "keyId": f"0000000000{i:012d}",
                "keyName": f"sto-limit-{name}-r1",
                "revision": j,
                "intent": None,
            }
        }


class OperatorBodies(HandWrittenBodies):
    """The operator's own bodies, read back from one token it issued (and its Secret) with that token's
    name swapped for the replayed one: the finalizer, the intent with its Issuing condition, the whole
    recorded status, and the Secret with every label, annotation, owner reference and data key."""

    label = "the operator's bodies"

    def __init__(self, token: dict[str, Any], secret: dict[str, Any]) -> None:
        super().__init__()
        self.source = str(token["metadata"]["name"])
        self.finalizers = list(token["metadata"].get("finalizers") or [])
        self.status = json.dumps(token["status"])
        meta = secret["metadata"]
        self.secret_meta = json.dumps({k: meta[k] for k in ("labels", "annotations", "ownerReferences") if meta.get(k)})
        self.secret_type, self.data = secret.get("type") or "Opaque", dict(secret.get("data") or {})

    def _named(self, text: str, name: str) -> Any:
        assert len(name) == len(self.source), "same-length names keep the bodies' sizes"
        return json.loads(text.replace(self.source, name))

    def metadata_patch(self, name: str, j: int) -> dict[str, Any]:
        return {"metadata": {"finalizers": self.finalizers}}

    def intent_patch(self, name: str, now: str) -> dict[str, Any]:
        status = self._named(self.status, name)
        issuing = next(c for c in status["conditions"] if c["type"] == "Issuing")
        issuing.update(status="True", message=f"issuing key {status['keyName']} (FirstIssue)", lastTransitionTime=now)
        intent = {"keyName": status["keyName"], "revision": 1, "since": now}
        intent.update(specHash=status.get("specHash", ""), provider=status.get("provider", ""))
        return {"status": {"intent": intent, "conditions": [issuing]}}

    def secret(self, name: str, j: int, uid: str) -> dict[str, Any]:
        meta = self._named(self.secret_meta, name)
        for owner in meta.get("ownerReferences") or ():
            owner["uid"] = uid  # the replayed token: an owner that does not exist would be collected
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name if j == 0 else f"{name}-{j}", **meta},
            "type": self.secret_type,
            "data": self.data,
        }

    def record_patch(self, name: str, i: int, j: int, now: str) -> dict[str, Any]:
        return {"status": {**self._named(self.status, name), "intent": None}}


def operator_bodies(env: Environment, name: str) -> OperatorBodies | None:
    """The bodies of token `name` (one the arrival phase issued: nothing but a first issuance)."""
    token = env.api.get(tokens_path(NAMESPACE, name))
    status = (token or {}).get("status") or {}
    secret = env.api.get(secrets_path(NAMESPACE, status.get("secretName") or "")) if status.get("keyId") else None
    if token is None or secret is None or status.get("revision") != 1:
        return None
    return OperatorBodies(token, secret)


async def replay(
    access: Access,
    namespace: str,
    n: int,
    mix: dict[str, float],
    bodies: HandWrittenBodies,
    concurrency: int = 32,
) -> dict[str, Any]:
    counts = plan(mix, n)
    supported = {
        "POST storagetokens",
        "PATCH storagetokens",
        "PATCH storagetokens/status",
        "POST secrets",
        "PUT secrets",
        "DELETE secrets",
        "POST events",
    }
    skipped = {k: v for k, v in mix.items() if k not in supported}
    semaphore = asyncio.Semaphore(concurrency)
    done = {"requests": 0, "failures": 0}
    errors: list[str] = []

    async with access.async_client(concurrency) as client:

        async def send(method: str, path: str, body: dict[str, Any], merge: bool = False) -> bytes:
            status, data = await client.request(method, path, body, merge=merge)
            done["requests"] += 1
            if status not in (200, 201):
                done["failures"] += 1
                if len(errors) < 5:
                    errors.append(f"{method} {path}: {status} {data[:300].decode(errors='replace')}")
            return data

        async def one(i: int) -> None:
            name = f"l{i:05d}"
            path = tokens_path(namespace, name)
            secret_name = name
            async with semaphore:
                now = iso(time.time())
                uid = ""
                for _ in range(counts.get("POST storagetokens", [1] * n)[i]):
                    created = await send("POST", tokens_path(namespace), token_body(name, "b2", **TOKEN_SPEC))
                    uid = str((json.loads(created or b"{}").get("metadata") or {}).get("uid") or "")
                for j in range(counts.get("PATCH storagetokens", [0] * n)[i]):
                    await send("PATCH", path, bodies.metadata_patch(name, j), merge=True)
                status_patches = counts.get("PATCH storagetokens/status", [0] * n)[i]
                if status_patches:
                    await send("PATCH", path + "/status", bodies.intent_patch(name, now), merge=True)
                for j in range(counts.get("POST secrets", [0] * n)[i]):
                    await send("POST", secrets_path(namespace), bodies.secret(secret_name, j, uid))
                for j in range(counts.get("PUT secrets", [0] * n)[i]):
                    code, raw = await client.request("GET", secrets_path(namespace, secret_name))
                    body = json.loads(raw) if code == 200 else {}
                    if body:
                        body["metadata"].setdefault("annotations", {})["bench/step"] = str(j)
                        await send("PUT", secrets_path(namespace, secret_name), body)
                for j in range(1, status_patches):
                    await send("PATCH", path + "/status", bodies.record_patch(name, i, j, now), merge=True)
                for _ in range(counts.get("POST events", [0] * n)[i]):
                    event = {
                        "metadata": {"generateName": f"{name}.", "namespace": namespace},
                        "involvedObject": {
                            "apiVersion": "storagetoken.dev/v1alpha1",
                            "kind": "StorageToken",
                            "name": name,
                            "namespace": namespace,
                        },
                        "reason": "Issued",
                        "message": f"issued key sto-limit-{name}-r1",
                        "type": "Normal",
                        "source": {"component": "bench"},
                        "firstTimestamp": now,
                        "lastTimestamp": now,
                        "count": 1,
                    }
                    await send("POST", f"/api/v1/namespaces/{namespace}/events", event)
                for j in range(counts.get("DELETE secrets", [0] * n)[i]):
                    await send("DELETE", secrets_path(namespace, secret_name if j == 0 else f"{secret_name}-{j}"), {})

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        seconds = time.monotonic() - started
    return {
        "seconds": seconds,
        "requests": done["requests"],
        "failures": done["failures"],
        "tokens_per_second": n / seconds,
        "requests_per_second": done["requests"] / seconds,
        "write_mix_per_token": mix,
        "bodies": bodies.label,
        "skipped": skipped,
        "errors": errors,
    }


def limit(env: Environment, n: int, mix: dict[str, float]) -> dict[str, Any]:
    assert env.operator is not None
    own = operator_bodies(env, "a00000")  # read while the tokens are still there, before anything stops
    env.operator.stop()
    # Twice with the operator's own bodies (the better one counts: a capacity, not an average), then
    # once with the smaller hand-written ones the limit used to send, to show what that difference is.
    plan_runs: list[tuple[str, HandWrittenBodies]] = [("limit", own), ("limit2", own)] if own else []
    plan_runs.append(("limit3", HandWrittenBodies()))
    for namespace, _ in plan_runs:
        env.api.namespace(namespace)
        time.sleep(1)
    log(f"limit: replaying {sum(mix.values()):.2f} writes/token x {n} straight to the apiserver (operator stopped)")
    runs = []
    for namespace, bodies in plan_runs:
        # The same observers as during the burst: the bench's own watches of tokens and Secrets cost the
        # API server there, so they do here (the operator's watches are the operator's cost).
        observers = [
            Watch(env.access, path, lambda *_: None) for path in (tokens_path(namespace), secrets_path(namespace))
        ]
        for watch in observers:
            watch.start()
        for watch in observers:
            watch.synced.wait(10)
        load = MachineLoad(interval=1.0)
        load.start()
        before = env.api.request_totals()
        run = asyncio.run(replay(env.access, namespace, n, mix, bodies))
        for watch in observers:
            watch.stop()
        run["apiserver_writes"] = writes_of(request_delta(before, env.api.request_totals()), OPERATOR_RESOURCES)
        run["machine_load"] = load.finish()
        run["cpu_ms_per_token"] = cpu_ms_per_token(run["machine_load"], n)
        runs.append(run)
        log(
            f"limit ({bodies.label}): {run['tokens_per_second']:.0f} tokens/s, {run['requests_per_second']:.0f} "
            f"writes/s, {run['failures']} failures "
            f"(other jobs {run['machine_load']['other_processes_cpu_cores']:.2f} cores)"
        )
    counted = [r for r in runs if r["bodies"] == (own or HandWrittenBodies()).label]
    best = max(counted, key=lambda r: r["tokens_per_second"])
    hand = runs[-1]
    return {
        **best,
        "runs_tokens_per_second": [r["tokens_per_second"] for r in counted],
        "hand_written_bodies": {k: hand[k] for k in ("tokens_per_second", "cpu_ms_per_token", "failures")},
    }


def run_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    log(f"=== size {n} ===")
    load = MachineLoad()
    load.start()
    with Environment(f"bench-{n}", "bench", env=QUIET_BACKGROUND, workers=args.workers) as env:
        tracker = start_b2(env)
        time.sleep(2)
        result: dict[str, Any] = {"tokens": n, "kube_version": kube_version(env.api), "revision": git_revision()}
        result["burst"] = burst(env, tracker, n, args.profile)
        if args.burst_only:
            result["machine_load"] = load.finish()
            return result
        time.sleep(3)
        result["steady"] = steady(env, args.steady_seconds)
        result["rotation"] = rotation(env, tracker, n)
        result["arrival"] = arrival(env, tracker, args.rate, args.arrival_seconds)
        mix = dict(result["burst"]["efficiency"]["operator_writes_per_token"])
        mix["POST storagetokens"] = mix.get("POST storagetokens", 0) + 1  # the user's apply
        result["limit"] = limit(env, n, mix)
        operator_rate = result["burst"]["tokens_per_second"] or 0
        result["operator_vs_limit"] = operator_rate / result["limit"]["tokens_per_second"]
        result["watch_errors"] = sum(w.errors for w in env.watches)
        result["machine_load"] = load.finish()
        log(f"other processes on this machine used {result['machine_load']['other_processes_cpu_cores']:.2f} cores")
        return result


# -- renewal storm --------------------------------------------------------------------------------
def storm(args: argparse.Namespace) -> dict[str, Any]:
    n = args.storm_tokens
    # Renewals come due duration - renewBefore after issuance, and again as long after that: the storm
    # must be over before the next round starts, and renewBefore leaves it room before the keys expire.
    duration, renew_before = ("5m", "3m30s") if args.quick else ("12m", "8m")
    limit_rate = {"requestsPerSecond": args.storm_rate, "burst": 10}
    log(f"=== renewal storm: {n} tokens, duration {duration}, renewBefore {renew_before}, rateLimit {limit_rate} ===")
    load = MachineLoad()
    load.start()
    with Environment("storm", "storm", env=QUIET_BACKGROUND, workers=args.workers) as env:
        tracker = start_b2(env)
        names = [f"s{i:05d}" for i in range(n)]
        spec = {**TOKEN_SPEC, "duration": duration, "renewBefore": renew_before, "revokeGracePeriod": "30s"}
        asyncio.run(create_many(env.access, tokens_path(NAMESPACE), [token_body(nm, "b2", **spec) for nm in names]))
        if not tracker.wait(lambda t: t.ready_at is not None, names, 300, "storm tokens Ready"):
            raise RuntimeError("storm tokens never became Ready")
        first = {nm: t for nm, t in tracker.snapshot().items() if nm in set(names)}
        first_key = {nm: t.key_id for nm, t in first.items()}
        due = {nm: t.renewal_time or 0.0 for nm, t in first.items()}
        expiry = {nm: t.not_after or 0.0 for nm, t in first.items()}
        issued_spread = max(t.ready_at or 0 for t in first.values()) - min(t.ready_at or 0 for t in first.values())
        # Now make it hard: a low client-side limit and a provider answering 429 to a share of calls.
        env.api.merge_patch(
            f"/apis/storagetoken.dev/v1alpha1/namespaces/{NAMESPACE}/storageproviders/b2",
            {"spec": {"rateLimit": limit_rate}},
        )
        fault = env.emulators.b2.faults.inject(
            "status",
            ["b2_create_key", "b2_delete_key"],
            probability=args.storm_429,
            times=None,
            status=429,
            retry_after=2,
        )
        em_before = emulator_counts(env.emulators)
        metrics_before = env.operator_metrics()
        first_due, last_due = min(due.values()), max(due.values())
        log(f"storm: renewals due between {iso(first_due)} and {iso(last_due)} ({last_due - first_due:.0f}s apart)")
        deadline = max(expiry.values()) + 30 - time.time()
        ok = tracker.wait(lambda t: t.revision_ready.get(2) is not None, names, max(deadline, 60), "storm renewed", 15)
        tracker.wait(
            lambda t: t.revision >= 2 and all(p["keyId"] != first_key.get(t.name) for p in t.pending),
            names,
            120,
            "storm old keys revoked",
            15,
        )
        env.emulators.b2.faults.clear()
        em_delta = counts_delta(em_before, emulator_counts(env.emulators))
        metrics_after = env.operator_metrics()
        final = tracker.snapshot()
        renewed_at = {nm: final[nm].revision_ready.get(2) for nm in names}
        in_time = [nm for nm in names if renewed_at[nm] and renewed_at[nm] < expiry[nm]]
        lateness = [renewed_at[nm] - due[nm] for nm in names if renewed_at[nm]]
        margin = [expiry[nm] - renewed_at[nm] for nm in names if renewed_at[nm]]
        wait_key = 'storage_token_rate_limit_wait_seconds_total{provider="b2"}'
        limited = metrics_after.get(wait_key, 0) - metrics_before.get(wait_key, 0)
        calls = {k: v for k, v in em_delta.items() if k.startswith("b2/")}
        too_many = sum(v for k, v in calls.items() if k.endswith("fault-status"))
        done_times = sorted(t for t in renewed_at.values() if t)
        result = {
            "tokens": n,
            "duration": duration,
            "renew_before": renew_before,
            "rate_limit": limit_rate,
            "fault": {"status": 429, "retry_after": 2, "probability": args.storm_429, "hits": fault.hits},
            "initial_issuance_spread_seconds": issued_spread,
            "renewals_due_within_seconds": last_due - first_due,
            "renewed": len([nm for nm in names if renewed_at[nm]]),
            "renewed_before_expiry": len(in_time),
            "expired_before_renewal": n - len(in_time),
            "complete": ok,
            "storm_seconds": (done_times[-1] - first_due) if done_times else None,
            "lateness_seconds": summary(lateness),
            "max_lateness_seconds": max(lateness) if lateness else None,
            "min_margin_before_expiry_seconds": min(margin) if margin else None,
            "responses_429": too_many,
            "provider_calls": calls,
            "rate_limit_wait_seconds_total": limited,
            "timeline": {
                "due": [d - first_due for d in sorted(due.values())],
                "renewed": [t - first_due for t in done_times],
                "first_expiry": min(expiry.values()) - first_due,
            },
        }
        result["machine_load"] = load.finish()
        log(
            f"storm: {result['renewed_before_expiry']}/{n} renewed before expiry, max lateness "
            f"{result['max_lateness_seconds'] or 0:.0f}s, {too_many} x 429, "
            f"min margin {result['min_margin_before_expiry_seconds'] or 0:.0f}s"
        )
        return result


# -- output ------------------------------------------------------------------------------------------
def per_token(phase: dict[str, Any]) -> str:
    ms = phase["cpu_ms_per_token"]
    return " / ".join(f"{ms.get(role, 0.0):.1f}" for role in ("kube-apiserver", "etcd", "operator", "bench"))


def tables(results: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[list[Any]]]:
    headers = ["metric", *[f"N={s['tokens']}" for s in results["sizes"]]]
    rows: list[list[Any]] = []

    def row(label: str, get: Any) -> None:
        values = []
        for size in results["sizes"]:
            try:
                values.append(get(size))
            except (KeyError, TypeError):
                values.append(None)
        rows.append([label, *values])

    row("burst: all Ready (s)", lambda s: s["burst"]["all_ready_seconds"])
    row("burst: throughput (tokens/s)", lambda s: s["burst"]["tokens_per_second"])
    row("burst: apply→Secret p50 (s)", lambda s: s["burst"]["apply_to_secret"]["p50"])
    row("burst: apply→Secret p95 (s)", lambda s: s["burst"]["apply_to_secret"]["p95"])
    row("burst: apply→Secret p99 (s)", lambda s: s["burst"]["apply_to_secret"]["p99"])
    row("burst: operator CPU (% of a core)", lambda s: s["burst"]["operator_process"]["cpu_percent_mean"])
    row("burst: CPU ms per token, API server / etcd / operator / bench", lambda s: per_token(s["burst"]))
    row("apiserver limit, same writes and bodies (tokens/s)", lambda s: s["limit"]["tokens_per_second"])
    row("limit: CPU ms per token, API server / etcd / operator / bench", lambda s: per_token(s["limit"]))
    row(
        "limit with the smaller hand-written bodies (tokens/s)",
        lambda s: (s["limit"].get("hand_written_bodies") or {}).get("tokens_per_second", "-"),
    )
    row(
        "... its CPU ms per token",
        lambda s: per_token(s["limit"]["hand_written_bodies"]) if s["limit"].get("hand_written_bodies") else "-",
    )
    row("operator / apiserver limit", lambda s: f"{100 * s['operator_vs_limit']:.0f}%")
    row("steady: operator RSS (MiB)", lambda s: s["steady"]["rss_mib_max"])
    row("steady: operator CPU (%)", lambda s: s["steady"]["cpu_percent_mean"])
    row("steady: apiserver req/s", lambda s: s["steady"]["apiserver_requests_per_second"])
    row("issuance: provider calls", lambda s: s["burst"]["efficiency"]["provider_calls_per_token_total"])
    row("issuance: apiserver writes", lambda s: s["burst"]["efficiency"]["operator_writes_per_token_total"])
    row("issuance: apiserver reads", lambda s: s["burst"]["efficiency"]["reads_per_token_total"])
    row("rotation: all renewed (s)", lambda s: s["rotation"]["all_renewed_seconds"])
    row("rotation: provider calls", lambda s: s["rotation"]["efficiency"]["provider_calls_per_token_total"])
    row("rotation: apiserver writes", lambda s: s["rotation"]["efficiency"]["operator_writes_per_token_total"])
    row("arrival 20/s: apply→Secret p50 (s)", lambda s: s["arrival"]["apply_to_secret"]["p50"])
    row("arrival 20/s: apply→Secret p99 (s)", lambda s: s["arrival"]["apply_to_secret"]["p99"])
    row("other jobs during the burst (CPU cores)", lambda s: s["burst"]["machine_load"]["other_processes_cpu_cores"])
    row("other jobs during the limit (CPU cores)", lambda s: s["limit"]["machine_load"]["other_processes_cpu_cores"])
    row("other jobs, whole size (CPU cores)", lambda s: s["machine_load"]["other_processes_cpu_cores"])
    storm_rows: list[list[Any]] = []
    st = results.get("storm")
    if st:
        storm_rows = [
            ["tokens", st["tokens"]],
            ["renewals due within (s)", st["renewals_due_within_seconds"]],
            ["provider rateLimit (req/s)", st["rate_limit"]["requestsPerSecond"]],
            ["429 + Retry-After share of create/delete", f"{100 * st['fault']['probability']:.0f}%"],
            ["renewed before expiry", f"{st['renewed_before_expiry']}/{st['tokens']}"],
            ["max lateness after renewalTime (s)", st["max_lateness_seconds"]],
            ["p50 lateness (s)", st["lateness_seconds"]["p50"]],
            ["min margin before expiry (s)", st["min_margin_before_expiry_seconds"]],
            ["429s answered", st["responses_429"]],
            ["time waiting on the rate limit (s, summed)", st["rate_limit_wait_seconds_total"]],
            ["storm length, first due → last renewed (s)", st["storm_seconds"]],
        ]
    return headers, rows, storm_rows


def breakdown_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for size in results["sizes"]:
        for phase in ("burst", "rotation"):
            if phase not in size:
                continue
            eff = size[phase]["efficiency"]
            writes = ", ".join(f"{k} {v:.2f}" for k, v in eff["operator_writes_per_token"].items())
            calls = ", ".join(f"{k.split('/', 1)[1]} {v:.2f}" for k, v in eff["provider_calls_per_token"].items())
            reads = ", ".join(f"{k} {v:.2f}" for k, v in eff["reads_per_token"].items())
            rows.append([f"N={size['tokens']} {'issuance' if phase == 'burst' else 'rotation'}", writes, reads, calls])
    return rows


def _label(labels: str, name: str) -> str:
    match = re.search(rf'{name}="([^"]*)"', labels)
    return match.group(1) if match else labels


def write_markdown(results: dict[str, Any], path: Path) -> None:
    headers, rows, storm_rows = tables(results)
    lines = [
        f"# Benchmark results ({results['finished']})",
        "",
        f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['memory_gib']} GiB, Python "
        f"{results['machine']['python']}, kube-apiserver {results['kube_version']}; operator at {results['revision']}, "
        f"{results['settings']['workers'] or 'default'} workers. Everything (etcd, kube-apiserver, "
        "kube-controller-manager, operator, emulators, benchmark client) shares the machine.",
        "",
        markdown_table(headers, rows),
        "",
        "Per token (apiserver requests and provider calls per issuance / per rotation):",
        "",
        markdown_table(["phase", "operator writes", "reads", "provider calls"], breakdown_rows(results)),
    ]
    latency_rows = []
    for size in results["sizes"]:
        burst_result = size["burst"]
        latency = ", ".join(f"{k} {v:.0f}" for k, v in burst_result["apiserver_mean_latency_ms"].items())
        calls = burst_result["operator_metrics"]["provider_calls"]
        provider = ", ".join(f"{_label(k, 'call')} {v['mean_ms']:.0f}" for k, v in calls.items())
        latency_rows.append([f"N={size['tokens']}", latency, provider, burst_result["worker_seconds_per_token"]])
    lines += [
        "",
        "Where a burst issuance waits: mean server-side apiserver latency (ms) per request kind, the operator's "
        "provider call latency (ms), and worker-seconds per token (workers x burst time / N):",
        "",
        markdown_table(["size", "apiserver (ms)", "provider (ms)", "worker-s/token"], latency_rows),
    ]
    if storm_rows:
        lines += ["", "Renewal storm:", "", markdown_table(["", "value"], storm_rows)]
    profiles = [(s["tokens"], s["burst"].get("profile")) for s in results["sizes"] if s["burst"].get("profile")]
    for n, profile in profiles:
        if not profile or "by_category" not in profile:
            continue
        lines += ["", f"Operator profile during the N={n} burst ({profile['samples']} py-spy samples, CPU-active):", ""]
        lines.append(markdown_table(["where", "samples", "%"], profile["by_category"][:12]))
    path.write_text("\n".join(lines) + "\n")


def write_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    labels = [f"N={s['tokens']}" for s in sizes]
    x = range(len(sizes))

    ax = axes[0][0]
    operator = [s["burst"]["tokens_per_second"] or 0 for s in sizes]
    apiserver = [s["limit"]["tokens_per_second"] for s in sizes]
    ax.bar([i - 0.2 for i in x], operator, 0.4, label="operator (burst)")
    ax.bar([i + 0.2 for i in x], apiserver, 0.4, label="apiserver limit (same writes, no operator)")
    for i, (o, a) in enumerate(zip(operator, apiserver, strict=True)):
        ax.annotate(f"{100 * o / a:.0f}%", (i - 0.2, o), ha="center", va="bottom")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("tokens / s")
    ax.set_title("Issuance throughput")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    width = 0.13
    series = [
        ("burst p50", lambda s: s["burst"]["apply_to_secret"]["p50"]),
        ("burst p95", lambda s: s["burst"]["apply_to_secret"]["p95"]),
        ("burst p99", lambda s: s["burst"]["apply_to_secret"]["p99"]),
        ("20/s p50", lambda s: s["arrival"]["apply_to_secret"]["p50"]),
        ("20/s p95", lambda s: s["arrival"]["apply_to_secret"]["p95"]),
        ("20/s p99", lambda s: s["arrival"]["apply_to_secret"]["p99"]),
    ]
    for k, (label, get) in enumerate(series):
        ax.bar([i + (k - 2.5) * width for i in x], [get(s) or 0 for s in sizes], width, label=label)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("apply → Secret (s, log)")
    ax.set_title("Latency: burst vs steady 20 tokens/s")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[1][0]
    for s in sizes:
        q = s["burst"]["apply_to_secret_cdf"]
        ax.plot(q, [i / 100 for i in range(len(q))], label=f"burst N={s['tokens']}")
        q = s["arrival"]["apply_to_secret_cdf"]
        ax.plot(q, [i / 100 for i in range(len(q))], linestyle="--", label=f"20/s after N={s['tokens']}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("apply → Secret (s, log)")
    ax.set_ylabel("fraction of tokens")
    ax.set_title("Latency distribution")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    st = results.get("storm")
    if st:
        due, done = st["timeline"]["due"], st["timeline"]["renewed"]
        ax.plot(due, range(1, len(due) + 1), label="renewals due")
        ax.plot(done, range(1, len(done) + 1), label="renewed (Ready with the new key)")
        ax.axvline(st["timeline"]["first_expiry"], color="red", linestyle=":", label="first key expiry")
        ax.set_xlabel("seconds since the first renewal was due")
        ax.set_ylabel("tokens")
        ax.set_title(
            f"Renewal storm: {st['tokens']} tokens, rateLimit {st['rate_limit']['requestsPerSecond']}/s, "
            f"{100 * st['fault']['probability']:.0f}% 429"
        )
        ax.legend(fontsize=8)
    else:
        ax.axis("off")
    fig.suptitle(f"storage-token-operator benchmark, {results['machine']['cpus']} CPUs ({results['finished']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=None, help="comma-separated token counts (default 1000,5000; --quick 300)")
    parser.add_argument("--quick", action="store_true", help="small sizes and short phases, to check the wiring")
    parser.add_argument("--workers", type=int, default=None, help="operator --workers (default: the operator's)")
    parser.add_argument("--steady-seconds", type=float, default=None)
    parser.add_argument("--rate", type=float, default=20.0, help="arrival rate for the latency phase (tokens/s)")
    parser.add_argument("--arrival-seconds", type=float, default=None)
    parser.add_argument("--storm-tokens", type=int, default=None)
    parser.add_argument("--storm-rate", type=float, default=10.0, help="provider rateLimit during the storm")
    parser.add_argument("--storm-429", type=float, default=0.2, help="share of create/delete calls answered 429")
    parser.add_argument("--no-storm", dest="storm", action="store_false")
    parser.add_argument("--burst-only", action="store_true", help="only the burst phase (with --profile: a profile)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the operator during each burst (costs about a third of a core: report those numbers apart)",
    )
    parser.add_argument("--output", default="latest", help="results/<output>.{json,md,png}")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("300" if args.quick else "1000,5000")).split(",") if s]
    args.steady_seconds = args.steady_seconds or (15.0 if args.quick else 60.0)
    args.arrival_seconds = args.arrival_seconds or (10.0 if args.quick else 30.0)
    args.storm_tokens = args.storm_tokens or (200 if args.quick else 1000)
    if args.burst_only:
        args.storm = False
    started = time.time()
    results: dict[str, Any] = {
        "started": iso(started),
        "machine": machine(),
        "revision": git_revision(),
        "settings": {
            "sizes": sizes,
            "quick": args.quick,
            "workers": args.workers,
            "steady_seconds": args.steady_seconds,
            "arrival_rate": args.rate,
            "arrival_seconds": args.arrival_seconds,
            "provider_rate_limit": FAST_LIMIT,
            "token_spec": TOKEN_SPEC,
            "client_concurrency": 32,
            "profile": args.profile,
        },
        "sizes": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        results["sizes"].append(run_size(n, args))
    if args.storm:
        results["storm"] = storm(args)
    results["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["duration_seconds"] = time.time() - started
    results["kube_version"] = next((s["kube_version"] for s in results["sizes"]), "unknown")
    base = RESULTS / args.output
    write_json(base.with_suffix(".json"), results)
    write_markdown(results, base.with_suffix(".md"))
    if not args.burst_only:
        write_chart(results, base.with_suffix(".png"))
    headers, rows, storm_rows = tables(results)
    print()
    print(text_table(headers, rows))
    if storm_rows:
        print()
        print(text_table(["renewal storm", "value"], storm_rows))
    print(f"\nwrote {base.with_suffix('.json')} and the rest in {time.time() - started:.0f}s")
    incomplete = [s["tokens"] for s in results["sizes"] if not s["burst"]["complete"]]
    return 1 if incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
