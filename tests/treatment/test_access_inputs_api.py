"""Treatment over HTTP: who reads a session's clinical record, role refusals, what the audit
log may hold, implausible dates and times, consent dates, titration floors, reopened events."""

from __future__ import annotations

from datetime import datetime, timedelta

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


@pytest.fixture
def chairs(api):
    return add_chairs(api)


@pytest.fixture
def first_session(api, chairs, clinic_clock):
    """A patient's first IV session, checked in at its scheduled time."""
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    planned = course["sessions"][0]
    clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
    nurse = api("nurse")
    session = act(nurse, ok(nurse.get(f"/api/v1/sessions/{planned['id']}")), "check-in")
    return pid, course, session


def _dosing(api, session, clinic_clock):
    nurse = api("nurse")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    clinic_clock.advance(minutes=2)
    return act(nurse, session, "dose/start", {"concentration_mg_per_ml": 50})


def _audit(api, **filters):
    return ok(api("auditor").get("/api/v1/audit", params={"limit": 200, **filters}))["items"]


def _is_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


# --- A: the clinical record is for clinical staff; scheduling roles see the booking ---------

BOOKING_FIELDS = {
    "id",
    "patient_id",
    "course_id",
    "kind",
    "sequence",
    "state",
    "scheduled_start",
    "expected_end",
    "chair_id",
    "version",
}


def test_front_desk_and_manager_read_the_booking_not_the_chart(api, first_session, clinic_clock):
    pid, course, session = first_session
    session = _dosing(api, session, clinic_clock)
    clinic_clock.advance(minutes=10)
    session = act(
        api("nurse"),
        session,
        "adverse-events",
        {"kind": "vomiting", "severity": "severe", "actions": ["medication_given"]},
        status=201,
    )
    sid = session["session"]["id"]
    for role in ("front_desk", "manager"):
        client = api(role)
        booking = ok(client.get(f"/api/v1/sessions/{sid}"))
        assert set(booking) == {"session"}, booking  # no document, readings, alarms
        assert set(booking["session"]) == BOOKING_FIELDS
        assert booking["session"]["state"] == "dosing"
        assert "vomiting" not in str(booking)
        advice = _is_problem(client.get(f"/api/v1/sessions/{sid}/observation-advice"), 403)
        assert advice["action"] == "session.clinical_read"
        _is_problem(client.get(f"/api/v1/courses/{course['id']}/home-doses"), 403)
    # clinical staff still read the whole record
    full = ok(api("nurse").get(f"/api/v1/sessions/{sid}"))
    assert full["document"]["adverse_events"][0]["severity"] == "severe"
    assert full["document"]["dose"]["dose_mg"]
    assert ok(api("therapist").get(f"/api/v1/courses/{course['id']}/home-doses")) == []
    # every read is audited, the view it showed named; the refusals too
    reads = _audit(api, patient_id=pid, action="session.read")
    views = {(e["actor_role"], e["detail"]["view"]) for e in reads}
    assert {("front_desk", "schedule"), ("manager", "schedule"), ("nurse", "clinical")} <= views
    refused = _audit(api, patient_id=pid, allowed="false", action="session.clinical_read")
    assert {e["actor_role"] for e in refused} >= {"front_desk", "manager"}


def test_front_desk_actions_answer_with_the_booking_only(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY - timedelta(days=3))
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    desk = api("front_desk")
    first, second = course["sessions"][0], course["sessions"][1]
    slot = ok(
        desk.get(
            "/api/v1/schedule/free-slots",
            params={
                "protocol_id": "iv_racemic_infusion",
                "after": second["scheduled_start"],
                "count": 1,
            },
        )
    )[0]
    moved = ok(
        desk.post(
            f"/api/v1/sessions/{second['id']}/reschedule",
            json={
                "version": second["version"],
                "scheduled_start": slot["start"],
                "chair_id": slot["chair_id"],
            },
        )
    )
    assert set(moved) == {"session"} and set(moved["session"]) == BOOKING_FIELDS
    cancelled = act(desk, moved, "cancel", {"reason": "patient asked to cancel"})
    assert set(cancelled) == {"session"} and cancelled["session"]["state"] == "cancelled"
    clinic_clock.set(datetime.fromisoformat(first["scheduled_start"]))
    checked_in = act(desk, ok(desk.get(f"/api/v1/sessions/{first['id']}")), "check-in")
    assert set(checked_in) == {"session"} and checked_in["session"]["state"] == "checked_in"
    nurse_view = ok(api("nurse").get(f"/api/v1/sessions/{first['id']}"))
    assert nurse_view["document"]["checked_in_at"]


