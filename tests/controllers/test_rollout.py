"""Revoke on adoption and gentle restarts, on the fast tier: the test plays the workloads' controllers.

After a rotation the old key stays live while any restartTarget is still rolling out, goes as soon as
the last one has (never before revokeGracePeriod), and goes at maxRevokeDelay when a rollout is stuck.
Tokens sharing a workload restart it once per interval; nothing but a recorded rotation restarts it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from harness import Crash, Harness, ProviderInfo

from storage_token.api.times import parse_time
from storage_token.controllers.steps.base import RESTART_ANNOTATION
from storage_token.kube.api import ApiError
from storage_token.policy.rollout import precise_time

NS, NAME = "team-a", "app"
GRACE, CEILING = timedelta(minutes=2), timedelta(minutes=30)


def consumer(
    name: str, secrets: tuple[str, ...] = (NAME,), replicas: int = 2, kind: str = "Deployment"
) -> dict[str, Any]:
    """A workload whose pods read `secrets` through envFrom (so the operator may restart it)."""
    pod = {"containers": [{"name": "c", "image": "app:1", "envFrom": [{"secretRef": {"name": s}} for s in secrets]}]}
    spec: dict[str, Any] = {"template": {"metadata": {}, "spec": pod}}
    if kind != "DaemonSet":
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec}


def finish_rollout(h: Harness, name: str, kind: str = "Deployment", *, updated: int | None = None) -> None:
    """Play the workload's controller: observe the latest generation and roll `updated` (default all) replicas."""
    body = h.kube.get(kind, NS, name)
    assert body is not None
    generation = body["metadata"]["generation"]
    if kind == "DaemonSet":
        n = 3 if updated is None else updated
        status = {"observedGeneration": generation, "desiredNumberScheduled": 3}
        status |= {"updatedNumberScheduled": n, "numberReady": n, "numberAvailable": n}
    else:
        desired = body["spec"]["replicas"]
        n = desired if updated is None else updated
        status = {"observedGeneration": generation, "replicas": desired, "updatedReplicas": n}
        status |= {"readyReplicas": desired, "availableReplicas": desired}
    h.kube.set_workload_status(kind, NS, name, status)


def restarts_of(h: Harness, name: str) -> int:
    return sum(1 for c in h.kube.calls if c.method == "patch_workload" and c.args["name"] == name)


def targets(*names: str, kind: str = "Deployment") -> list[dict[str, str]]:
    return [{"kind": kind, "name": n} for n in names]


async def with_consumers(h: Harness, *workloads: str, provider_type: str = "b2") -> ProviderInfo:
    """The namespace, one Deployment per name reading the token's Secret, and a provider."""
    h.kube.create_namespace(NS)
    for workload in workloads:
        h.kube.create(consumer(workload))
    return await h.create_provider(provider_type)


async def rotate(h: Harness, provider: ProviderInfo, workloads: list[str], name: str = NAME, **spec: Any) -> str:
    """Issue, let the workloads settle on it, renew; the old key id. The restart is due one interval later."""
    spec = {"revokeGracePeriod": "2m", "maxRevokeDelay": "30m", **spec}
    await h.create_token(NS, name, provider, duration="24h", restartTargets=targets(*workloads), **spec)
    await h.reconcile_token(NS, name)
    old = str(h.status(NS, name)["keyId"])
    await h.renew(NS, name)
    assert h.status(NS, name)["keyId"] != old
    return old


def rollout(h: Harness, name: str = NAME) -> dict[str, Any]:
    return dict(h.status(NS, name).get("rollout") or {})


def states(h: Harness, name: str = NAME) -> dict[str, str]:
    return {t["name"]: t["state"] for t in rollout(h, name).get("targets") or ()}


