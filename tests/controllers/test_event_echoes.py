"""Watch events that reach a token while it is being reconciled: the echo of its own writes (the watch
often delivers a write before its response does) queues nothing; anyone else's change queues it again.

FakeKube delivers every event synchronously inside the write, i.e. always before the response: the
worst order the real watch can take.
"""

from __future__ import annotations

from typing import Any

from harness import Harness

NS, NAME = "team-a", "app"
KEY = (NS, NAME)


def drain(h: Harness) -> None:
    queue = h.operator.manager.token_queue
    for key in list(queue._queued):
        queue._queued.pop(key)


async def reconcile_through_the_queue(h: Harness) -> bool:
    """One reconcile the way a worker runs it; whether the token was queued again meanwhile."""
    manager = h.operator.manager
    queue = manager.token_queue
    drain(h)
    queue.add(KEY)
    assert await queue.get() == KEY
    await manager._reconcile_token(KEY)
    requeued = KEY in queue._dirty
    queue.done(KEY)
    drain(h)
    return requeued


async def test_the_echo_of_a_reconciles_own_writes_queues_nothing(harness: Harness, provider_type: str) -> None:
    h = harness
    provider = await h.create_provider(provider_type)
    await h.create_token(NS, NAME, provider)
    # The finalizer, the intent, the Secret and the issued key: each write's event came before its response.
    assert not await reconcile_through_the_queue(h)
    assert h.status(NS, NAME)["keyId"] and h.secret(NS, NAME) is not None
    h.check_invariants()


def edit_after_the_next_secret_read(h: Harness, kind: str, patch: dict[str, Any]) -> None:
    """Someone else patches `kind` NS/NAME right after the reconcile has read its Secret (once)."""
    original = h.kube.get_secret

    async def read_then_edit(namespace: str, name: str, any_version: bool = False) -> Any:
        h.kube.get_secret = original  # type: ignore[method-assign]
        secret = await original(namespace, name, any_version)
        assert secret is not None
        await h.kube.patch_object(kind, NS, NAME, patch)
        return secret

    h.kube.get_secret = read_then_edit  # type: ignore[method-assign]


async def test_a_change_by_someone_else_during_a_reconcile_queues_it_again(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, reconcile=True)
    edit_after_the_next_secret_read(h, "StorageToken", {"metadata": {"annotations": {"team": "edited"}}})
    assert await reconcile_through_the_queue(h), "a change the reconcile did not write was dropped"


async def test_a_secret_edit_during_a_reconcile_queues_it_again(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, reconcile=True)
    edit_after_the_next_secret_read(h, "Secret", {"data": {"accessKeyId": "ZWRpdGVk"}})
    assert await reconcile_through_the_queue(h), "a Secret edit the reconcile did not write was dropped"


async def test_an_event_between_the_reconcile_and_the_workers_done_is_not_lost(harness: Harness) -> None:
    """The worker marks the key done a loop turn after the reconcile returns; an edit landing in that gap
    must still bring the token back (it once waited in the echo checks until some later reconcile)."""
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, reconcile=True)
    manager = h.operator.manager
    queue = manager.token_queue
    drain(h)
    queue.add(KEY)
    assert await queue.get() == KEY
    await manager._reconcile_token(KEY)
    h.kube.update("StorageToken", NS, NAME, {"metadata": {"annotations": {"storagetoken.dev/renew": "now"}}})
    queue.done(KEY)
    assert KEY in queue._queued, "the renew request waits for the token's next timer"
