"""Chaos: `python tests/bench/chaos.py [--tokens 1000] [--kills 30] [--quick]`.

On a fresh local control plane with both provider emulators, two installs of the
operator share the same provider accounts: install `a` (cluster id `prod`) and
install `b` (cluster id `prod-eu-1`, another operator namespace; the ids are
string prefixes of each other on purpose). Each watches its own namespaces
(`--namespaces` in all, `--second-share` of them for `b`), each namespace with its
own providers and its share of the N StorageTokens (half B2, half US3). The
tokens are issued and keep rotating (duration 6m, renewBefore 4m,
revokeGracePeriod 5s: a rotation every 2 minutes) while

* each operator is SIGKILLed at random moments (install `a` `--kills` times, `b`
  on its own schedule meanwhile, after a random 3-20 s of life) and restarted
  after a random 0.2-3 s pause,
* whole namespaces are deleted (`--ns-deletions`, spread over both installs; the
  kube-controller-manager's namespace controller does the deletion, the
  operator's finalizers hold it until every key is revoked) and, once gone,
  re-created with fresh tokens, and
* the emulators fail about 10% of create/delete/list calls: 5xx (B2 503, US3
  RetCode 150), 429 + Retry-After, a timeout (applied nothing, answered after the
  client gave up), latency, and a response lost after the call was applied.

The operators run with STO_SWEEP_INTERVAL=10s and STO_SWEEP_MIN_AGE=30s. Everything
about the keys is read through the emulators' control surface: every key created or
deleted, with its time (`GET /_emulator/journal`), the live keys (`GET
/_emulator/state`), and whether a Secret's pair is a live issued key (`POST
/_emulator/keys/verify`: the emulator compares the secret). WATCH streams record
every StorageToken status and Secret change. At the end the faults stop, the
operators are left alone to settle (bounded wait), and these invariants are
checked, each install on its own (its keys are the ones whose names carry its
prefix, `sto-<install digest>-`):

1. every StorageToken is Ready;
2. every Secret holds a live, unexpired key: the key pair in the Secret is the one
   the emulator issued under the status' keyId;
3. no leaked keys: the live keys carrying an install's prefix are exactly the ones
   its statuses reference (keyId, pendingRevocations, or the intent of an issuance
   in flight);
4. no replaced key outlived its revocation due time (rotation + grace, or its own
   expiry) by more than --revoke-tolerance seconds, not counting the seconds when no
   operator process of its install existed (SIGKILL to restart; the restart and
   catch-up do count), and no key was revoked while its token still used it (a
   token's use ends when its namespace's deletion starts);
5. namespace deletions: every key ever created for a token of a deleted namespace
   is revoked, and the namespace is gone (not stuck Terminating);
6. installs: no install deleted a key whose name carries the other install's
   prefix (each operator log names the keys it deleted);
7. no Secret ever held a revoked or expired key (from the Secret and key histories;
   the seconds after a namespace's deletion started are reported apart).

Writes tests/bench/results/chaos.json and .md (and prints a table); exits 1 if an
invariant fails. To run a fixed operator while the tree changes, point PYTHONPATH at a
snapshot of `operator/` and name it with STO_BENCH_REVISION.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    API,
    RESULTS,
    SCOPES,
    Environment,
    MachineLoad,
    Tracker,
    Watch,
    counts_delta,
    create_many,
    emulator_counts,
    git_revision,
    iso,
    log,
    machine,
    markdown_table,
    parse_time,
    summary,
    text_table,
    token_body,
    tokens_path,
    write_json,
)

import storage_token
from storage_token.dev.emulators.control import read_state
from storage_token.dev.sandbox import OperatorProcess

FAST_LIMIT = {"requestsPerSecond": 500, "burst": 500}
B2_CALLS = ["b2_create_key", "b2_delete_key", "b2_list_keys"]
US3_CALLS = ["CreateUFileToken", "DeleteUFileToken", "DescribeUFileToken"]
CLIENT_TIMEOUT = 10.0  # the operator's provider_timeout
# Two installs on the same accounts: cluster ids that are string prefixes of each other, and
# different operator namespaces (so their default install ids differ too).
INSTALLS = (("a", "prod", "storage-token-system"), ("b", "prod-eu-1", "storage-token-eu"))


# -- what the emulators did ---------------------------------------------------------------
@dataclass
class KeyRecord:
    provider: str
    key_id: str
    name: str
    access: str  # what a Secret's accessKeyId holds
    created: float
    expires: float
    deleted: float | None = None


class Ledger(threading.Thread):
    """Every key the emulators create and delete, with their times: each emulator's journal
    (`GET /_emulator/journal?since=N`), followed every second."""

    def __init__(self, env: Environment) -> None:
        super().__init__(name="ledger", daemon=True)
        self.lock = threading.Lock()
        self.keys: dict[str, KeyRecord] = {}
        self.by_access: dict[str, KeyRecord] = {}
        self.urls = {"b2": env.emulators.b2.url, "us3": env.emulators.us3.url}
        self._seen = dict.fromkeys(self.urls, 0)
        self._http = httpx.Client(timeout=30)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(1.0):
            self.refresh()

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.refresh()

    def refresh(self) -> None:
        with self.lock:
            for provider, url in self.urls.items():
                entries = self._http.get(f"{url}/_emulator/journal", params={"since": self._seen[provider]}).json()
                for entry in entries["entries"]:
                    self._apply(provider, entry)
                self._seen[provider] += len(entries["entries"])

    def _apply(self, provider: str, entry: dict[str, Any]) -> None:
        if entry["event"] == "created":
            expires = entry.get("expires")
            record = KeyRecord(
                provider,
                entry["keyId"],
                entry["keyName"],
                entry["accessKeyId"],
                entry["at"],
                float("inf") if expires is None else float(expires),
            )
            self.keys[record.key_id] = record
            self.by_access[record.access] = record
        elif entry["event"] == "deleted":
            deleted = self.keys.get(entry["keyId"])
            if deleted is not None and deleted.deleted is None:
                deleted.deleted = entry["at"]

    def verify(self, pairs: dict[str, tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
        """name -> the emulator's verdict on (provider, accessKeyId, secret): {"keyId": ..., "live": ...}.

        The secret goes to the emulator to be compared there; it is never read back."""
        out: dict[str, dict[str, Any]] = {}
        for provider, url in self.urls.items():
            names = [n for n, (p, _, _) in pairs.items() if p == provider]
            body = {"pairs": [{"accessKeyId": pairs[n][1], "secret": pairs[n][2]} for n in names]}
            results = self._http.post(f"{url}/_emulator/keys/verify", json=body).json()["results"]
            out.update(zip(names, results, strict=True))
        return out


def live_keys(env: Environment) -> dict[str, tuple[str, str]]:
    """key id -> (provider, name) of the live, unexpired keys at both emulators, from their control surface."""
    out: dict[str, tuple[str, str]] = {}
    b2 = read_state(env.emulators.b2.url, timeout=30)
    now = b2["now"]
    for key in b2["keys"]:
        expires = key.get("expirationTimestamp")
        if expires is None or expires / 1000 > now:
            out[key["applicationKeyId"]] = ("b2", key["keyName"])
    us3 = read_state(env.emulators.us3.url, timeout=30)
    for token in us3["tokens"]:
        if not token["Expired"]:
            out[token["TokenId"]] = ("us3", token["TokenName"])
    return out


# -- the two installs and their namespaces --------------------------------------------------
@dataclass
class Install:
    label: str
    cluster_id: str
    operator_namespace: str
    tags: list[str]  # its namespaces are chaos-<tag>
    process: OperatorProcess | None = None
    kills: list[dict[str, Any]] = field(default_factory=list)
    downtime: list[tuple[float, float]] = field(default_factory=list)  # (SIGKILL, restart)
    killed_at: float | None = None
    up_since: float = 0.0  # monotonic
    restart_at: float = 0.0  # monotonic
    next_kill: float = 0.0  # monotonic

    @property
    def prefix(self) -> str:
        assert self.process is not None
        return self.process.key_prefix

    @property
    def log_path(self) -> Path:
        assert self.process is not None
        return self.process.log_path

    def tick(self, now: float, rng: random.Random, args: argparse.Namespace, started: float, kill: bool) -> None:
        """Kill the operator when its life is up, restart it when its pause is over."""
        assert self.process is not None
        if self.killed_at is None:
            if kill and now >= self.next_kill:
                self.process.kill()
                self.killed_at = time.time()
                pause = rng.uniform(0.2, args.max_pause)
                self.restart_at = now + pause
                self.kills.append(
                    {"at": round(self.killed_at - started, 1), "after_up_s": round(now - self.up_since, 1)}
                )
                self.kills[-1]["pause_s"] = round(pause, 1)
        elif now >= self.restart_at:
            self.restart(now, rng, args)

    def restart(self, now: float, rng: random.Random, args: argparse.Namespace) -> None:
        assert self.process is not None and self.killed_at is not None
        self.process.start()
        self.downtime.append((self.killed_at, time.time()))
        self.killed_at = None
        self.schedule(now, rng, args)

    def schedule(self, now: float, rng: random.Random, args: argparse.Namespace) -> None:
        self.up_since = now
        self.next_kill = now + rng.uniform(args.min_up, args.max_up)


def namespace_of(tag: str) -> str:
    return f"chaos-{tag}"


@dataclass
class Space:
    """One namespace of an install, through its generations (deleted, then re-created with new tokens)."""

    install: Install
    tag: str
    per_namespace: int
    generation: int = 0
    uid: str = ""
    names: list[str] = field(default_factory=list)
    terminating: Deletion | None = None

    @property
    def namespace(self) -> str:
        return namespace_of(self.tag)

    def token_names(self) -> list[str]:
        return [f"{self.tag}g{self.generation}t{i:04d}" for i in range(self.per_namespace)]

    def key_prefix(self, generation: int) -> str:
        """What the key names of this namespace's tokens of `generation` start with."""
        return f"{self.install.prefix}{self.namespace}-{self.tag}g{generation}t"


