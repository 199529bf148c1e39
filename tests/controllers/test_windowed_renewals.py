"""Renewal windows through the real controllers: renewals wait for a window, unless expiry is near.

The harness starts at Tue 2030-01-01 00:00 UTC. A 24h key issued then is planned for renewal
between 14:48 and 16:00 (2/3 of its lifetime, less jitter); its safety margin is 2h24m, so it
renews at 21:36 at the latest.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from harness import START, Harness

from storage_token.api.times import parse_time
from storage_token.policy import reasons

NS, NAME = "team-a", "app"
LATEST = START + timedelta(hours=21, minutes=36)  # expiry - max(10% of 24h, 1h)


def evening(start: str = "19:00", end: str = "21:00", **extra: Any) -> list[dict[str, Any]]:
    return [{"start": start, "end": end, "timeZone": "UTC", **extra}]


def moment(h: Harness, field: str) -> datetime:
    value = parse_time(str(h.status(NS, NAME).get(field)))
    assert value is not None, h.status(NS, NAME)
    return value


async def test_a_renewal_planned_outside_the_window_waits_for_it(harness: Harness, provider_type: str) -> None:
    provider = await harness.create_provider(provider_type)
    await harness.create_token(NS, NAME, provider, duration="24h", renewalWindows=evening(), reconcile=True)
    opens = START + timedelta(hours=19)

    assert moment(harness, "nextRenewalWindow") == opens
    assert opens <= moment(harness, "renewalTime") < opens + timedelta(hours=1)  # spread over half the window
    assert "held for the renewal window opening at 2030-01-01T19:00:00Z" in harness.condition(NS, NAME)["message"]

    await harness.run_until(opens - timedelta(seconds=1))  # past the planned 14:48-16:00
    assert harness.status(NS, NAME)["revision"] == 1

    await harness.run_until(opens + timedelta(hours=1, minutes=30))
    status = harness.status(NS, NAME)
    assert status["revision"] == 2
    renewed_at = moment(harness, "issuedAt")
    assert opens <= renewed_at < opens + timedelta(hours=1)
    assert harness.live_key_ids(provider_type) == {status["keyId"]}  # the old one went after its grace
    harness.check_invariants()


async def test_a_key_near_expiry_renews_outside_the_windows(harness: Harness, provider_type: str) -> None:
    provider = await harness.create_provider(provider_type)
    saturdays = evening("02:00", "03:00", days=["Sat"])  # Sat 5 January: after this key expires
    await harness.create_token(NS, NAME, provider, duration="24h", renewalWindows=saturdays, reconcile=True)

    assert moment(harness, "renewalTime") == LATEST
    assert moment(harness, "nextRenewalWindow") == START + timedelta(days=4, hours=2)  # later than renewalTime
    assert "renews outside them" in harness.condition(NS, NAME)["message"]

    await harness.run_until(LATEST - timedelta(seconds=1))
    assert harness.status(NS, NAME)["revision"] == 1

    await harness.run_until(LATEST + timedelta(minutes=10))
    assert harness.status(NS, NAME)["revision"] == 2
    assert moment(harness, "issuedAt") == LATEST
    assert harness.condition(NS, NAME)["status"] == "True"
    harness.check_invariants()


async def test_the_provider_windows_narrow_the_token_windows(harness: Harness) -> None:
    policy = {
        "allowedBuckets": harness.emulators.buckets("b2"),
        "minRenewalInterval": "0s",
        "renewalWindows": evening("20:00", "23:00"),
    }
    provider = await harness.create_provider("b2", policy=policy)
    await harness.create_token(NS, NAME, provider, duration="24h", renewalWindows=evening(), reconcile=True)
    opens = START + timedelta(hours=20)  # 19:00-21:00 and 20:00-23:00 meet at 20:00-21:00

    assert moment(harness, "nextRenewalWindow") == opens
    await harness.run_until(START + timedelta(hours=21, minutes=30))
    assert harness.status(NS, NAME)["revision"] == 2
    assert opens <= moment(harness, "issuedAt") < opens + timedelta(minutes=30)


async def test_a_window_missed_while_the_operator_was_down_is_not_used_late(harness: Harness) -> None:
    provider = await harness.create_provider("b2")
    window = evening("16:30", "17:00")
    await harness.create_token(NS, NAME, provider, duration="24h", renewalWindows=window, reconcile=True)
    assert moment(harness, "renewalTime") < START + timedelta(hours=17)

    harness.set_now(START + timedelta(hours=17, minutes=30))  # nothing reconciled through the window
    await harness.reconcile_token(NS, NAME)

    # Tomorrow's window opens after this key expires: it waits until the margin instead.
    assert harness.status(NS, NAME)["revision"] == 1
    assert moment(harness, "renewalTime") == LATEST
    await harness.run_until(LATEST + timedelta(minutes=1))
    assert harness.status(NS, NAME)["revision"] == 2


async def test_the_renew_annotation_is_not_bound_by_windows(harness: Harness) -> None:
    provider = await harness.create_provider("b2")
    await harness.create_token(NS, NAME, provider, duration="24h", renewalWindows=evening(), reconcile=True)
    harness.advance(hours=2)

    await harness.renew(NS, NAME)

    assert harness.status(NS, NAME)["revision"] == 2
    assert moment(harness, "issuedAt") == START + timedelta(hours=2)


async def test_an_unknown_time_zone_is_not_ready_and_calls_no_provider(harness: Harness, provider_type: str) -> None:
    provider = await harness.create_provider(provider_type)
    window = [{"start": "02:00", "end": "05:00", "timeZone": "Europe/Berln"}]
    await harness.create_token(NS, NAME, provider, duration="24h", renewalWindows=window, reconcile=True)

    ready = harness.condition(NS, NAME)
    assert ready["status"] == "False" and ready["reason"] == reasons.INVALID_RENEWAL_WINDOW
    assert "spec.renewalWindows[0].timeZone" in ready["message"] and "Europe/Berln" in ready["message"]
    assert harness.keys_at_provider(provider_type) == []
    assert harness.secret(NS, NAME) is None
