"""`Kube` over a loopback HTTP server we script: timeouts, error mapping, credentials, paging.

The server is a real socket (not a mocked transport), so what is tested is what the HTTP library
and the API server's wire format do, including a peer that accepts a request and never answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from storage_token.kube.api import ApiError, Conflict, Kube, NamespaceTerminating
from storage_token.kube.client import Timeouts

Reply = tuple[int, dict[str, Any]] | None  # None: never answer


@dataclass
class Script:
    reply: Callable[[str, str], Reply]
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


@asynccontextmanager
async def server(script: Script) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                script.seen.append((method, target, headers, body))
                answer = script.reply(method, target)
                if answer is None:
                    await asyncio.sleep(3600)
                    return
                status, payload = answer
                data = json.dumps(payload).encode()
                head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                writer.write(head.encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()


SHORT = Timeouts(request=0.5)


def kube_for(url: str, timeouts: Timeouts = SHORT, token: str = "t0") -> Kube:
    configuration = client.Configuration(host=url)
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return Kube(configuration, timeouts)


def status(code: int, reason: str, message: str = "") -> tuple[int, dict[str, Any]]:
    return code, {"kind": "Status", "status": "Failure", "reason": reason, "message": message, "code": code}


async def test_a_peer_that_never_answers_costs_one_timeout_and_never_blocks_the_loop() -> None:
    script = Script(lambda method, target: None)
    async with server(script) as url:
        kube = kube_for(url)
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beating = asyncio.create_task(heartbeat())
        started = time.monotonic()
        # More stuck requests than the old client had threads (32): none waits for another.
        results = await asyncio.gather(*(kube.get_secret("ns", f"s{i}") for i in range(48)), return_exceptions=True)
        elapsed = time.monotonic() - started
        beating.cancel()
        await kube.aclose()
    assert all(isinstance(r, ApiError) and r.status == 0 and "within 0.5s" in r.reason for r in results)
    assert elapsed < 3.0, elapsed  # one timeout for all, not 48 in turn
    assert ticks > 10  # the event loop kept running while they were stuck
    assert len(script.seen) == 48


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (status(409, "Conflict"), Conflict),
        (
            status(403, "Forbidden", "unable to create new content in namespace x because it is being terminated"),
            NamespaceTerminating,
        ),
        (status(403, "Forbidden", "secrets is forbidden"), ApiError),
        (status(500, "InternalError", "etcd"), ApiError),
        (status(429, "TooManyRequests"), ApiError),
    ],
)
async def test_api_server_refusals_map_to_one_exception_each(reply: tuple[int, dict[str, Any]], expected: type) -> None:
    async with server(Script(lambda method, target: reply)) as url:
        kube = kube_for(url)
        with pytest.raises(expected) as raised:
            await kube.replace_secret("ns", "s", {"data": {"k": "c2VjcmV0LWJ5dGVz"}})
        await kube.aclose()
    if isinstance(raised.value, ApiError) and not isinstance(raised.value, NamespaceTerminating):
        assert raised.value.status == reply[0]
        assert raised.value.reason == reply[1]["reason"]  # the Status reason, never the request echoed back
        assert "c2VjcmV0" not in str(raised.value)


async def test_not_found_is_none_and_writes_are_counted() -> None:
    async with server(Script(lambda method, target: status(404, "NotFound"))) as url:
        kube = kube_for(url)
        assert await kube.get_secret("ns", "s") is None
        assert await kube.patch_status("StorageToken", "ns", "t", {"status": {}}) is None
        assert kube.write_count == 1
        await kube.aclose()


async def test_patches_use_the_content_type_each_resource_accepts() -> None:
    script = Script(lambda method, target: (200, {}))
    async with server(script) as url:
        kube = kube_for(url)
        await kube.patch_status("StorageToken", "ns", "t", {"status": {"revision": 1}})
        await kube.patch_object("ClusterStorageProvider", None, "p", {"metadata": {"finalizers": []}})
        await kube.patch_workload("Deployment", "ns", "web", {"spec": {}})
        await kube.set_secret_finalizers("ns", "creds", [], "7")
        await kube.delete_secret("ns", "s", uid="u-1")
        await kube.aclose()
    seen = [(m, t, h.get("content-type"), b) for m, t, h, b in script.seen]
    assert seen[0][:3] == (
        "PATCH",
        "/apis/storagetoken.dev/v1alpha1/namespaces/ns/storagetokens/t/status",
        "application/merge-patch+json",
    )
    assert seen[1][:3] == (
        "PATCH",
        "/apis/storagetoken.dev/v1alpha1/clusterstorageproviders/p",
        "application/merge-patch+json",
    )
    assert seen[2][:3] == (
        "PATCH",
        "/apis/apps/v1/namespaces/ns/deployments/web",
        "application/strategic-merge-patch+json",
    )
    assert seen[3][2] == "application/json-patch+json"
    assert json.loads(seen[3][3])[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert seen[4][0] == "DELETE" and json.loads(seen[4][3])["preconditions"] == {"uid": "u-1"}


async def test_the_bearer_token_is_asked_for_on_every_request_so_a_refreshed_one_is_used() -> None:
    script = Script(lambda method, target: (200, {}))
    async with server(script) as url:
        kube = kube_for(url)
        configuration = kube.configuration
        tokens = iter(["t1", "t2"])

        def refresh(conf: client.Configuration) -> None:
            conf.api_key["authorization"] = next(tokens)

        configuration.refresh_api_key_hook = refresh
        await kube.get_namespace("a")
        await kube.get_namespace("b")
        await kube.aclose()
    assert [h["authorization"] for _, _, h, _ in script.seen] == ["Bearer t1", "Bearer t2"]


async def test_lists_follow_continue_tokens_to_the_end() -> None:
    def reply(method: str, target: str) -> Reply:
        if "continue=page2" in target:
            return 200, {"metadata": {"resourceVersion": "9"}, "items": [{"metadata": {"name": "c"}}]}
        return 200, {
            "metadata": {"continue": "page2"},
            "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}],
        }

    script = Script(reply)
    async with server(script) as url:
        kube = kube_for(url)
        items = await kube.list_objects("StorageToken")
        secrets, version = await kube.list_secrets("ns", {"labelSelector": "storagetoken.dev/token"})
        await kube.aclose()
    assert [i["metadata"]["name"] for i in items] == ["a", "b", "c"]
    assert version == "9" and len(secrets) == 3
    assert all("limit=500" in target for _, target, _, _ in script.seen)
    assert parse_qs(urlsplit(script.seen[2][1]).query)["labelSelector"] == ["storagetoken.dev/token"]


async def test_any_number_of_open_watches_leaves_requests_their_connections() -> None:
    def reply(method: str, target: str) -> Reply:
        return None if "watch=true" in target else status(404, "NotFound")

    async with server(Script(reply)) as url:
        kube = kube_for(url, Timeouts(request=2.0, watch=60.0))

        async def follow(index: int) -> None:
            async for _ in kube.watch_secrets("ns", {"fieldSelector": f"metadata.name=s{index}"}, "1"):
                pass

        watches = [asyncio.create_task(follow(index)) for index in range(80)]  # more than the request pool
        await asyncio.sleep(0.5)
        started = time.monotonic()
        assert await kube.get_secret("ns", "s") is None
        assert time.monotonic() - started < 1.0
        for watch in watches:
            watch.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        await kube.aclose()


@pytest.mark.parametrize(
    ("line", "expected", "status_code"),
    [
        (b'{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}', Conflict, None),
        (b'{"type": "ERROR", "object": {"kind": "Status", "code": 500, "reason": "InternalError"}}', ApiError, 500),
    ],
)
async def test_watch_errors_list_again_only_when_the_version_expired(
    line: bytes, expected: type, status_code: int | None
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "2"}}}\n' + line + b"\n"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    kube = kube_for(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}")
    seen = []
    with pytest.raises(expected) as raised:
        async for event in kube.watch_secrets("ns", {}, "1"):
            seen.append(event["type"])
    await kube.aclose()
    listener.close()
    assert seen == ["ADDED"]
    assert type(raised.value) is expected
    if status_code is not None:
        assert isinstance(raised.value, ApiError) and raised.value.status == status_code


async def test_a_watch_outlives_a_callback_or_answer_that_fails() -> None:
    """One bad answer (or a failing callback) costs a retry, never the watch task itself."""
    calls = 0

    class Flaky:
        async def list_secrets(self, namespace: str | None, params: dict[str, str]) -> tuple[list[Any], str]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ValueError("a bad answer")
            return [{"metadata": {"namespace": "ns", "name": f"s{calls}", "resourceVersion": str(calls)}}], str(calls)

        async def watch_secrets(self, namespace: str | None, params: dict[str, str], version: str) -> Any:
            raise Conflict("expired")
            yield  # pragma: no cover

    events: list[str] = []

    def on_event(kind: str, body: dict[str, Any]) -> None:
        events.append(body["metadata"]["name"])
        if len(events) == 1:
            raise RuntimeError("a callback that fails")

    from storage_token.kube import list_watch

    watch = list_watch.SecretWatch(Flaky(), "ns", {}, on_event)  # type: ignore[arg-type]
    original = list_watch.RETRY_SECONDS
    list_watch.RETRY_SECONDS = (0.01, 0.01)
    try:
        task = asyncio.create_task(watch.run())
        for _ in range(200):
            if len(events) >= 2:
                break
            await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        list_watch.RETRY_SECONDS = original
    assert len(events) >= 2 and calls >= 3


async def test_a_read_of_any_version_asks_the_watch_cache_and_a_plain_read_does_not() -> None:
    script = Script(lambda method, target: status(404, "NotFound"))
    async with server(script) as url:
        kube = kube_for(url)
        assert await kube.get_secret("ns", "s", any_version=True) is None
        assert await kube.get_secret("ns", "s") is None
        await kube.aclose()
    queries = [parse_qs(urlsplit(target).query) for _, target, _, _ in script.seen]
    assert queries == [{"resourceVersion": ["0"]}, {}]


class TokenSource:
    """`Kube`'s list and watch of StorageTokens, scripted: one list, then one watch that ends."""

    def __init__(self, listed: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        self.listed, self.events, self.lists = listed, events, 0

    async def list_custom(self, kind: str, namespace: str | None = None) -> tuple[list[Any], str]:
        assert kind == "StorageToken"
        self.lists += 1
        return self.listed, "10"

    async def watch_custom(self, kind: str, namespace: str | None, version: str) -> Any:
        for event in self.events:
            yield event
        self.events = []
        await asyncio.sleep(3600)


def token(name: str, version: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}", "resourceVersion": version},
        "spec": {"secret": {"name": name}},
        "status": status,
    }