@dataclass
class Deletion:
    space: Space
    generation: int
    uid: str
    names: list[str]
    started: float
    gone: float | None = None


def set_up_namespace(env: Environment, space: Space) -> None:
    env.api.namespace(space.namespace)
    space.uid = env.api.get(f"/api/v1/namespaces/{space.namespace}")["metadata"]["uid"]
    for kind in ("b2", "us3"):
        policy = {"allowedBuckets": [f"demo-{kind}-*"], "maxDuration": "168h"}
        env.provider(space.namespace, kind, kind, policy=policy, rateLimit=FAST_LIMIT)
    space.names = space.token_names()


def token_bodies(space: Space, args: argparse.Namespace) -> list[dict[str, Any]]:
    spec = {"duration": args.duration, "renewBefore": args.renew_before, "revokeGracePeriod": args.grace}
    bodies = []
    for index, name in enumerate(space.names):
        kind = "us3" if index % 2 else "b2"
        bodies.append(token_body(name, kind, **SCOPES[kind], **spec))
    return bodies


def delete_namespace(env: Environment, space: Space) -> Deletion:
    deletion = Deletion(space, space.generation, space.uid, list(space.names), time.time())
    env.api.call("DELETE", f"/api/v1/namespaces/{space.namespace}", ok=(200, 202))
    space.terminating = deletion
    return deletion


def namespace_gone(env: Environment, deletion: Deletion) -> bool:
    body = env.api.get(f"/api/v1/namespaces/{deletion.space.namespace}")
    return body is None or body["metadata"]["uid"] != deletion.uid


# -- faults -------------------------------------------------------------------------------
# -- faults -------------------------------------------------------------------------------
def inject_faults(env: Environment, share: float) -> list[Any]:
    """About `share` of the matching calls fail, spread over the kinds below."""
    parts = {"5xx": 0.25, "429": 0.25, "lose_response": 0.2, "latency": 0.2, "timeout": 0.1}
    faults = []
    for emulator, calls, writes in (
        (env.emulators.b2, B2_CALLS, B2_CALLS[:2]),
        (env.emulators.us3, US3_CALLS, US3_CALLS[:2]),
    ):
        inject = emulator.faults.inject
        if emulator is env.emulators.us3:
            faults.append(inject("retcode", calls, probability=share * parts["5xx"] / 2, times=None, retcode=150))
            faults.append(inject("status", calls, probability=share * parts["5xx"] / 2, times=None, status=503))
        else:
            faults.append(inject("status", calls, probability=share * parts["5xx"], times=None, status=503))
        faults.append(inject("status", calls, probability=share * parts["429"], times=None, status=429, retry_after=1))
        faults.append(inject("lose_response", writes, probability=share * parts["lose_response"], times=None))
        faults.append(inject("latency", calls, probability=share * parts["latency"], times=None, latency=1.5))
        timeout = CLIENT_TIMEOUT + 1
        faults.append(inject("timeout", calls, probability=share * parts["timeout"], times=None, latency=timeout))
    return faults