# --- B: a role the rules refuse is a 403, audited ------------------------------------------


def test_a_nurse_stopping_a_dosed_session_is_refused_403_and_audited(
    api, first_session, clinic_clock
):
    pid, _, session = first_session
    session = _dosing(api, session, clinic_clock)
    sid = session["session"]["id"]
    refused = attempt(
        api("nurse"), session, "stop", {"reason": "clinical_decision", "note": "nurse stops it"}
    )
    body = _is_problem(refused, 403)
    assert body["code"] == "role_not_allowed"
    assert body["reasons"][0]["rule_id"] == "stop_role"
    denied = [
        e
        for e in _audit(api, patient_id=pid, allowed="false", action="session.stop")
        if e["resource_id"] == sid
    ]
    assert len(denied) == 1 and denied[0]["actor_role"] == "nurse"
    # the session is untouched: a prescriber may still stop it with the version read
    stopped = act(
        api("prescriber"), session, "stop", {"reason": "clinical_decision", "note": "stopping it"}
    )
    assert stopped["session"]["state"] == "stopped"


# --- C: the audit log holds ids and field names, never clinical content --------------------


def test_audit_detail_of_treatment_holds_no_clinical_content(api, first_session, clinic_clock):
    pid, _, session = first_session
    nurse, prescriber = api("nurse"), api("prescriber")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(
        nurse, session, "pre-dose-checks", {"escort_confirmed": False, "no_driving_confirmed": True}
    )
    session = act(
        prescriber,
        session,
        "overrides",
        {"rule_id": "escort_confirmed", "reason": "escort arrives at discharge"},
    )
    clinic_clock.advance(minutes=2)
    session = act(nurse, session, "dose/start", {"concentration_mg_per_ml": 50})
    clinic_clock.advance(minutes=10)
    session = act(
        nurse, session, "readings", {**CALM, "systolic_mmhg": 192, "diastolic_mmhg": 104}, 201
    )
    alarm_ids = {a["id"] for a in session["new_alarms"]}
    assert alarm_ids
    session = act(
        nurse,
        session,
        "adverse-events",
        {"kind": "vomiting", "severity": "severe", "actions": ["medication_given"]},
        status=201,
    )
    event_id = session["document"]["adverse_events"][0]["id"]
    session = act(
        prescriber, session, "stop", {"reason": "adverse_event", "note": "vomiting, stopped"}
    )
    events = _audit(api, patient_id=pid)
    details = [e["detail"] for e in events if e["detail"] and e["action"] != "screening.create"]
    text = repr(details)
    for clinical in (
        "vomiting",
        "severe",
        "systolic",
        "diastolic",
        "escort_confirmed",
        "adverse_event'",
        "iv_racemic_infusion",
        "ketamine",
        "'treatment'",
    ):
        assert clinical not in text, (clinical, details)
    assert not any(a in text for a in alarm_ids)  # an alarm's id names its threshold
    recorded = [e["detail"] for e in events if e["action"] == "session.adverse_event"]
    assert recorded == [{"state": "dosing", "event": event_id}]


def test_home_dose_audit_names_no_flags(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock, "ketamine", "oral")
    course = start_course(api, pid, MONDAY.date(), "ketamine", "oral", home_dose_mg="100")
    clinic_clock.set(MONDAY + timedelta(days=3))
    over = ok(
        api("nurse").post(
            f"/api/v1/courses/{course['id']}/home-doses",
            json={"taken_at": (MONDAY + timedelta(days=2)).isoformat(), "dose_mg": "150"},
        ),
        201,
    )
    assert over["flags"]  # kept with the record for the prescriber
    recorded = _audit(api, patient_id=pid, action="home_dose.record")
    assert recorded and all("above_prescribed_dose" not in repr(e["detail"]) for e in recorded)


