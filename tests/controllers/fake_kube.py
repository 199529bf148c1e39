"""`FakeKube`: an in-memory stand-in for `storage_token.kube.api.Kube` with the API server's semantics.

Same method names, arguments and return shapes as `Kube` (the controllers take it duck-typed).
What it models, because the controllers' correctness depends on it:

- objects per (kind, namespace, name) with uid, a global string resourceVersion, generation
  (custom kinds and workloads; bumped on spec changes only), creationTimestamp;
- reads return deep copies, or None for a missing object (the 404 `Kube` turns into None);
- JSON merge patches (RFC 7386); a `metadata.resourceVersion` in a patch is a precondition;
  `patch_status` changes only `.status`, `patch_object` only metadata and spec; a write that
  changes nothing bumps nothing (like the API server, which skips the etcd write);
- CRD structural defaults from `crds/` on create and update;
- Secrets: `stringData` folded into `data`; create raises Conflict if present; replace and
  delete honour resourceVersion / uid preconditions;
- deletion: finalizers hold an object with `deletionTimestamp` set until the last one is removed;
  no new finalizer may be added then; ownerReferences garbage collection (automatic unless
  `auto_gc=False`, then `collect_garbage()`); `delete_namespace` deletes everything inside, refuses
  new objects there with NamespaceTerminating, and drops the namespace once it is empty;
- watch: `watch(callback)` calls `callback(event_type, body)` after every change;
- faults: `fail_next(method, exc, after=..., when=...)`.
"""

from __future__ import annotations

import base64
import copy
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

from storage_token.api.times import format_time
from storage_token.api.token import API_GROUP, API_VERSION
from storage_token.kube.api import ApiError, Conflict, NamespaceTerminating
from storage_token.process.plugin_cli import apply_schema_defaults  # the API server's defaulting, once

Body = dict[str, Any]
T = TypeVar("T")
Key = tuple[str, str, str]  # kind, namespace ("" for cluster-scoped), name
WatchCallback = Callable[[str, Body], None]

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
CUSTOM_KINDS = ("StorageToken", "StorageProvider", "ClusterStorageProvider")
CLUSTER_SCOPED = frozenset({"ClusterStorageProvider"})
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
_API_VERSIONS = {
    **{kind: f"{API_GROUP}/{API_VERSION}" for kind in CUSTOM_KINDS},
    "Secret": "v1",
    "Lease": "coordination.k8s.io/v1",
    **{kind: "apps/v1" for kind in WORKLOAD_KINDS},
}
_GENERATION_KINDS = frozenset(CUSTOM_KINDS) | frozenset(WORKLOAD_KINDS)
# What a main-resource patch may change in metadata; the rest is the server's.
_MUTABLE_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


class Invalid(ApiError):
    """422: the API server refused the object as written (e.g. a finalizer added during deletion)."""

    def __init__(self, message: str) -> None:
        super().__init__(status=422, reason=message)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def _without(body: Body, *names: str) -> Body:
    return {k: v for k, v in body.items() if k not in names}