# -- the checks ---------------------------------------------------------------------------
def check_state(
    env: Environment, tracker: Tracker, ledger: Ledger, owners: dict[str, Install], installs: list[Install]
) -> dict[str, Any]:
    """Invariants 1-3 on the current state, per install; `owners`: the live tokens and their install."""
    live_before = live_keys(env)
    time.sleep(1.0)  # let the watches deliver what was written before the snapshot
    ledger.refresh()
    tracks = tracker.snapshot()
    with tracker.lock:
        secrets = {n: dict(d) for n, d in tracker.secret_data.items()}
    referenced: dict[str, set[str]] = {i.label: set() for i in installs}
    intents: dict[str, set[str]] = {i.label: set() for i in installs}
    not_ready: dict[str, list[str]] = {i.label: [] for i in installs}
    bad_secret: dict[str, list[tuple[str, str]]] = {i.label: [] for i in installs}
    pairs: dict[str, tuple[str, str, str]] = {}  # token -> (provider, accessKeyId, secret) for the emulators to check
    now = time.time()
    live_now = live_keys(env)
    for name, install in owners.items():
        track = tracks.get(name)
        if track is None or not track.ready:
            not_ready[install.label].append(name)
        if track is None:
            continue
        if track.key_id:
            referenced[install.label].add(track.key_id)
        referenced[install.label].update(p["keyId"] for p in track.pending)
        if track.intent:
            intents[install.label].add(track.intent)
        data = secrets.get(name)
        with ledger.lock:
            record = ledger.by_access.get((data or {}).get("accessKeyId", ""))
        problem = None
        if data is None:
            problem = "no Secret"
        elif record is None:
            problem = "the Secret's key was never issued by an emulator"
        else:
            pairs[name] = (record.provider, record.access, data.get("secretAccessKey", ""))
            if record.key_id != track.key_id:
                problem = "the Secret holds another key than status.keyId"
            elif record.key_id not in live_now:
                problem = "the Secret's key is revoked or expired"
            elif record.expires <= now:
                problem = "the Secret's key is expired"
        if problem:
            bad_secret[install.label].append((name, problem))
    for name, verdict in ledger.verify(pairs).items():
        if verdict["keyId"] is None and not any(name == n for n, _ in bad_secret[owners[name].label]):
            bad_secret[owners[name].label].append((name, "the Secret's key pair is not a live key the emulator issued"))
    per_install = {}
    for install in installs:
        ours = {k: n for k, (_, n) in live_now.items() if n.startswith(install.prefix)}
        unreferenced = {
            k: n
            for k, (_, n) in live_before.items()
            if n.startswith(install.prefix) and k not in referenced[install.label] and n not in intents[install.label]
        }
        leaked = {k: n for k, n in unreferenced.items() if k in ours}
        dangling = sorted(k for k in referenced[install.label] if k not in ledger.keys)
        per_install[install.label] = {
            "tokens": sum(1 for i in owners.values() if i is install),
            "not_ready": not_ready[install.label],
            "bad_secrets": bad_secret[install.label],
            "live_prefixed_keys": len(ours),
            "referenced_keys": len(referenced[install.label]),
            "leaked": leaked,
            "dangling_references": dangling[:20],
        }
    return per_install


def healthy(state: dict[str, Any]) -> bool:
    return not any(s["not_ready"] or s["bad_secrets"] or s["leaked"] for s in state.values())


def overdue_revocations(tracker: Tracker, names: set[str], tolerance: float) -> int:
    """Pending revocations of live tokens whose due time passed more than `tolerance` seconds ago."""
    now = time.time()
    count = 0
    for name, track in tracker.snapshot().items():
        if name not in names:
            continue
        for entry in track.pending:
            due = parse_time(entry.get("dueAt"))
            count += due is not None and now - due > tolerance
    return count


def deletion_state(ledger: Ledger, deletions: list[Deletion], now: float) -> list[dict[str, Any]]:
    """Invariant 5 per deleted namespace generation: its keys all revoked, the namespace gone."""
    with ledger.lock:
        records = list(ledger.keys.values())
    out = []
    for deletion in deletions:
        prefix = deletion.space.key_prefix(deletion.generation)
        keys = [r for r in records if r.name.startswith(prefix)]
        unrevoked = [r for r in keys if r.deleted is None]
        last = max((r.deleted for r in keys if r.deleted is not None), default=None)
        out.append(
            {
                "namespace": deletion.space.namespace,
                "install": deletion.space.install.label,
                "generation": deletion.generation,
                "tokens": len(deletion.names),
                "started": iso(deletion.started),
                "keys_created": len(keys),
                "keys_revoked": len(keys) - len(unrevoked),
                "keys_unrevoked": len(unrevoked),
                "unrevoked_examples": [r.name for r in unrevoked[:10]],
                "unrevoked_but_expired": sum(1 for r in unrevoked if r.expires <= now),
                "seconds_to_last_revocation": None if last is None else last - deletion.started,
                "gone": deletion.gone is not None,
                "seconds_to_gone": None if deletion.gone is None else deletion.gone - deletion.started,
            }
        )
    return out