async def test_the_old_key_lives_while_any_target_rolls_and_goes_when_the_last_switched(
    harness: Harness, provider_type: str
) -> None:
    h = harness
    provider = await with_consumers(h, "web", "worker", provider_type=provider_type)
    old = await rotate(h, provider, ["web", "worker"])
    rotated_at = h.now
    assert states(h) == {"web": "RestartPending", "worker": "RestartPending"}
    await h.run_until(rotated_at + h.settings.restart_min_interval)
    assert restarts_of(h, "web") == restarts_of(h, "worker") == 1
    assert states(h) == {"web": "Rolling", "worker": "Rolling"}
    pending = h.status(NS, NAME)["pendingRevocations"]
    assert [(p["keyId"], p["awaitingRollout"]) for p in pending] == [(old, 2)]
    assert parse_time(pending[0]["dueAt"]) == rotated_at + CEILING

    await h.run_until(rotated_at + GRACE + timedelta(minutes=1))  # past the floor, both still rolling
    finish_rollout(h, "web")
    await h.reconcile_token(NS, NAME)
    assert old in h.live_key_ids(provider_type), "the old key went while worker was still rolling"
    assert (rollout(h)["progress"], states(h)["web"]) == ("1/2", "Adopted")
    assert h.condition(NS, NAME, "ConsumersUpdated")["reason"] == "RolloutInProgress"
    finish_rollout(h, "worker", updated=1)  # one replica still on the old template
    await h.reconcile_token(NS, NAME)
    assert old in h.live_key_ids(provider_type)
    h.check_invariants()

    finish_rollout(h, "worker")
    await h.reconcile_token(NS, NAME)  # what the workload watch triggers: no clock moved
    assert old not in h.live_key_ids(provider_type), "the last consumer switched but the old key is still live"
    assert not h.status(NS, NAME)["pendingRevocations"]
    done = h.condition(NS, NAME, "ConsumersUpdated")
    assert (done["status"], done["reason"]) == ("True", "AllConsumersSwitched")
    assert rollout(h)["progress"] == "2/2" and rollout(h)["completedAt"]
    assert any(r == "ConsumersSwitched" and "2/2" in m for r, m in h.kube.events_for(NAME, NS))
    h.check_invariants()


async def test_consumers_switching_within_the_grace_period_still_wait_for_its_end(harness: Harness) -> None:
    h = harness
    provider = await with_consumers(h, "web")
    old = await rotate(h, provider, ["web"])
    rotated_at = h.now
    await h.run_until(rotated_at + h.settings.restart_min_interval)
    finish_rollout(h, "web")
    await h.reconcile_token(NS, NAME)
    assert old in h.live_key_ids("b2"), "revoked before revokeGracePeriod"
    assert parse_time(h.status(NS, NAME)["pendingRevocations"][0]["dueAt"]) == rotated_at + GRACE
    await h.run_until(rotated_at + GRACE)
    assert old not in h.live_key_ids("b2")
    h.check_invariants()


async def test_a_stuck_rollout_is_revoked_at_max_revoke_delay(harness: Harness) -> None:
    h = harness
    provider = await with_consumers(h, "web", provider_type="us3")
    old = await rotate(h, provider, ["web"])
    rotated_at = h.now
    await h.run_until(rotated_at + CEILING - timedelta(seconds=1))
    assert old in h.live_key_ids("us3")
    assert states(h) == {"web": "Rolling"}
    await h.run_until(rotated_at + CEILING)
    assert old not in h.live_key_ids("us3"), "maxRevokeDelay passed and the old key is still live"
    stuck = h.condition(NS, NAME, "ConsumersUpdated")
    assert (stuck["status"], stuck["reason"]) == ("False", "MaxRevokeDelayReached")
    assert any(r == "RevokedBeforeAdoption" for r, _ in h.kube.events_for(NAME, NS))
    h.check_invariants()
    finish_rollout(h, "web")  # it finishes after all: the condition says so
    await h.reconcile_token(NS, NAME)
    assert h.condition(NS, NAME, "ConsumersUpdated")["reason"] == "AllConsumersSwitched"


async def test_the_ceiling_never_passes_the_old_keys_expiry(harness: Harness) -> None:
    h = harness
    provider = await with_consumers(h, "web")
    await h.create_token(
        NS, NAME, provider, duration="1h", revokeGracePeriod="1m", maxRevokeDelay="720h", restartTargets=targets("web")
    )
    await h.reconcile_token(NS, NAME)
    not_after = h.status(NS, NAME)["notAfter"]
    await h.renew(NS, NAME)
    assert h.status(NS, NAME)["pendingRevocations"][0]["dueAt"] == not_after


