"""Zero-break rotation at scale: `python tests/bench/rollout_bench.py [--tokens 1000] [--workloads 50]`.

On a fresh etcd + kube-apiserver + kube-controller-manager, with both provider emulators and the
operator as a process:

setup     W Deployments (1 replica, an image nothing runs; each pod template reads the Secrets of its
          N/W tokens through `envFrom`) and N StorageTokens, alternately on B2 and US3, each with its
          own Secret and one Deployment as its `restartTargets`, all issued and Ready. There is no
          kubelet: this bench plays it, marking every new Pod Running and Ready through the status
          subresource after a random 1-3 s (`--ready-delay`), so each rollout takes a few seconds.
rotation  every token gets the `storagetoken.dev/renew` annotation at once (shuffled order), so all N
          rotate within about a minute (the Secret writes' span is reported; it is the operator's
          renewal rate, noted but not a goal). The operator restarts each Deployment (coalesced per
          workload, `STO_RESTART_MIN_INTERVAL`), follows the rollouts and revokes each old key once
          its workload has rolled out (never before `revokeGracePeriod`, at most `maxRevokeDelay`).

Measured (timestamps from WATCH streams on Deployments, Pods, Secrets and StorageTokens, and from the
emulators' own delete calls, wrapped in this process):
- restarts per workload against the coalescing windows its tokens' rotations spanned (windows: the
  rotations' Secret writes, grouped greedily into runs of the restart interval; goal: at most 1
  restart per window, and no restart that no new rotation asked for);
- last adoption -> revocation: from the moment the bench saw a token's target finish rolling out
  (observed generation >= the one carrying the restart, every replica updated, ready and available)
  to the emulator's delete of the old key (goal: p99 <= 5 s); a delete at most WATCH_SLACK before
  the bench's own watch showed the rollout finished counts as 0 s (the operator read that event first);
- rotations completed, keys revoked before adoption (forced by maxRevokeDelay counted apart; any
  other is a failure), and the phase's wall time.

Writes tests/bench/results/rollout.{json,md,png} (--output names another set); exits 1 when a goal
fails, naming it. STO_BENCH_KEEP=1 keeps the work directory (the operator log).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import heapq
import itertools
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    FAST_LIMIT,
    QUIET_BACKGROUND,
    REPO,
    RESULTS,
    SCOPES,
    Environment,
    MachineLoad,
    ProcessSampler,
    Profiler,
    Tracker,
    Watch,
    counts_delta,
    create_many,
    emulator_counts,
    git_revision,
    kube_version,
    log,
    machine,
    markdown_table,
    mean_latency_ms,
    parse_time,
    patch_many,
    percentile,
    reads_of,
    request_delta,
    summary,
    text_table,
    token_body,
    tokens_path,
    write_json,
    writes_of,
)

import storage_token
from storage_token.api.durations import parse_duration

NAMESPACE = "bench"
RENEW = "storagetoken.dev/renew"
RESTARTED_AT = "storagetoken.dev/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
DEFAULT_RESTART_INTERVAL = 10.0  # the operator's default restart_min_interval (README: STO_RESTART_MIN_INTERVAL)
GOAL_P99 = 5.0
ROTATION_WINDOW = 60.0
# The operator and the bench read the same Deployment event on their own watches; the bench's (one of
# several busy threads here) may parse it this much later. A revocation that close before the bench saw
# the rollout finish followed that event, it did not precede it.
WATCH_SLACK = 0.25
SCRAPE = 5.0  # seconds between two reads of the operator's /metrics


def deployments_path(name: str = "") -> str:
    return f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments" + (f"/{name}" if name else "")


def pods_path(name: str = "") -> str:
    return f"/api/v1/namespaces/{NAMESPACE}/pods" + (f"/{name}" if name else "")


def workload_name(j: int) -> str:
    return f"w{j:03d}"


def token_name(i: int) -> str:
    return f"t{i:05d}"


def deployment_body(name: str, secrets: list[str]) -> dict[str, Any]:
    """One replica reading every Secret of its tokens (so the operator may restart it for each)."""
    labels = {"app": name}
    container = {
        "name": "app",
        "image": "app:1",
        "envFrom": [{"secretRef": {"name": s, "optional": True}, "prefix": f"{s.upper()}_"} for s in secrets],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


# -- the kubelet this control plane doesn't have -------------------------------------------
class KubeletPlayer(threading.Thread):
    """Marks each new Pod Running and Ready after a random delay, as a kubelet would once it started."""

    def __init__(self, env: Environment, delay: tuple[float, float], seed: int) -> None:
        super().__init__(name="kubelet-player", daemon=True)
        self.env, self.delay = env, delay
        self.random = random.Random(seed)
        self.lock = threading.Condition()
        self.queue: list[tuple[float, str]] = []
        self.scheduled: set[str] = set()
        self.marked = 0
        self.failures = 0
        self.late: list[float] = []  # how long after its due time each Pod was marked (a busy bench shows here)
        self.halt = threading.Event()
        self.http = env.access.client()

    def on_pod(self, kind: str, pod: dict[str, Any], received: float) -> None:
        meta = pod["metadata"]
        name = meta["name"]
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            return
        conditions = (pod.get("status") or {}).get("conditions") or ()
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return
        with self.lock:
            if name in self.scheduled:
                return
            self.scheduled.add(name)
            heapq.heappush(self.queue, (received + self.random.uniform(*self.delay), name))
            self.lock.notify()

    def run(self) -> None:
        while not self.halt.is_set():
            with self.lock:
                while not self.queue and not self.halt.is_set():
                    self.lock.wait(0.5)
                if self.halt.is_set():
                    return
                due, name = self.queue[0]
                wait = due - time.time()
                if wait > 0:
                    self.lock.wait(min(wait, 0.5))
                    continue
                heapq.heappop(self.queue)
            self.late.append(time.time() - due)
            self._mark(name)

    def _mark(self, name: str) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": now}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        body = {"status": {"phase": "Running", "conditions": conditions}}
        try:
            response = self.http.patch(
                pods_path(name) + "/status", json=body, headers={"Content-Type": "application/merge-patch+json"}
            )
        except OSError:
            self.failures += 1
            return
        if response.status_code == 200:
            self.marked += 1
        elif response.status_code != 404:  # a Pod scaled away before it was due is fine
            self.failures += 1

    def stop(self) -> None:
        self.halt.set()
        with self.lock:
            self.lock.notify()
        self.join(5)
        self.http.close()


# -- what the bench observes -----------------------------------------------------------------
@dataclass
class DeploymentSample:
    received: float
    generation: int
    observed: int
    complete: bool
    rolled_out: bool  # onto `observed` (a newer generation may be written already)
    restarted_at: str
    revision: int


def rolled_out(body: dict[str, Any]) -> bool:
    """Every replica on the template of the generation its controller last observed: updated, ready and
    available. That generation's rollout is done, even if a newer restart has already been written."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    desired = int(spec.get("replicas", 1))
    counts = [int(status.get(k) or 0) for k in ("updatedReplicas", "readyReplicas", "availableReplicas", "replicas")]
    return all(c == desired for c in counts)