# --- D: timezone-naive and implausible times are a 422 naming the field --------------------


def test_naive_times_are_a_422_naming_the_field(api, first_session, clinic_clock):
    _, course, session = first_session
    nurse = api("nurse")
    naive = "2032-02-02T08:00:00"
    fasting = attempt(
        nurse,
        session,
        "pre-dose-checks",
        {**READY, "fasting_asked": True, "last_food_at": naive, "last_liquid_at": naive},
    )
    fields = {e["field"] for e in _is_problem(fasting, 422)["errors"]}
    assert fields == {"last_food_at", "last_liquid_at"}
    nasal = attempt(nurse, session, "pre-dose-checks", {**READY, "nasal_product_at": naive})
    assert _is_problem(nasal, 422)["errors"][0]["field"] == "nasal_product_at"
    onset = attempt(
        nurse, session, "adverse-events", {"kind": "nausea", "severity": "mild", "onset_at": naive}
    )
    assert _is_problem(onset, 422)["errors"][0]["field"] == "onset_at"
    session = act(nurse, session, "adverse-events", {"kind": "nausea", "severity": "mild"}, 201)
    event_id = session["document"]["adverse_events"][0]["id"]
    resolved = nurse.patch(
        f"/api/v1/sessions/{session['session']['id']}/adverse-events/{event_id}",
        json={
            "version": session["session"]["version"],
            "outcome": "resolved",
            "resolved_at": naive,
        },
    )
    assert _is_problem(resolved, 422)["errors"][0]["field"] == "resolved_at"
    reading = attempt(nurse, session, "readings", {**CALM, "taken_at": naive})
    assert _is_problem(reading, 422)["errors"][0]["field"] == "taken_at"
    booster = api("prescriber").post(
        f"/api/v1/courses/{course['id']}/boosters", json={"earliest": naive}
    )
    assert _is_problem(booster, 422)["errors"][0]["field"] == "earliest"


@pytest.mark.parametrize(
    "after", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "9999-12-31T00:00:00-12:00"]
)
def test_free_slots_after_an_implausible_time_is_a_422(api, chairs, after):
    refused = api("front_desk").get(
        "/api/v1/schedule/free-slots", params={"protocol_id": "iv_racemic_infusion", "after": after}
    )
    assert _is_problem(refused, 422)["errors"][0]["field"] == "after"


def test_bookings_far_ahead_are_a_422_naming_the_field(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY - timedelta(days=3))
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    desk, prescriber = api("front_desk"), api("prescriber")
    planned = course["sessions"][1]
    for when in ("9999-12-31T23:00:00Z", "9999-12-31T20:00:00-12:00", "2035-02-06T09:00:00-05:00"):
        moved = desk.post(
            f"/api/v1/sessions/{planned['id']}/reschedule",
            json={"version": planned["version"], "scheduled_start": when},
        )
        assert _is_problem(moved, 422)["errors"][0]["field"] == "scheduled_start", when
    booster = prescriber.post(
        f"/api/v1/courses/{course['id']}/boosters", json={"earliest": "9999-12-31T23:00:00Z"}
    )
    assert _is_problem(booster, 422)["errors"][0]["field"] == "earliest"
    far = api("front_desk").get(
        "/api/v1/schedule/free-slots",
        params={"protocol_id": "iv_racemic_infusion", "after": "2040-01-01T09:00:00Z"},
    )
    assert _is_problem(far, 422)["errors"][0]["field"] == "after"
    other = enrolled_patient(api, clinic_clock)
    for start_on in ("9999-12-31", "2036-01-05"):
        course_far = prescriber.post(
            f"/api/v1/patients/{other}/courses",
            json={"drug": "ketamine", "route": "iv", "start_on": start_on},
        )
        assert _is_problem(course_far, 422)["errors"][0]["field"] == "start_on", start_on
    home = api("nurse").post(
        f"/api/v1/courses/{course['id']}/home-doses",
        json={"taken_at": "9999-12-31T23:59:59-12:00", "dose_mg": "50"},
    )
    assert _is_problem(home, 422)["errors"][0]["field"] == "taken_at"
    consent = prescriber.post(
        f"/api/v1/patients/{pid}/consents", json={"kind": "treatment", "signed_on": "0001-01-01"}
    )
    assert _is_problem(consent, 422)["errors"][0]["field"] == "signed_on"


