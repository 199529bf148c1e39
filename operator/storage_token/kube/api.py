"""`Kube`: the handful of API calls the operator makes, as coroutines returning plain dicts.

Requests go out with aiohttp on the event loop (see `kube.client`): every one has a timeout, none
waits for a thread, and bodies stay plain JSON dicts (no model deserialisation).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from kubernetes import client

from storage_token.api.token import API_GROUP, API_VERSION
from storage_token.kube.client import DEFAULT_TIMEOUTS, Timeouts, authorization_header, load_configuration, new_session

log = logging.getLogger(__name__)
Body = dict[str, Any]
Patch = dict[str, Any] | list[dict[str, Any]]

PLURALS = {
    "StorageToken": "storagetokens",
    "StorageProvider": "storageproviders",
    "ClusterStorageProvider": "clusterstorageproviders",
}
WORKLOAD_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}
# Secrets are listed and watched as metadata only: their data never reaches the operator this way.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
WATCH_LINE_LIMIT = 2 * 1024 * 1024  # one event: above etcd's 1.5 MiB object limit
LIST_PAGE = 500  # objects per list page: bounded responses for the API server and for us

MERGE_PATCH = "application/merge-patch+json"  # custom resources: no strategic merge
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

NAMESPACE_TERMINATING = "because it is being terminated"  # the NamespaceLifecycle admission refusal


class Conflict(Exception):
    """The object changed (or appeared) since it was read."""


class ApiError(Exception):
    """The API server refused a request (other than 404 and 409), e.g. 429/5xx under load or 403,
    or could not be reached in time (status 0).

    The controllers see this, never an HTTP library's own exception type."""

    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(f"{status} {reason}")


class NamespaceTerminating(ApiError):
    """403: the namespace is being deleted, so the API server refuses new objects in it.

    Objects there still get reconciled (finalizers); nothing created for them can land, and
    the namespace's own deletion of them brings the next event. Not a refusal of our rights."""


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """The official client, for callers that want its typed API (tests, tools)."""
    return client.ApiClient(load_configuration(kubeconfig))


def _custom_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{API_GROUP}/{API_VERSION}{scope}/{PLURALS[kind]}" + (f"/{name}" if name else "")


def _watch_event(line: bytes) -> Body | None:
    """One watch line (None: not JSON, skipped); an ERROR event is a Conflict (list again) only when
    the version is too old."""
    try:
        event: Body = orjson.loads(line)
    except ValueError:
        # One object's event (e.g. nested deeper than the parser goes) is dropped, not the watch: ending
        # the watch would list every object again, and its next event would end it again.
        log.warning("skipped a watch event that is not JSON (%d bytes)", len(line))
        return None
    if event.get("type") == "ERROR":
        failure = event.get("object") or {}
        code = int(failure.get("code") or 0)
        if code == 410 or failure.get("reason") in ("Expired", "Gone"):
            raise Conflict("watch resourceVersion too old")
        raise ApiError(code, str(failure.get("reason") or "watch error"))
    return event


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The non-empty lines of a stream. A line over WATCH_LINE_LIMIT is dropped whole (logged) and the
    stream goes on; each chunk is searched once, so a long line costs its length, not its square."""
    buffer = bytearray()
    skipping = False
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if not skipping:
                buffer += chunk[start:end]
                if len(buffer) > WATCH_LINE_LIMIT:
                    log.warning("skipped a watch event over %d bytes", WATCH_LINE_LIMIT)
                elif buffer.strip():
                    yield bytes(buffer)
            buffer.clear()
            skipping, start = False, end + 1
        if not skipping:
            buffer += chunk[start:]
            if len(buffer) > WATCH_LINE_LIMIT:
                log.warning("skipped a watch event over %d bytes", WATCH_LINE_LIMIT)
                buffer.clear()
                skipping = True


def _secrets_path(namespace: str | None) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets" if namespace else "/api/v1/secrets"


def _error(status: int, text: str) -> Exception:
    if status == 409:
        return Conflict(_reason(status, text))
    if status == 403 and NAMESPACE_TERMINATING in text:
        return NamespaceTerminating(status=403, reason="namespace terminating")
    return ApiError(status, _reason(status, text))


def _reason(status: int, text: str) -> str:
    """The Status object's reason (e.g. Forbidden, AlreadyExists): never the request body echoed back."""
    try:
        return str(orjson.loads(text).get("reason") or f"HTTP {status}")
    except (ValueError, AttributeError):
        return f"HTTP {status}"