async def test_one_tokens_failing_event_costs_that_event_not_the_watch_of_the_others() -> None:
    """A token whose event the operator cannot handle (a bug, a body it does not expect) is logged and
    skipped: the watch neither stops nor lists again, and every other token's events still arrive."""
    from storage_token.kube import list_watch

    source = TokenSource(
        [token("poison", "5"), token("a", "6")],
        [{"type": "MODIFIED", "object": token("poison", "11")}, {"type": "ADDED", "object": token("b", "12")}],
    )
    seen: list[tuple[str, str]] = []

    def on_event(kind: str, body: dict[str, Any]) -> None:
        if body["metadata"]["name"] == "poison":
            raise KeyError("a body the handler did not expect")
        seen.append((kind, body["metadata"]["name"]))

    watch = list_watch.TokenWatch(source, "ns", on_event)  # type: ignore[arg-type]
    task = asyncio.create_task(watch.run())
    for _ in range(100):
        if ("ADDED", "b") in seen:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen == [("ADDED", "a"), ("ADDED", "b")]
    assert source.lists == 1  # no relist: the failure stayed with its event


async def test_a_token_gone_while_no_watch_ran_is_reported_deleted_by_its_identity_alone() -> None:
    from storage_token.kube import list_watch

    source = TokenSource([token("a", "5", keyId="k-1"), token("b", "6")], [])
    seen: list[tuple[str, dict[str, Any]]] = []
    watch = list_watch.TokenWatch(source, None, lambda kind, body: seen.append((kind, body)))  # type: ignore[arg-type]
    await watch._relist()
    source.listed = [token("b", "7")]
    await watch._relist()
    assert [(kind, body["metadata"]["name"]) for kind, body in seen] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "b"),
        ("DELETED", "a"),
    ]
    # Who it was (enough to forget it), not a stale copy of what it held.
    assert seen[3][1] == {"metadata": {"namespace": "ns", "name": "a", "uid": "uid-a", "resourceVersion": "5"}}


