"""Dosing-safety defects, over HTTP on both stores: an override that outlived its values, one
patient dosed twice in a day, back-dated baselines, pre-dose readings discharge needs, early
check-in, 84 mg after a partial 56 mg start, home doses in the spacing, sessions booked in
the past."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from support.clinic import (
    BASELINE,
    CALM,
    READY,
    act,
    add_chairs,
    attempt,
    enrolled_patient,
    ok,
    start_course,
)

MONDAY = datetime.fromisoformat("2032-02-02T09:00:00-05:00")
NY = ZoneInfo("America/New_York")  # the test clinic's zone (Settings.clinic_timezone default)
ESK_READY = {**READY, "fasting_asked": True, "concomitant_medications": []}
# At least 2 calendar days between IV doses: 3 a week over 12 days, Murrough 2013 (reference
# §2, H); the protocol's min_days_between_doses.
IV_MIN_DAYS = 2


@pytest.fixture
def chairs(api):
    return add_chairs(api)


def _checked_in(api, clinic_clock, planned):
    nurse = api("nurse")
    clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
    return act(nurse, ok(nurse.get(f"/api/v1/sessions/{planned['id']}")), "check-in")


@pytest.fixture
def first_iv(api, chairs, clinic_clock):
    """A patient's first IV session of a course started on MONDAY, checked in on time."""
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    return pid, course, _checked_in(api, clinic_clock, course["sessions"][0])


