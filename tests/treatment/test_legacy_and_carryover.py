"""Documents stored before today's changes still work, and nothing carries over a clinic day.

Over HTTP on both stores where it is API behaviour: a course protocol snapshot that a newer
esketamine label floor would refuse, a session cleared with a spacing override before runs
recorded the dose they saw, a session deferred one day and dosed the next on the old vitals,
a fresh screening after the course's screening expired, and the audit detail of an alarm
acknowledgement. Stored-before-today documents are written straight into the table."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ketaflow.security.tables import AuditEvent
from ketaflow.treatment import rules as R
from ketaflow.treatment.errors import InvalidProtocolOverride, RuleViolation
from ketaflow.treatment.protocols import ProtocolId, get_protocol
from ketaflow.treatment.tables import Course, DosingSessionRow
from support.clinic import (
    BASELINE,
    READY,
    act,
    add_chairs,
    attempt,
    enrolled_patient,
    ok,
    start_course,
)
from treatment.treatment_builders import (
    IV,
    NURSE,
    PRESCRIBER,
    T0,
    checked_in,
    dose_for,
    inputs_for,
    minutes,
    normal_reading,
)

MONDAY = datetime.fromisoformat("2032-09-06T09:00:00-04:00")
NY = ZoneInfo("America/New_York")  # the test clinic's zone (Settings.clinic_timezone default)
ESK_READY = {**READY, "fasting_asked": True, "concomitant_medications": []}
# A clinic override accepted before the esketamine floors required the 40-minute BP recheck
# window to be at most 10 minutes (label sections 2 and 5; REMS form, reference §1).
OLD_OVERRIDE = {"monitoring.points.bp_40_min.window_min": 15}


@pytest.fixture
def chairs(api):
    return add_chairs(api)


def _checked_in(api, clinic_clock, planned):
    nurse = api("nurse")
    clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
    return act(nurse, ok(nurse.get(f"/api/v1/sessions/{planned['id']}")), "check-in")


def _edit_document(stack, session_id, change):
    with stack.db.transaction() as db:
        row = db.get(DosingSessionRow, session_id)
        document = copy.deepcopy(row.document)
        change(document)
        row.document = document


# ---------------------------------------------------------------------------------------------
# 1. A course protocol stored before today's label floors still loads


def test_the_old_override_is_refused_when_applied_today():
    with pytest.raises(InvalidProtocolOverride):
        get_protocol(
            ProtocolId.intranasal_esketamine_trd,
            {ProtocolId.intranasal_esketamine_trd.value: OLD_OVERRIDE},
        )


def test_a_course_started_under_an_override_legal_then_still_loads_and_doses(
    api, stack, chairs, clinic_clock
):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(
        api, clinic_clock, "esketamine", "intranasal", consents=("treatment", "rems_enrollment")
    )
    course = start_course(api, pid, MONDAY.date(), "esketamine", "intranasal")
    with stack.db.transaction() as db:  # the snapshot as booked under the old override
        row = db.get(Course, course["id"])
        protocol = copy.deepcopy(row.protocol)
        (point,) = [p for p in protocol["monitoring"]["points"] if p["id"] == "bp_40_min"]
        point["window_min"] = 15
        row.protocol = protocol
    nurse = api("nurse")
    planned = course["sessions"][0]
    clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
    session = ok(nurse.get(f"/api/v1/sessions/{planned['id']}"))
    worklist = ok(nurse.get("/api/v1/worklists/today"))
    assert planned["id"] in [s["session_id"] for s in worklist["sessions"]]
    ok(nurse.get(f"/api/v1/courses/{course['id']}"))
    session = act(nurse, session, "check-in")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", ESK_READY)
    assert session["session"]["state"] == "cleared", session["deferred_reasons"]
    clinic_clock.advance(minutes=2)
    session = act(nurse, session, "dose/start", {"dose_mg": 56, "lot_number": "L1"})
    assert session["session"]["state"] == "dosing"
    with stack.db.transaction() as db:  # the course keeps the protocol it was booked with
        points = db.get(Course, course["id"]).protocol["monitoring"]["points"]
    assert [p["window_min"] for p in points if p["id"] == "bp_40_min"] == [15]


# ---------------------------------------------------------------------------------------------
# 2. A session cleared before today with a prescriber's spacing override


def _legacy(document):
    """As stored before runs recorded the dose they saw and overrides named their run."""
    for run in document["check_runs"]:
        run.pop("last_dose_at", None)
    for override in document["overrides"]:
        override.pop("check_run", None)
        override.pop("overridden_result", None)


def test_a_session_cleared_before_today_with_a_spacing_override_can_be_dosed(
    api, stack, chairs, clinic_clock
):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    nurse, prescriber = api("nurse"), api("prescriber")
    first = _checked_in(api, clinic_clock, course["sessions"][0])
    first = act(nurse, first, "readings", BASELINE, status=201)
    first = act(nurse, first, "pre-dose-checks", READY)
    clinic_clock.advance(minutes=2)
    act(nurse, first, "dose/start", {"concentration_mg_per_ml": 50})
    # the next session, booked for the next day (as a reschedule could once do)
    second = course["sessions"][1]
    tuesday = datetime.fromisoformat(course["sessions"][0]["scheduled_start"]) + timedelta(days=1)
    with stack.db.transaction() as db:
        row = db.get(DosingSessionRow, second["id"])
        document = copy.deepcopy(row.document)
        document["scheduled_start"] = tuesday.isoformat()
        row.document = document
        row.scheduled_start = tuesday
        row.expected_end = tuesday + (row.expected_end - row.scheduled_start)
    clinic_clock.set(tuesday)
    session = act(nurse, ok(nurse.get(f"/api/v1/sessions/{second['id']}")), "check-in")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    assert [r["rule_id"] for r in session["deferred_reasons"]] == ["dose_spacing"]
    session = act(
        prescriber, session, "overrides", {"rule_id": "dose_spacing", "reason": "travel, agreed"}
    )
    assert session["session"]["state"] == "cleared"
    _edit_document(stack, second["id"], _legacy)
    session = ok(nurse.get(f"/api/v1/sessions/{second['id']}"))
    assert session["document"]["check_runs"][-1]["last_dose_at"] is None
    clinic_clock.advance(minutes=2)
    started = act(nurse, session, "dose/start", {"concentration_mg_per_ml": 50})
    assert started["session"]["state"] == "dosing"


def _legacy_cleared_with_spacing_override(last_dose_at):
    session = checked_in(IV)
    session = R.record_reading(
        session, IV, normal_reading(T0 + minutes(2)), actor=NURSE, now=T0 + minutes(2)
    ).session
    session = R.run_pre_dose_checks(
        session, IV, inputs_for(IV, last_dose_at=last_dose_at), actor=NURSE, now=T0 + minutes(5)
    ).session
    assert session.state is R.SessionState.deferred
    session = R.override_check(
        session, rule_id="dose_spacing", reason="agreed", actor=PRESCRIBER, now=T0 + minutes(6)
    ).session
    assert session.state is R.SessionState.cleared
    document = session.model_dump(mode="json")
    _legacy(document)
    return R.DosingSession.model_validate(document)


def test_a_legacy_spacing_override_covers_the_doses_before_its_run_only():
    yesterday = T0 - timedelta(days=1)
    session = _legacy_cleared_with_spacing_override(yesterday)
    started = R.start_dose(
        session, IV, dose_for(IV), actor=NURSE, now=T0 + minutes(8), last_dose_at=yesterday
    )
    assert started.session.state is R.SessionState.dosing
    # a dose given after the run was not seen by it: the override does not cover it
    since = T0 + minutes(7)
    with pytest.raises(RuleViolation) as refused:
        R.start_dose(
            session, IV, dose_for(IV), actor=NURSE, now=T0 + minutes(8), last_dose_at=since
        )
    assert refused.value.code == "dose_spacing"


# ---------------------------------------------------------------------------------------------
# 3. Nothing carries over a clinic day: readings and the clearing run are the dose's day's


def _iv_checked_in(api, clinic_clock):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    return _checked_in(api, clinic_clock, course["sessions"][0])


def test_a_session_deferred_one_day_needs_the_next_days_readings(api, chairs, clinic_clock):
    nurse = api("nurse")
    session = _iv_checked_in(api, clinic_clock)
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(
        nurse, session, "pre-dose-checks", {"escort_confirmed": False, "no_driving_confirmed": True}
    )
    assert session["session"]["state"] == "deferred"
    clinic_clock.advance(hours=26)  # the next clinic day, no new reading
    session = act(nurse, session, "pre-dose-checks", READY)
    assert session["session"]["state"] == "deferred"
    reasons = {r["rule_id"]: r["message"] for r in session["deferred_reasons"]}
    assert "pre_dose_vitals_recorded" in reasons
    assert "earlier day" in reasons["pre_dose_vitals_recorded"]
    assert attempt(nurse, session, "dose/start", {"concentration_mg_per_ml": 50}).status_code == 409
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    assert session["session"]["state"] == "cleared", session["deferred_reasons"]
    clinic_clock.advance(minutes=2)
    session = act(nurse, session, "dose/start", {"concentration_mg_per_ml": 50})
    assert session["session"]["state"] == "dosing"


def test_a_pre_dose_reading_from_an_earlier_clinic_day_is_shown_due_again(
    api, chairs, clinic_clock
):
    """What the session shows due agrees with the checks: yesterday's baseline is due today,
    yesterday and today being the clinic's calendar days."""
    nurse = api("nurse")
    session = _iv_checked_in(api, clinic_clock)
    # 21:00 Monday in New York (the test clinic's zone) is 01:00 Tuesday in UTC
    clinic_clock.set(MONDAY.replace(hour=21))
    session = act(nurse, session, "readings", BASELINE, status=201)
    assert "baseline" not in {d["point_id"] for d in session["due_readings"]}
    session = act(
        nurse, session, "pre-dose-checks", {"escort_confirmed": False, "no_driving_confirmed": True}
    )
    assert session["session"]["state"] == "deferred"
    tuesday = MONDAY + timedelta(days=1)  # 09:00 New York, the same UTC day as that reading
    clinic_clock.set(tuesday)
    shown = ok(nurse.get(f"/api/v1/sessions/{session['session']['id']}"))
    due = {d["point_id"]: d for d in shown["due_readings"]}
    assert "baseline" in due, shown["due_readings"]
    assert due["baseline"]["status"] == "due" and due["baseline"]["reading_ids"] == []
    assert datetime.fromisoformat(due["baseline"]["window_start"]) == datetime.combine(
        tuesday.date(), datetime.min.time(), tzinfo=NY
    )
    # the checks say the same
    checked = act(nurse, shown, "pre-dose-checks", READY)
    assert "pre_dose_vitals_recorded" in {r["rule_id"] for r in checked["deferred_reasons"]}
    session = act(nurse, checked, "readings", BASELINE, status=201)
    assert "baseline" not in {d["point_id"] for d in session["due_readings"]}