def load_crd_schemas(directory: Path = CRD_DIR) -> dict[str, Body]:
    """kind -> openAPIV3Schema of its stored version."""
    schemas: dict[str, Body] = {}
    for path in sorted(directory.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        versions = crd["spec"]["versions"]
        stored = next((v for v in versions if v.get("storage")), versions[0])
        schemas[crd["spec"]["names"]["kind"]] = stored["schema"]["openAPIV3Schema"]
    return schemas


@dataclass
class Fault:
    method: str
    error: BaseException
    after: bool = False  # apply the call, then raise (a crash after the write, or a lost answer)
    when: Callable[[dict[str, Any]], bool] | None = None  # on the call's arguments, bound by name
    times: int = 1


@dataclass
class Call:
    """One request as the fake saw it (arguments deep-copied)."""

    method: str
    args: dict[str, Any] = field(default_factory=dict)


class FakeKube:
    def __init__(
        self,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        auto_gc: bool = True,
        crd_dir: Path | None = CRD_DIR,
    ) -> None:
        self.clock = clock
        self.auto_gc = auto_gc
        self.schemas = load_crd_schemas(crd_dir) if crd_dir is not None else {}
        self.objects: dict[Key, Body] = {}
        self.namespaces: dict[str, Body] = {}
        self.events: list[Body] = []
        self.calls: list[Call] = []  # every request, reads included
        self.write_count = 0  # mutating requests sent, as `Kube` counts them
        self.changes = 0  # writes that changed something (no-op writes don't count)
        self._rv = itertools.count(1)
        self._subscribers: list[WatchCallback] = []
        self._faults: list[Fault] = []
        # What the watch cache answers next for a Secret (None: not there yet), once: a read of any
        # version may be that far behind (tests set it; the store itself is always the latest).
        self.stale_secret_reads: dict[tuple[str, str], Body | None] = {}

    # -- test helpers: faults, watch, direct manipulation ---------------------------
    def fail_next(
        self,
        method: str,
        error: BaseException,
        *,
        after: bool = False,
        when: Callable[[dict[str, Any]], bool] | None = None,
        times: int = 1,
    ) -> Fault:
        """The next `times` calls of `method` (matching `when`) raise `error`, before or `after` applying."""
        if not callable(getattr(self, method, None)):
            raise AttributeError(f"FakeKube has no method {method!r}")
        fault = Fault(method, error, after, when, times)
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def watch(self, callback: WatchCallback) -> Callable[[], None]:
        """Call `callback(event_type, body)` after every change; returns the unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def replay(self, callback: WatchCallback) -> None:
        """What a new watch's initial list delivers: ADDED for every object present."""
        for body in list(self.objects.values()):
            callback("ADDED", copy.deepcopy(body))

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> Body:
        if name not in self.namespaces:
            self.namespaces[name] = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": self._next_rv(),
                    "creationTimestamp": format_time(self.clock()),
                    "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
                },
                "status": {"phase": "Active"},
            }
        return copy.deepcopy(self.namespaces[name])

    def label_namespace(self, name: str, labels: dict[str, str | None]) -> None:
        meta = self.namespaces[name]["metadata"]
        meta["labels"] = merge_patch(meta.get("labels") or {}, labels)
        meta["resourceVersion"] = self._next_rv()

    def create(self, body: Body) -> Body:
        """Create any kind (custom objects, workloads, Secrets) as `kubectl create` would."""
        meta = body.get("metadata") or {}
        kind = body["kind"]
        namespace = "" if kind in CLUSTER_SCOPED else meta.get("namespace") or ""
        created = self._create(kind, namespace, body)
        if created is None:
            raise LookupError(f"namespace {namespace!r} does not exist")
        return created

    def update(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None:
        """A user's merge patch of the main resource (spec, labels, annotations), like `kubectl patch`."""
        return self._patch(kind, namespace or "", name, patch, status=False)

    def set_workload_status(self, kind: str, namespace: str, name: str, status: Body) -> Body | None:
        """What a workload's controller writes (its status subresource): merged into `.status`."""
        return self._patch(kind, namespace, name, {"status": status}, status=True)

    def get(self, kind: str, namespace: str | None, name: str) -> Body | None:
        found = self.objects.get((kind, "" if kind in CLUSTER_SCOPED else namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    def list_of(self, kind: str, namespace: str | None = None) -> list[Body]:
        return [
            copy.deepcopy(body)
            for (k, ns, _), body in self.objects.items()
            if k == kind and (namespace is None or ns == namespace)
        ]

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """`kubectl delete`: finalizers hold the object with deletionTimestamp set. False if absent."""
        key = (kind, "" if kind in CLUSTER_SCOPED else namespace or "", name)
        body = self.objects.get(key)
        if body is None:
            return False
        self._delete(key)
        return True

    def delete_namespace(self, name: str) -> None:
        """Mark the namespace Terminating and delete everything in it, as the namespace controller does."""
        namespace = self.namespaces[name]
        meta = namespace["metadata"]
        meta.setdefault("deletionTimestamp", format_time(self.clock()))
        namespace["status"] = {"phase": "Terminating"}
        meta["resourceVersion"] = self._next_rv()
        self.events = [e for e in self.events if e["metadata"].get("namespace") != name]
        for key in [k for k in self.objects if k[1] == name]:
            if key in self.objects:
                self._delete(key)
        self._settle_namespace(name)

    def collect_garbage(self) -> list[Key]:
        """Delete every object whose owners are all gone (background propagation); returns what went."""
        collected: list[Key] = []
        while True:
            orphans = [key for key, body in self.objects.items() if self._orphaned(key, body)]
            orphans = [key for key in orphans if not self.objects[key]["metadata"].get("deletionTimestamp")]
            if not orphans:
                return collected
            for key in orphans:
                if key in self.objects:
                    self._delete(key, collect=False)
                    collected.append(key)

    # -- Kube: custom resources ---------------------------------------------------
    async def get_object(self, kind: str, namespace: str | None, name: str) -> Body | None:
        return await self._request("get_object", locals(), lambda: self.get(kind, namespace, name))

    async def list_objects(self, kind: str, namespace: str | None = None) -> list[Body]:
        return await self._request("list_objects", locals(), lambda: self.list_of(kind, namespace or None))

    async def list_custom(self, kind: str, namespace: str | None = None) -> tuple[list[Body], str]:
        def run() -> tuple[list[Body], str]:
            versions = [int(body["metadata"].get("resourceVersion") or 0) for body in self.objects.values()]
            return self.list_of(kind, namespace or None), str(max(versions, default=0))

        return await self._request("list_custom", locals(), run)

    async def patch_status(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None:
        return await self._request(
            "patch_status", locals(), lambda: self._patch(kind, namespace or "", name, patch, status=True), write=True
        )

    async def patch_object(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None:
        return await self._request(
            "patch_object", locals(), lambda: self._patch(kind, namespace or "", name, patch, status=False), write=True
        )

    # -- Kube: secrets and namespaces -----------------------------------------------
    async def get_secret(self, namespace: str, name: str, any_version: bool = False) -> Body | None:
        def read() -> Body | None:
            if any_version and (namespace, name) in self.stale_secret_reads:
                return copy.deepcopy(self.stale_secret_reads.pop((namespace, name)))
            return self.get("Secret", namespace, name)

        return await self._request("get_secret", locals(), read)

    async def create_secret(self, namespace: str, body: Body) -> Body | None:
        return await self._request(
            "create_secret", locals(), lambda: self._create("Secret", namespace, body), write=True
        )

    async def set_secret_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> Body | None:
        # The real call is a JSON patch (test resourceVersion, set the list); a merge patch replaces
        # lists whole, so it has the same effect here.
        patch = {"metadata": {"finalizers": finalizers or None, "resourceVersion": resource_version}}

        def run() -> Body | None:
            return self._patch("Secret", namespace, name, patch, status=False)

        return await self._request("set_secret_finalizers", locals(), run, write=True)

    async def replace_secret(self, namespace: str, name: str, body: Body) -> Body | None:
        return await self._request(
            "replace_secret", locals(), lambda: self._replace("Secret", namespace, name, body), write=True
        )

    async def delete_secret(self, namespace: str, name: str, uid: str | None = None) -> None:
        def run() -> None:
            key = ("Secret", namespace, name)
            body = self.objects.get(key)
            if body is None:
                return
            if uid is not None and body["metadata"]["uid"] != uid:
                raise Conflict(f"Precondition failed: UID in precondition: {uid}, UID in object meta: other")
            self._delete(key)

        await self._request("delete_secret", locals(), run, write=True)

    async def get_namespace(self, name: str) -> Body | None:
        def run() -> Body | None:
            found = self.namespaces.get(name)
            return copy.deepcopy(found) if found is not None else None

        return await self._request("get_namespace", locals(), run)

    # -- Kube: leases ---------------------------------------------------------------
    async def get_lease(self, namespace: str, name: str) -> Body | None:
        return await self._request("get_lease", locals(), lambda: self.get("Lease", namespace, name))

    async def create_lease(self, namespace: str, body: Body) -> Body | None:
        return await self._request("create_lease", locals(), lambda: self._create("Lease", namespace, body), write=True)

    async def replace_lease(self, namespace: str, name: str, body: Body) -> Body | None:
        return await self._request(
            "replace_lease", locals(), lambda: self._replace("Lease", namespace, name, body), write=True
        )

    # -- Kube: events and workloads ---------------------------------------------------
    async def create_event(self, namespace: str, body: Body) -> None:
        def run() -> None:
            self._admit(namespace)
            if namespace not in self.namespaces:
                return
            event = copy.deepcopy(body)
            meta = event.setdefault("metadata", {})
            meta["name"] = meta.get("name") or f"{meta.pop('generateName', 'event.')}{uuid.uuid4().hex[:10]}"
            meta.update(namespace=namespace, uid=str(uuid.uuid4()), resourceVersion=self._next_rv())
            self.events.append(event)

        await self._request("create_event", locals(), run, write=True)

    async def get_workload(self, kind: str, namespace: str, name: str) -> Body | None:
        return await self._request("get_workload", locals(), lambda: self.get(kind, namespace, name))

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Body) -> Body | None:
        return await self._request(
            "patch_workload", locals(), lambda: self._patch(kind, namespace, name, patch, status=False), write=True
        )

    async def list_secrets(
        self, namespace: str | None, params: dict[str, str], metadata_only: bool = True
    ) -> tuple[list[Body], str]:
        """Label selectors by key existence (`key`) and field selectors `metadata.name=X`: the two the
        operator uses."""

        def run() -> tuple[list[Body], str]:
            label = params.get("labelSelector")
            field = params.get("fieldSelector", "")
            name = field.removeprefix("metadata.name=") if field else None
            items = [
                {"metadata": secret["metadata"]} if metadata_only else secret
                for secret in self.list_of("Secret", namespace)
                if (label is None or label in (secret["metadata"].get("labels") or {}))
                and (name is None or secret["metadata"]["name"] == name)
            ]
            versions = [int(body["metadata"].get("resourceVersion") or 0) for body in self.objects.values()]
            return items, str(max(versions, default=0))

        return await self._request("list_secrets", locals(), run)

    async def aclose(self) -> None:
        """Nothing to release; `Manager.stop` calls it."""

    # -- queries for tests -----------------------------------------------------------------
    def events_for(self, name: str, namespace: str | None = None) -> list[tuple[str, str]]:
        """(reason, message) of the events about objects called `name`, oldest first."""
        return [
            (e.get("reason", ""), e.get("message", ""))
            for e in self.events
            if (e.get("involvedObject") or {}).get("name") == name
            and (namespace is None or e["metadata"].get("namespace") == namespace)
        ]

    # -- the machinery ---------------------------------------------------------------------
    async def _request(self, method: str, arguments: dict[str, Any], run: Callable[[], T], write: bool = False) -> T:
        args = {k: copy.deepcopy(v) for k, v in arguments.items() if k not in ("self", "run")}
        self.calls.append(Call(method, args))
        if write:
            self.write_count += 1
        fault = self._draw(method, args)
        if fault is not None and not fault.after:
            raise fault.error
        result = run()
        if fault is not None:
            raise fault.error
        return result

    def _draw(self, method: str, args: dict[str, Any]) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and (fault.when is None or fault.when(args)):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _next_rv(self) -> str:
        return str(next(self._rv))

    def _notify(self, event_type: str, body: Body) -> None:
        for callback in list(self._subscribers):
            callback(event_type, copy.deepcopy(body))

    def _admit(self, namespace: str) -> None:
        """The NamespaceLifecycle admission plugin: nothing new lands in a terminating namespace."""
        found = self.namespaces.get(namespace)
        if found is not None and found["metadata"].get("deletionTimestamp"):
            raise NamespaceTerminating(status=403, reason="namespace terminating")

    def _defaulted(self, kind: str, body: Body) -> Body:
        schema = self.schemas.get(kind)
        return apply_schema_defaults(body, schema) if schema is not None else body

    def _create(self, kind: str, namespace: str, body: Body) -> Body | None:
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        name = meta.get("name") or ""
        if not name:
            raise Invalid("metadata.name is required")
        if kind not in CLUSTER_SCOPED:
            self._admit(namespace)
            if namespace not in self.namespaces:
                return None  # 404: `Kube` answers None
        key = (kind, "" if kind in CLUSTER_SCOPED else namespace, name)
        if key in self.objects:
            raise Conflict(f'{kind.lower()}s "{name}" already exists')
        body["kind"] = kind
        body["apiVersion"] = _API_VERSIONS.get(kind, body.get("apiVersion") or "v1")
        if kind == "Secret":
            body = self._fold_string_data(body)
        for server_field in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            meta.pop(server_field, None)
        meta.update(
            name=name,
            uid=str(uuid.uuid4()),
            resourceVersion=self._next_rv(),
            creationTimestamp=format_time(self.clock()),
        )
        if kind not in CLUSTER_SCOPED:
            meta["namespace"] = namespace
        if kind in _GENERATION_KINDS:
            meta["generation"] = 1
        if kind in CUSTOM_KINDS:
            body.pop("status", None)  # the status subresource ignores status on create
        body = self._defaulted(kind, body)
        self.objects[key] = body
        self.changes += 1
        self._notify("ADDED", body)
        return copy.deepcopy(body)

    def _patch(self, kind: str, namespace: str, name: str, patch: Body, *, status: bool) -> Body | None:
        key = (kind, "" if kind in CLUSTER_SCOPED else namespace, name)
        current = self.objects.get(key)
        if current is None:
            return None
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise Conflict(
                f"Operation cannot be fulfilled on {kind.lower()}s {name!r}: the object has been modified; "
                "please apply your changes to the latest version and try again"
            )
        if status:
            updated = copy.deepcopy(current)
            new_status = merge_patch(current.get("status"), patch.get("status") or {})
            if new_status:
                updated["status"] = new_status
            else:
                updated.pop("status", None)
        else:
            merged = merge_patch(_without(current, "metadata", "status"), _without(patch, "metadata", "status"))
            updated = {**merged, "metadata": copy.deepcopy(current["metadata"])}
            if "status" in current:
                updated["status"] = copy.deepcopy(current["status"])
            meta_patch = patch.get("metadata") or {}
            for name_ in _MUTABLE_METADATA:
                if name_ in meta_patch:
                    value = merge_patch(current["metadata"].get(name_), meta_patch[name_])
                    if value in (None, {}, []):
                        updated["metadata"].pop(name_, None)
                    else:
                        updated["metadata"][name_] = value
            updated = self._defaulted(kind, updated)
        return self._store(key, current, updated)

    def _replace(self, kind: str, namespace: str, name: str, body: Body) -> Body | None:
        key = (kind, namespace, name)
        current = self.objects.get(key)
        if current is None:
            return None
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        # Without a resourceVersion a replace is unconditional, as on the real API server.
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise Conflict(f"Operation cannot be fulfilled on {kind.lower()}s {name!r}: the object has been modified")
        updated = copy.deepcopy(body)
        updated["kind"] = kind
        updated["apiVersion"] = current["apiVersion"]
        if kind == "Secret":
            updated = self._fold_string_data(updated)
        meta = updated.setdefault("metadata", {})
        for server_field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation"):
            if server_field in current["metadata"]:
                meta[server_field] = current["metadata"][server_field]
            else:
                meta.pop(server_field, None)
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self._store(key, current, updated)

    def _store(self, key: Key, current: Body, updated: Body) -> Body:
        """Write `updated` over `current`: finalizer rules, generation, resourceVersion, watch, deletion."""
        meta = updated["metadata"]
        deleting = bool(current["metadata"].get("deletionTimestamp"))
        added = set(meta.get("finalizers") or ()) - set(current["metadata"].get("finalizers") or ())
        if deleting and added:
            raise Invalid(
                f"metadata.finalizers: Forbidden: no new finalizers can be added if the object is being "
                f"deleted, found new finalizers {sorted(added)}"
            )
        if _without(updated, "metadata") == _without(current, "metadata") and meta == current["metadata"]:
            return copy.deepcopy(current)  # nothing changed: no write, no new resourceVersion, no event
        if key[0] in _GENERATION_KINDS and _without(updated, "metadata", "status") != _without(
            current, "metadata", "status"
        ):
            meta["generation"] = int(current["metadata"].get("generation") or 1) + 1
        meta["resourceVersion"] = self._next_rv()
        self.objects[key] = updated
        self.changes += 1
        if deleting and not meta.get("finalizers"):
            self._remove(key)
        else:
            self._notify("MODIFIED", updated)
        return copy.deepcopy(updated)

    def _delete(self, key: Key, collect: bool = True) -> None:
        body = self.objects[key]
        meta = body["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = format_time(self.clock())
                meta["deletionGracePeriodSeconds"] = 0
                meta["resourceVersion"] = self._next_rv()
                self.changes += 1
                self._notify("MODIFIED", body)
            return
        self._remove(key, collect)

    def _remove(self, key: Key, collect: bool = True) -> None:
        body = self.objects.pop(key)
        body["metadata"]["resourceVersion"] = self._next_rv()
        self.changes += 1
        self._notify("DELETED", body)
        if collect and self.auto_gc:
            self.collect_garbage()
        if key[1]:
            self._settle_namespace(key[1])

    def _settle_namespace(self, name: str) -> None:
        namespace = self.namespaces.get(name)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        if not any(ns == name for _, ns, _ in self.objects):
            del self.namespaces[name]

    def _orphaned(self, key: Key, body: Body) -> bool:
        """Every owner reference points at an object that is gone (or has another uid)."""
        owners = body["metadata"].get("ownerReferences") or ()
        if not owners:
            return False
        for owner in owners:
            kind = owner.get("kind", "")
            found = self.objects.get((kind, "" if kind in CLUSTER_SCOPED else key[1], owner.get("name", "")))
            if found is not None and found["metadata"]["uid"] == owner.get("uid"):
                return False
        return True

    @staticmethod
    def _fold_string_data(body: Body) -> Body:
        text = body.pop("stringData", None) or {}
        data = dict(body.get("data") or {})
        data.update({k: base64.b64encode(v.encode()).decode() for k, v in text.items()})
        if data:
            body["data"] = data
        body.setdefault("type", "Opaque")
        return body