class Kube:
    def __init__(
        self, configuration: client.Configuration | client.ApiClient, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        if isinstance(configuration, client.ApiClient):
            configuration = configuration.configuration
        self.configuration, self.timeouts = configuration, timeouts
        self._host = configuration.host.rstrip("/")
        self._session: aiohttp.ClientSession | None = None  # made on first use, inside the event loop
        self._watch_session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeouts.request, connect=timeouts.connect)
        self.write_count = 0  # mutating requests sent; the benchmarks read it

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> Kube:
        return cls(load_configuration(kubeconfig), timeouts)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session(self.configuration)
        return self._session

    @property
    def watch_session(self) -> aiohttp.ClientSession:
        """Watches hold their connection for minutes: their own pool, so any number of them never
        leaves the requests waiting for a connection."""
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = new_session(self.configuration, max_connections=0)
        return self._watch_session

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": content_type} if content_type else {}
        authorization = authorization_header(self.configuration)
        if authorization:
            headers["Authorization"] = authorization
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        body: Patch | None = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        accept: str | None = None,
    ) -> Body | None:
        """One request: the JSON body, None on 404, Conflict on 409, ApiError otherwise."""
        if method != "GET":
            self.write_count += 1
        data = None if body is None else orjson.dumps(body)
        headers = self._headers(content_type if data is not None else None)
        if accept:
            headers["Accept"] = accept
        try:
            async with self.session.request(
                method, self._host + path, data=data, headers=headers, params=params, timeout=self._timeout
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            raise ApiError(0, f"no answer from the API server within {self.timeouts.request:g}s") from None
        except aiohttp.ClientError as error:
            raise ApiError(0, f"API server unreachable ({type(error).__name__})") from None
        if status == 404:
            return None
        if status >= 400:
            raise _error(status, raw.decode(errors="replace"))
        try:
            result: Body = orjson.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(status, "the API server's answer was not JSON") from None
        return result

    async def _list(
        self, path: str, params: dict[str, str] | None = None, accept: str | None = None
    ) -> tuple[list[Body], str]:
        """Every item, page by page, and the list's resourceVersion (to watch from)."""
        items: list[Body] = []
        query = {**(params or {}), "limit": str(LIST_PAGE)}
        while True:
            page = await self._request("GET", path, params=query, accept=accept) or {}
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion") or "")
            query["continue"] = meta["continue"]

    # -- custom resources ----------------------------------------------------
    async def get_object(self, kind: str, namespace: str | None, name: str) -> Body | None:
        return await self._request("GET", _custom_path(kind, namespace, name))

    async def list_objects(self, kind: str, namespace: str | None = None) -> list[Body]:
        items, _ = await self.list_custom(kind, namespace)
        return items

    async def patch_status(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None:
        return await self._request("PATCH", _custom_path(kind, namespace, name) + "/status", patch, MERGE_PATCH)

    async def patch_object(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None:
        return await self._request("PATCH", _custom_path(kind, namespace, name), patch, MERGE_PATCH)

    # -- secrets and namespaces -----------------------------------------------
    async def get_secret(self, namespace: str, name: str, any_version: bool = False) -> Body | None:
        """`any_version`: the API server's watch cache may answer (resourceVersion=0), a few milliseconds
        behind at most and without a read of etcd; for reads where a write that raced them fails anyway."""
        params = {"resourceVersion": "0"} if any_version else None
        return await self._request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}", params=params)

    async def create_secret(self, namespace: str, body: Body) -> Body | None:
        return await self._request("POST", f"/api/v1/namespaces/{namespace}/secrets", body)

    async def set_secret_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> Body | None:
        """Replace a Secret's finalizers, if it is still at `resource_version` (Conflict if not).

        A JSON patch: a strategic merge patch would merge the list (finalizers have the merge
        strategy) and could never remove one. The data is never touched."""
        patch: list[Body] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
        ]
        try:
            return await self._request("PATCH", f"/api/v1/namespaces/{namespace}/secrets/{name}", patch, JSON_PATCH)
        except ApiError as error:
            if error.status == 422:  # the test op failed: the Secret changed since it was read
                raise Conflict("the Secret changed since it was read") from None
            raise

    async def replace_secret(self, namespace: str, name: str, body: Body) -> Body | None:
        """Replace the whole object; `body` carries the resourceVersion it was read at."""
        return await self._request("PUT", f"/api/v1/namespaces/{namespace}/secrets/{name}", body)

    async def delete_secret(self, namespace: str, name: str, uid: str | None = None) -> None:
        options: Body = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if uid:
            options["preconditions"] = {"uid": uid}
        await self._request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}", options)

    async def get_namespace(self, name: str) -> Body | None:
        return await self._request("GET", f"/api/v1/namespaces/{name}")

    # -- leases (leader election) ------------------------------------------------
    async def get_lease(self, namespace: str, name: str) -> Body | None:
        return await self._request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")

    async def create_lease(self, namespace: str, body: Body) -> Body | None:
        return await self._request("POST", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases", body)

    async def replace_lease(self, namespace: str, name: str, body: Body) -> Body | None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        return await self._request("PUT", path, body)

    # -- events and workloads ----------------------------------------------------
    async def create_event(self, namespace: str, body: Body) -> None:
        await self._request("POST", f"/api/v1/namespaces/{namespace}/events", body)

    async def get_workload(self, kind: str, namespace: str, name: str) -> Body | None:
        return await self._request("GET", f"/apis/apps/v1/namespaces/{namespace}/{WORKLOAD_PLURALS[kind]}/{name}")

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Body) -> Body | None:
        path = f"/apis/apps/v1/namespaces/{namespace}/{WORKLOAD_PLURALS[kind]}/{name}"
        return await self._request("PATCH", path, patch, STRATEGIC_MERGE_PATCH)

    # -- watches -------------------------------------------------------------------
    async def list_secrets(
        self, namespace: str | None, params: dict[str, str], metadata_only: bool = True
    ) -> tuple[list[Body], str]:
        """Secrets matching a label or field selector, and the list's resourceVersion to watch from.

        Metadata only unless asked: the watches never need the data (the plan command does, to
        check each Secret still holds its key, as the controller would)."""
        return await self._list(_secrets_path(namespace), params, accept=METADATA_LIST if metadata_only else None)

    def watch_secrets(
        self, namespace: str | None, params: dict[str, str], resource_version: str
    ) -> AsyncIterator[Body]:
        """Watch events (`{"type", "object"}`), metadata only, from `resource_version` until the server
        ends the watch. A 410 (too old) or an ERROR event raises `Conflict`: the caller lists again."""
        return self._watch(_secrets_path(namespace), params, resource_version, METADATA_ONLY)

    async def list_custom(self, kind: str, namespace: str | None = None) -> tuple[list[Body], str]:
        """Every object of a custom kind (whole), and the list's resourceVersion to watch from."""
        return await self._list(_custom_path(kind, namespace))

    def watch_custom(self, kind: str, namespace: str | None, resource_version: str) -> AsyncIterator[Body]:
        """Watch events of a custom kind (whole objects), as `watch_secrets`."""
        return self._watch(_custom_path(kind, namespace), {}, resource_version)

    async def _watch(
        self, path: str, params: dict[str, str], resource_version: str, accept: str | None = None
    ) -> AsyncIterator[Body]:
        server_timeout = max(1, int(self.timeouts.watch) - 30)
        query = {
            **params,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(server_timeout),
        }
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeouts.connect, sock_read=self.timeouts.watch)
        headers = {**self._headers(), "Accept": accept} if accept else self._headers()
        try:
            async with self.watch_session.get(
                self._host + path, params=query, headers=headers, timeout=timeout
            ) as response:
                if response.status == 410:
                    raise Conflict("watch resourceVersion too old")
                if response.status >= 400:
                    raise _error(response.status, await response.text())
                async for line in _lines(response.content.iter_any()):
                    event = _watch_event(line)
                    if event is not None:
                        yield event
        except TimeoutError:
            raise ApiError(0, "the watch went silent") from None
        except aiohttp.ClientError as error:
            raise ApiError(0, f"API server unreachable ({type(error).__name__})") from None

    async def aclose(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()
