"""`kubectl storage-token` (also `storage-token plan|status|renew|inspect`): see a plan, the fleet, one Secret.

plan     what the operator would do with a file of providers and/or tokens; GETs and LISTs only
status   tokens by expiry, with renewal times, pending revocations and rollout state
renew    ask for a renewal now (the annotation the operator honours)
inspect  what a token's Secret holds, secret values masked

The plan reads the cluster once, builds each token's PolicyInput with the controller's own gather
code over that snapshot (which has no write methods), and asks policy/plan.py what the
reconciler would do: the same `decide`, so the plan cannot disagree with the controller. No
provider client is ever built here.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import copy
import json
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO, cast

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from storage_token.api.conditions import condition
from storage_token.api.durations import format_duration
from storage_token.api.provider import CLUSTER_KIND, NAMESPACED_KIND, ProviderSpec
from storage_token.api.times import format_time, parse_time
from storage_token.api.token import API_GROUP, API_VERSION, TokenSpec, TokenStatus
from storage_token.controllers.gather import RENEW_ANNOTATION, gather
from storage_token.controllers.secret_writer import (
    ANNOTATION_EXPIRES_AT,
    ANNOTATION_REVISION,
    ANNOTATION_TEMPLATE_KEYS,
)
from storage_token.kube.api import ApiError, Kube, load_api_client
from storage_token.policy import plan as planning
from storage_token.policy import reasons
from storage_token.policy.ceiling import manual_renewal_too_soon
from storage_token.policy.inputs import SecretState
from storage_token.policy.rollout import Rollout
from storage_token.runtime.settings import Settings
from storage_token.secrets.checks import secret_problems
from storage_token.secrets.render import TemplateError
from storage_token.secrets.worker import BoundedRenderer, RenderWorkerError

Body = dict[str, Any]
TOKEN = "StorageToken"
PLANNED_KINDS = (TOKEN, NAMESPACED_KIND, CLUSTER_KIND)
TOKEN_CRD = f"storagetokens.{API_GROUP}"


class UserError(Exception):
    """Something the person at the terminal can fix; the message says how. Exit code 1."""


class UsageError(UserError):
    """Bad input (a file, an argument). Exit code 2."""


# -- cluster access ----------------------------------------------------------------------------
class ClusterApi(Protocol):
    """The reads this CLI makes (and renew's one patch): Kube's method names, plus two Kube lacks."""

    async def get_object(self, kind: str, namespace: str | None, name: str) -> Body | None: ...
    async def list_objects(self, kind: str, namespace: str | None = None) -> list[Body]: ...
    async def get_secret(self, namespace: str, name: str) -> Body | None: ...
    async def get_namespace(self, name: str) -> Body | None: ...
    async def patch_object(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None: ...
    async def list_secrets(self, namespace: str) -> list[Body]: ...
    async def token_schema(self) -> Body | None: ...


class LiveCluster:
    """The operator's own `Kube` for every request but one: the CRD read (for schema defaults) uses the
    official client, as Kube has no call for it."""

    def __init__(self, api: client.ApiClient) -> None:
        self.host = str(api.configuration.host)
        self.kube = Kube(api)
        self._api = api

    async def get_object(self, kind: str, namespace: str | None, name: str) -> Body | None:
        return await self.kube.get_object(kind, namespace, name)

    async def list_objects(self, kind: str, namespace: str | None = None) -> list[Body]:
        return await self.kube.list_objects(kind, namespace)

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        return await self.kube.get_secret(namespace, name)

    async def get_namespace(self, name: str) -> Body | None:
        return await self.kube.get_namespace(name)

    async def patch_object(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None:
        return await self.kube.patch_object(kind, namespace, name, patch)

    async def list_secrets(self, namespace: str) -> list[Body]:
        items, _ = await self.kube.list_secrets(namespace, {}, metadata_only=False)
        return items

    async def token_schema(self) -> Body | None:
        extensions = client.ApiextensionsV1Api(self._api)
        try:
            response = await asyncio.to_thread(
                extensions.read_custom_resource_definition, TOKEN_CRD, _preload_content=False
            )
        except ApiException as error:
            if error.status in (403, 404):
                return None  # the plan says it compares without defaults
            raise ApiError(int(error.status or 0), str(error.reason or "")) from None
        except urllib3.exceptions.HTTPError as error:
            raise ApiError(0, f"API server unreachable ({type(error).__name__})") from None
        body: Body = json.loads(response.data or b"{}")
        for version in (body.get("spec") or {}).get("versions") or ():
            if version.get("name") == API_VERSION:
                schema: Body = (version.get("schema") or {}).get("openAPIV3Schema") or {}
                return schema
        return None

    async def aclose(self) -> None:
        await self.kube.aclose()
        self._api.close()


class _Snapshot:
    """What `gather` reads, answered from one read of the cluster: no requests, and no write methods at all."""

    def __init__(
        self, secrets: Mapping[tuple[str, str], Body], namespaces: Mapping[str, Body], assume_secrets: bool
    ) -> None:
        self._secrets, self._namespaces, self.assume_secrets = secrets, namespaces, assume_secrets

    async def get_object(self, kind: str, namespace: str | None, name: str) -> Body | None:
        return None  # every provider is in the cache gather is given; absent there means absent

    async def get_secret(self, namespace: str, name: str, any_version: bool = False) -> Body | None:
        return copy.deepcopy(self._secrets.get((namespace, name)))

    async def get_namespace(self, name: str) -> Body | None:
        return self._namespaces.get(name)


# -- reading files ------------------------------------------------------------------------------
def read_documents(path: str, stdin: TextIO) -> list[Body]:
    """Every StorageToken / StorageProvider / ClusterStorageProvider in a (multi-document) YAML or JSON file."""
    try:
        text = stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    where = "stdin" if path == "-" else path
    try:
        loaded = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageError(f"{where} is not valid YAML{at}: {problem}") from None
    documents: list[Body] = []
    for index, doc in enumerate(loaded, start=1):
        if not isinstance(doc, dict):
            raise UsageError(f"{where}, document {index}: expected a Kubernetes object, found {type(doc).__name__}")
        items = doc.get("items") if doc.get("kind") == "List" else [doc]
        for item in items or ():
            documents.append(_checked(item, where, index))
    planned = [doc for doc in documents if doc.get("kind") in PLANNED_KINDS]
    if not planned:
        raise UsageError(f"{where} holds no StorageToken, StorageProvider or ClusterStorageProvider")
    return documents


def _checked(doc: Any, where: str, index: int) -> Body:
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        raise UsageError(f"{where}, document {index}: an object needs a kind")
    if doc["kind"] in PLANNED_KINDS:
        if doc.get("apiVersion") != f"{API_GROUP}/{API_VERSION}":
            raise UsageError(
                f"{where}, document {index}: {doc['kind']} needs apiVersion {API_GROUP}/{API_VERSION}"
                f" (found {doc.get('apiVersion')!r})"
            )
        if not (doc.get("metadata") or {}).get("name"):
            raise UsageError(f"{where}, document {index}: {doc['kind']} needs metadata.name")
    return doc


def apply_schema_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """Structural-schema defaulting as the API server does it, so a file's spec hashes like a stored one."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name, sub in properties.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_schema_defaults(value[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in properties:
                    value[name] = apply_schema_defaults(value[name], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_schema_defaults(item, schema["items"]) for item in value]
    return value


# -- the plan -----------------------------------------------------------------------------------
@dataclass
class PlanReport:
    plans: list[planning.TokenPlan]
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # documents not planned (other kinds)


def _key(kind: str, namespace: str, name: str) -> tuple[str, str, str]:
    return (kind, "" if kind == CLUSTER_KIND else namespace, name)


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("metadata") or {}


async def build_plan(
    cluster: ClusterApi,
    documents: Sequence[Body],
    default_namespace: str,
    now: datetime,
    renderer: BoundedRenderer | None = None,
) -> PlanReport:
    """Read the cluster (GETs and LISTs), overlay the file, and plan every affected token."""
    report = PlanReport(plans=[])
    file_providers: dict[tuple[str, str, str], Body] = {}
    file_tokens: dict[tuple[str, str], Body] = {}
    for doc in documents:
        kind, meta = doc["kind"], _meta(doc)
        if kind not in PLANNED_KINDS:
            report.skipped.append(f"{kind} {meta.get('name', '?')}")
            continue
        namespace = "" if kind == CLUSTER_KIND else (meta.get("namespace") or default_namespace)
        if kind == TOKEN:
            file_tokens[(namespace, meta["name"])] = doc
        else:
            file_providers[_key(kind, namespace, meta["name"])] = doc
    cluster_wide = any(key[0] == CLUSTER_KIND for key in file_providers)
    namespaces = sorted({ns for ns, _ in file_tokens} | {key[1] for key in file_providers if key[1]})

    # One read of what the plan depends on.
    if cluster_wide:
        existing = await cluster.list_objects(TOKEN)
    else:
        existing = [t for ns in namespaces for t in await cluster.list_objects(TOKEN, ns)]
    providers: dict[tuple[str, str, str], Body] = {}
    for body in await cluster.list_objects(CLUSTER_KIND):
        providers[_key(CLUSTER_KIND, "", _meta(body).get("name", ""))] = body
    if cluster_wide:
        namespaced = await cluster.list_objects(NAMESPACED_KIND)
    else:
        namespaced = [p for ns in namespaces for p in await cluster.list_objects(NAMESPACED_KIND, ns)]
    for body in namespaced:
        providers[_key(NAMESPACED_KIND, _meta(body).get("namespace", ""), _meta(body).get("name", ""))] = body

    # The file's providers replace the stored specs; a stored provider keeps its status (Ready).
    for key, doc in file_providers.items():
        stored = providers.get(key)
        kind, namespace, name = key
        label = f"{kind} {namespace + '/' if namespace else ''}{name}"
        merged = copy.deepcopy(stored) if stored is not None else {"apiVersion": doc["apiVersion"], "kind": kind}
        merged["spec"] = copy.deepcopy(doc.get("spec") or {})
        merged.setdefault("metadata", {}).update(name=name, **({"namespace": namespace} if namespace else {}))
        ready = condition((merged.get("status") or {}).get("conditions"), "Ready")
        if stored is None or ready is None or ready.get("status") != "True":
            merged["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "AssumedByPlan"}]}
            report.notes.append(f"{label} is not Ready in the cluster: planned as if its credentials verify")
        elif _credentials_changed(stored, doc):
            report.notes.append(f"{label}: its account changes; planned as if the new credentials verify")
        providers[key] = merged

    # Affected: the file's tokens, and stored tokens that use a provider the file changes.
    schema = await cluster.token_schema()
    spec_schema = ((schema or {}).get("properties") or {}).get("spec")
    if spec_schema is None and file_tokens:
        report.notes.append(
            "could not read the StorageToken CRD: the file's specs are compared without the schema defaults"
        )
    stored_tokens = {(_meta(t).get("namespace", ""), _meta(t).get("name", "")): t for t in existing}
    affected: dict[tuple[str, str], tuple[Body, bool]] = {}
    for where, token in stored_tokens.items():
        ref = (token.get("spec") or {}).get("providerRef") or {}
        ref_kind = ref.get("kind") or NAMESPACED_KIND
        if _key(ref_kind, where[0], ref.get("name") or "") in file_providers:
            affected[where] = (token, False)
    for where, doc in file_tokens.items():
        affected[where] = (_overlay_token(stored_tokens.get(where), doc, where[0], spec_schema), True)

    # Secrets and namespace labels of the affected namespaces, once each.
    secrets: dict[tuple[str, str], Body] = {}
    assume = False
    for ns in sorted({key[0] for key in affected}):
        try:
            for secret in await cluster.list_secrets(ns):
                secrets[(ns, _meta(secret).get("name", ""))] = secret
        except ApiError as error:
            if error.status != 403:
                raise
            assume = True
            report.notes.append(
                f"not allowed to list Secrets in {ns}: assuming each token's Secret holds its current key"
            )
    # Namespace labels decide a ClusterStorageProvider's admission (namespaceSelector).
    labels: dict[str, Body] = {}
    for ns in sorted({where[0] for where, (token, _) in affected.items() if _refers_to_cluster_kind(token)}):
        try:
            labels[ns] = await cluster.get_namespace(ns) or {}
        except ApiError as error:
            if error.status != 403:
                raise
            report.notes.append(f"not allowed to read namespace {ns}: its labels count as none")
    snapshot = _Snapshot(secrets, labels, assume)
    cache = {key: body for key, body in providers.items()}
    settings = Settings()
    for where in sorted(affected):
        token, from_file = affected[where]
        report.plans.append(await _plan_one(snapshot, cache, settings, token, from_file, now, renderer))
    return report


def _refers_to_cluster_kind(token: Mapping[str, Any]) -> bool:
    return bool(((token.get("spec") or {}).get("providerRef") or {}).get("kind") == CLUSTER_KIND)


def _credentials_changed(stored: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    before, after = stored.get("spec") or {}, doc.get("spec") or {}
    return any(before.get(f) != after.get(f) for f in ("type", "endpoint", "credentialsSecretRef", "projectId"))


def _overlay_token(stored: Body | None, doc: Body, namespace: str, spec_schema: Mapping[str, Any] | None) -> Body:
    """The token as it would be stored after `kubectl apply` of `doc`."""
    spec = copy.deepcopy(doc.get("spec") or {})
    if spec_schema is not None:
        spec = apply_schema_defaults(spec, spec_schema)
    if stored is None:
        meta = {"name": doc["metadata"]["name"], "namespace": namespace, "uid": "", "generation": 1}
        body: Body = {"apiVersion": doc["apiVersion"], "kind": TOKEN, "metadata": meta}
    else:
        body = copy.deepcopy(stored)
        meta = body["metadata"]
    annotations = {**(meta.get("annotations") or {}), **(_meta(doc).get("annotations") or {})}
    meta["annotations"] = annotations
    body["spec"] = spec
    return body


async def _plan_one(
    snapshot: _Snapshot,
    cache: Mapping[tuple[str, str, str], Body],
    settings: Settings,
    token: Body,
    from_file: bool,
    now: datetime,
    renderer: BoundedRenderer | None,
) -> planning.TokenPlan:
    meta = token["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = TokenStatus.parse(token.get("status"))
    if meta.get("deletionTimestamp"):
        retain = (token.get("spec") or {}).get("deletionPolicy") == "Retain"
        return planning.plan_deletion(namespace, name, status, retain, now)
    try:
        spec = TokenSpec.parse(token.get("spec") or {}, default_secret_name=name)
        if from_file and renderer is not None:
            # The controller's rehearsal (steps/issuing._rehearse): bad templates fail before any key.
            data = await renderer.rehearse(spec.secret.template, spec.buckets, spec.prefixes)
            problem = secret_problems(data, spec.secret.labels, spec.secret.annotations)
            if problem:
                raise ValueError(f"spec.secret: {problem}")
    except (ValueError, TemplateError) as error:
        reason = reasons.TEMPLATE_ERROR if isinstance(error, TemplateError) else reasons.INVALID_SPEC
        return planning.plan_unreadable(namespace, name, status, reason, str(error), now)
    except RenderWorkerError as error:
        raise UserError(f"could not start a template renderer to check {namespace}/{name}: {error}") from None
    value, _ = await gather(cast(Kube, snapshot), settings, token, spec, now, None, cache)
    if snapshot.assume_secrets and status.key_id:
        # Without Secrets to read, take the recorded state at its word rather than plan a re-issue for all.
        assumed = SecretState(exists=True, owned=True, key_id_hash=value.current_key_id_hash, intact=True)
        value = replace(value, secret=assumed)
    return planning.plan_token(value)


# -- output ---------------------------------------------------------------------------------------
def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    delta = moment - now
    seconds = int(delta.total_seconds())
    if abs(seconds) < 1:
        return f"{format_time(moment)} (now)"
    span = format_duration(timedelta(seconds=abs(seconds)))
    return f"{format_time(moment)} ({'in ' + span if seconds > 0 else span + ' ago'})"


def _relative(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "now" if seconds > -1 else f"{_short(-seconds)} ago"
    return f"in {_short(seconds)}"


def _short(seconds: int) -> str:
    """Two units at most: 3d4h, 5h12m, 7m30s."""
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            return f"{whole}{unit}{rest // sub_size}{sub}" if rest // sub_size else f"{whole}{unit}"
    return f"{seconds}s"


def render_plan(report: PlanReport, now: datetime, out: TextIO) -> None:
    plans = report.plans
    out.write(f"Plan for {len(plans)} token(s) at {format_time(now)}. Nothing was written; no provider was called.\n")
    for note in report.notes:
        out.write(f"note: {note}\n")
    if report.skipped:
        out.write(f"not planned (other kinds): {', '.join(report.skipped)}\n")
    out.write("\n")
    for plan in plans:
        head = f"{plan.namespace}/{plan.name}"
        if plan.action == planning.NOTHING:
            out.write(f"{head}  no change: {plan.message}; renews {_relative(plan.renewal_time, now)}\n")
        else:
            reason = f" ({plan.reason})" if plan.reason else ""
            out.write(f"{head}  {plan.action.upper()}{reason}: {plan.message}\n")
        for call in plan.calls:
            tag = " [already queued]" if call.queued else ""
            when = "now" if call.at <= now else f"at {_when(call.at, now)}"
            if call.latest is not None:
                when += f", at the latest {_when(call.latest, now)}"
            out.write(f"    {call.call:<8}{call.key_name}  via {call.provider}, {when}: {call.why}{tag}\n")
        for target in plan.restarts:
            out.write(f"    restart {target} (if its pod template reads the Secret or it opts in)\n")
        if plan.action in (planning.ISSUE, planning.RENEW):
            out.write(f"    renews  {_when(plan.renewal_time, now)} (if the provider grants the full duration)\n")
    counts = planning.summarize(plans)
    calls = [c for p in plans for c in p.calls if not c.queued]
    out.write("\nSummary: " + (", ".join(f"{n} {a}" for a, n in counts.items()) or "no tokens affected"))
    issues = sum(1 for c in calls if c.call == planning.CALL_ISSUE)
    revokes = sum(1 for c in calls if c.call == planning.CALL_REVOKE)
    recovers = sum(1 for c in calls if c.call == planning.CALL_RECOVER)
    out.write(f". Provider calls it would make: {issues} issue, {revokes} revoke, {recovers} recover.\n")


def plan_json(report: PlanReport) -> Body:
    def call_json(call: planning.PlannedCall) -> Body:
        return {**asdict(call), "at": format_time(call.at), "latest": format_time(call.latest)}

    return {
        "plans": [
            {
                **{k: v for k, v in asdict(p).items() if k not in ("calls", "renewal_time", "not_after")},
                "renewalTime": format_time(p.renewal_time),
                "notAfter": format_time(p.not_after),
                "calls": [call_json(c) for c in p.calls],
            }
            for p in report.plans
        ],
        "summary": planning.summarize(report.plans),
        "notes": report.notes,
        "skipped": report.skipped,
    }


# -- status ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusRow:
    namespace: str
    name: str
    ready: str
    reason: str
    not_after: datetime | None
    renewal_time: datetime | None
    revision: int
    pending: tuple[tuple[str, datetime, int, str], ...]  # key name, due, attempts, last error
    rollout: str


def rollout_summary(raw: Any) -> str:
    """status.rollout, when the operator wrote one: `adopted/total` and whether it is done; "-" when absent."""
    try:
        rollout = Rollout.parse(raw) if isinstance(raw, Mapping) else None
    except (ValueError, KeyError, TypeError, AssertionError):
        return "?"
    if rollout is None:
        return "-"
    state = "done" if rollout.completed_at is not None or rollout.done else "rolling"
    return f"{rollout.adopted}/{rollout.total} {state} (r{rollout.revision})"


def status_rows(tokens: Iterable[Mapping[str, Any]]) -> list[StatusRow]:
    rows = []
    for token in tokens:
        meta, raw = _meta(token), token.get("status") or {}
        status = TokenStatus.parse(raw)
        ready = condition(raw.get("conditions"), "Ready") or {}
        pending = tuple(
            (p.key_name or p.key_id, p.due_at, p.attempts, p.last_error) for p in status.pending_revocations
        )
        rows.append(
            StatusRow(
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                ready=ready.get("status") or "Unknown",
                reason=ready.get("reason") or "-",
                not_after=status.not_after,
                renewal_time=status.renewal_time,
                revision=status.revision,
                pending=pending,
                rollout=rollout_summary(raw.get("rollout")),
            )
        )
    # Soonest expiry first; tokens with no key (nothing to expire) last, by name.
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (r.not_after or far, r.namespace, r.name))


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def render_status(rows: Sequence[StatusRow], now: datetime, all_namespaces: bool, out: TextIO) -> None:
    if not rows:
        out.write("No StorageTokens found.\n")
        return
    header = ["NAME", "READY", "REASON", "EXPIRES", "RENEWS", "PENDING", "ROLLOUT"]
    table = [(["NAMESPACE"] if all_namespaces else []) + header]
    for row in rows:
        if row.pending:
            next_due = min(due for _, due, _, _ in row.pending)
            pending = f"{len(row.pending)} (next {_relative(next_due, now)})"
        else:
            pending = "-"
        cells = [
            row.name,
            row.ready,
            row.reason,
            _relative(row.not_after, now),
            _relative(row.renewal_time, now),
            pending,
            row.rollout,
        ]
        table.append(([row.namespace] if all_namespaces else []) + cells)
    _table(table, out)
    queued = [(row, entry) for row in rows for entry in row.pending]
    if queued:
        out.write("\nPending revocations:\n")
        for row, (key, due, attempts, error) in sorted(queued, key=lambda item: item[1][1]):
            tried = f", {attempts} failed attempt(s): {error[:120]}" if attempts else ""
            out.write(f"  {row.namespace}/{row.name}  {key}  due {_when(due, now)}{tried}\n")


def status_json(rows: Sequence[StatusRow]) -> list[Body]:
    return [
        {
            "namespace": r.namespace,
            "name": r.name,
            "ready": r.ready,
            "reason": r.reason,
            "notAfter": format_time(r.not_after),
            "renewalTime": format_time(r.renewal_time),
            "revision": r.revision,
            "pendingRevocations": [
                {"keyName": k, "dueAt": format_time(d), "attempts": a, "lastError": e} for k, d, a, e in r.pending
            ],
            "rollout": r.rollout,
        }
        for r in rows
    ]


# -- inspect --------------------------------------------------------------------------------------
# Keys whose values are not secret, as the presets write them (secrets/render.py) and the providers'
# native names. Anything else is masked: a template could put a secret under any name.
VISIBLE_KEYS = frozenset(
    {
        "accessKeyId",
        "endpoint",
        "region",
        "bucket",
        "prefix",
        "expiresAt",
        "AWS_ACCESS_KEY_ID",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "B2_APPLICATION_KEY_ID",
        "US3_PUBLIC_KEY",
        "US3_REGION",
        "US3_S3_ENDPOINT",
        # COSI v1alpha2 (preset cosi)
        "COSI_PROTOCOL",
        "BUCKET_NAME",
        "AWS_S3_ADDRESSING_STYLE",
        # the previous pair's key id (secret.keepPrevious); its secret is masked like any other
        "previousAccessKeyId",
        "AWS_ACCESS_KEY_ID_PREVIOUS",
    }
)
CONFIG_FILES = frozenset({"rclone.conf", ".s3cfg", "rclone-previous.conf", ".s3cfg-previous"})
VISIBLE_OPTIONS = frozenset(
    {
        "type",
        "provider",
        "access_key_id",
        "access_key",
        "endpoint",
        "region",
        "no_check_bucket",
        "host_base",
        "host_bucket",
        "use_https",
        "bucket_location",
    }
)
MASK = "********"


def _masked(value: bytes) -> str:
    return f"{MASK} ({len(value)} bytes)"


def _config_lines(text: str) -> list[str] | None:
    """An INI file with secret options masked; None if it does not parse (then it is masked whole)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    lines = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        for option, value in parser.items(section):
            shown = value if option in VISIBLE_OPTIONS else _masked(value.encode())
            lines.append(f"{option} = {shown}")
    return lines


def inspect_lines(secret: Mapping[str, Any], templated: Iterable[str]) -> list[tuple[str, str]]:
    """(key, what to show) for each key of the Secret; `templated` keys come from the token's template."""
    import base64

    # What the template wrote when the Secret was written, not only what the spec says now.
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    from_template = set(templated) | {k for k in (annotations.get(ANNOTATION_TEMPLATE_KEYS) or "").split(",") if k}
    rows: list[tuple[str, str]] = []
    for name in sorted(secret.get("data") or {}):
        try:
            raw = base64.b64decode(secret["data"][name], validate=True)
        except (ValueError, TypeError):
            rows.append((name, "(not base64)"))
            continue
        if name in from_template:
            rows.append((name, _masked(raw) + ", from the template"))
            continue
        text = raw.decode("utf-8", errors="replace")
        if name in CONFIG_FILES:
            lines = _config_lines(text)
            if lines is not None:
                rows.append((name, "file:"))
                rows.extend(("", "  " + line) for line in lines)
                continue
        if name in VISIBLE_KEYS and "\n" not in text:
            rows.append((name, text or '""'))
        else:
            rows.append((name, _masked(raw)))
    return rows


# -- commands ---------------------------------------------------------------------------------------
@dataclass
class Context:
    cluster: ClusterApi
    namespace: str
    now: datetime
    out: TextIO
    stdin: TextIO = field(default_factory=lambda: sys.stdin)


async def cmd_plan(args: argparse.Namespace, ctx: Context) -> int:
    documents = read_documents(args.filename, ctx.stdin)
    has_tokens = any(doc["kind"] == TOKEN for doc in documents)
    renderer = BoundedRenderer(workers=1) if has_tokens and not args.skip_templates else None
    try:
        report = await build_plan(ctx.cluster, documents, ctx.namespace, ctx.now, renderer)
    finally:
        if renderer is not None:
            await renderer.aclose()
    if args.output == "json":
        json.dump(plan_json(report), ctx.out, indent=2)
        ctx.out.write("\n")
    else:
        render_plan(report, ctx.now, ctx.out)
    return 0


async def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    namespace = None if args.all_namespaces else ctx.namespace
    rows = status_rows(await ctx.cluster.list_objects(TOKEN, namespace))
    if args.output == "json":
        json.dump(status_json(rows), ctx.out, indent=2)
        ctx.out.write("\n")
        return 0
    if not rows and namespace:
        ctx.out.write(f"No StorageTokens in namespace {namespace} (all namespaces: -A).\n")
        return 0
    render_status(rows, ctx.now, args.all_namespaces, ctx.out)
    return 0


async def _token(ctx: Context, name: str) -> Body:
    token = await ctx.cluster.get_object(TOKEN, ctx.namespace, name)
    if token is None:
        raise UserError(
            f"StorageToken {name!r} not found in namespace {ctx.namespace}; "
            f"list them with: kubectl storage-token status -n {ctx.namespace} (or -A)"
        )
    return token


async def cmd_renew(args: argparse.Namespace, ctx: Context) -> int:
    token = await _token(ctx, args.name)
    status = TokenStatus.parse(token.get("status"))
    value = ctx.now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    patch = {"metadata": {"annotations": {RENEW_ANNOTATION: value}}}
    if await ctx.cluster.patch_object(TOKEN, ctx.namespace, args.name, patch) is None:
        raise UserError(f"StorageToken {ctx.namespace}/{args.name} was deleted meanwhile")
    where = f"{ctx.namespace}/{args.name}"
    ctx.out.write(f"Renewal requested for StorageToken {where} ({RENEW_ANNOTATION}={value}).\n")
    ready = condition((token.get("status") or {}).get("conditions"), "Ready") or {}
    blocked = ready.get("status") == "False" and ready.get("reason") not in (None, reasons.ISSUED)
    if blocked:
        ctx.out.write(
            f"It is not Ready ({ready.get('reason')}: {ready.get('message', '')}); "
            "the renewal waits until that is fixed.\n"
        )
    elif status.key_id:
        spec = TokenSpec.parse(token.get("spec") or {}, default_secret_name=args.name)
        waits = await _manual_limit(ctx, spec, status)
        if waits:
            ctx.out.write(f"Note: {waits}.\n")
        grace = format_duration(spec.revoke_grace_period)
        if spec.restart_targets:
            targets = ", ".join(f"{t.kind}/{t.name}" for t in spec.restart_targets)
            revoked = (
                f"restarts {targets}, and revokes key {status.key_name} once they have rolled out "
                f"(not before the {grace} grace period, at the latest after {format_duration(spec.max_revoke_delay)})"
            )
        else:
            revoked = f"and revokes key {status.key_name} after the {grace} grace period"
        ctx.out.write(
            f"The operator issues a new key, writes it to Secret {status.secret_name or spec.secret.name}, {revoked}.\n"
        )
    watch = f"kubectl get storagetoken {args.name} -n {ctx.namespace} -w"
    ctx.out.write(
        f"Watch it:\n  {watch}\n  kubectl storage-token status -n {ctx.namespace}\n"
        f"  kubectl get events -n {ctx.namespace} --field-selector involvedObject.name={args.name}\n"
    )
    return 0


async def _manual_limit(ctx: Context, spec: TokenSpec, status: TokenStatus) -> str:
    ref = spec.provider_ref
    try:
        body = await ctx.cluster.get_object(ref.kind, None if ref.kind == CLUSTER_KIND else ctx.namespace, ref.name)
    except ApiError:
        return ""  # only a hint; the operator applies the limit whatever we say
    if body is None:
        return ""
    ceiling = ProviderSpec.parse(body).ceiling
    return manual_renewal_too_soon(status.issued_at, ctx.now, ceiling)


async def cmd_inspect(args: argparse.Namespace, ctx: Context) -> int:
    token = await _token(ctx, args.name)
    raw_status = token.get("status") or {}
    status = TokenStatus.parse(raw_status)
    spec_raw = token.get("spec") or {}
    secret_name = status.secret_name or (spec_raw.get("secret") or {}).get("name") or args.name
    secret = await ctx.cluster.get_secret(ctx.namespace, secret_name)
    where = f"{ctx.namespace}/{args.name}"
    if secret is None:
        ready = condition(raw_status.get("conditions"), "Ready") or {}
        why = f" (Ready={ready.get('status')}, {ready.get('reason')}: {ready.get('message')})" if ready else ""
        raise UserError(
            f"Secret {ctx.namespace}/{secret_name} of StorageToken {where} does not exist yet{why}; "
            f"see: kubectl describe storagetoken {args.name} -n {ctx.namespace}"
        )
    annotations = _meta(secret).get("annotations") or {}
    template = ((spec_raw.get("secret") or {}).get("template") or {}).get("data") or {}
    out = ctx.out
    out.write(f"Secret {ctx.namespace}/{secret_name} of StorageToken {args.name}\n")
    out.write(f"  key:      {status.key_name or '-'} (id {status.key_id or '-'}, revision ")
    out.write(f"{annotations.get(ANNOTATION_REVISION) or status.revision or '-'})\n")
    expires = parse_time(annotations.get(ANNOTATION_EXPIRES_AT)) or status.not_after
    out.write(f"  expires:  {_when(expires, ctx.now)}\n")
    out.write(f"  renews:   {_when(status.renewal_time, ctx.now)}\n")
    for pending in status.pending_revocations:
        out.write(f"  previous: {pending.key_name} revoked {_when(pending.due_at, ctx.now)}\n")
    rows = inspect_lines(secret, template)
    if not rows:
        out.write("  (no data)\n")
        return 0
    out.write("\n")
    _table([("KEY", "VALUE"), *rows], out)
    out.write(f"\nSecret values are masked. Read one with: kubectl get secret {secret_name} -n {ctx.namespace} ")
    out.write("-o jsonpath='{.data.KEY}' | base64 -d\n")
    return 0


COMMANDS = {"plan": cmd_plan, "status": cmd_status, "renew": cmd_renew, "inspect": cmd_inspect}


# -- parsers ------------------------------------------------------------------------------------------
def _para(text: str) -> str:
    return textwrap.fill(text, 88)


def _examples(prog: str, lines: Sequence[str]) -> str:
    return "examples:\n" + "\n".join(f"  {line.format(prog=prog)}" for line in lines)


def _connection_options(parser: argparse.ArgumentParser, namespaced: bool = True) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
    group.add_argument("--context", help="kubeconfig context to use (default: the current context)")
    if namespaced:
        group.add_argument("-n", "--namespace", help="namespace (default: the context's namespace, else default)")


def add_parsers(subparsers: Any, prog: str = "storage-token") -> None:
    """Add plan, status, renew and inspect to a subparsers object (the `storage-token` CLI and the kubectl plugin)."""
    formatter = argparse.RawDescriptionHelpFormatter
    plan = subparsers.add_parser(
        "plan",
        help="show what the operator would do with a file of providers and tokens (changes nothing)",
        description=textwrap.dedent(
            """\
            For every token the file affects (the StorageTokens in it, and stored tokens that use a
            StorageProvider or ClusterStorageProvider in it), print what the operator would do:
            issue, renew, revoke after the grace period, block and why, or nothing; and the provider
            calls it would make (issue, revoke, recover), with when. Nothing is written to the
            cluster and no provider is called: the cluster is only read (GET and LIST).

            The decision is the operator's own policy code. Not checked here: the API server's schema
            validation of the file (use kubectl apply --dry-run=server -f FILE for that), and whether
            a changed provider's credentials work (the plan assumes they do, and says so)."""
        ),
        epilog=_examples(
            prog,
            [
                "{prog} plan -f provider.yaml            # narrow a provider's policy: who loses their key?",
                "{prog} plan -f token.yaml -n team-a     # a new or changed token",
                "kustomize build . | {prog} plan -f -    # from stdin",
                "{prog} plan -f provider.yaml -o json    # for scripts",
            ],
        ),
        formatter_class=formatter,
    )
    plan.add_argument(
        "-f", "--filename", required=True, help="YAML or JSON file (several documents allowed); - for stdin"
    )
    plan.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    plan.add_argument(
        "--skip-templates", action="store_true", help="don't rehearse the file's Secret templates (faster, less exact)"
    )
    _connection_options(plan)

    status = subparsers.add_parser(
        "status",
        help="tokens by expiry: renewal time, pending revocations, rollout",
        description=_para(
            "StorageTokens sorted by when their key expires (soonest first, tokens without a key last), "
            "with the renewal time, revocations waiting (and their retries) and the restart rollout "
            "(adopted/total) when there is one."
        ),
        epilog=_examples(
            prog,
            [
                "{prog} status              # the current namespace",
                "{prog} status -A",
                "{prog} status -n team-a -o json",
            ],
        ),
        formatter_class=formatter,
    )
    status.add_argument("-A", "--all-namespaces", action="store_true", help="tokens of every namespace")
    status.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    _connection_options(status)

    renew = subparsers.add_parser(
        "renew",
        help="ask the operator to renew a token's key now",
        description=_para(
            f"Set the {RENEW_ANNOTATION} annotation to the current time. The operator issues a new key "
            "(at most one per the provider's policy.minManualRenewInterval), writes it to the Secret, "
            "restarts the restart targets and revokes the old key after the grace period (with restart "
            "targets: once they have rolled out, within maxRevokeDelay)."
        ),
        epilog=_examples(prog, ["{prog} renew app-storage -n team-a"]),
        formatter_class=formatter,
    )
    renew.add_argument("name", help="the StorageToken")
    _connection_options(renew)

    inspect = subparsers.add_parser(
        "inspect",
        help="what a token's Secret holds (secret values masked)",
        description=_para(
            "Key names of the token's Secret with the values that are not secret (endpoint, region, "
            "bucket, prefix, key id, expiry) and the rest masked: no secret byte is printed. Keys written "
            "by the token's own template are always masked."
        ),
        epilog=_examples(prog, ["{prog} inspect app-storage -n team-a"]),
        formatter_class=formatter,
    )
    inspect.add_argument("name", help="the StorageToken")
    _connection_options(inspect)
    for name, parser in (("plan", plan), ("status", status), ("renew", renew), ("inspect", inspect)):
        parser.set_defaults(func=run, plugin_command=name)


def build_parser(prog: str = "kubectl storage-token") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=_para(
            "Plan changes to StorageProviders and StorageTokens, see the fleet by expiry, renew a key, "
            "inspect a Secret. The same commands are in the storage-token CLI."
        ),
        epilog=_examples(prog, ["{prog} status -A", "{prog} plan -f provider.yaml", "{prog} COMMAND --help"]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parsers(subparsers, prog)
    return parser


# -- running ------------------------------------------------------------------------------------------
def _api_client(args: argparse.Namespace) -> client.ApiClient:
    if args.context:
        configuration = client.Configuration()
        config.load_kube_config(config_file=args.kubeconfig, context=args.context, client_configuration=configuration)
        return client.ApiClient(configuration)
    return load_api_client(args.kubeconfig)


def default_namespace(args: argparse.Namespace) -> str:
    if getattr(args, "namespace", None):
        return str(args.namespace)
    try:
        contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
        if args.context:
            active = next((c for c in contexts if c.get("name") == args.context), active)
        return str(((active or {}).get("context") or {}).get("namespace") or "default")
    except (config.ConfigException, OSError):
        in_cluster = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        return in_cluster.read_text().strip() if in_cluster.exists() else "default"


def _explain_api_error(error: ApiError, args: argparse.Namespace, host: str) -> str:
    command = args.plugin_command
    if error.status == 0:
        return f"cannot reach the API server at {host}: {error.reason}; is the cluster up and the kubeconfig right?"
    if error.status == 401:
        return "the API server did not accept your credentials (401); log in again or check the kubeconfig user"
    if error.status == 403:
        verbs = {"plan": "get and list", "status": "list", "renew": "get and patch", "inspect": "get"}[command]
        extra = " and Secrets" if command in ("inspect", "plan") else ""
        return (
            f"forbidden (403): your account may not {verbs} storagetokens{extra} here; "
            f"ask for a role that allows it, or check: kubectl auth can-i {verbs.split()[0]} storagetokens"
        )
    return f"the API server answered {error.status} {error.reason}; try again, or check its health"


async def _execute(args: argparse.Namespace, cluster: ClusterApi | None, ctx_args: dict[str, Any]) -> int:
    live = LiveCluster(_api_client(args)) if cluster is None else None
    try:
        ctx = Context(cluster=cluster or cast(ClusterApi, live), **ctx_args)
        try:
            return await COMMANDS[args.plugin_command](args, ctx)
        except ApiError as error:
            raise UserError(_explain_api_error(error, args, live.host if live else "the API server")) from None
    finally:
        if live is not None:
            await live.aclose()


def run(
    args: argparse.Namespace,
    cluster: ClusterApi | None = None,
    out: TextIO | None = None,
    stdin: TextIO | None = None,
    now: datetime | None = None,
) -> int:
    """Run one command; errors are one line on stderr saying what to do (1: cluster or input, 2: usage)."""
    try:
        namespace = default_namespace(args) if cluster is None else (getattr(args, "namespace", None) or "default")
        ctx_args = {
            "namespace": namespace,
            "now": now or datetime.now(UTC),
            "out": out or sys.stdout,
            "stdin": stdin or sys.stdin,
        }
        return asyncio.run(_execute(args, cluster, ctx_args))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except config.ConfigException as error:
        print(
            f"error: no usable Kubernetes configuration ({str(error).splitlines()[0]}); "
            "set KUBECONFIG or pass --kubeconfig (and --context)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