def revocations(
    tracker: Tracker,
    ledger: Ledger,
    names: set[str],
    prefix: str,
    grace: float,
    end: float,
    downtime: list[tuple[float, float]],
    ended: dict[str, float],
) -> dict[str, Any]:
    """Invariant 4 for one install's tokens (`names`) from the status history and the emulators' deletion times.

    `downtime` are the install's (SIGKILL, restart) intervals: no operator process exists then, so the
    lateness net of them is what the operator is accountable for (its restart and catch-up count).
    `ended`: when the namespace deletion of a token started (its keys may be revoked from then on)."""
    tracks = {n: t for n, t in tracker.snapshot().items() if n in names}
    with ledger.lock:
        keys = dict(ledger.keys)
    lateness: list[float] = []
    net_lateness: list[float] = []
    late: list[dict[str, Any]] = []
    after_restart: list[float] = []
    revoked_while_current: list[dict[str, Any]] = []
    current_interval: dict[str, tuple[str, float, float]] = {}  # key id -> (token, from, until)
    referenced: set[str] = set()
    for name, track in tracks.items():
        history = [(t, key) for t, key, *_ in track.keys if key]
        for index, (since, key_id) in enumerate(history):
            referenced.add(key_id)
            until = history[index + 1][0] if index + 1 < len(history) else ended.get(name, float("inf"))
            current_interval[key_id] = (name, since, until)
            if index + 1 == len(history):
                continue  # the token's last key: revoked by its deletion (invariant 5), not by a rotation
            record = keys.get(key_id)
            if record is None:
                continue
            due = track.pending_due.get(key_id) or min(until + grace, record.expires)
            due = min(due, record.expires, ended.get(name, float("inf")))
            gone = min(record.deleted or float("inf"), record.expires, end)
            overdue = gone - due
            lateness.append(overdue)
            dead = sum(max(0.0, min(gone, up) - max(due, killed)) for killed, up in downtime)
            net_lateness.append(overdue - dead)
            # A key already due when an operator process started: how long that process took to revoke it.
            restarts = [up for _, up in downtime if due <= up <= gone]
            if restarts and record.deleted is not None:
                after_restart.append(gone - restarts[-1])
            if overdue > 0:
                kills = sum(1 for killed, _ in downtime if due - 1 <= killed <= gone)
                late.append(
                    {
                        "token": name,
                        "key": record.name,
                        "due": iso(due),
                        "seconds_late": round(overdue, 1),
                        "seconds_late_net_of_downtime": round(overdue - dead, 1),
                        "kills_while_due": kills,
                    }
                )
        referenced.update(track.pending_due)
    for key_id, (name, since, until) in current_interval.items():
        record = keys.get(key_id)
        if record is not None and record.deleted is not None and since <= record.deleted < until - 0.5:
            revoked_while_current.append({"token": name, "key": record.name, "deleted": iso(record.deleted)})
    orphans = [r for r in keys.values() if r.key_id not in referenced and r.name.startswith(prefix)]
    orphan_fate: collections.Counter[str] = collections.Counter()
    orphan_age = []
    unrevoked = []
    status_names = {entry.get("keyName") for t in tracks.values() for entry in t.pending} | {
        keys[k].name for k in referenced if k in keys
    }
    for record in orphans:
        if record.deleted is not None:
            orphan_fate["revoked"] += 1
            orphan_age.append(record.deleted - record.created)
            continue
        orphan_fate["expired unrevoked" if record.expires <= end else "still live"] += 1
        unrevoked.append(
            {
                "key": record.name,
                "provider": record.provider,
                "created": iso(record.created),
                "expires": iso(record.expires),
                "a referenced key has the same name": record.name in status_names,
            }
        )
    late.sort(key=lambda x: -x["seconds_late"])
    very_late = [x for x in late if x["seconds_late"] > 10]
    return {
        "replaced_keys": len(lateness),
        "lateness_seconds": summary(lateness),
        "max_lateness_seconds": max(lateness) if lateness else 0.0,
        "net_lateness_seconds": summary(net_lateness),
        "max_net_lateness_seconds": max(net_lateness) if net_lateness else 0.0,
        "latest": late[:10],
        "overdue_at_a_restart": len(after_restart),
        "restart_to_revocation_of_overdue_keys_seconds": summary(after_restart),
        "late_over_10s": len(very_late),
        "late_over_10s_spanning_a_kill": sum(1 for x in very_late if x["kills_while_due"]),
        "revoked_while_current": revoked_while_current[:20],
        "revoked_while_current_count": len(revoked_while_current),
        "orphans": {
            "created": len(orphans),
            **orphan_fate,
            "age_when_revoked": summary(orphan_age),
            "unrevoked": unrevoked[:20],
        },
    }


def secret_exposure(tracker: Tracker, ledger: Ledger, end: float, ended: dict[str, float]) -> dict[str, Any]:
    """How long Secrets held a key that was already expired or revoked (availability, not safety).

    Seconds after a token's namespace deletion started are counted apart: the namespace
    controller deletes the Secret and the token in no fixed order, so a Secret can outlive
    the revocation for a moment while its namespace goes."""
    with tracker.lock:
        histories = {n: list(h) for n, h in tracker.secret_history.items()}
    expired_s = revoked_s = terminating_s = 0.0
    tokens_expired, tokens_revoked, tokens_terminating = set(), set(), set()
    revoked_examples: list[dict[str, Any]] = []
    status_keys = {key for t in tracker.snapshot().values() for _, key, *_ in t.keys if key}
    for name, history in histories.items():
        for index, (since, access) in enumerate(history):
            until = history[index + 1][0] if index + 1 < len(history) else end
            with ledger.lock:
                record = ledger.by_access.get(access)
            if record is None:
                continue
            if record.deleted is not None and record.deleted < until:
                seconds = until - max(record.deleted, since)
                if name in ended and record.deleted >= ended[name]:
                    terminating_s += seconds
                    tokens_terminating.add(name)
                    continue
                revoked_s += seconds
                tokens_revoked.add(name)
                revoked_examples.append(
                    {
                        "secret": name,
                        "key": record.name,
                        "seconds": round(seconds, 3),
                        "written_after_revocation": since > record.deleted,
                        "ever_in_status": record.key_id in status_keys,
                    }
                )
            elif record.expires < until:
                expired_s += until - max(record.expires, since)
                tokens_expired.add(name)
    return {
        "secret_seconds_with_expired_key": expired_s,
        "tokens_whose_secret_held_an_expired_key": len(tokens_expired),
        "secret_seconds_with_revoked_key": revoked_s,
        "tokens_whose_secret_held_a_revoked_key": len(tokens_revoked),
        "revoked_key_examples": revoked_examples[:20],
        "revoked_keys_never_in_status": sum(1 for e in revoked_examples if not e["ever_in_status"]),
        "secret_seconds_with_revoked_key_in_a_terminating_namespace": terminating_s,
        "tokens_in_a_terminating_namespace_whose_secret_outlived_its_key": len(tokens_terminating),
    }