def test_a_session_cleared_one_day_cannot_be_dosed_the_next(api, chairs, clinic_clock):
    nurse = api("nurse")
    session = _iv_checked_in(api, clinic_clock)
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    assert session["session"]["state"] == "cleared"
    cleared_on = clinic_clock().astimezone(NY).date()
    clinic_clock.advance(hours=24)
    session = act(nurse, ok(nurse.get(f"/api/v1/sessions/{session['session']['id']}")), "readings",
                  BASELINE, status=201)  # fmt: skip
    refused = attempt(nurse, session, "dose/start", {"concentration_mg_per_ml": 50})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "cleared_on_another_day"
    (reason,) = body["reasons"]
    assert reason["rule_id"] == "pre_dose_checks_today"
    assert cleared_on.isoformat() in reason["message"] and "stop this session" in reason["message"]
    again = ok(nurse.get(f"/api/v1/sessions/{session['session']['id']}"))
    assert again["session"]["state"] == "cleared" and again["document"]["dose"] is None


# ---------------------------------------------------------------------------------------------
# 4. A fresh screening after the course's screening expired


def test_a_fresh_screening_after_the_courses_expired_covers_the_dose(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    prescriber, nurse = api("prescriber"), api("nurse")
    later = MONDAY + timedelta(days=200)  # past the course screening's validity
    clinic_clock.set(later)
    planned = ok(nurse.get(f"/api/v1/sessions/{course['sessions'][1]['id']}"))
    target = later.replace(hour=10)
    moved = attempt(
        api("front_desk"), planned, "reschedule", {"scheduled_start": target.isoformat()}
    )
    assert moved.status_code == 200, moved.text
    clinic_clock.set(target)
    session = act(nurse, ok(nurse.get(f"/api/v1/sessions/{planned['session']['id']}")), "check-in")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    (expired,) = [r for r in session["deferred_reasons"] if r["rule_id"] == "screening_valid"]
    assert "expired" in expired["message"]
    rescreen = prescriber.post(
        f"/api/v1/patients/{pid}/screenings",
        json={
            "drug": "ketamine",
            "route": "iv",
            "vitals": {"systolic_mmhg": 122, "diastolic_mmhg": 76, "heart_rate_bpm": 70},
        },
    )
    assert ok(rescreen, 201)["decision"] in ("eligible", "eligible_with_cautions")
    clinic_clock.advance(minutes=1)
    session = act(nurse, session, "pre-dose-checks", READY)
    (valid,) = [
        r for r in session["document"]["check_runs"][-1]["results"]
        if r["rule_id"] == "screening_valid"
    ]  # fmt: skip
    assert valid["passed"], valid
    assert "screening_valid" not in [r["rule_id"] for r in session["deferred_reasons"]]


# ---------------------------------------------------------------------------------------------
# 5. The audit log names the reading of an acknowledged alarm, never the threshold crossed


def test_acknowledging_an_alarm_audits_the_reading_not_the_threshold(
    api, stack, chairs, clinic_clock
):
    nurse = api("nurse")
    session = _iv_checked_in(api, clinic_clock)
    session = act(nurse, session, "readings", {**BASELINE, "spo2_percent": 85}, status=201)
    alarms = session["document"]["alarms"]
    assert alarms and all(":" in a["id"] for a in alarms)
    reading_id = session["document"]["readings"][-1]["id"]
    for alarm in alarms:
        session = act(nurse, session, f"alarms/{alarm['id']}/acknowledge", {})
    with stack.db.transaction() as db:
        events = db.scalars(
            select(AuditEvent).where(AuditEvent.resource_id == session["session"]["id"])
        ).all()
        acks = [e.detail for e in events if e.action == "session.acknowledge_alarm"]
        details = [e.detail for e in events]
    assert acks == [{"state": "checked_in", "reading": reading_id}] * len(alarms)
    thresholds = {a["id"].split(":", 1)[1] for a in alarms}
    for detail in details:
        assert not any(t in str(detail) for t in thresholds), detail