# --- G: a consent is dated by the clinic's calendar -----------------------------------------


def test_a_consent_dated_tomorrow_is_refused_in_the_clinic_evening(api, chairs, clinic_clock):
    # 20:30 in New York on 2 February is already 3 February in UTC, the server's clock.
    clinic_clock.set(datetime.fromisoformat("2032-02-03T01:30:00+00:00"))
    pid = enrolled_patient(api, clinic_clock, consents=())
    prescriber = api("prescriber")
    tomorrow = prescriber.post(
        f"/api/v1/patients/{pid}/consents", json={"kind": "treatment", "signed_on": "2032-02-03"}
    )
    assert _is_problem(tomorrow, 422)["errors"][0]["field"] == "signed_on"
    today = prescriber.post(
        f"/api/v1/patients/{pid}/consents", json={"kind": "treatment", "signed_on": "2032-02-02"}
    )
    assert today.status_code == 201, today.text


# --- H: titration floor; a reopened adverse event keeps its history -------------------------


def test_titration_below_the_minimum_is_refused(api, first_session, clinic_clock):
    _, _, session = first_session
    session = _dosing(api, session, clinic_clock)
    prescriber = api("prescriber")
    dose = session["document"]["dose"]
    assert dose["dosing_weight_kg"] == "72.0"  # 0.1 mg/kg x 72 kg = 7.2 mg (Sanacora 2017)
    low = attempt(
        prescriber, session, "infusion/titrate", {"new_dose_mg": "0.5", "reason": "x" * 6}
    )
    body = _is_problem(low, 409)
    assert body["code"] == "dose_not_allowed"
    assert body["reasons"][0]["rule_id"] == "dose_below_min"
    high = attempt(
        prescriber, session, "infusion/titrate", {"new_dose_mg": "60", "reason": "x" * 6}
    )
    assert _is_problem(high, 409)["reasons"][0]["rule_id"] == "dose_above_max"
    session = act(
        prescriber, session, "infusion/titrate", {"new_dose_mg": "7.2", "reason": "lower"}
    )
    assert session["document"]["dose"]["dose_mg"] == "7.2"


def test_reopening_an_adverse_event_keeps_when_it_was_resolved(api, first_session, clinic_clock):
    _, _, session = first_session
    nurse = api("nurse")
    session = _dosing(api, session, clinic_clock)
    session = act(nurse, session, "adverse-events", {"kind": "nausea", "severity": "mild"}, 201)
    event_id = session["document"]["adverse_events"][0]["id"]
    url = f"/api/v1/sessions/{session['session']['id']}/adverse-events/{event_id}"
    clinic_clock.advance(minutes=5)
    session = ok(
        nurse.patch(url, json={"version": session["session"]["version"], "outcome": "resolved"})
    )
    resolved_at = session["document"]["adverse_events"][0]["resolved_at"]
    assert resolved_at
    clinic_clock.advance(minutes=5)
    session = ok(
        nurse.patch(url, json={"version": session["session"]["version"], "outcome": "ongoing"})
    )
    event = session["document"]["adverse_events"][0]
    assert event["outcome"] == "ongoing"
    history = [e for e in session["document"]["events"] if e["action"] == "update_adverse_event"]
    stamp = datetime.fromisoformat(resolved_at).isoformat()
    assert stamp in history[0]["detail"] and "resolved" in history[0]["detail"]
    assert "reopened" in history[1]["detail"] and stamp in history[1]["detail"]