# Every deletion an operator logs names the key id: "b2 deleted key <id>", "us3 deleted token <id>", and the
# deletions by name of an interrupted issue ("b2 deleting key <id> (<name>) ...", "us3 deleting token <id> ...").
DELETION_LINE = re.compile(r"(?:b2 deleted key|us3 deleted token|b2 deleting key|us3 deleting token) (\S+)")


def cross_deletions(ledger: Ledger, installs: list[Install]) -> dict[str, Any]:
    """Invariant 6: the keys each operator log says it deleted, by the install whose prefix their name carries.

    A deletion whose response was lost (or whose process was killed before it logged) is in no log:
    those are counted as unattributed."""
    with ledger.lock:
        records = dict(ledger.keys)
        deleted = {k for k, r in records.items() if r.deleted is not None}
    attributed: set[str] = set()
    out: dict[str, Any] = {}
    for install in installs:
        text = install.log_path.read_text(errors="replace") if install.log_path.exists() else ""
        ids = set(DELETION_LINE.findall(text))
        attributed |= ids
        by_owner: collections.Counter[str] = collections.Counter()
        foreign = []
        for key_id in ids:
            record = records.get(key_id)
            owner = next((i.label for i in installs if record and record.name.startswith(i.prefix)), "unknown")
            by_owner[owner] += 1
            if owner != install.label:
                foreign.append(record.name if record else key_id)
        out[install.label] = {
            "deleted_by_owner": dict(by_owner),
            "foreign": sorted(foreign)[:20],
            "foreign_count": len(foreign),
        }
    out["deleted_keys"] = len(deleted)
    out["unattributed_deletions"] = len(deleted - attributed)
    return out


LOG_PATTERNS = {
    "tracebacks": r"^Traceback",
    "reconcile failures (exceptions)": r"reconcile of .* failed",
    "issuance failures (provider)": r"issuing for .* failed",
    "b2 keys of an interrupted issue deleted": r"left by an interrupted issue",
    "us3 tokens adopted": r"us3 adopted token|adopted key",
    "sweep revoked orphans": r"sweep revoked",
    "create retried": r"deleting keys of that name and creating again|trying again in",
}


def scan_log(path: Path) -> dict[str, Any]:
    text = path.read_text(errors="replace") if path.exists() else ""
    counts = {label: len(re.findall(pattern, text, re.MULTILINE)) for label, pattern in LOG_PATTERNS.items()}
    errors: collections.Counter[str] = collections.Counter()
    for match in re.finditer(r"^(\w+(?:\.\w+)*(?:Error|Exception)): (.{0,160})", text, re.MULTILINE):
        errors[f"{match.group(1)}: {re.sub(r'[0-9a-f]{8,}', '…', match.group(2))}"] += 1
    return {"counts": counts, "exceptions": errors.most_common(8), "bytes": len(text)}


# -- the run ------------------------------------------------------------------------------
def make_installs(env: Environment, args: argparse.Namespace, env_vars: dict[str, str]) -> list[Install]:
    second = max(1, round(args.namespaces * args.second_share)) if args.namespaces > 1 else 0
    counts = {"a": args.namespaces - second, "b": second}
    installs = []
    for label, cluster_id, operator_namespace in INSTALLS:
        if not counts[label]:
            continue
        tags = [f"{label}{i:02d}" for i in range(counts[label])]
        install = Install(label, cluster_id, operator_namespace, tags)
        extra = ["--log-level=INFO", *(f"--namespace={namespace_of(t)}" for t in tags)]
        if args.workers:
            extra.append(f"--workers={args.workers}")
        install.process = OperatorProcess(
            env.plane.access.kubeconfig,
            env.workdir / f"operator-{label}.log",
            cluster_id=cluster_id,
            operator_namespace=operator_namespace,
            metrics_port=0,
            extra_args=extra,
            env=env_vars,
        )
        installs.append(install)
    return installs


def watch_all(env: Environment, tracker: Tracker) -> None:
    """Tokens and Secrets of every namespace (names are unique across namespaces: they carry the tag)."""
    for path, callback in ((f"/apis/{API}/storagetokens", tracker.on_token), ("/api/v1/secrets", tracker.on_secret)):
        watch = Watch(env.access, path, callback)
        watch.start()
        env.watches.append(watch)
    for watch in env.watches:
        watch.synced.wait(10)


def deletion_plan(rng: random.Random, spaces: list[Space], args: argparse.Namespace) -> list[tuple[float, Space]]:
    """When (seconds into the chaos) which namespace is deleted: spread over both installs and the chaos."""
    expected = args.kills * ((args.min_up + args.max_up) / 2 + (0.2 + args.max_pause) / 2)
    by_install: dict[str, list[Space]] = collections.defaultdict(list)
    for space in spaces:
        by_install[space.install.label].append(space)
    order = [s for group in zip(*by_install.values(), strict=False) for s in group]
    order += [s for s in spaces if s not in order]
    chosen = order[: args.ns_deletions]
    times = sorted(rng.uniform(0.1, 0.75) * expected for _ in chosen)
    return list(zip(times, chosen, strict=True))


