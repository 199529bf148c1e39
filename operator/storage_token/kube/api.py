"""`Kube`: the handful of API calls the operator makes, as coroutines returning plain dicts.

The official client is synchronous; calls run in a bounded thread pool and skip
model deserialisation (raw JSON is faster and keeps payloads as plain dicts).
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from storage_token.api.token import API_GROUP, API_VERSION

Body = dict[str, Any]

PLURALS = {
    "StorageToken": "storagetokens",
    "StorageProvider": "storageproviders",
    "ClusterStorageProvider": "clusterstorageproviders",
}
# AppsV1Api method suffixes per restartable workload kind.
WORKLOAD_METHODS = {
    "Deployment": "deployment",
    "StatefulSet": "stateful_set",
    "DaemonSet": "daemon_set",
}


NAMESPACE_TERMINATING = "because it is being terminated"  # the NamespaceLifecycle admission refusal


class Conflict(Exception):
    """The object changed (or appeared) since it was read."""


class ApiError(Exception):
    """The API server refused a request (other than 404 and 409), e.g. 429/5xx under load or 403.

    The controllers see this, never the client library's own exception type."""

    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(f"{status} {reason}")


class NamespaceTerminating(ApiError):
    """403: the namespace is being deleted, so the API server refuses new objects in it.

    Objects there still get reconciled (finalizers); nothing created for them can land, and
    the namespace's own deletion of them brings the next event. Not a refusal of our rights."""


def load_api_client(kubeconfig: str | None = None, pool_size: int = 32) -> client.ApiClient:
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api: client.ApiClient, workers: int = 32) -> None:
        self.api = api
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self.write_count = 0  # mutating requests sent; the benchmarks read it

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: function(*args, **kwargs))

    async def _raw(self, function: Any, *args: Any, **kwargs: Any) -> Body | None:
        """Call returning the JSON body, None on 404, Conflict on 409."""
        try:
            response = await self._call(function, *args, _preload_content=False, **kwargs)
        except ApiException as error:
            if error.status == 404:
                return None
            if error.status == 409:
                raise Conflict(str(error.reason)) from None
            if error.status == 403 and NAMESPACE_TERMINATING in str(error.body or ""):
                raise NamespaceTerminating(status=403, reason="namespace terminating") from None
            raise ApiError(int(error.status or 0), str(error.reason or "")) from None
        data: Body = json.loads(response.data or b"{}")
        return data

    async def _write(self, function: Any, *args: Any, **kwargs: Any) -> Body | None:
        self.write_count += 1
        return await self._raw(function, *args, **kwargs)

    # -- custom resources ----------------------------------------------------
    async def get_object(self, kind: str, namespace: str | None, name: str) -> Body | None:
        if namespace:
            return await self._raw(
                self._custom.get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURALS[kind], name
            )
        return await self._raw(self._custom.get_cluster_custom_object, API_GROUP, API_VERSION, PLURALS[kind], name)

    async def list_objects(self, kind: str, namespace: str | None = None) -> list[Body]:
        if namespace:
            result = await self._raw(
                self._custom.list_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURALS[kind]
            )
        else:
            result = await self._raw(self._custom.list_cluster_custom_object, API_GROUP, API_VERSION, PLURALS[kind])
        return list((result or {}).get("items") or [])

    async def patch_status(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None:
        if namespace:
            return await self._write(
                self._custom.patch_namespaced_custom_object_status,
                API_GROUP,
                API_VERSION,
                namespace,
                PLURALS[kind],
                name,
                patch,
            )
        return await self._write(
            self._custom.patch_cluster_custom_object_status, API_GROUP, API_VERSION, PLURALS[kind], name, patch
        )

    async def patch_object(self, kind: str, namespace: str | None, name: str, patch: Body) -> Body | None:
        if not namespace:
            return await self._write(
                self._custom.patch_cluster_custom_object, API_GROUP, API_VERSION, PLURALS[kind], name, patch
            )
        return await self._write(
            self._custom.patch_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURALS[kind], name, patch
        )

    # -- secrets and namespaces -----------------------------------------------
    async def get_secret(self, namespace: str, name: str) -> Body | None:
        return await self._raw(self._core.read_namespaced_secret, name, namespace)

    async def create_secret(self, namespace: str, body: Body) -> Body | None:
        return await self._write(self._core.create_namespaced_secret, namespace, body)

    async def set_secret_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> Body | None:
        """Replace a Secret's finalizers, if it is still at `resource_version` (Conflict if not).

        A JSON patch: a strategic merge patch would merge the list (finalizers have the merge
        strategy) and could never remove one. The data is never touched."""
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
        ]
        try:
            return await self._write(self._core.patch_namespaced_secret, name, namespace, patch)
        except ApiError as error:
            if error.status == 422:  # the test op failed: the Secret changed since it was read
                raise Conflict("the Secret changed since it was read") from None
            raise

    async def replace_secret(self, namespace: str, name: str, body: Body) -> Body | None:
        """Replace the whole object; `body` carries the resourceVersion it was read at."""
        return await self._write(self._core.replace_namespaced_secret, name, namespace, body)

    async def delete_secret(self, namespace: str, name: str, uid: str | None = None) -> None:
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid) if uid else None)
        await self._write(self._core.delete_namespaced_secret, name, namespace, body=options)

    async def get_namespace(self, name: str) -> Body | None:
        return await self._raw(self._core.read_namespace, name)

    # -- leases (leader election) ------------------------------------------------
    async def get_lease(self, namespace: str, name: str) -> Body | None:
        return await self._raw(client.CoordinationV1Api(self.api).read_namespaced_lease, name, namespace)

    async def create_lease(self, namespace: str, body: Body) -> Body | None:
        return await self._write(client.CoordinationV1Api(self.api).create_namespaced_lease, namespace, body)

    async def replace_lease(self, namespace: str, name: str, body: Body) -> Body | None:
        return await self._write(client.CoordinationV1Api(self.api).replace_namespaced_lease, name, namespace, body)

    # -- events and workloads ----------------------------------------------------
    async def create_event(self, namespace: str, body: Body) -> None:
        await self._write(self._core.create_namespaced_event, namespace, body)

    async def get_workload(self, kind: str, namespace: str, name: str) -> Body | None:
        apps = client.AppsV1Api(self.api)
        return await self._raw(getattr(apps, f"read_namespaced_{WORKLOAD_METHODS[kind]}"), name, namespace)

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Body) -> Body | None:
        apps = client.AppsV1Api(self.api)
        function = getattr(apps, f"patch_namespaced_{WORKLOAD_METHODS[kind]}")
        return await self._write(function, name, namespace, patch)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()