@pytest.fixture
def first_esketamine(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(
        api, clinic_clock, "esketamine", "intranasal", consents=("treatment", "rems_enrollment")
    )
    course = start_course(api, pid, MONDAY.date(), "esketamine", "intranasal")
    return pid, course, _checked_in(api, clinic_clock, course["sessions"][0])


def _iv_dose_started(api, session, clinic_clock):
    nurse = api("nurse")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    clinic_clock.advance(minutes=2)
    return act(nurse, session, "dose/start", {"concentration_mg_per_ml": 50})


def _local_days(sessions) -> list[date]:
    """The clinic dates of the patient's sessions that are or were to be a dose."""
    return sorted(
        datetime.fromisoformat(s["scheduled_start"]).astimezone(NY).date()
        for s in sessions
        if s["state"] not in ("cancelled", "missed")
    )


def _assert_spaced(sessions, min_days):
    days = _local_days(sessions)
    gaps = [(b - a).days for a, b in pairwise(days)]
    assert all(gap >= min_days for gap in gaps), list(zip(days, [None, *gaps], strict=True))


# ---------------------------------------------------------------------------------------------
# 1. An override covers its own check run, not a re-run on worse values


def test_an_override_does_not_carry_over_to_a_re_run_on_a_worse_reading(
    api, first_iv, clinic_clock
):
    _, _, session = first_iv
    nurse, prescriber = api("nurse"), api("prescriber")
    high = {**BASELINE, "systolic_mmhg": 184, "diastolic_mmhg": 96}
    session = act(nurse, session, "readings", high, status=201)
    session = act(
        nurse, session, "pre-dose-checks", {"escort_confirmed": False, "no_driving_confirmed": True}
    )
    assert {r["rule_id"] for r in session["deferred_reasons"]} == {
        "pre_dose_bp",
        "escort_confirmed",
    }
    session = act(
        prescriber,
        session,
        "overrides",
        {"rule_id": "pre_dose_bp", "reason": "184/96 white coat, usual for her"},
    )
    clinic_clock.advance(minutes=10)
    worse = {**BASELINE, "systolic_mmhg": 228, "diastolic_mmhg": 128}
    session = act(nurse, session, "readings", worse, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    assert session["session"]["state"] == "deferred"
    assert [r["rule_id"] for r in session["deferred_reasons"]] == ["pre_dose_bp"]
    assert "228/128" in session["deferred_reasons"][0]["message"]
    refused = attempt(nurse, session, "dose/start", {"concentration_mg_per_ml": 50})
    assert refused.status_code == 409
    assert refused.json()["state"] == "deferred"
    # The history keeps the override, tied to the run and the value it was given for.
    (kept,) = session["document"]["overrides"]
    assert kept["check_run"] == 1 and "184/96" in kept["overridden_result"]


# ---------------------------------------------------------------------------------------------
# 2. One patient, one dose inside the protocol's spacing: booking, rescheduling, dose start


def test_a_booster_keeps_the_spacing_from_the_patients_planned_sessions(
    api, first_iv, clinic_clock
):
    _, course, session = first_iv
    _iv_dose_started(api, session, clinic_clock)
    boosted = ok(api("prescriber").post(f"/api/v1/courses/{course['id']}/boosters", json={}), 201)
    assert boosted["sessions"][-1]["kind"] == "booster"
    _assert_spaced(boosted["sessions"], IV_MIN_DAYS)


def test_maintenance_keeps_the_spacing_from_the_patients_planned_sessions(
    api, first_iv, clinic_clock
):
    _, course, session = first_iv
    _iv_dose_started(api, session, clinic_clock)
    maintained = ok(
        api("prescriber").post(
            f"/api/v1/courses/{course['id']}/maintenance", json={"count": 2, "interval_days": 7}
        )
    )
    assert [s["kind"] for s in maintained["sessions"]].count("maintenance") == 2
    _assert_spaced(maintained["sessions"], IV_MIN_DAYS)


def test_rescheduling_onto_the_day_of_another_of_the_patients_sessions_is_a_409(
    api, chairs, clinic_clock
):
    clinic_clock.set(MONDAY - timedelta(days=3))
    course = start_course(api, enrolled_patient(api, clinic_clock), MONDAY.date())
    first, second = course["sessions"][0], course["sessions"][1]
    (free_chair,) = add_chairs(api, 1)  # a chair nobody uses: only the spacing can refuse
    target = datetime.fromisoformat(first["scheduled_start"]) + timedelta(hours=3)
    refused = api("front_desk").post(
        f"/api/v1/sessions/{second['id']}/reschedule",
        json={
            "version": second["version"],
            "scheduled_start": target.isoformat(),
            "chair_id": free_chair,
        },
    )
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "dose_spacing"
    assert body["reasons"][0]["rule_id"] == "schedule.dose_spacing"
    assert MONDAY.date().isoformat() in body["reasons"][0]["message"]
    # Two days after the first session keeps the spacing: allowed.
    later = datetime.fromisoformat(first["scheduled_start"]) + timedelta(days=IV_MIN_DAYS, hours=3)
    moved = api("front_desk").post(
        f"/api/v1/sessions/{second['id']}/reschedule",
        json={
            "version": second["version"],
            "scheduled_start": later.isoformat(),
            "chair_id": free_chair,
        },
    )
    assert moved.status_code == 200, moved.text


def _oral_session_today(api, clinic_clock, home_dose_mg="100"):
    """An oral course with an at-home prescription and one maintenance session, checked in."""
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock, "ketamine", "oral")
    course = start_course(api, pid, MONDAY.date(), "ketamine", "oral", home_dose_mg=home_dose_mg)
    planned = ok(
        api("prescriber").post(
            f"/api/v1/courses/{course['id']}/maintenance", json={"count": 1, "interval_days": 1}
        )
    )["sessions"][0]
    return course, _checked_in(api, clinic_clock, planned)


def test_dose_start_re_checks_the_spacing_against_a_dose_given_since_the_checks(
    api, chairs, clinic_clock
):
    course, session = _oral_session_today(api, clinic_clock)
    nurse = api("nurse")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    assert session["session"]["state"] == "cleared"
    # Then the patient says they took their home dose this morning.
    taken = clinic_clock() - timedelta(hours=1)
    ok(
        nurse.post(
            f"/api/v1/courses/{course['id']}/home-doses",
            json={"taken_at": taken.isoformat(), "dose_mg": "100"},
        ),
        201,
    )
    refused = attempt(nurse, session, "dose/start", {"dose_mg": "100"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "dose_spacing"
    assert refused.json()["reasons"][0]["rule_id"] == "dose_spacing"
    again = ok(nurse.get(f"/api/v1/sessions/{session['session']['id']}"))
    assert again["session"]["state"] == "cleared" and again["document"]["dose"] is None


# ---------------------------------------------------------------------------------------------
# 3. No back-dated baseline after the dose started; the pre-dose checks need the plan's
#    pre-dose readings


def test_a_reading_dated_before_the_dose_start_is_refused_once_dosing_started(
    api, first_esketamine, clinic_clock
):
    _, _, session = first_esketamine
    nurse = api("nurse")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", ESK_READY)
    clinic_clock.advance(minutes=2)
    session = act(nurse, session, "dose/start", {"dose_mg": 56, "lot_number": "L1"})
    started = clinic_clock()
    clinic_clock.advance(minutes=5)
    session = act(nurse, session, "devices", {})
    session = act(nurse, session, "dose/end")
    clinic_clock.set(started + timedelta(minutes=40))
    session = act(nurse, session, "readings", BASELINE, status=201)
    clinic_clock.set(started + timedelta(minutes=121))
    # 165/98 before discharge: above the label's 140/90 and not near the 124/78 baseline.
    high = {**BASELINE, "systolic_mmhg": 165, "diastolic_mmhg": 98}
    session = act(nurse, session, "readings", high, status=201)
    body = {
        "escort_present": True,
        "clinician_judges_stable": True,
        "ready_without_minimum_min": 90,
    }
    assert attempt(nurse, session, "discharge", body).status_code == 409
    backdated = {
        **BASELINE,
        "systolic_mmhg": 150,
        "diastolic_mmhg": 92,
        "taken_at": (started - timedelta(seconds=10)).isoformat(),
    }
    refused = attempt(nurse, session, "readings", backdated)
    assert refused.status_code == 409, refused.text
    reason = refused.json()["reasons"][0]
    assert reason["rule_id"] == "reading_before_dose_start"
    assert "taken_at" in reason["message"]
    still = attempt(nurse, session, "discharge", body)
    assert still.status_code == 409
    assert "vitals_out_of_range_systolic_mmhg" in [r["rule_id"] for r in still.json()["reasons"]]


def test_pre_dose_checks_need_the_protocols_pre_dose_readings_not_only_bp_and_hr(
    api, first_esketamine, clinic_clock
):
    _, _, session = first_esketamine
    nurse = api("nurse")
    session = act(nurse, session, "readings", CALM, status=201)  # no MOAA/S, no CADSS-6
    session = act(nurse, session, "pre-dose-checks", ESK_READY)
    assert session["session"]["state"] == "deferred"
    (missing,) = session["deferred_reasons"]
    assert missing["rule_id"] == "required_reading_before_dosing"
    assert "moaa_s" in missing["message"] and "cadss6" in missing["message"]
    # Not overridable: discharge needs this reading and it cannot be added after the dose.
    refused = attempt(
        api("prescriber"),
        session,
        "overrides",
        {"rule_id": "required_reading_before_dosing", "reason": "looked fine"},
    )
    assert refused.status_code == 409 and refused.json()["code"] == "not_overridable"
    clinic_clock.advance(minutes=1)
    session = act(nurse, session, "readings", {"moaa_s": 5, "cadss6": 0}, status=201)
    session = act(nurse, session, "pre-dose-checks", ESK_READY)
    assert session["session"]["state"] == "cleared"


# ---------------------------------------------------------------------------------------------
# 12. Check-in on the scheduled clinic date only


def test_a_session_cannot_be_checked_in_days_early(api, first_iv):
    _, course, _ = first_iv
    desk = api("front_desk")
    next_week = ok(desk.get(f"/api/v1/sessions/{course['sessions'][3]['id']}"))
    refused = attempt(desk, next_week, "check-in")
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "not_scheduled_today"
    assert "reschedule" in refused.json()["reasons"][0]["message"]


def test_check_in_goes_by_the_clinics_date_not_utcs(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY)
    course = start_course(api, enrolled_patient(api, clinic_clock), MONDAY.date())
    wednesday = course["sessions"][1]
    start = datetime.fromisoformat(wednesday["scheduled_start"])
    assert start.astimezone(NY).date() == date(2032, 2, 4)
    desk = api("front_desk")
    # 21:00 on Tuesday in New York is already Wednesday in UTC.
    clinic_clock.set(datetime.fromisoformat("2032-02-03T21:00:00-05:00"))
    session = ok(desk.get(f"/api/v1/sessions/{wednesday['id']}"))
    assert attempt(desk, session, "check-in").status_code == 409
    clinic_clock.set(start - timedelta(minutes=30))  # early on the day itself: fine
    assert act(desk, session, "check-in")["session"]["state"] == "checked_in"


# ---------------------------------------------------------------------------------------------
# 5. 84 mg only after a 56 mg start that was given, counted by the devices given


def test_84_mg_is_refused_after_a_56_mg_session_stopped_after_one_device(
    api, first_esketamine, clinic_clock
):
    _, course, session = first_esketamine
    nurse, prescriber = api("nurse"), api("prescriber")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", ESK_READY)
    session = act(nurse, session, "dose/start", {"dose_mg": 56, "lot_number": "L1"})
    clinic_clock.advance(minutes=3)
    session = act(
        prescriber, session, "stop", {"reason": "adverse_event", "note": "vomited after device 1"}
    )
    assert len(session["document"]["devices"]) == 1  # 28 mg given (reference §1: 28 mg/device)
    second = _checked_in(api, clinic_clock, course["sessions"][1])
    second = act(nurse, second, "readings", BASELINE, status=201)
    second = act(nurse, second, "pre-dose-checks", ESK_READY)
    refused = attempt(nurse, second, "dose/start", {"dose_mg": 84, "lot_number": "L2"})
    assert refused.status_code == 409, refused.text
    assert [r["rule_id"] for r in refused.json()["reasons"]] == ["esketamine_start_required"]
    started = act(nurse, second, "dose/start", {"dose_mg": 56, "lot_number": "L2"})
    assert started["session"]["state"] == "dosing"


# ---------------------------------------------------------------------------------------------
# 9. A home dose counts in the pre-dose spacing check


def test_a_home_dose_this_morning_fails_the_pre_dose_spacing_check(api, chairs, clinic_clock):
    course, session = _oral_session_today(api, clinic_clock)
    nurse = api("nurse")
    taken = clinic_clock() - timedelta(hours=1)
    ok(
        nurse.post(
            f"/api/v1/courses/{course['id']}/home-doses",
            json={"taken_at": taken.isoformat(), "dose_mg": "100"},
        ),
        201,
    )
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    assert session["session"]["state"] == "deferred"
    (spacing,) = session["deferred_reasons"]
    assert spacing["rule_id"] == "dose_spacing" and "at home" in spacing["message"]


# ---------------------------------------------------------------------------------------------
# 4. Nothing is booked in the past


def test_a_course_started_in_the_afternoon_books_nothing_that_has_passed(api, chairs, clinic_clock):
    now = clinic_clock.set(datetime.fromisoformat("2032-02-02T15:00:00-05:00"))
    course = start_course(api, enrolled_patient(api, clinic_clock), now.date())
    assert all(datetime.fromisoformat(s["scheduled_start"]) >= now for s in course["sessions"])


def test_maintenance_booked_in_the_afternoon_books_nothing_that_has_passed(
    api, chairs, clinic_clock
):
    course, session = _oral_session_today(api, clinic_clock, home_dose_mg=None)
    nurse = api("nurse")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    act(nurse, session, "dose/start", {"dose_mg": "50"})
    # Two days later at 15:00, a daily maintenance session: today, but not this morning.
    now = clinic_clock.set(datetime.fromisoformat("2032-02-05T15:00:00-05:00"))
    maintained = ok(
        api("prescriber").post(
            f"/api/v1/courses/{course['id']}/maintenance", json={"count": 1, "interval_days": 1}
        )
    )
    new = maintained["sessions"][-1]
    assert new["state"] == "scheduled"
    assert datetime.fromisoformat(new["scheduled_start"]) >= now
