"""Revoke on adoption, the pure part: the revocation window, restart coalescing, workload progress, release."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage_token.api.token import PendingRevocation
from storage_token.policy.rollout import (
    ADOPTED,
    ALL_SWITCHED,
    CEILING_REACHED,
    NOT_FOUND,
    REFUSED,
    RESTART_FAILED,
    RESTART_FAILING,
    ROLLING,
    ROLLING_OUT,
    Rollout,
    TargetState,
    new_rollout,
    release,
    restart_moment,
    revocation_window,
    summary,
    workload_event_moves,
    workload_progress,
)

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def deployment(generation: int = 2, desired: int | None = 3, **status: Any) -> dict[str, Any]:
    spec = {} if desired is None else {"replicas": desired}
    return {"metadata": {"generation": generation}, "spec": spec, "status": status}


# -- the window ------------------------------------------------------------------------------------
def test_the_floor_is_the_grace_period_and_the_ceiling_max_revoke_delay() -> None:
    floor, ceiling = revocation_window(5 * MIN, 60 * MIN, NOW, NOW + timedelta(hours=8))
    assert (floor, ceiling) == (NOW + 5 * MIN, NOW + 60 * MIN)


def test_the_ceiling_is_never_below_the_floor() -> None:
    floor, ceiling = revocation_window(10 * MIN, 2 * MIN, NOW, None)
    assert floor == ceiling == NOW + 10 * MIN


def test_neither_goes_past_the_old_keys_expiry() -> None:
    expiry = NOW + 3 * MIN
    assert revocation_window(5 * MIN, 60 * MIN, NOW, expiry) == (expiry, expiry)


# -- coalescing restarts -----------------------------------------------------------------------------
def test_a_restart_waits_one_interval_after_the_secret_write_for_others_to_join() -> None:
    assert restart_moment(NOW, None, MIN, NOW) == NOW + MIN
    assert restart_moment(NOW, NOW - timedelta(hours=1), MIN, NOW + 5 * MIN) == NOW + 5 * MIN  # overdue: now


def test_without_an_interval_the_restart_is_immediate() -> None:
    assert restart_moment(NOW, None, timedelta(0), NOW) == NOW


def test_a_restart_after_the_secret_write_covers_the_rotation() -> None:
    assert restart_moment(NOW, NOW + timedelta(microseconds=1), MIN, NOW + MIN) is None
    assert restart_moment(NOW, NOW, MIN, NOW) is None  # the same instant: the restart read the new Secret


def test_a_restart_just_before_the_secret_write_does_not_cover_it() -> None:
    assert restart_moment(NOW, NOW - timedelta(microseconds=1), MIN, NOW) == NOW + MIN


def test_rotations_within_one_interval_share_one_restart_and_restarts_stay_an_interval_apart() -> None:
    writes = [NOW + timedelta(seconds=s) for s in (0, 10, 50, 70, 75)]
    restarts: list[datetime] = []
    for moment in sorted(writes + [w + MIN for w in writes]):  # every token looks at its own wakeups
        last = restarts[-1] if restarts else None
        for write in writes:
            if write <= moment and restart_moment(write, last, MIN, moment) == moment:
                restarts.append(moment)  # this token's reconcile restarts the workload
                break
    assert restarts == [NOW + MIN, NOW + timedelta(seconds=130)]
    assert all(b - a >= MIN for a, b in itertools.pairwise(restarts))


# -- workload progress -----------------------------------------------------------------------------
def test_the_controller_must_have_observed_the_restart() -> None:
    body = deployment(observedGeneration=1, replicas=3, updatedReplicas=3, readyReplicas=3, availableReplicas=3)
    switched, message = workload_progress("Deployment", body, 2)
    assert not switched and "generation 2" in message


def test_a_deployment_switched_when_every_replica_is_updated_ready_and_available() -> None:
    body = deployment(observedGeneration=2, replicas=3, updatedReplicas=3, readyReplicas=3, availableReplicas=3)
    assert workload_progress("Deployment", body, 2) == (True, "3/3 replicas updated, ready and available")


@pytest.mark.parametrize(
    ("counts", "left"),
    [
        ({"updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3, "replicas": 3}, "2/3 updated"),
        ({"updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2, "replicas": 3}, "2/3 ready"),
        ({"updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 2, "replicas": 3}, "2/3 available"),
        # A surge pod of the old template still runs (and still holds the old key).
        ({"updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3, "replicas": 4}, "1 old replica"),
    ],
)
def test_a_deployment_still_rolling_says_what_is_left(counts: dict[str, int], left: str) -> None:
    switched, message = workload_progress("Deployment", deployment(observedGeneration=2, **counts), 2)
    assert not switched and left in message


def test_replicas_default_to_one_and_zero_replicas_switch_at_once() -> None:
    one = deployment(desired=None, observedGeneration=2, updatedReplicas=1, readyReplicas=1, availableReplicas=1)
    assert workload_progress("Deployment", one, 2)[0]
    assert workload_progress("StatefulSet", deployment(desired=0, observedGeneration=2), 2)[0]


def test_a_stalled_deployment_says_its_progress_deadline_passed() -> None:
    stalled = deployment(
        observedGeneration=2,
        updatedReplicas=1,
        conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    )
    assert "progress deadline" in workload_progress("Deployment", stalled, 2)[1]


def test_a_daemonset_counts_its_scheduled_pods() -> None:
    status = {"observedGeneration": 4, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberReady": 2}
    assert not workload_progress("DaemonSet", {"status": status}, 4)[0]
    assert workload_progress("DaemonSet", {"status": {**status, "numberAvailable": 2}}, 4)[0]


# -- release and status ------------------------------------------------------------------------------
def entry(awaiting: int, not_before: datetime | None, due: datetime) -> PendingRevocation:
    return PendingRevocation("k", "key", due, awaiting_rollout=awaiting, not_before=not_before)


def test_a_completed_rollout_makes_its_keys_due_at_the_floor_or_now() -> None:
    ceiling = NOW + 60 * MIN
    later, earlier = entry(3, NOW + 5 * MIN, ceiling), entry(2, NOW - MIN, ceiling)
    assert [(p.due_at, p.awaiting_rollout) for p in release([later, earlier], 3, NOW)] == [
        (NOW + 5 * MIN, 0),
        (NOW, 0),
    ]


def test_keys_waiting_on_a_newer_rollout_or_none_are_left_alone() -> None:
    newer, plain = entry(4, NOW, NOW + MIN), entry(0, None, NOW + 2 * MIN)
    assert release([newer, plain], 3, NOW) == [newer, plain]


def test_status_round_trips_and_counts_only_consumers() -> None:
    rollout = Rollout(
        7,
        NOW.replace(microsecond=123456),
        (
            TargetState("Deployment", "a", ADOPTED, 3),
            TargetState("Deployment", "b", ROLLING, 5, "1/2 updated"),
            TargetState("StatefulSet", "c", NOT_FOUND),
            TargetState("DaemonSet", "d", REFUSED),
        ),
    )
    raw = rollout.to_status()
    assert (raw["adopted"], raw["total"], raw["progress"]) == (1, 2, "1/2")
    assert Rollout.parse(raw) == rollout  # microseconds kept: coverage is decided within a second
    assert not rollout.done


def test_the_condition_names_the_state_of_the_rollout() -> None:
    rolling = new_rollout(2, [("Deployment", "a")], NOW)
    assert summary(rolling, forced=False)[:2] == (False, ROLLING_OUT)
    failing = Rollout(2, NOW, (TargetState("Deployment", "a", RESTART_FAILED, message="403 Forbidden"),))
    assert summary(failing, forced=False)[:2] == (False, RESTART_FAILING)
    assert summary(rolling, forced=True)[:2] == (False, CEILING_REACHED)
    done = Rollout(2, NOW, (TargetState("Deployment", "a", ADOPTED),))
    assert summary(done, forced=True) == (True, ALL_SWITCHED, "1/1 consumers switched to revision 2")


def test_a_workload_event_moves_only_targets_it_can_move_on() -> None:
    rolled = {"metadata": {"generation": 3}, "spec": {"replicas": 1}}
    rolled["status"] = {"observedGeneration": 3, "replicas": 1, "updatedReplicas": 1}
    rolled["status"] |= {"readyReplicas": 1, "availableReplicas": 1}
    rolling = {**rolled, "status": {**rolled["status"], "updatedReplicas": 0}}

    waiting = {"rollout": Rollout(2, NOW, (TargetState("Deployment", "a", ROLLING, generation=3),)).to_status()}
    assert workload_event_moves(waiting, "Deployment", "a", rolled, None)
    assert not workload_event_moves(waiting, "Deployment", "a", rolling, None)  # nothing to decide yet
    assert not workload_event_moves(waiting, "StatefulSet", "a", rolled, None)

    pending = {"rollout": new_rollout(2, [("Deployment", "b")], NOW).to_status()}
    assert not workload_event_moves(pending, "Deployment", "b", rolled, None)  # its own timer restarts it
    assert not workload_event_moves(pending, "Deployment", "b", rolled, NOW - timedelta(seconds=1))
    assert workload_event_moves(pending, "Deployment", "b", rolled, NOW)  # another token's restart covers it

    adopted = {"rollout": Rollout(2, NOW, (TargetState("Deployment", "a", ADOPTED),)).to_status()}
    assert not workload_event_moves(adopted, "Deployment", "a", rolled, NOW)
    assert not workload_event_moves(None, "Deployment", "a", rolled, NOW)
