"""The operator's own watches on the real API server: only the Secrets it selects ever arrive, never
with data; every StorageToken arrives whole; and what changed while no watch ran is reported on the
next list."""

from __future__ import annotations

import asyncio
import base64

from e2e_support import GROUP, VERSION, create_token, patch_token
from kubernetes import client

from storage_token.kube.api import Kube
from storage_token.kube.list_watch import SecretWatch, TokenWatch

LABEL = "storagetoken.dev/token"
TOKEN = {"providerRef": {"name": "nobody"}, "permissions": ["read"], "secret": {"name": "creds"}}


def secret(name: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "data": {"key": base64.b64encode(b"not-for-the-operator").decode()},
    }


async def wait_until(condition: object, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_label_selected_watch_sees_only_the_operators_secrets_and_no_data(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(namespace, secret("before", {LABEL: "t1"}))
    events: list[tuple[str, dict[str, object]]] = []
    kube = Kube(api)
    watch = SecretWatch(kube, namespace, {"labelSelector": LABEL}, lambda kind, body: events.append((kind, body)))
    task = asyncio.create_task(watch.run())
    try:
        await wait_until(lambda: any(body["metadata"]["name"] == "before" for _, body in events))  # type: ignore[index]
        core.create_namespaced_secret(namespace, secret("foreign"))  # someone else's Secret
        core.create_namespaced_secret(namespace, secret("ours", {LABEL: "t2"}))
        await wait_until(lambda: any(body["metadata"]["name"] == "ours" for _, body in events))  # type: ignore[index]
        # Taking our label off moves the Secret out of the selection: the watch says it is gone.
        core.patch_namespaced_secret("ours", namespace, {"metadata": {"labels": {LABEL: None}}})
        await wait_until(lambda: ("DELETED", "ours") in [(k, b["metadata"]["name"]) for k, b in events])  # type: ignore[index]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await kube.aclose()
    names = {body["metadata"]["name"] for _, body in events}  # type: ignore[index]
    assert names == {"before", "ours"}
    assert all(set(body) == {"metadata"} for _, body in events)
    assert "not-for-the-operator" not in repr(events)
    assert base64.b64encode(b"not-for-the-operator").decode() not in repr(events)


async def test_a_named_watch_follows_one_secret_and_a_relist_reports_what_changed_meanwhile(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(namespace, secret("creds"))
    core.create_namespaced_secret(namespace, secret("other"))
    events: list[tuple[str, str]] = []
    kube = Kube(api)
    watch = SecretWatch(
        kube,
        namespace,
        {"fieldSelector": "metadata.name=creds"},
        lambda kind, body: events.append((kind, body["metadata"]["name"])),  # type: ignore[index]
    )
    version = await watch._relist()
    assert events == [("ADDED", "creds")]
    # While no watch runs, the Secret changes and then goes: the next list reports both as one.
    core.patch_namespaced_secret("creds", namespace, {"data": {"key": base64.b64encode(b"rotated").decode()}})
    assert await watch._relist() != version
    assert events[-1] == ("MODIFIED", "creds")
    core.delete_namespaced_secret("creds", namespace)
    await watch._relist()
    assert events[-1] == ("DELETED", "creds")
    await kube.aclose()
    assert ("ADDED", "other") not in events


async def test_lists_page_through_more_objects_than_one_page(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    for index in range(510):
        core.create_namespaced_secret(namespace, secret(f"s{index:03d}", {LABEL: "many"}))
    kube = Kube(api)
    items, version = await kube.list_secrets(namespace, {"labelSelector": LABEL})
    await kube.aclose()
    assert len(items) == 510 and version
    assert all("data" not in item for item in items)  # metadata only: no Secret's data reaches us


async def test_the_token_watch_follows_every_token_whole_and_a_relist_reports_one_deleted_meanwhile(
    api: client.ApiClient, namespace: str
) -> None:
    create_token(api, namespace, "before", **TOKEN)
    events: list[tuple[str, dict[str, object]]] = []
    kube = Kube(api)
    watch = TokenWatch(kube, namespace, lambda kind, body: events.append((kind, body)))
    task = asyncio.create_task(watch.run())

    def seen(kind: str, name: str, label: str | None = None) -> bool:
        for event_kind, body in events:
            meta = body["metadata"]  # type: ignore[index]
            if event_kind == kind and meta["name"] == name and (label is None or label in (meta.get("labels") or {})):  # type: ignore[index,operator]
                return True
        return False

    try:
        await wait_until(lambda: seen("ADDED", "before"))
        create_token(api, namespace, "after", **TOKEN)
        await wait_until(lambda: seen("ADDED", "after"))
        patch_token(api, namespace, "after", {"metadata": {"labels": {"team": "a"}}})
        await wait_until(lambda: seen("MODIFIED", "after", "team"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    added = next(body for kind, body in events if kind == "ADDED" and body["metadata"]["name"] == "after")  # type: ignore[index]
    assert added["spec"]["secret"]["name"] == "creds"  # type: ignore[index]  # whole objects, spec included

    # Gone while no watch ran (its finalizers cleared, whoever set them): the next list says so.
    custom = client.CustomObjectsApi(api)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "storagetokens", "before", {"metadata": {"finalizers": None}}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "storagetokens", "before")
    for _ in range(100):
        if not any(
            t["metadata"]["name"] == "before"
            for t in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "storagetokens")["items"]
        ):
            break
        await asyncio.sleep(0.05)
    await watch._relist()
    await kube.aclose()
    deleted = [body for kind, body in events if kind == "DELETED"]
    assert [body["metadata"]["name"] for body in deleted] == ["before"]  # type: ignore[index]
    assert set(deleted[0]) == {"metadata"}