async def test_without_restart_targets_the_grace_period_alone_decides(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    await h.create_token(NS, NAME, provider, duration="24h", revokeGracePeriod="2m", maxRevokeDelay="30m")
    await h.reconcile_token(NS, NAME)
    await h.renew(NS, NAME)
    status = h.status(NS, NAME)
    assert "rollout" not in status and not h.condition(NS, NAME, "ConsumersUpdated")
    assert parse_time(status["pendingRevocations"][0]["dueAt"]) == h.now + GRACE
    assert "awaitingRollout" not in status["pendingRevocations"][0]


async def test_targets_that_are_gone_or_do_not_read_the_secret_hold_nothing(harness: Harness) -> None:
    h = harness
    h.kube.create_namespace(NS)
    h.kube.create(consumer("bystander", secrets=("other",)))
    provider = await h.create_provider("b2")
    old = await rotate(h, provider, ["bystander", "absent"])
    await h.run_until(h.now + h.settings.restart_min_interval)
    assert states(h) == {"bystander": "Refused", "absent": "NotFound"}
    assert rollout(h)["progress"] == "0/0"
    assert restarts_of(h, "bystander") == 0
    await h.run_until(h.now + GRACE)
    assert old not in h.live_key_ids("b2")


async def test_a_workload_deleted_mid_rollout_no_longer_holds_the_old_key(harness: Harness) -> None:
    h = harness
    provider = await with_consumers(h, "web", "gone")
    old = await rotate(h, provider, ["web", "gone"])
    await h.run_until(h.now + GRACE)
    finish_rollout(h, "web")
    h.kube.delete("Deployment", NS, "gone")
    await h.reconcile_token(NS, NAME)
    assert states(h) == {"web": "Adopted", "gone": "NotFound"}
    assert old not in h.live_key_ids("b2")


async def test_a_rotation_during_a_rollout_makes_every_old_key_wait_for_the_newest(harness: Harness) -> None:
    h = harness
    provider = await with_consumers(h, "web")
    first = await rotate(h, provider, ["web"])
    await h.run_until(h.now + h.settings.restart_min_interval)
    second = str(h.status(NS, NAME)["keyId"])
    h.advance(seconds=1)  # (a frozen clock would put the second Secret write at the very instant of the restart)
    await h.renew(NS, NAME, value="again")
    assert rollout(h)["revision"] == 3
    await h.run_until(h.now + GRACE)
    assert {first, second} <= h.live_key_ids("b2")
    assert restarts_of(h, "web") == 2
    finish_rollout(h, "web")
    await h.reconcile_token(NS, NAME)
    assert not ({first, second} & h.live_key_ids("b2"))
    h.check_invariants()


async def test_tokens_rotating_within_the_interval_restart_a_shared_workload_once(harness: Harness) -> None:
    h = harness
    tokens = ("app-a", "app-b", "app-c")
    h.kube.create_namespace(NS)
    h.kube.create(consumer("shared", secrets=tokens))
    provider = await h.create_provider("b2")
    old = {}
    start = h.now
    for name in tokens:
        old[name] = await rotate(h, provider, ["shared"], name=name)
        h.advance(seconds=3)
    await h.run_until(start + timedelta(minutes=1))
    assert restarts_of(h, "shared") == 1, "one restart of the shared workload for rotations within one interval"
    generations = {rollout(h, name)["targets"][0]["generation"] for name in tokens}
    assert len(generations) == 1 and all(states(h, name) == {"shared": "Rolling"} for name in tokens)
    finish_rollout(h, "shared")
    await h.run_until(start + timedelta(minutes=5))
    assert not (set(old.values()) & h.live_key_ids("b2"))

    # The next rotation restarts it again, one interval after its own Secret write.
    again = h.now
    await h.renew(NS, "app-a", value="later")
    await h.run_until(again + h.settings.restart_min_interval - timedelta(seconds=1))
    assert restarts_of(h, "shared") == 1
    await h.run_until(again + h.settings.restart_min_interval)
    assert restarts_of(h, "shared") == 2
    h.check_invariants()


async def test_an_operator_restart_or_a_new_leader_restarts_nothing(harness: Harness) -> None:
    h = harness
    provider = await with_consumers(h, "web")
    await rotate(h, provider, ["web"])
    # The restart lands, then the operator dies before status records it.
    h.advance(h.settings.restart_min_interval)
    h.kube.fail_next(
        "patch_status", Crash("after-restart"), when=lambda a: "rollout" in (a["patch"].get("status") or {})
    )
    crash = await h.reconcile_until_crash(NS, NAME)
    assert str(crash) == "after-restart" and restarts_of(h, "web") == 1
    assert states(h) == {"web": "RestartPending"}
    await h.restart()
    await h.reconcile_all()
    assert restarts_of(h, "web") == 1, "the new process restarted the workload again"
    assert states(h) == {"web": "Rolling"}  # it recognised its predecessor's restart
    for _ in range(2):  # a new leader resyncs everything; so does another process start
        h.operator.manager.resync()
        await h.restart()
        await h.run_until(h.now + timedelta(minutes=40))
    finish_rollout(h, "web")
    await h.reconcile_all()
    await h.restart()
    await h.run_until(h.now + timedelta(hours=1))
    assert restarts_of(h, "web") == 1


async def test_a_failed_restart_is_retried_and_visible(harness: Harness) -> None:
    h = harness
    provider = await with_consumers(h, "web")
    old = await rotate(h, provider, ["web"])
    h.advance(h.settings.restart_min_interval)
    h.kube.fail_next("patch_workload", ApiError(503, "Service Unavailable"))
    await h.reconcile_token(NS, NAME)
    target = rollout(h)["targets"][0]
    assert (target["state"], target["attempts"]) == ("RestartFailed", 1)
    assert "503" in target["message"] and target["nextAttempt"]
    assert h.condition(NS, NAME, "ConsumersUpdated")["reason"] == "RestartFailing"
    assert any(r == "RestartFailed" and "503" in m for r, m in h.kube.events_for(NAME, NS))
    assert old in h.live_key_ids("b2")
    await h.run_until(parse_time(target["nextAttempt"]) or h.now)
    assert states(h) == {"web": "Rolling"} and restarts_of(h, "web") == 2
    finish_rollout(h, "web")
    await h.run_until(h.now + GRACE)
    assert old not in h.live_key_ids("b2")


async def test_a_workload_event_queues_exactly_the_tokens_following_it(harness: Harness) -> None:
    h = harness
    h.kube.create_namespace(NS)
    h.kube.create(consumer("web", secrets=("app-a", "app-b")))
    provider = await h.create_provider("b2")
    await rotate(h, provider, ["web"], name="app-a")
    await h.create_token(NS, "app-b", provider, reconcile=True)
    manager = h.operator.manager
    queue = manager.token_queue

    def events_of_web(kind: str = "Deployment", namespace: str = NS) -> set[tuple[str, str]]:
        manager.on_token_event("MODIFIED", h.token(NS, "app-a"))
        for key in list(queue._queued):
            queue._queued.pop(key)
        web = h.kube.get("Deployment", NS, "web")
        assert web is not None
        manager.on_workload_event(kind, {**web, "metadata": {**web["metadata"], "namespace": namespace}})
        return set(queue._queued)

    assert events_of_web() == set(), "waiting for its own restart timer: a workload event moves nothing"
    await h.run_until(h.now + h.settings.restart_min_interval)
    assert states(h, "app-a") == {"web": "Rolling"}
    assert events_of_web() == set(), "still rolling out: nothing to decide yet"
    finish_rollout(h, "web")
    assert events_of_web() == {(NS, "app-a")}
    assert events_of_web("StatefulSet") == set()
    assert events_of_web(namespace="elsewhere") == set()


async def test_daemonsets_and_statefulsets_are_followed_too(harness: Harness) -> None:
    h = harness
    h.kube.create_namespace(NS)
    h.kube.create(consumer("agent", kind="DaemonSet"))
    h.kube.create(consumer("db", kind="StatefulSet"))
    provider = await h.create_provider("b2")
    await h.create_token(
        NS,
        NAME,
        provider,
        duration="24h",
        revokeGracePeriod="0s",
        restartTargets=[{"kind": "DaemonSet", "name": "agent"}, {"kind": "StatefulSet", "name": "db"}],
    )
    await h.reconcile_token(NS, NAME)
    old = str(h.status(NS, NAME)["keyId"])
    await h.renew(NS, NAME)
    await h.run_until(h.now + h.settings.restart_min_interval)
    finish_rollout(h, "agent", "DaemonSet")
    await h.reconcile_token(NS, NAME)
    assert old in h.live_key_ids("b2")
    finish_rollout(h, "db", "StatefulSet")
    await h.reconcile_token(NS, NAME)
    assert old not in h.live_key_ids("b2")


async def test_removing_the_targets_lets_waiting_keys_fall_back_to_the_grace_period(harness: Harness) -> None:
    h = harness
    provider = await with_consumers(h, "web")
    old = await rotate(h, provider, ["web"])
    await h.run_until(h.now + h.settings.restart_min_interval)
    await h.update_spec(NS, NAME, {"restartTargets": None})
    await h.renew(NS, NAME, value="without-targets")
    assert "rollout" not in h.status(NS, NAME)
    await h.run_until(h.now + GRACE)
    assert old not in h.live_key_ids("b2"), "a key kept waiting for a rollout nobody follows any more"


async def test_losing_admission_revokes_keys_waiting_for_a_stuck_rollout_after_the_grace_period(
    harness: Harness,
) -> None:
    """A narrowed ceiling leaves the token holding none of its keys: one waiting for a rollout that
    never finishes (paused, failing probe) must not live on until maxRevokeDelay (attacker review)."""
    h = harness
    h.kube.create_namespace("team-a")
    pod = {"containers": [{"name": "c", "image": "a", "envFrom": [{"secretRef": {"name": "stuck"}}]}]}
    h.kube.create(
        {
            "kind": "Deployment",
            "metadata": {"name": "stuck-web", "namespace": "team-a"},
            "spec": {"template": {"metadata": {}, "spec": pod}, "replicas": 1},
        }
    )
    provider = await h.create_provider("b2")
    await h.create_token(
        "team-a",
        "stuck",
        provider,
        duration="720h",
        revokeGracePeriod="2m",
        maxRevokeDelay="720h",
        restartTargets=[{"kind": "Deployment", "name": "stuck-web"}],
    )
    await h.reconcile_token("team-a", "stuck")
    first = h.status("team-a", "stuck")["keyId"]
    await h.renew("team-a", "stuck")
    second = h.status("team-a", "stuck")["keyId"]
    other = [bucket for bucket in provider.buckets if bucket != provider.buckets[0]]
    h.kube.update(
        provider.kind, provider.namespace, provider.name, {"spec": {"policy": {"allowedBuckets": other or ["x-*"]}}}
    )
    await h.reconcile_provider(provider)
    await h.run_until(h.now + timedelta(minutes=10))
    live = h.live_key_ids("b2")
    assert second not in live
    assert first not in live


async def test_a_restart_racing_another_token_s_restart_is_not_repeated(harness: Harness) -> None:
    h = harness
    provider = await with_consumers(h, "web")
    await rotate(h, provider, ["web"])
    before = h.kube.get("Deployment", NS, "web")
    assert before is not None
    patch_workload = h.kube.patch_workload
    raced: list[str] = []

    async def racing(kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        if not raced:  # another token's restart lands between this token's read and its patch
            raced.append(name)
            annotations = {RESTART_ANNOTATION: precise_time(h.now - timedelta(seconds=1))}
            h.kube.update(kind, namespace, name, {"spec": {"template": {"metadata": {"annotations": annotations}}}})
        return await patch_workload(kind, namespace, name, patch)

    h.kube.patch_workload = racing  # type: ignore[method-assign]
    await h.run_until(h.now + h.settings.restart_min_interval)

    after = h.kube.get("Deployment", NS, "web")
    assert after is not None and raced == ["web"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1, "restarted twice"
    assert states(h) == {"web": "Rolling"}  # the other restart covers this token's Secret write


async def test_the_last_switch_and_the_revocation_it_releases_are_one_read_and_one_write(
    harness: Harness, provider_type: str
) -> None:
    h = harness
    provider = await with_consumers(h, "web", provider_type=provider_type)
    old = await rotate(h, provider, ["web"])
    await h.run_until(h.now + GRACE + timedelta(minutes=1))  # restarted, rolling, past the floor
    assert states(h) == {"web": "Rolling"}
    finish_rollout(h, "web")
    mark = len(h.kube.calls)
    await h.operator.tokens.reconcile(h.token(NS, NAME))  # the one the workload event queues

    assert old not in h.live_key_ids(provider_type)
    writes = [c.method for c in h.kube.calls[mark:] if c.method in ("patch_status", "create_event")]
    assert writes == ["patch_status", "create_event"], writes  # the event follows the one write
    reads = [c.method for c in h.kube.calls[mark:] if c.method.startswith("get_")]
    assert reads.count("get_secret") == 1, reads  # the reconcile's one read serves the revocation too
    status = h.status(NS, NAME)
    assert status["pendingRevocations"] == [] and status["rollout"]["completedAt"]
    assert h.condition(NS, NAME, "ConsumersUpdated")["reason"] == "AllConsumersSwitched"
    h.check_invariants()


async def test_a_crash_between_the_revocation_and_its_write_converges(harness: Harness, provider_type: str) -> None:
    h = harness
    provider = await with_consumers(h, "web", provider_type=provider_type)
    old = await rotate(h, provider, ["web"])
    await h.run_until(h.now + GRACE + timedelta(minutes=1))
    finish_rollout(h, "web")
    h.kube.fail_next(
        "patch_status", Crash("after-revoke"), when=lambda a: "rollout" in (a["patch"].get("status") or {})
    )
    crash = await h.reconcile_until_crash(NS, NAME)

    # The key is gone at the provider, status still names it: no Secret holds it, and the next process
    # finds the rollout finished again and confirms the revocation (the provider says it is gone).
    assert str(crash) == "after-revoke" and old not in h.live_key_ids(provider_type)
    assert [p["keyId"] for p in h.status(NS, NAME)["pendingRevocations"]] == [old]
    h.check_invariants()
    await h.restart()
    await h.reconcile_all()
    assert h.status(NS, NAME)["pendingRevocations"] == []
    assert h.condition(NS, NAME, "ConsumersUpdated")["reason"] == "AllConsumersSwitched"
    assert sum(1 for r, _ in h.kube.events_for(NAME, NS) if r == "ConsumersSwitched") == 1
    h.check_invariants()


async def test_a_rollout_the_watch_showed_finished_needs_no_read_and_anything_else_is_read_fresh(
    harness: Harness,
) -> None:
    h = harness
    provider = await with_consumers(h, "web", "worker")
    old = await rotate(h, provider, ["web", "worker"])
    await h.run_until(h.now + GRACE + timedelta(minutes=1))
    assert states(h) == {"web": "Rolling", "worker": "Rolling"}

    def reads(since: int) -> list[str]:
        return [c.args["name"] for c in h.kube.calls[since:] if c.method == "get_workload"]

    finish_rollout(h, "web")  # its watch event carries the finished rollout
    mark = len(h.kube.calls)
    await h.reconcile_token(NS, NAME)
    assert states(h)["web"] == "Adopted" and set(reads(mark)) == {"worker"}

    # A watched body that is behind (still rolling) is never taken for the answer: the workload is read.
    finish_rollout(h, "worker")
    watched = h.operator.manager.shared.workloads
    stale = dict(watched[("Deployment", NS, "worker")], status={"observedGeneration": 1})
    watched[("Deployment", NS, "worker")] = stale
    mark = len(h.kube.calls)
    await h.reconcile_token(NS, NAME)
    assert set(reads(mark)) == {"worker"} and old not in h.live_key_ids("b2")
    h.check_invariants()


async def test_a_workload_recreated_under_the_same_name_is_not_judged_by_the_old_ones_rollout(
    harness: Harness,
) -> None:
    h = harness
    provider = await with_consumers(h, "web")
    old = await rotate(h, provider, ["web"])
    await h.run_until(h.now + GRACE + timedelta(minutes=1))
    finish_rollout(h, "web")
    await h.reconcile_token(NS, NAME)
    assert old not in h.live_key_ids("b2")
    watched = h.operator.manager.shared.workloads
    assert ("Deployment", NS, "web") in watched

    # The Deployment is deleted and re-created while the workload watch is away (it lags until the end of
    # the restart below): the cache still shows the old object rolled out at the same generation.
    stale = watched[("Deployment", NS, "web")]
    manager = h.operator.manager
    manager.on_workload_event = lambda *args: None  # type: ignore[method-assign]
    h.kube.delete("Deployment", NS, "web")
    h.kube.create(consumer("web"))
    second = str(h.status(NS, NAME)["keyId"])
    await h.renew(NS, NAME, value="again")
    await h.run_until(h.now + GRACE + timedelta(minutes=1))  # restarted; the new object is still rolling
    assert watched.get(("Deployment", NS, "web")) in (None, stale)
    assert states(h) == {"web": "Rolling"}, states(h)
    assert second in h.live_key_ids("b2"), "revoked on the rollout of a Deployment that no longer exists"
    del manager.on_workload_event  # the watch is back
    finish_rollout(h, "web")
    await h.reconcile_token(NS, NAME)
    assert second not in h.live_key_ids("b2")
    h.check_invariants()


async def test_a_ceiling_at_the_floor_still_waits_the_whole_grace_period_after_the_secret_write(
    harness: Harness,
) -> None:
    h = harness
    provider = await with_consumers(h, "web")
    spec = {"restartTargets": targets("web"), "revokeGracePeriod": "1m", "maxRevokeDelay": "1m"}
    await h.create_token(NS, NAME, provider, duration="24h", **spec)
    await h.reconcile_token(NS, NAME)
    written = h.slow_secret_writes(1.4)  # a loaded API server: the write lands mid-second
    await h.renew(NS, NAME)
    entry = h.status(NS, NAME)["pendingRevocations"][0]
    floor = written[0] + timedelta(minutes=1)
    for field in ("dueAt", "notBefore"):
        moment = parse_time(entry.get(field))
        assert moment is None or moment >= floor, (field, moment, floor)
