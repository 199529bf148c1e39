"""Renewal windows (policy/windows.py): local wall-clock windows across DST, the margin, the schedule.

2030's DST changes: Europe/Berlin springs forward on Sun 31 March (02:00 -> 03:00) and falls back
on Sun 27 October (03:00 -> 02:00); America/New_York on Sun 10 March (02:00 -> 03:00) and
Sun 3 November (02:00 -> 01:00).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from storage_token.api.provider import Ceiling, ProviderSpec
from storage_token.api.token import WEEKDAYS, ProviderRef, RenewalWindow, SecretSpec, TokenSpec, TokenStatus
from storage_token.policy import reasons
from storage_token.policy.checks import decide
from storage_token.policy.inputs import PolicyInput, ProviderState, SecretState
from storage_token.policy.schedule import renewal_plan, renewal_time
from storage_token.policy.windows import Placement, describe, place, safety_margin, window_problem

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
WEEKDAYS_ONLY = ("Mon", "Tue", "Wed", "Thu", "Fri")
DAY = timedelta(days=1)
CRDS = Path(__file__).resolve().parents[2] / "crds"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc,arg-type]


def local(zone: str, *parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)  # type: ignore[misc,arg-type]


def window(start: str, end: str, zone: str = "UTC", days: tuple[str, ...] = ()) -> RenewalWindow:
    return RenewalWindow.parse({"start": start, "end": end, "timeZone": zone, "days": list(days)}, "w")


def at(planned: datetime, *sets: tuple[RenewalWindow, ...], unit: float = 0.0, **kw: Any) -> Placement:
    """A 30-day key expiring far away, so the margin stays out of the way unless a test brings it in."""
    expires = kw.pop("expires", planned + timedelta(days=20))
    return place(planned, expires, kw.pop("lifetime", timedelta(days=30)), sets, unit, **kw)


# --- plain windows ---------------------------------------------------------------------------------------


def test_without_windows_the_planned_time_stands() -> None:
    planned = utc(2030, 1, 8, 12, 0)
    assert at(planned) == Placement(planned)
    assert at(planned, ()) == Placement(planned)


def test_a_renewal_planned_outside_waits_for_the_next_opening() -> None:
    # Tue 8 Jan 2030, 12:00 UTC (13:00 in Berlin): the next weekday window opens Wed 02:00 CET = 01:00 UTC.
    placement = at(utc(2030, 1, 8, 12, 0), (window("02:00", "05:00", BERLIN, WEEKDAYS_ONLY),))
    assert placement == Placement(utc(2030, 1, 9, 1, 0), utc(2030, 1, 9, 1, 0), held=True)


def test_a_renewal_planned_inside_a_window_keeps_its_time() -> None:
    planned = local(BERLIN, 2030, 1, 9, 3, 17)
    placement = at(planned, (window("02:00", "05:00", BERLIN, WEEKDAYS_ONLY),))
    assert placement == Placement(planned, local(BERLIN, 2030, 1, 9, 2, 0))


def test_days_are_the_days_a_window_opens_on() -> None:
    # Fri 11 Jan 2030 after the window: Saturday and Sunday have none, so Monday 02:00.
    placement = at(local(BERLIN, 2030, 1, 11, 6, 0), (window("02:00", "05:00", BERLIN, WEEKDAYS_ONLY),))
    assert placement.at == local(BERLIN, 2030, 1, 14, 2, 0)


def test_held_renewals_spread_over_the_first_half_of_the_window() -> None:
    windows = (window("02:00", "05:00", BERLIN),)
    opens = local(BERLIN, 2030, 1, 9, 2, 0)
    moments = [at(utc(2030, 1, 8, 12, 0), windows, unit=unit).at for unit in (0.0, 0.5, 0.999)]
    assert moments[0] == opens
    assert moments[1] == opens + timedelta(minutes=45)
    assert opens < moments[2] < opens + timedelta(minutes=90)


def test_the_spread_is_capped_at_two_hours() -> None:
    placement = at(utc(2030, 1, 8, 12, 0), (window("00:00", "00:00", days=("Sat",)),), unit=0.999)
    assert utc(2030, 1, 12) < placement.at < utc(2030, 1, 12, 2, 0)


# --- crossing midnight, whole days ------------------------------------------------------------------------


def test_a_window_crossing_midnight_is_open_after_midnight() -> None:
    fridays = (window("22:00", "02:00", days=("Fri",)),)
    saturday_1am = utc(2030, 1, 12, 1, 0)  # opened Friday 22:00
    assert at(saturday_1am, fridays) == Placement(saturday_1am, utc(2030, 1, 11, 22, 0))


def test_a_window_crossing_midnight_closes_the_next_morning() -> None:
    fridays = (window("22:00", "02:00", days=("Fri",)),)
    assert at(utc(2030, 1, 12, 2, 0), fridays).at == utc(2030, 1, 18, 22, 0)  # closed at 02:00: next Friday
    assert at(utc(2030, 1, 11, 21, 0), fridays).at == utc(2030, 1, 11, 22, 0)


def test_equal_start_and_end_is_a_whole_day() -> None:
    saturdays = (window("00:00", "00:00", days=("Sat",)),)
    assert at(utc(2030, 1, 12, 23, 59), saturdays).held is False
    assert at(utc(2030, 1, 13, 0, 0), saturdays).at == utc(2030, 1, 19)


# --- DST --------------------------------------------------------------------------------------------------


def test_spring_forward_in_berlin_a_window_at_0230_opens_when_the_clocks_jump() -> None:
    # 02:30 does not exist on 31 March 2030 in Berlin: the clocks go from 02:00 CET to 03:00 CEST (01:00 UTC).
    placement = at(utc(2030, 3, 30, 12, 0), (window("02:30", "05:00", BERLIN),))
    assert placement.at == utc(2030, 3, 31, 1, 0) == local(BERLIN, 2030, 3, 31, 3, 0)
    # and the window still closes at 05:00 CEST: 03:00 UTC
    assert at(utc(2030, 3, 31, 2, 59), (window("02:30", "05:00", BERLIN),)).held is False
    assert at(utc(2030, 3, 31, 3, 0), (window("02:30", "05:00", BERLIN),)).at == local(BERLIN, 2030, 4, 1, 2, 30)


def test_spring_forward_in_new_york_a_window_at_0230_opens_when_the_clocks_jump() -> None:
    placement = at(utc(2030, 3, 9, 12, 0), (window("02:30", "04:00", NEW_YORK),))
    assert placement.at == utc(2030, 3, 10, 7, 0) == local(NEW_YORK, 2030, 3, 10, 3, 0)
    # The day after, 02:30 EDT exists again (06:30 UTC).
    assert at(utc(2030, 3, 10, 12, 0), (window("02:30", "04:00", NEW_YORK),)).at == utc(2030, 3, 11, 6, 30)


def test_a_window_wholly_inside_the_skipped_hour_does_not_open_that_day() -> None:
    placement = at(utc(2030, 3, 30, 12, 0), (window("02:10", "02:50", BERLIN),))
    assert placement.at == local(BERLIN, 2030, 4, 1, 2, 10)


def test_fall_back_in_berlin_a_window_in_the_repeated_hour_opens_on_the_first_pass_and_closes_on_the_last() -> None:
    # 27 October 2030: 02:00-03:00 happens twice, 00:00-01:00 UTC (CEST) and 01:00-02:00 UTC (CET).
    windows = (window("02:00", "03:00", BERLIN),)
    assert at(utc(2030, 10, 26, 12, 0), windows).at == utc(2030, 10, 27, 0, 0)
    second_pass = local(BERLIN, 2030, 10, 27, 2, 30, fold=1)
    assert second_pass == utc(2030, 10, 27, 1, 30)
    assert at(second_pass, windows) == Placement(second_pass, utc(2030, 10, 27, 0, 0))  # still open: two hours
    assert at(utc(2030, 10, 27, 2, 0), windows).at == local(BERLIN, 2030, 10, 28, 2, 0)  # closed at 03:00 CET


def test_fall_back_in_berlin_a_window_starting_in_the_repeated_hour() -> None:
    windows = (window("02:30", "04:00", BERLIN),)
    assert at(utc(2030, 10, 26, 12, 0), windows).at == utc(2030, 10, 27, 0, 30)  # 02:30 CEST, the first pass
    # The wall clock shows 02:00-02:29 again after the first pass: still inside, the window doesn't split.
    assert at(utc(2030, 10, 27, 1, 10), windows).held is False
    assert at(utc(2030, 10, 27, 2, 59), windows).held is False  # 03:59 CET
    assert at(utc(2030, 10, 27, 3, 0), windows).held is True  # 04:00 CET: closed


def test_fall_back_in_new_york_the_repeated_hour() -> None:
    # 3 November 2030: 01:00-02:00 happens twice, 05:00-06:00 UTC (EDT) and 06:00-07:00 UTC (EST).
    windows = (window("01:00", "02:00", NEW_YORK),)
    assert at(utc(2030, 11, 2, 12, 0), windows).at == utc(2030, 11, 3, 5, 0)
    assert at(utc(2030, 11, 3, 6, 45), windows).held is False
    assert at(utc(2030, 11, 3, 7, 0), windows).at == local(NEW_YORK, 2030, 11, 4, 1, 0)


def test_the_window_follows_the_zone_offset_across_the_year() -> None:
    windows = (window("02:00", "05:00", BERLIN),)
    assert at(utc(2030, 1, 8, 12), windows).at == utc(2030, 1, 9, 1, 0)  # CET
    assert at(utc(2030, 7, 8, 12), windows).at == utc(2030, 7, 9, 0, 0)  # CEST


# --- token and provider windows together ------------------------------------------------------------------


def test_both_window_sets_must_allow_the_moment() -> None:
    token = (window("02:00", "05:00", BERLIN, WEEKDAYS_ONLY),)
    provider = (window("04:00", "06:00", BERLIN),)
    placement = at(utc(2030, 1, 8, 12, 0), token, provider)
    assert placement.at == local(BERLIN, 2030, 1, 9, 4, 0)


def test_windows_in_different_zones_intersect_in_real_time() -> None:
    token = (window("02:00", "05:00", BERLIN),)  # 01:00-04:00 UTC in January
    provider = (window("22:00", "23:30", NEW_YORK),)  # 03:00-04:30 UTC in January
    assert at(utc(2030, 1, 8, 12, 0), token, provider).at == utc(2030, 1, 9, 3, 0)


# --- the safety margin ------------------------------------------------------------------------------------


def test_the_margin_is_a_tenth_of_the_lifetime_and_at_least_an_hour() -> None:
    assert safety_margin(timedelta(hours=24)) == timedelta(hours=2, minutes=24)
    assert safety_margin(timedelta(hours=5)) == timedelta(hours=1)
    assert safety_margin(timedelta(days=30)) == timedelta(days=3)


def test_a_renewal_that_would_wait_into_the_margin_goes_ahead_outside_the_windows() -> None:
    # A 24h key issued Tue 00:00 UTC, planned at 16:00; the only window, Saturday, is far too late.
    issued = utc(2030, 1, 8, 0, 0)
    expires = issued + timedelta(hours=24)
    saturdays = (window("02:00", "05:00", days=("Sat",)),)
    placement = place(issued + timedelta(hours=16), expires, timedelta(hours=24), (saturdays,), 0.0)
    assert placement.at == expires - timedelta(hours=2, minutes=24)
    assert placement.outside and placement.held
    assert placement.window_opens == utc(2030, 1, 12, 2, 0)  # reported: when it would have opened


def test_a_window_opening_just_before_the_margin_is_still_waited_for() -> None:
    issued = utc(2030, 1, 8, 0, 0)
    expires = issued + timedelta(hours=24)  # margin 2h24m: latest 21:36
    windows = (window("21:30", "23:00"),)
    placement = place(issued + timedelta(hours=16), expires, timedelta(hours=24), (windows,), 0.999)
    assert placement.at == utc(2030, 1, 8, 21, 36)  # the spread is cut at the margin, inside the window
    assert not placement.outside


def test_a_planned_time_already_inside_the_margin_is_never_put_off() -> None:
    # renewBefore 30m on a 24h key: planned after expiry - margin, outside the window.
    issued = utc(2030, 1, 8, 0, 0)
    planned = issued + timedelta(hours=23, minutes=30)
    placement = place(planned, issued + DAY, DAY, ((window("02:00", "03:00"),),), 0.5)
    assert placement.at == planned and placement.outside and not placement.held


def test_windows_that_never_meet_renew_at_the_margin() -> None:
    token = (window("02:00", "03:00"),)
    provider = (window("04:00", "05:00"),)
    issued = utc(2030, 1, 8, 0, 0)
    placement = place(
        issued + timedelta(days=20), issued + timedelta(days=30), timedelta(days=30), (token, provider), 0
    )
    assert placement == Placement(issued + timedelta(days=27), None, outside=True, held=True)


# --- a missed window (the operator was down) ---------------------------------------------------------------


def test_a_missed_window_waits_for_the_next_one() -> None:
    windows = (window("02:00", "05:00", BERLIN),)
    planned = local(BERLIN, 2030, 1, 9, 2, 13)
    assert at(planned, windows, now=local(BERLIN, 2030, 1, 9, 4, 0)).at == planned  # still open: due
    missed = at(planned, windows, now=local(BERLIN, 2030, 1, 9, 6, 0))
    assert missed.at == local(BERLIN, 2030, 1, 10, 2, 0) and missed.held


def test_a_missed_window_near_expiry_renews_at_once() -> None:
    issued = utc(2030, 1, 8, 0, 0)
    planned = utc(2030, 1, 8, 16, 0)
    placement = place(planned, issued + DAY, DAY, ((window("15:00", "17:00"),),), 0.0, now=utc(2030, 1, 8, 22, 0))
    assert placement.at == utc(2030, 1, 8, 21, 36) and placement.outside  # in the past: due now


# --- properties --------------------------------------------------------------------------------------------

ZONES = st.sampled_from([BERLIN, NEW_YORK, "UTC", "Australia/Lord_Howe", "Asia/Kolkata"])
CLOCK = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@settings(max_examples=200, deadline=None)
@given(
    zone=ZONES,
    start=CLOCK,
    end=CLOCK,
    days=st.lists(st.sampled_from(WEEKDAYS), unique=True, max_size=7),
    offset=st.integers(0, 366 * 24 * 60),
    unit=st.floats(0, 0.999),
)
def test_a_renewal_never_moves_earlier_and_starts_inside_a_window_or_at_the_margin(
    zone: str, start: str, end: str, days: list[str], offset: int, unit: float
) -> None:
    windows = (window(start, end, zone, tuple(days)),)
    planned = utc(2030, 1, 1) + timedelta(minutes=offset)
    expires = planned + timedelta(days=10)
    placement = place(planned, expires, timedelta(days=30), (windows,), unit)
    latest = expires - timedelta(days=3)
    assert planned <= placement.at <= latest
    if not placement.outside:
        assert placement.window_opens is not None and placement.window_opens <= placement.at
        wall = placement.at.astimezone(ZoneInfo(zone))
        opened = placement.window_opens.astimezone(ZoneInfo(zone))
        # The window it starts in opened on one of its days, no more than a day before.
        assert not days or WEEKDAYS[opened.weekday()] in days
        assert wall - opened <= timedelta(hours=25)


# --- invalid windows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe/Berln", "../../etc/passwd", "/etc/localtime"])
def test_an_unknown_time_zone_is_a_problem_naming_the_field(zone: str) -> None:
    problem = window_problem((window("02:00", "05:00"), window("02:00", "05:00", zone)), "spec.renewalWindows")
    assert problem is not None and "spec.renewalWindows[1].timeZone" in problem and "unknown time zone" in problem


def test_known_time_zones_are_fine() -> None:
    assert window_problem((window("02:00", "05:00", BERLIN), window("01:00", "02:00", NEW_YORK)), "w") is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"start": "24:00", "end": "05:00"}, "00:00 to 23:59"),
        ({"start": "2:00", "end": "05:00"}, "HH:MM"),
        ({"start": "02:00", "end": "05:00", "days": ["Monday"]}, "unknown day"),
    ],
)
def test_parsing_refuses_what_the_schema_refuses(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RenewalWindow.parse(raw, "spec.renewalWindows[0]")


def _window_schemas() -> list[dict[str, Any]]:
    schemas = []
    for name in ("storagetokens", "storageproviders", "clusterstorageproviders"):
        crd = yaml.safe_load((CRDS / f"storagetoken.dev_{name}.yaml").read_text())
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        schemas.append(
            spec["renewalWindows"] if name == "storagetokens" else spec["policy"]["properties"]["renewalWindows"]
        )
    return schemas


@pytest.mark.parametrize("schema", _window_schemas(), ids=["token", "provider", "cluster-provider"])
def test_admission_refuses_empty_lists_bad_times_and_unknown_days(schema: dict[str, Any]) -> None:
    assert schema["minItems"] == 1 and schema["description"]
    item = schema["items"]
    assert set(item["required"]) == {"start", "end"}
    assert item["properties"]["days"]["items"]["enum"] == list(WEEKDAYS)
    for field in ("start", "end"):
        pattern = re.compile(item["properties"][field]["pattern"])
        assert all(pattern.search(good) for good in ("00:00", "02:30", "23:59", "12:05"))
        assert not any(pattern.search(bad) for bad in ("24:00", "2:00", "02:60", "02:5", "0230", "02:30:00", ""))
    zone = re.compile(item["properties"]["timeZone"]["pattern"])
    assert all(zone.search(name) for name in ("UTC", BERLIN, "America/Argentina/Buenos_Aires", "Etc/GMT+5"))
    assert not any(zone.search(name) for name in ("/etc/localtime", "../x", "Europe//Berlin", ""))


# --- the schedule and the checks -------------------------------------------------------------------------

ISSUED = utc(2030, 1, 7, 12, 0)  # a Monday
SPEC = TokenSpec(
    provider_ref=ProviderRef("StorageProvider", "b2"),
    permissions=("read",),
    duration=timedelta(hours=24),
    secret=SecretSpec(name="app"),
    buckets=("b",),
)
PROVIDER = ProviderSpec(
    kind="StorageProvider",
    name="b2",
    namespace="team-a",
    type="b2",
    endpoint="http://x",
    credentials_secret="creds",
    ceiling=Ceiling(allowed_buckets=("*",)),
)


def test_the_schedule_without_windows_is_unchanged() -> None:
    plan = renewal_plan(SPEC, ISSUED, ISSUED + DAY, "uid/1", (), now=ISSUED + timedelta(hours=30))
    assert plan.window_opens is None and not plan.held
    assert plan.at == renewal_time(SPEC, ISSUED, ISSUED + DAY, "uid/1")
    assert ISSUED + timedelta(hours=14, minutes=48) < plan.at <= ISSUED + timedelta(hours=16)  # 2/3, minus jitter


def test_the_schedule_applies_the_token_and_provider_windows() -> None:
    # Planned between 02:48 and 04:00 UTC on Tuesday (2/3 of 24h, less jitter); the window opens 06:00 UTC.
    morning = (window("07:00", "09:00", BERLIN),)
    token_only = renewal_plan(replace(SPEC, renewal_windows=morning), ISSUED, ISSUED + DAY, "uid/1")
    opens = local(BERLIN, 2030, 1, 8, 7, 0)
    assert token_only.window_opens == opens and opens <= token_only.at < opens + timedelta(hours=1)
    assert token_only.held and not token_only.outside
    provider_only = renewal_plan(SPEC, ISSUED, ISSUED + DAY, "uid/1", morning)
    assert provider_only == token_only
    assert "held for the renewal window opening at 2030-01-08T06:00:00Z" in describe(token_only)


def policy_input(spec: TokenSpec = SPEC, provider: ProviderSpec = PROVIDER, now: datetime | None = None) -> PolicyInput:
    plan = renewal_plan(spec, ISSUED, ISSUED + DAY, "uid/1", provider.ceiling.renewal_windows)
    status = TokenStatus(
        key_id="K1",
        key_name="sto-k1",
        not_after=ISSUED + DAY,
        issued_at=ISSUED,
        renewal_time=plan.at,
        revision=1,
        spec_hash="H",
    )
    return PolicyInput(
        namespace="team-a",
        name="app",
        uid="uid",
        generation=1,
        spec=spec,
        spec_hash="H",
        status=status,
        secret=SecretState(exists=True, owned=True, key_id_hash="h", intact=True),
        provider=ProviderState(spec=provider, ready=True),
        now=now or ISSUED,
        current_key_id_hash="h",
    )


def test_an_unknown_zone_in_the_token_blocks_before_any_provider_call() -> None:
    spec = replace(SPEC, renewal_windows=(window("02:00", "05:00", "Europe/Berln"),))
    decision = decide(policy_input(spec))
    assert decision.blocked is not None and decision.blocked.reason == reasons.INVALID_RENEWAL_WINDOW
    assert "spec.renewalWindows[0].timeZone" in decision.blocked.message
    assert reasons.INVALID_RENEWAL_WINDOW not in reasons.REVOKE_CURRENT_KEY  # a typo doesn't cost the key


def test_an_unknown_zone_in_the_provider_policy_blocks_and_names_the_provider() -> None:
    provider = replace(PROVIDER, ceiling=replace(PROVIDER.ceiling, renewal_windows=(window("02:00", "05:00", "X/Y"),)))
    decision = decide(policy_input(provider=provider))
    assert decision.blocked is not None and decision.blocked.reason == reasons.INVALID_RENEWAL_WINDOW
    assert (
        "StorageProvider 'b2'" in decision.blocked.message
        and "spec.policy.renewalWindows[0]" in decision.blocked.message
    )


def test_a_due_renewal_whose_window_was_missed_is_not_triggered() -> None:
    spec = replace(SPEC, renewal_windows=(window("02:00", "05:00", BERLIN),))
    value = policy_input(spec)
    due = value.status.renewal_time
    assert due is not None
    assert decide(replace(value, now=due + timedelta(minutes=1))).issue is not None  # inside the window
    missed = replace(value, now=local(BERLIN, 2030, 1, 8, 6, 0))
    # Tomorrow's window opens after the key expires (12:00 UTC): it waits until the margin, 09:36 UTC.
    assert decide(missed).issue is None


def test_the_renew_annotation_is_not_bound_by_windows() -> None:
    spec = replace(SPEC, renewal_windows=(window("02:00", "05:00", BERLIN),))
    value = replace(policy_input(spec), now=utc(2030, 1, 7, 13, 0), renew_request="2030-01-07T13:00:00Z")
    decision = decide(value)
    assert decision.issue is not None and decision.issue.reason == reasons.MANUAL_RENEWAL


def test_token_spec_parses_windows_and_provider_policy_too() -> None:
    raw = [{"days": ["Mon", "Fri"], "start": "02:00", "end": "05:00", "timeZone": BERLIN}]
    spec = TokenSpec.parse({"providerRef": {"name": "b2"}, "permissions": ["read"], "renewalWindows": raw}, "app")
    assert spec.renewal_windows == (RenewalWindow(time(2, 0), time(5, 0), ("Mon", "Fri"), BERLIN),)
    ceiling = Ceiling.parse({"allowedBuckets": ["*"], "renewalWindows": [{"start": "22:00", "end": "01:00"}]})
    assert ceiling.renewal_windows == (RenewalWindow(time(22, 0), time(1, 0), (), "UTC"),)