def complete(body: dict[str, Any]) -> bool:
    """Rolled out onto the newest template: nothing left to do for anyone."""
    observed = int((body.get("status") or {}).get("observedGeneration") or 0)
    return observed >= int(body["metadata"].get("generation") or 0) and rolled_out(body)


@dataclass
class Deployments:
    """Every Deployment event with its arrival time."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    samples: dict[str, list[DeploymentSample]] = field(default_factory=lambda: collections.defaultdict(list))

    def on_event(self, kind: str, body: dict[str, Any], received: float) -> None:
        if kind == "DELETED":
            return
        meta = body["metadata"]
        template = ((body.get("spec") or {}).get("template") or {}).get("metadata") or {}
        sample = DeploymentSample(
            received=received,
            generation=int(meta.get("generation") or 0),
            observed=int((body.get("status") or {}).get("observedGeneration") or 0),
            complete=complete(body),
            rolled_out=rolled_out(body),
            restarted_at=(template.get("annotations") or {}).get(RESTARTED_AT, ""),
            revision=int((meta.get("annotations") or {}).get(REVISION) or 0),
        )
        with self.lock:
            self.samples[meta["name"]].append(sample)

    def all_complete(self, names: list[str]) -> bool:
        with self.lock:
            return all(self.samples.get(n) and self.samples[n][-1].complete for n in names)

    def adopted_at(self, name: str, generation: int, since: float) -> float | None:
        """First moment the workload was seen rolled out onto `generation` (or a later one): its controller
        observed it and every replica is updated, ready and available (the operator's rule, #17). The
        next window's restart may already be written by then; that one is another rotation's business."""
        with self.lock:
            for sample in self.samples.get(name, ()):
                if sample.received >= since and sample.rolled_out and sample.observed >= generation:
                    return sample.received
        return None

    def restarts_since(self, name: str, since: float) -> list[float]:
        """The operator's restarts of the workload (distinct restartedAt values first seen after `since`)."""
        seen: dict[str, float] = {}
        before: set[str] = set()
        with self.lock:
            for sample in self.samples.get(name, ()):
                if not sample.restarted_at:
                    continue
                if sample.received < since:
                    before.add(sample.restarted_at)
                elif sample.restarted_at not in before:
                    seen.setdefault(sample.restarted_at, sample.received)
        return sorted(t for t in (parse_time(v) for v in seen) if t is not None)

    def rollout_seconds(self, name: str, since: float) -> list[float]:
        """For each restart after `since`: its restartedAt -> the workload seen rolled out onto it (or later)."""
        out = []
        with self.lock:
            samples = list(self.samples.get(name, ()))
        seen: set[str] = set()
        for index, sample in enumerate(samples):
            if sample.received < since or not sample.restarted_at or sample.restarted_at in seen:
                continue
            seen.add(sample.restarted_at)
            at = parse_time(sample.restarted_at)
            done = next((s for s in samples[index:] if s.complete and s.observed >= sample.generation), None)
            if at is not None and done is not None:
                out.append(done.received - at)
        return out

    def revisions(self, name: str, since: float) -> tuple[int, int]:
        """(revision when `since` came, last revision)."""
        with self.lock:
            samples = self.samples.get(name, [])
            start = max((s.revision for s in samples if s.received < since), default=0)
            return start, max((s.revision for s in samples), default=0)


class Revocations:
    """When each key was deleted at its emulator: the emulators' delete calls, wrapped."""

    def __init__(self, env: Environment) -> None:
        self.lock = threading.Lock()
        self.deleted: dict[str, float] = {}
        b2, us3 = env.emulators.b2, env.emulators.us3
        delete_b2, delete_us3 = b2._calls["b2_delete_key"], us3._actions["DeleteUFileToken"]

        def b2_delete(version: int, caller: Any, body: dict[str, Any]) -> dict[str, Any]:
            answer = delete_b2(version, caller, body)
            self._note(str(body.get("applicationKeyId")))
            return answer

        def us3_delete(account: str, params: Any) -> dict[str, Any]:
            answer = delete_us3(account, params)
            self._note(str(params.scalar("TokenId")))
            return answer

        b2._calls["b2_delete_key"] = b2_delete
        us3._actions["DeleteUFileToken"] = us3_delete

    def _note(self, key_id: str) -> None:
        with self.lock:
            self.deleted.setdefault(key_id, time.time())

    def at(self, key_id: str) -> float | None:
        with self.lock:
            return self.deleted.get(key_id)


class QueueSampler(threading.Thread):
    """The operator's work-queue depth and reconcile count every SCRAPE seconds (its /metrics). Each
    scrape renders every token's series: scraping each second cost the operator a sixth of its CPU
    here, far more than Prometheus at its usual 15-60 s would."""

    def __init__(self, env: Environment, started: float) -> None:
        super().__init__(name="queue-sampler", daemon=True)
        self.env, self.started = env, started
        self.samples: list[tuple[float, float, float]] = []  # (seconds since start, depth, token reconciles)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(SCRAPE):
            metrics = self.env.operator_metrics()
            depth = metrics.get("storage_token_work_queue_depth", 0.0)
            reconciles = sum(
                v
                for k, v in metrics.items()
                if k.startswith("storage_token_reconciles_total{") and 'kind="tokens"' in k
            )
            self.samples.append((time.time() - self.started, depth, reconciles))

    def finish(self) -> dict[str, Any]:
        self.halt.set()
        self.join(5)
        depths = [d for _, d, _ in self.samples]
        first = self.samples[0][2] if self.samples else 0.0
        return {
            "max_depth": max(depths, default=None),
            "token_reconciles": (self.samples[-1][2] - first) if self.samples else None,
            "series": [list(s) for s in self.samples],
        }


# -- the numbers ---------------------------------------------------------------------------
def windows(writes: list[float], interval: float) -> int:
    """Coalescing windows a workload's rotations span: a window opens at the first write not yet covered
    and its restart (one interval later) covers every write until then."""
    count, end = 0, float("-inf")
    for write in sorted(writes):
        if write > end:
            count, end = count + 1, write + interval
    return count


def needless(restarts: list[float], writes: list[float]) -> int:
    """Restarts no rotation asked for: no Secret write since the previous restart (or ever, for the first)."""
    count, previous = 0, float("-inf")
    for restart in restarts:
        if not any(previous < w <= restart for w in writes):
            count += 1
        previous = restart
    return count


def reason_names(env: Environment, reason: str) -> set[str]:
    listing = env.api.get(f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector=reason%3D{reason}") or {}
    items = listing.get("items") or []
    return {(e.get("involvedObject") or {}).get("name", "") for e in items}


def analyse(
    env: Environment,
    tracker: Tracker,
    deployments: Deployments,
    revocations: Revocations,
    names: list[str],
    targets: dict[str, str],
    started: float,
    interval: float,
    grace: float,
) -> dict[str, Any]:
    tokens = {t["metadata"]["name"]: t for t in env.api.list_items(tokens_path(NAMESPACE))}
    tracks = tracker.snapshot()
    forced_events = reason_names(env, "RevokedBeforeAdoption")
    switched_events = reason_names(env, "ConsumersSwitched")
    lag, to_adoption, to_revocation, to_restart = [], [], [], []
    writes: dict[str, list[float]] = collections.defaultdict(list)
    rotated = revoked = 0
    early: list[str] = []
    seen_first: list[str] = []  # revoked within WATCH_SLACK before the bench's watch showed the rollout done
    early_by: list[dict[str, Any]] = []  # when each early one went, and when the bench saw its rollout finish
    forced: list[str] = []
    below_floor: list[str] = []
    missing: list[str] = []
    slowest: list[tuple[float, str, str, float, float]] = []  # (lag, token, workload, write, adoption)
    timeline: dict[str, list[float]] = {"secret_writes": [], "adoptions": [], "revocations": []}
    for name in names:
        status = (tokens.get(name) or {}).get("status") or {}
        rollout = status.get("rollout") or {}
        track = tracks.get(name)
        old = next((k[1] for k in track.keys if k[2] == 1), "") if track else ""
        if int(status.get("revision") or 0) < 2 or int(rollout.get("revision") or 0) < 2 or not old:
            missing.append(name)
            continue
        rotated += 1
        write = parse_time(rollout.get("startedAt"))
        assert write is not None
        writes[targets[name]].append(write)
        timeline["secret_writes"].append(write - started)
        target = (rollout.get("targets") or [{}])[0]
        generation = int(target.get("generation") or 0)
        adopted = deployments.adopted_at(targets[name], generation, started) if generation else None
        gone = revocations.at(old)
        if adopted is not None:
            to_adoption.append(adopted - write)
            timeline["adoptions"].append(adopted - started)
        if gone is None:
            continue
        revoked += 1
        timeline["revocations"].append(gone - started)
        to_revocation.append(gone - write)
        if gone < write + grace - 0.5:  # the floor, with room for the two clocks' rounding
            below_floor.append(name)
        if adopted is not None and adopted - WATCH_SLACK <= gone < adopted:
            seen_first.append(name)
            lag.append(0.0)
            slowest.append((0.0, name, targets[name], write - started, adopted - started))
        elif adopted is None or gone < adopted:
            (forced if name in forced_events else early).append(name)
            early_by.append(
                {
                    "token": name,
                    "workload": targets[name],
                    "generation": generation,
                    "revoked": round(gone - started, 3),
                    "adopted": None if adopted is None else round(adopted - started, 3),
                }
            )
        else:
            lag.append(gone - adopted)
            slowest.append((gone - adopted, name, targets[name], write - started, adopted - started))
    restarts: dict[str, dict[str, Any]] = {}
    per_window: list[float] = []
    gaps: list[float] = []
    rollouts: list[float] = []
    spurious = 0
    apiserver_revisions = 0
    for workload in sorted(set(targets.values())):
        times = deployments.restarts_since(workload, started)
        first, last = deployments.revisions(workload, started)
        rollouts += deployments.rollout_seconds(workload, started)
        apiserver_revisions += last - first
        opened = windows(writes[workload], interval)
        extra = needless(times, writes[workload])
        spurious += extra
        gaps += [b - a for a, b in itertools.pairwise(times)]
        restarts[workload] = {
            "restarts": len(times),
            "windows": opened,
            "needless": extra,
            "revisions": last - first,
            # seconds since the renew annotations: each restart (its restartedAt) and each rotation's Secret write
            "restart_times": [t - started for t in times],
            "write_times": sorted(t - started for t in writes[workload]),
        }
        if opened:
            per_window.append(len(times) / opened)
        for write in writes[workload]:
            after = [t for t in times if t >= write]
            if after:
                to_restart.append(after[0] - write)
    all_writes = sorted(w for ws in writes.values() for w in ws)
    counts = [r["restarts"] for r in restarts.values()]
    spans = [r["windows"] for r in restarts.values()]
    return {
        "rotations_completed": rotated,
        "old_keys_revoked": revoked,
        "not_rotated": missing[:20],
        "not_rotated_count": len(missing),
        "secret_writes_span_seconds": (all_writes[-1] - all_writes[0]) if all_writes else None,
        "first_secret_write_seconds": (all_writes[0] - started) if all_writes else None,
        "last_secret_write_seconds": (all_writes[-1] - started) if all_writes else None,
        "restarts": {
            "total": sum(counts),
            "windows_total": sum(spans),
            "per_workload": summary(counts),
            "windows_per_workload": summary(spans),
            "per_window_mean": sum(counts) / max(sum(spans), 1),
            "per_window_max": max(per_window, default=None),
            "needless": spurious,
            "new_revisions": apiserver_revisions,
            "min_gap_seconds": min(gaps, default=None),
            "by_workload": restarts,
        },
        "adoption_to_revocation": summary(lag),
        "write_to_restart": summary(to_restart),
        "restart_to_rolled_out": summary(rollouts),
        "write_to_adoption": summary(to_adoption),
        "write_to_revocation": summary(to_revocation),
        "slowest_revocations": [
            {"token": t, "workload": w, "lag": lag_s, "secret_write": wr, "adopted": ad}
            for lag_s, t, w, wr, ad in sorted(slowest, reverse=True)[:10]
        ],
        "revoked_before_adoption": len(early),
        "revoked_before_adoption_tokens": early[:20],
        "revoked_before_adoption_detail": early_by[:20],
        "revoked_as_the_bench_saw_adoption": len(seen_first),
        "forced_by_max_revoke_delay": len(forced),
        "revoked_before_grace": len(below_floor),
        "consumers_switched_events": len(switched_events & set(names)),
        "timeline": {k: sorted(v) for k, v in timeline.items()},
        "adoption_to_revocation_cdf": [percentile(lag, q) or 0.0 for q in range(101)] if lag else [],
    }


# -- the run -------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    n, w = args.tokens, args.workloads
    interval = parse_duration(args.restart_interval).total_seconds() if args.restart_interval else None
    operator_env = dict(QUIET_BACKGROUND)
    if args.restart_interval:
        operator_env["STO_RESTART_MIN_INTERVAL"] = args.restart_interval
    grace = parse_duration(args.grace).total_seconds()
    low, high = (float(v) for v in args.ready_delay.split(","))
    providers = args.providers.split(",")
    names = [token_name(i) for i in range(n)]
    targets = {name: workload_name(i % w) for i, name in enumerate(names)}
    workloads = [workload_name(j) for j in range(w)]
    with Environment("rollout", cluster_id="bench-rollout", env=operator_env, workers=args.workers) as env:
        env.api.namespace(NAMESPACE)
        for kind in providers:
            env.provider(NAMESPACE, kind, kind, rateLimit=FAST_LIMIT)
        tracker = Tracker()
        env.watch(tracker, NAMESPACE)
        deployments = Deployments()
        kubelet = KubeletPlayer(env, (low, high), args.seed)
        kubelet.start()
        for path, callback in ((deployments_path(), deployments.on_event), (pods_path(), kubelet.on_pod)):
            watch = Watch(env.access, path, callback)
            watch.start()
            env.watches.append(watch)
            watch.synced.wait(10)
        revocations = Revocations(env)
        env.start_operator()
        for kind in providers:
            env.wait_provider_ready(NAMESPACE, kind)

        log(f"setup: {w} Deployments, {n} StorageTokens ({n // w} per Deployment, providers {', '.join(providers)})")
        bodies = [deployment_body(d, [t for t in names if targets[t] == d]) for d in workloads]
        _, failed = asyncio.run(create_many(env.access, deployments_path(), bodies))
        tokens = []
        for i, name in enumerate(names):
            kind = providers[i % len(providers)]
            spec = {
                **SCOPES[kind],
                "duration": "24h",
                "revokeGracePeriod": args.grace,
                "maxRevokeDelay": args.max_revoke_delay,
                "restartTargets": [{"kind": "Deployment", "name": targets[name]}],
            }
            tokens.append(token_body(name, kind, **spec))
        created_s, failed_tokens = asyncio.run(create_many(env.access, tokens_path(NAMESPACE), tokens))
        if failed or failed_tokens:
            raise RuntimeError(f"creates failed: {failed} Deployments, {failed_tokens} StorageTokens")
        if not tracker.wait(lambda t: t.ready and t.revision >= 1, names, 120 + n * 0.3, "issued"):
            raise RuntimeError("not every token was issued")
        deadline = time.monotonic() + 120
        while not deployments.all_complete(workloads):
            if time.monotonic() > deadline:
                raise RuntimeError("the Deployments' first rollouts did not finish")
            time.sleep(0.5)
        settle(env)
        log(f"setup done: tokens created in {created_s:.1f}s, all issued, every Deployment rolled out")

        api_before, emulators_before = env.api.request_totals(), emulator_counts(env.emulators)
        durations_before, metrics_before = env.api.durations(), env.operator_metrics()
        sampler = ProcessSampler(env.operator_pid())
        sampler.start()
        load = MachineLoad()
        load.start()
        profiler = Profiler(env.operator_pid(), env.workdir / "rollout.pyspy").start() if args.profile else None
        order = list(names)
        random.Random(args.seed).shuffle(order)
        log(f"rotation: annotating {n} tokens with {RENEW} (shuffled)")
        started = time.time()
        queue = QueueSampler(env, started)
        queue.start()
        patch = {"metadata": {"annotations": {RENEW: "rollout-bench"}}}
        patch_s = asyncio.run(patch_many(env.access, [tokens_path(NAMESPACE, t) for t in order], patch))
        ceiling = parse_duration(args.max_revoke_delay).total_seconds()
        ok = tracker.wait(
            lambda t: t.revision >= 2 and not t.pending, names, 120 + ceiling + n * 0.1, "rotated, old key revoked"
        )
        deadline = time.monotonic() + 60
        while not deployments.all_complete(workloads) and time.monotonic() < deadline:
            time.sleep(0.5)
        finished = time.time()
        profile = profiler.stop() if profiler else None
        operator_usage, machine_load, queue_result = sampler.finish(), load.finish(), queue.finish()
        time.sleep(1)  # the last watch events
        delta = request_delta(api_before, env.api.request_totals())
        provider_calls = counts_delta(emulators_before, emulator_counts(env.emulators))
        latency = mean_latency_ms(durations_before, env.api.durations(), ("storagetokens", "secrets", "deployments"))
        provider_ms = provider_latency(metrics_before, env.operator_metrics())
        restart_patches = int(delta.get(("PATCH", "deployments", ""), 0))
        effective = interval if interval is not None else DEFAULT_RESTART_INTERVAL
        result = analyse(env, tracker, deployments, revocations, names, targets, started, effective, grace)
        kubelet.stop()
        result.update(
            complete=ok,
            patch_seconds=patch_s,
            phase_seconds=finished - started,
            restart_patches_at_apiserver=restart_patches,
            pods_marked_ready=kubelet.marked,
            kubelet_failures=kubelet.failures,
            kubelet_late=summary(kubelet.late),
            operator=operator_usage,
            machine_load=machine_load,
            queue=queue_result,
            # Everything written during the phase (the bench's own: the renew PATCHes and the Pod statuses).
            apiserver_writes=writes_of(delta),
            apiserver_reads=reads_of(delta, ("deployments", "storagetokens", "secrets", "pods", "replicasets")),
            provider_calls=provider_calls,
            apiserver_mean_latency_ms=latency,
            provider_call_mean_ms=provider_ms,
        )
        if profile:
            result["profile"] = profile
        return {
            "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "revision": git_revision(),
            # PYTHONPATH can point the operator (and this process) at another copy, e.g. a patched one.
            "operator_source": str(Path(storage_token.__file__).resolve().parent),
            "kube_version": kube_version(env.api),
            "machine": machine(),
            "settings": {
                "tokens": n,
                "workloads": w,
                "tokens_per_workload": n / w,
                "providers": providers,
                "restart_min_interval_seconds": effective,
                "revoke_grace_period": args.grace,
                "max_revoke_delay": args.max_revoke_delay,
                "ready_delay_seconds": [low, high],
                "workers": args.workers,
            },
            "rollout": result,
        }


def provider_latency(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean provider call latency (ms) by call, from the operator's histogram, between two readings."""
    out = {}
    prefix = "storage_token_provider_call_seconds"
    for name, total in after.items():
        if name.startswith(prefix + "_sum{"):
            labels = name[len(prefix + "_sum") :]
            count = after.get(f"{prefix}_count{labels}", 0.0) - before.get(f"{prefix}_count{labels}", 0.0)
            if count > 0:
                out[labels] = 1000 * (total - before.get(name, 0.0)) / count
    return out


def settle(env: Environment, quiet: float = 3.0, timeout: float = 60.0) -> None:
    """Wait until the apiserver sees no writes for `quiet` seconds (the setup's tail done)."""
    deadline = time.monotonic() + timeout
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        totals = env.api.request_totals()
        total = sum(v for (verb, _, _), v in totals.items() if verb in ("POST", "PUT", "PATCH", "DELETE"))
        if total != last:
            last, since = total, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.5)


def goals(results: dict[str, Any]) -> list[str]:
    """What failed, in words (empty: every goal met)."""
    r, n = results["rollout"], results["settings"]["tokens"]
    failed = []
    if r["rotations_completed"] < n or r["old_keys_revoked"] < r["rotations_completed"]:
        failed.append(f"rotations: {r['rotations_completed']}/{n} rotated, {r['old_keys_revoked']} old keys revoked")
    worst = r["restarts"]["per_window_max"]
    if worst is None or worst > 1 or r["restarts"]["needless"]:
        failed.append(
            f"restarts per workload per window: max {worst or 0:.2f}, {r['restarts']['needless']} needless (goal 1)"
        )
    p99 = r["adoption_to_revocation"]["p99"]
    if p99 is None or p99 > GOAL_P99:
        measured = "not measured" if p99 is None else f"{p99:.1f} s"
        failed.append(f"last adoption -> revocation p99 {measured} (goal <= {GOAL_P99:g} s)")
    if r["revoked_before_adoption"]:
        failed.append(f"{r['revoked_before_adoption']} keys revoked before their workload rolled out (not forced)")
    return failed


def rows(results: dict[str, Any]) -> list[list[Any]]:
    r, s = results["rollout"], results["settings"]
    lag, restarts = r["adoption_to_revocation"], r["restarts"]

    def per(value: float | None) -> float | None:
        return None if value is None else value / max(r["rotations_completed"], 1)

    def quantiles(key: str) -> str:
        values = r[key]
        return " / ".join(f"{values[q]:.2f}" if values[q] is not None else "-" for q in ("p50", "p99", "max"))

    return [
        ["tokens / workloads", f"{s['tokens']} / {s['workloads']} ({s['tokens_per_workload']:g} per workload)"],
        ["rotations completed", f"{r['rotations_completed']}/{s['tokens']}"],
        ["old keys revoked", r["old_keys_revoked"]],
        ["renew annotations sent in (s)", r["patch_seconds"]],
        ["Secret writes span (s; goal: within 60)", r["secret_writes_span_seconds"]],
        ["phase wall time (s)", r["phase_seconds"]],
        ["restart interval (s)", s["restart_min_interval_seconds"]],
        ["restarts (total)", restarts["total"]],
        ["coalescing windows (total)", restarts["windows_total"]],
        [
            "restarts per workload (mean / max)",
            f"{restarts['per_workload']['mean']:.2f} / {restarts['per_workload']['max']}",
        ],
        [
            "restarts per workload per window (mean / max; goal 1)",
            f"{restarts['per_window_mean']:.2f} / {restarts['per_window_max'] or 0:.2f}",
        ],
        ["needless restarts (no new rotation since the previous one)", restarts["needless"]],
        [
            "new ReplicaSet revisions / restart PATCHes at the apiserver",
            f"{restarts['new_revisions']} / {r['restart_patches_at_apiserver']}",
        ],
        ["shortest gap between two restarts of a workload (s)", restarts["min_gap_seconds"]],
        ["last adoption -> revocation p50 (s)", lag["p50"]],
        ["last adoption -> revocation p95 (s)", lag["p95"]],
        ["last adoption -> revocation p99 (s; goal <= 5)", lag["p99"]],
        ["last adoption -> revocation max (s)", lag["max"]],
        ["Secret write -> restart p50 / p99 / max (s)", quantiles("write_to_restart")],
        ["restart -> workload rolled out p50 / p99 / max (s)", quantiles("restart_to_rolled_out")],
        ["Secret write -> adoption p50 / p99 / max (s)", quantiles("write_to_adoption")],
        ["Secret write -> revocation p50 / p99 / max (s)", quantiles("write_to_revocation")],
        ["revoked before adoption (goal 0)", r["revoked_before_adoption"]],
        [
            f"revoked as the bench saw the rollout finish (up to {WATCH_SLACK:g} s before; counted as 0 s)",
            r.get("revoked_as_the_bench_saw_adoption", 0),
        ],
        ["revoked at maxRevokeDelay before adoption", r["forced_by_max_revoke_delay"]],
        ["revoked before revokeGracePeriod", r["revoked_before_grace"]],
        ["token reconciles per rotation", per(r["queue"]["token_reconciles"])],
        ["operator work-queue depth, max", r["queue"]["max_depth"]],
        ["PATCH storagetokens/status per rotation", per(r["apiserver_writes"].get("PATCH storagetokens/status"))],
        ["GET deployments per rotation", per(r["apiserver_reads"].get("GET deployments"))],
        ["pods marked Ready by the bench", r["pods_marked_ready"]],
        ["... marked late (beyond their delay) p99 (s)", r["kubelet_late"]["p99"]],
        [
            "operator CPU mean (%) / RSS max (MiB)",
            f"{r['operator']['cpu_percent_mean']:.0f} / {r['operator']['rss_mib_max'] or 0:.0f}",
        ],
        ["other processes' CPU (cores)", r["machine_load"]["other_processes_cpu_cores"]],
    ]


def source_note(results: dict[str, Any]) -> str:
    source = results.get("operator_source", "")
    return "" if not source or Path(source).is_relative_to(REPO) else f" (operator code from {source})"


def write_markdown(results: dict[str, Any], failed: list[str], path: Path) -> None:
    s, m = results["settings"], results["machine"]
    lines = [
        f"# Rollout benchmark ({results['finished']})",
        "",
        f"Machine: {m['cpus']} CPUs, {m['memory_gib']} GiB, Python {m['python']}, kube-apiserver "
        f"{results['kube_version']}; operator at {results['revision']}"
        f"{source_note(results)}, {s['workers'] or 'default'} workers. "
        f"{s['tokens']} StorageTokens ({', '.join(s['providers'])}) sharing {s['workloads']} one-replica Deployments "
        f"as restartTargets, all renewed at once; revokeGracePeriod {s['revoke_grace_period']}, maxRevokeDelay "
        f"{s['max_revoke_delay']}; the bench plays the kubelet (Pods Ready after "
        f"{s['ready_delay_seconds'][0]:g}-{s['ready_delay_seconds'][1]:g} s).",
        "",
        markdown_table(["", "value"], rows(results)),
        "",
        "Goals: " + ("all met." if not failed else "FAILED: " + "; ".join(failed)),
    ]
    profile = results["rollout"].get("profile")
    if profile and "by_category" in profile:
        lines += ["", f"Operator profile during the phase ({profile['samples']} py-spy samples):", ""]
        lines.append(markdown_table(["where", "samples", "%"], profile["by_category"][:12]))
    path.write_text("\n".join(lines) + "\n")


def write_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, s = results["rollout"], results["settings"]
    fig, grid = plt.subplots(2, 2, figsize=(13, 9))
    axes = [grid[0][0], grid[0][1], grid[1][0], grid[1][1]]

    ax = axes[0]
    for key, label in (
        ("secret_writes", "rotated (Secret written)"),
        ("adoptions", "workload rolled out (adopted)"),
        ("revocations", "old key revoked"),
    ):
        times = r["timeline"][key]
        ax.plot(times, range(1, len(times) + 1), label=label)
    ax.set_xlabel("seconds since the renew annotations")
    ax.set_ylabel("tokens")
    ax.set_title(f"{s['tokens']} tokens, {s['workloads']} workloads")
    ax.legend(fontsize=8)

    ax = axes[1]
    q = r["adoption_to_revocation_cdf"]
    ax.plot(q, [i / 100 for i in range(len(q))])
    ax.axvline(GOAL_P99, color="red", linestyle=":", label=f"goal: p99 <= {GOAL_P99:g} s")
    ax.axhline(0.99, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("last adoption -> revocation (s)")
    ax.set_ylabel("fraction of tokens")
    ax.set_title("Revocation after the last consumer switched")
    ax.legend(fontsize=8)

    ax = axes[2]
    by = r["restarts"]["by_workload"]
    names = sorted(by)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [by[n]["windows"] for n in names], 0.4, label="coalescing windows")
    ax.bar([i + 0.2 for i in x], [by[n]["restarts"] for n in names], 0.4, label="restarts")
    ax.set_xlabel("workload")
    ax.set_xticks([])
    ax.set_ylabel("count")
    ax.set_title(f"Restarts per workload (interval {s['restart_min_interval_seconds']:g} s)")
    ax.legend(fontsize=8)

    ax = axes[3]
    series = r["queue"]["series"]
    ax.plot([p[0] for p in series], [p[1] for p in series], label="work-queue depth")
    ax.set_xlabel("seconds since the renew annotations")
    ax.set_ylabel("tokens waiting for a worker")
    ax.set_title("Operator work queue")
    ax.legend(fontsize=8)
    fig.suptitle(f"storage-token-operator rollout benchmark, {results['machine']['cpus']} CPUs ({results['finished']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=50)
    parser.add_argument("--providers", default="b2,us3", help="comma-separated, tokens alternate between them")
    parser.add_argument("--grace", default="5s", help="revokeGracePeriod of every token (the floor)")
    parser.add_argument("--max-revoke-delay", default="5m", help="maxRevokeDelay of every token (the ceiling)")
    parser.add_argument("--restart-interval", default=None, help="STO_RESTART_MIN_INTERVAL (default: the operator's)")
    parser.add_argument("--ready-delay", default="1,3", help="the played kubelet marks a Pod Ready after LOW,HIGH s")
    parser.add_argument("--workers", type=int, default=None, help="operator --workers (default: the operator's)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--profile", action="store_true", help="py-spy the operator during the rotation phase")
    parser.add_argument("--output", default="rollout", help="results/<output>.{json,md,png}")
    parser.add_argument("--redraw", action="store_true", help="only rewrite the table and picture from <output>.json")
    args = parser.parse_args(argv)
    if args.tokens < args.workloads or args.workloads < 1:
        parser.error("--tokens must be at least --workloads, which must be at least 1")
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / f"{args.output}.json"
    results = json.loads(saved.read_text()) if args.redraw else run(args)
    failed = goals(results)
    results["goals_failed"] = failed
    write_json(RESULTS / f"{args.output}.json", results)
    write_markdown(results, failed, RESULTS / f"{args.output}.md")
    write_chart(results, RESULTS / f"{args.output}.png")
    print(text_table(["", "value"], rows(results)))
    span = results["rollout"]["secret_writes_span_seconds"]
    if span is not None and span > ROTATION_WINDOW:  # the premise, not a goal: the operator's renewal rate
        print(f"note: the rotations took {span:.0f} s, not within {ROTATION_WINDOW:g} s", file=sys.stderr)
    for problem in failed:
        print(f"GOAL FAILED: {problem}", file=sys.stderr)
    log(f"wrote {RESULTS / args.output}.{{json,md,png}}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
