"""The crash matrix: provider x crash point x {first issuance, rotation}; restart; invariants hold.

Each case lets the operator die at one point of an issuance (`harness.CRASH_POINTS`), starts a new
operator over the same API and providers, reconciles to quiescence and checks invariants 1-3, then
lets the grace period pass and checks that exactly the recorded key is left.
"""

from __future__ import annotations

import base64

import pytest
from harness import AFTER_CREATE, AFTER_INTENT, CRASH_POINTS, Harness

NS, NAME = "team-a", "app"


@pytest.mark.parametrize("phase", ["first-issue", "rotation"])
@pytest.mark.parametrize("point", CRASH_POINTS)
async def test_a_crash_during_issuance_recovers_to_one_recorded_key(
    harness: Harness, provider_type: str, point: str, phase: str
) -> None:
    h = harness
    provider = await h.create_provider(provider_type)
    await h.create_token(NS, NAME, provider, revokeGracePeriod="5m")
    previous = None
    if phase == "rotation":
        await h.reconcile_token(NS, NAME)
        previous = h.status(NS, NAME)["keyId"]
        await h.renew(NS, NAME, reconcile=False)

    h.arm_crash(point, token=NAME)
    crash = await h.reconcile_until_crash(NS, NAME)
    assert crash.args == (point,)
    if point == AFTER_INTENT:
        assert h.status(NS, NAME)["intent"]["keyName"]
    if point == AFTER_CREATE:
        assert any(k.key_id != previous for k in h.keys_at_provider(provider_type))  # created, unrecorded

    await h.restart()
    await h.reconcile_token(NS, NAME)

    h.check_invariants()
    status = h.status(NS, NAME)
    assert "intent" not in status
    assert h.condition(NS, NAME)["status"] == "True"
    assert status["revision"] == (2 if phase == "rotation" else 1)
    assert status["keyId"] != previous
    secret = h.secret(NS, NAME)
    assert secret is not None
    held = base64.b64decode(secret["data"]["accessKeyId"]).decode()
    assert held == next(k.access_key_id for k in h.keys_at_provider(provider_type) if k.key_id == status["keyId"])

    h.advance(minutes=5, seconds=1)
    await h.reconcile_all()
    assert h.live_key_ids(provider_type) == {status["keyId"]}
    h.check_invariants()