def chaos(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    env_vars = {"STO_SWEEP_INTERVAL": "10s", "STO_SWEEP_MIN_AGE": "30s", "STO_PROVIDER_RECHECK_INTERVAL": "5m"}
    load = MachineLoad()
    load.start()
    with Environment("chaos", INSTALLS[0][1], env=env_vars, workers=args.workers) as env:
        installs = make_installs(env, args, env_vars)
        for install in installs:
            if install.operator_namespace != "storage-token-system":
                env.api.namespace(install.operator_namespace)
        per_namespace = max(1, args.tokens // args.namespaces)
        spaces = [Space(i, tag, per_namespace) for i in installs for tag in i.tags]
        for space in spaces:
            set_up_namespace(env, space)
        ledger = Ledger(env)
        ledger.start()
        tracker = Tracker(keep_secret_history=True)
        watch_all(env, tracker)
        try:
            return run(env, args, rng, installs, spaces, ledger, tracker, load, env_vars)
        finally:
            for install in installs:
                if install.process is not None:
                    install.process.stop(timeout=10)


def run(
    env: Environment,
    args: argparse.Namespace,
    rng: random.Random,
    installs: list[Install],
    spaces: list[Space],
    ledger: Ledger,
    tracker: Tracker,
    load: MachineLoad,
    env_vars: dict[str, str],
) -> dict[str, Any]:
    for install in installs:
        assert install.process is not None
        install.process.start()
    for space in spaces:
        for kind in ("b2", "us3"):
            env.wait_provider_ready(space.namespace, kind)
    em_before = emulator_counts(env.emulators)
    faults = inject_faults(env, args.fault_share)
    started = time.time()
    tokens = sum(len(s.names) for s in spaces)
    log(
        f"chaos: {tokens} tokens in {len(spaces)} namespaces of {len(installs)} installs, {args.kills} kills, "
        f"{args.ns_deletions} namespace deletions, {100 * args.fault_share:.0f}% faults"
    )
    asyncio.run(create_many_spaces(env, tracker, [*spaces], args))
    plan = deletion_plan(rng, spaces, args)
    deletions: list[Deletion] = []
    ready_samples: list[tuple[float, int]] = []
    now = time.monotonic()
    for install in installs:
        install.schedule(now, rng, args)
    first = installs[0]
    last_sample = last_probe = 0.0
    reported = 0
    while len(first.kills) < args.kills or first.killed_at is not None:
        now = time.monotonic()
        for install in installs:
            install.tick(now, rng, args, started, kill=len(first.kills) < args.kills)
        while plan and time.time() - started >= plan[0][0]:
            _, space = plan.pop(0)
            if space.terminating is None:
                deletions.append(delete_namespace(env, space))
                log(f"  deleted namespace {space.namespace} (generation {space.generation}, {len(space.names)} tokens)")
        if now - last_probe >= 2:
            last_probe = now
            probe_deletions(env, tracker, spaces, args, recreate=args.recreate)
        if now - last_sample >= 1:
            last_sample = now
            live = live_owners(spaces)
            ready_samples.append((time.time() - started, tracker.count(lambda t: t.ready, list(live))))
        if len(first.kills) != reported and len(first.kills) % 5 == 0:
            reported = len(first.kills)
            live = live_owners(spaces)
            log(f"  kill {reported}/{args.kills}: {tracker.count(lambda t: t.ready, list(live))}/{len(live)} Ready")
        time.sleep(0.05)
    for install in installs:
        if install.killed_at is not None:
            install.restart(time.monotonic(), rng, args)
    chaos_end = time.time()
    log(f"  {', '.join(f'{i.label}: {len(i.kills)} kills' for i in installs)}; {len(deletions)} namespaces deleted")
    for emulator in (env.emulators.b2, env.emulators.us3):
        emulator.faults.clear()
    fault_hits: collections.Counter[str] = collections.Counter()
    for fault in faults:
        fault_hits[fault.kind if fault.kind != "status" else f"status {fault.status}"] += fault.hits
    em_chaos = counts_delta(em_before, emulator_counts(env.emulators))
    log(f"chaos over after {chaos_end - started:.0f}s; faults off, settling (up to {args.settle:.0f}s)")
    deadline = time.monotonic() + args.settle
    state: dict[str, Any] = {}
    owners: dict[str, Install] = {}
    gone: list[dict[str, Any]] = []
    while True:
        probe_deletions(env, tracker, spaces, args, recreate=False)
        owners = live_owners(spaces)
        state = check_state(env, tracker, ledger, owners, installs)
        overdue = overdue_revocations(tracker, set(owners), args.revoke_tolerance)
        gone = deletion_state(ledger, deletions, time.time())
        deleted_ok = all(d["gone"] and not d["keys_unrevoked"] for d in gone)
        if (healthy(state) and not overdue and deleted_ok) or time.monotonic() > deadline:
            break
        log(
            "  settling: "
            + "; ".join(
                f"{label}: {len(s['not_ready'])} not Ready, {len(s['bad_secrets'])} bad Secrets, "
                f"{len(s['leaked'])} unreferenced live keys"
                for label, s in state.items()
            )
            + f"; {sum(not d['gone'] for d in gone)} namespaces terminating, "
            f"{sum(d['keys_unrevoked'] for d in gone)} keys of deleted namespaces live"
        )
        time.sleep(5)
    settled = time.time()
    ledger.stop()
    ended = {name: d.started for d in deletions for name in d.names}
    grace = parse_seconds(args.grace)
    per_install: dict[str, Any] = {}
    for install in installs:
        names = {n for s in spaces if s.install is install for n in all_names(s, deletions)}
        revoke = revocations(tracker, ledger, names, install.prefix, grace, settled, install.downtime, ended)
        final = state[install.label]
        per_install[install.label] = {
            "cluster_id": install.cluster_id,
            "operator_namespace": install.operator_namespace,
            "key_prefix": install.prefix,
            "namespaces": [namespace_of(t) for t in install.tags],
            "kills": len(install.kills),
            "final": {
                **{k: v for k, v in final.items() if k not in ("not_ready", "bad_secrets", "leaked")},
                "not_ready": len(final["not_ready"]),
                "not_ready_names": final["not_ready"][:20],
                "bad_secrets": len(final["bad_secrets"]),
                "bad_secret_examples": final["bad_secrets"][:20],
                "leaked": len(final["leaked"]),
                "leaked_examples": sorted(final["leaked"].values())[:20],
            },
            "revocation": revoke,
            "kill_log": install.kills,
            "operator_log": scan_log(install.log_path),
        }
    exposure = secret_exposure(tracker, ledger, settled, ended)
    cross = cross_deletions(ledger, installs)
    with ledger.lock:
        created = len(ledger.keys)
        deleted = sum(1 for r in ledger.keys.values() if r.deleted is not None)
    tracks = tracker.snapshot()
    ours = [tracks[n] for n in owners if n in tracks]
    rotations = sum(max(t.revision - 1, 0) for t in tracks.values())
    first_key = [(t.ready_at or settled) - (t.sent or started) for t in ours if t.sent]
    # Per namespace generation ("a00g1": re-created once), to see where first keys were slow.
    by_generation: dict[str, list[float]] = collections.defaultdict(list)
    for track in ours:
        if track.sent:
            by_generation[track.name.split("t", 1)[0]].append((track.ready_at or settled) - track.sent)
    without_key = [t.name for t in ours if (t.ready_at or settled) > chaos_end]
    tolerance = args.revoke_tolerance
    checks: dict[str, bool] = {}
    for label, data in per_install.items():
        final, revoke = data["final"], data["revocation"]
        checks[f"{label}: all tokens Ready"] = not final["not_ready"]
        checks[f"{label}: every Secret holds a live, unexpired key (the one in status)"] = not final["bad_secrets"]
        checks[f"{label}: no leaked keys (live keys with its prefix == referenced keys)"] = not final["leaked"]
        checks[f"{label}: no replaced key outlived its due time by > {tolerance:.0f}s while an operator ran"] = (
            revoke["max_net_lateness_seconds"] <= tolerance
        )
        checks[f"{label}: no key revoked while its token still used it"] = revoke["revoked_while_current_count"] == 0
        checks[f"{label}: deleted no key of the other install"] = cross[label]["foreign_count"] == 0
    checks["deleted namespaces: every key of their tokens revoked"] = all(not d["keys_unrevoked"] for d in gone)
    checks["deleted namespaces: gone (none stuck Terminating)"] = all(d["gone"] for d in gone)
    checks["no Secret held a revoked key (outside terminating namespaces)"] = (
        exposure["secret_seconds_with_revoked_key"] == 0
    )
    checks["no Secret held an expired key"] = exposure["secret_seconds_with_expired_key"] == 0
    result = {
        "tokens": tokens,
        "tokens_at_the_end": len(owners),
        "namespaces": len(spaces),
        "kills": sum(len(i.kills) for i in installs),
        "settings": {
            "duration": args.duration,
            "renew_before": args.renew_before,
            "revoke_grace_period": args.grace,
            "fault_share": args.fault_share,
            "up_seconds": [args.min_up, args.max_up],
            "max_pause_seconds": args.max_pause,
            "revoke_tolerance_seconds": args.revoke_tolerance,
            "namespace_deletions": args.ns_deletions,
            "recreate": args.recreate,
            "seed": args.seed,
            "operator_env": env_vars,
            "provider_rate_limit": FAST_LIMIT,
        },
        "chaos_seconds": chaos_end - started,
        "settle_seconds": settled - chaos_end,
        "keys_created": created,
        "keys_deleted": deleted,
        "rotations_recorded": rotations,
        "fault_hits": dict(fault_hits),
        "provider_calls": em_chaos,
        "installs": per_install,
        "namespace_deletions": gone,
        "cross_install": cross,
        "exposure": exposure,
        "time_to_first_key_seconds": summary(first_key),
        "time_to_first_key_by_namespace_generation": {g: summary(v) for g, v in sorted(by_generation.items())},
        "tokens_without_a_key_until_chaos_ended": len(without_key),
        "ready_during_chaos": {
            "min": min((r for _, r in ready_samples), default=None),
            "mean": sum(r for _, r in ready_samples) / len(ready_samples) if ready_samples else None,
        },
        "checks": checks,
        "passed": all(checks.values()),
        "watch_errors": sum(w.errors for w in env.watches),
    }
    if not result["passed"]:
        env.keep = True
        result["workdir"] = str(env.workdir)
    result["machine_load"] = load.finish()
    return result


async def create_many_spaces(env: Environment, tracker: Tracker, spaces: list[Space], args: argparse.Namespace) -> None:
    for space in spaces:
        await create_many(env.access, tokens_path(space.namespace), token_bodies(space, args), on_sent=tracker.sent)


def probe_deletions(
    env: Environment, tracker: Tracker, spaces: list[Space], args: argparse.Namespace, recreate: bool
) -> None:
    """Notice namespaces that finished deleting; re-create them with fresh tokens (the next generation)."""
    for space in spaces:
        deletion = space.terminating
        if deletion is None or deletion.gone is not None or not namespace_gone(env, deletion):
            continue
        deletion.gone = time.time()
        log(f"  namespace {space.namespace} gone after {deletion.gone - deletion.started:.1f}s")
        if recreate:
            space.generation += 1
            set_up_namespace(env, space)
            asyncio.run(create_many_spaces(env, tracker, [space], args))
            space.terminating = None


def live_owners(spaces: list[Space]) -> dict[str, Install]:
    """The tokens expected to exist now (namespaces not being deleted), and their install."""
    return {name: s.install for s in spaces if s.terminating is None for name in s.names}


def all_names(space: Space, deletions: list[Deletion]) -> list[str]:
    """Every token the namespace ever held: deleted generations and the current one."""
    return [n for d in deletions if d.space is space for n in d.names] + list(space.names)


def parse_seconds(text: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", text)
    if not match:
        raise ValueError(text)
    return 60 * int(match.group(1) or 0) + int(match.group(2) or 0)


def table(result: dict[str, Any]) -> list[list[Any]]:
    exposure, cross = result["exposure"], result["cross_install"]
    deletions = result["namespace_deletions"]
    rows: list[list[Any]] = [
        ["tokens (half B2, half US3) / namespaces", f"{result['tokens']} / {result['namespaces']}"],
        ["operator SIGKILLs (both installs)", result["kills"]],
        ["chaos / settle (s)", f"{result['chaos_seconds']:.0f} / {result['settle_seconds']:.0f}"],
        ["faults injected", ", ".join(f"{k} {v}" for k, v in sorted(result["fault_hits"].items()))],
        ["keys created / deleted at the emulators", f"{result['keys_created']} / {result['keys_deleted']}"],
        ["rotations recorded", result["rotations_recorded"]],
    ]
    for label, data in result["installs"].items():
        final, revoke = data["final"], data["revocation"]
        orphans = revoke["orphans"]
        rows += [
            [f"**install {label}** (cluster id `{data['cluster_id']}`, prefix `{data['key_prefix']}`)", ""],
            ["  namespaces / SIGKILLs", f"{len(data['namespaces'])} / {data['kills']}"],
            ["  Ready at the end", f"{final['tokens'] - final['not_ready']}/{final['tokens']}"],
            ["  Secrets with a bad key at the end", final["bad_secrets"]],
            ["  live prefixed keys / referenced keys", f"{final['live_prefixed_keys']} / {final['referenced_keys']}"],
            ["  leaked keys", final["leaked"]],
            ["  replaced keys checked", revoke["replaced_keys"]],
            ["  revocation lateness p50 / p99 / max (s)", _trio(revoke["lateness_seconds"])],
            ["    net of operator downtime p50 / p99 / max (s)", _trio(revoke["net_lateness_seconds"])],
            [
                "  revocations > 10s late (of them while a kill happened)",
                f"{revoke['late_over_10s']} ({revoke['late_over_10s_spanning_a_kill']})",
            ],
            [
                "  keys already due at a restart: count, restart → revoked p50 / p99 / max (s)",
                f"{revoke['overdue_at_a_restart']}: {_trio(revoke['restart_to_revocation_of_overdue_keys_seconds'])}",
            ],
            ["  keys revoked while still in use", revoke["revoked_while_current_count"]],
            [
                "  orphans (never in a status): created / revoked / still live",
                f"{orphans['created']} / {orphans.get('revoked', 0)} / {orphans.get('still live', 0)}",
            ],
            ["  keys of the other install it deleted", cross[label]["foreign_count"]],
            ["  operator log: tracebacks", data["operator_log"]["counts"]["tracebacks"]],
        ]
    revoke_times = [d["seconds_to_last_revocation"] for d in deletions if d["seconds_to_last_revocation"] is not None]
    gone_times = [d["seconds_to_gone"] for d in deletions if d["seconds_to_gone"] is not None]
    rows += [
        ["**namespace deletions**", len(deletions)],
        [
            "  tokens in them / keys ever created for them",
            f"{sum(d['tokens'] for d in deletions)} / {sum(d['keys_created'] for d in deletions)}",
        ],
        ["  keys left unrevoked", sum(d["keys_unrevoked"] for d in deletions)],
        [
            "  namespaces gone / stuck Terminating",
            f"{sum(d['gone'] for d in deletions)} / {sum(not d['gone'] for d in deletions)}",
        ],
        ["  delete → last key revoked, max (s)", f"{max(revoke_times):.1f}" if revoke_times else "-"],
        ["  delete → namespace gone, max (s)", f"{max(gone_times):.1f}" if gone_times else "-"],
        ["deletions in no operator log (lost responses, kills)", cross["unattributed_deletions"]],
        ["Secret-seconds holding an expired key", exposure["secret_seconds_with_expired_key"]],
        [
            "Secret-seconds holding a revoked key (tokens)",
            f"{exposure['secret_seconds_with_revoked_key']:.1f} ({exposure['tokens_whose_secret_held_a_revoked_key']})",
        ],
        [
            "  in a terminating namespace, after its deletion started (tokens)",
            f"{exposure['secret_seconds_with_revoked_key_in_a_terminating_namespace']:.1f} "
            f"({exposure['tokens_in_a_terminating_namespace_whose_secret_outlived_its_key']})",
        ],
        ["time to first key p50 / p99 / max (s)", _trio(result.get("time_to_first_key_seconds", {}))],
        ["tokens still without a first key when the chaos ended", result.get("tokens_without_a_key_until_chaos_ended")],
        ["result", "PASS" if result["passed"] else "FAIL"],
    ]
    return rows


def write_markdown(result: dict[str, Any], path: Path) -> None:
    settings = result["settings"]
    installs = ", ".join(
        f"`{d['cluster_id']}` ({len(d['namespaces'])} namespaces, operator namespace {d['operator_namespace']})"
        for d in result["installs"].values()
    )
    lines = [
        f"# Chaos results ({result['finished']})",
        "",
        f"{result['tokens']} StorageTokens in {result['namespaces']} namespaces (duration {settings['duration']}, "
        f"renewBefore {settings['renew_before']}, revokeGracePeriod {settings['revoke_grace_period']}), "
        f"two installs on the same provider accounts: {installs}; {result['kills']} SIGKILLs of the operators "
        f"after {settings['up_seconds'][0]:g}-{settings['up_seconds'][1]:g} s of life, "
        f"{len(result['namespace_deletions'])} namespaces deleted"
        f"{' and re-created with fresh tokens' if settings['recreate'] else ''}, "
        f"{100 * settings['fault_share']:.0f}% provider faults; operator at {result['revision']} "
        f"(run from {result['operator_source']}), seed {settings['seed']}.",
        "",
        markdown_table(["", "value"], table(result)),
        "",
        *[f"- {'PASS' if ok else 'FAIL'}: {check}" for check, ok in result["checks"].items()],
    ]
    path.write_text("\n".join(lines) + "\n")


def _trio(stats: dict[str, Any]) -> str:
    values = [stats.get("p50"), stats.get("p99"), stats.get("max")]
    return " / ".join("-" if v is None else f"{v:.1f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=None, help="default 1000 (--quick: 100)")
    parser.add_argument("--kills", type=int, default=None, help="of install a; default 30 (--quick: 8)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--namespaces", type=int, default=10, help="over both installs")
    parser.add_argument("--second-share", type=float, default=0.3, help="share of the namespaces of install b")
    parser.add_argument("--ns-deletions", type=int, default=3, help="namespaces deleted during the chaos")
    parser.add_argument("--no-recreate", dest="recreate", action="store_false", help="leave deleted namespaces gone")
    # Every token rotates every 2 minutes: 1000 tokens are ~8 rotations/s, within what 2 cores sustain
    # (the benchmark's rotation phase measures ~20/s); --duration 2m --renew-before 80s overloads it.
    parser.add_argument("--duration", default="6m")
    parser.add_argument("--renew-before", default="4m")
    parser.add_argument("--grace", default="5s")
    parser.add_argument("--fault-share", type=float, default=0.1)
    parser.add_argument("--min-up", type=float, default=3.0)
    parser.add_argument("--max-up", type=float, default=20.0)
    parser.add_argument("--max-pause", type=float, default=3.0)
    parser.add_argument("--settle", type=float, default=300.0, help="bounded wait for the invariants after the chaos")
    parser.add_argument("--revoke-tolerance", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--output", default="chaos")
    args = parser.parse_args(argv)
    args.tokens = args.tokens or (100 if args.quick else 1000)
    args.kills = args.kills or (8 if args.quick else 30)
    args.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    started = time.time()
    result = chaos(args)
    result.update(
        started=iso(started),
        finished=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(),
        # STO_BENCH_REVISION: what a snapshot run from PYTHONPATH is (the working tree's git state is not).
        revision=os.environ.get("STO_BENCH_REVISION") or git_revision(),
        # The package the operators ran from (a snapshot through PYTHONPATH, or the working tree).
        operator_source=str(Path(storage_token.__file__).resolve().parent),
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{args.output}.json", result)
    print()
    print(text_table(["chaos", "value"], table(result)))
    write_markdown(result, RESULTS / f"{args.output}.md")
    for check, ok in result["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