async def test_an_event_that_cannot_be_read_is_skipped_and_the_watch_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not JSON, nested past the parser's depth, or over the line limit: that one event is dropped, not the
    watch (ending it would list every object again, and the same object's next event would end it again)."""
    from storage_token.kube import api

    monkeypatch.setattr(api, "WATCH_LINE_LIMIT", 4096)

    def added(name: str) -> bytes:
        return b'{"type": "ADDED", "object": {"metadata": {"name": "%s", "resourceVersion": "2"}}}' % name.encode()

    deep = b'{"type": "ADDED", "object": {"metadata": {"name": "deep"}, "x": ' + b"[" * 2000 + b"]" * 2000 + b"}}"
    huge = b'{"type": "ADDED", "object": {"metadata": {"name": "huge"}, "x": "' + b"y" * 10_000 + b'"}}'
    body = b"\n".join([added("a"), b"not json at all", deep, huge, added("b"), b""])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 1000):  # in pieces: a line spans many chunks
            writer.write(body[start : start + 1000])
            await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    kube = kube_for(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}")
    names = [event["object"]["metadata"]["name"] async for event in kube.watch_custom("StorageToken", "ns", "1")]
    await kube.aclose()
    listener.close()
    assert names == ["a", "b"]


async def test_a_token_made_again_under_the_same_name_while_no_watch_ran_is_a_deletion_then_an_addition() -> None:
    from storage_token.kube import list_watch

    source = TokenSource([token("a", "5")], [])
    seen: list[tuple[str, str]] = []
    watch = list_watch.TokenWatch(source, None, lambda kind, body: seen.append((kind, body["metadata"]["uid"])))  # type: ignore[arg-type]
    await watch._relist()
    again = token("a", "9")
    again["metadata"]["uid"] = "uid-a-2"
    source.listed = [again]
    await watch._relist()
    assert seen == [("ADDED", "uid-a"), ("DELETED", "uid-a"), ("ADDED", "uid-a-2")]


async def test_a_token_watch_reports_down_after_a_failed_list_and_up_once_a_list_succeeds() -> None:
    from storage_token.kube import list_watch

    class Refused(TokenSource):
        async def list_custom(self, kind: str, namespace: str | None = None) -> tuple[list[Any], str]:
            self.lists += 1
            if self.lists <= 2:
                raise ApiError(403, "Forbidden")  # say its RBAC is restored between the second and third try
            return self.listed, "10"

    health: list[bool] = []
    watch = list_watch.TokenWatch(Refused([token("a", "5")], []), "ns", lambda *_: None, health.append)  # type: ignore[arg-type]
    original = list_watch.RETRY_SECONDS
    list_watch.RETRY_SECONDS = (0.01, 0.01)
    try:
        task = asyncio.create_task(watch.run())
        for _ in range(200):
            if True in health:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        list_watch.RETRY_SECONDS = original
    assert health == [False, False, True]
