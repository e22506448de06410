"""Dosing sessions and courses over HTTP: alarms, voided readings, adverse events, deferral and
override, scheduling, boosters, maintenance, missed sessions, home doses, therapy worklists."""

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
    session = act(
        api("nurse"), ok(api("nurse").get(f"/api/v1/sessions/{planned['id']}")), "check-in"
    )
    return pid, course, session


def _dosing(api, session, clinic_clock):
    nurse = api("nurse")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    clinic_clock.advance(minutes=2)
    return act(nurse, session, "dose/start", {"concentration_mg_per_ml": 50})


def test_hypertension_raises_an_alarm_and_a_wrong_reading_is_voided_not_overwritten(
    api, first_session, clinic_clock
):
    _, _, session = first_session
    nurse = api("nurse")
    session = _dosing(api, session, clinic_clock)
    clinic_clock.advance(minutes=10)
    session = act(
        nurse,
        session,
        "readings",
        {**CALM, "systolic_mmhg": 192, "diastolic_mmhg": 104},
        status=201,
    )
    raised = {a["threshold_id"] for a in session["new_alarms"]}
    assert raised, session["new_alarms"]
    alarm = session["new_alarms"][0]
    assert alarm["unconfirmed"] is True  # 180/100 is quoted, not confirmed (reference §2, U)
    assert alarm["action"]
    wrong = session["document"]["readings"][-1]["id"]
    session = act(nurse, session, f"readings/{wrong}/void", {"reason": "cuff too small, redo"})
    assert session["open_alarms"] == []
    session = act(nurse, session, "readings", {**CALM, "corrects_reading_id": wrong}, status=201)
    readings = session["document"]["readings"]
    assert any(r["id"] == wrong and r["voided_at"] and r["systolic_mmhg"] == 192 for r in readings)
    impossible = attempt(nurse, session, "readings", {"systolic_mmhg": 20, "diastolic_mmhg": 300})
    assert impossible.status_code == 422
    assert impossible.json()["errors"][0]["field"] in ("systolic_mmhg", "diastolic_mmhg")


def test_severe_adverse_event_blocks_discharge_until_resolved(api, first_session, clinic_clock):
    _, _, session = first_session
    nurse = api("nurse")
    session = _dosing(api, session, clinic_clock)
    clinic_clock.advance(minutes=20)
    session = act(
        nurse,
        session,
        "adverse-events",
        {"kind": "vomiting", "severity": "severe", "actions": ["medication_given"]},
        status=201,
    )
    event_id = session["document"]["adverse_events"][0]["id"]
    clinic_clock.advance(minutes=20)
    session = act(nurse, session, "dose/end")
    clinic_clock.advance(minutes=61)
    session = act(nurse, session, "readings", BASELINE, status=201)
    refused = attempt(nurse, session, "discharge", {"escort_present": True})
    assert refused.status_code == 409
    assert refused.json()["code"] == "discharge_criteria_unmet"
    body = nurse.patch(
        f"/api/v1/sessions/{session['session']['id']}/adverse-events/{event_id}",
        json={"version": session["session"]["version"], "outcome": "resolved"},
    )
    session = ok(body)
    session = act(nurse, session, "discharge", {"escort_present": True})
    assert session["session"]["state"] == "discharged"
    late = attempt(nurse, session, "readings", CALM)
    assert late.status_code == 409
    assert late.json()["state"] == "discharged"


def test_failed_check_defers_and_a_prescriber_override_clears(api, first_session, clinic_clock):
    _, _, session = first_session
    nurse, prescriber = api("nurse"), api("prescriber")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(
        nurse, session, "pre-dose-checks", {"escort_confirmed": False, "no_driving_confirmed": True}
    )
    assert session["session"]["state"] == "deferred"
    rule_ids = [r["rule_id"] for r in session["deferred_reasons"]]
    assert rule_ids
    nurse_override = attempt(
        nurse, session, "overrides", {"rule_id": rule_ids[0], "reason": "taxi booked by the clinic"}
    )
    assert nurse_override.status_code == 403
    for rule_id in rule_ids:
        session = act(
            prescriber,
            session,
            "overrides",
            {"rule_id": rule_id, "reason": "clinic taxi booked, patient agrees"},
        )
    # Overriding the last failed check clears the session.
    assert session["session"]["state"] == "cleared"
    assert {o["rule_id"] for o in session["document"]["overrides"]} == set(rule_ids)


def test_stop_from_an_active_state(api, first_session):
    _, _, session = first_session
    session = act(
        api("nurse"),
        session,
        "stop",
        {"reason": "patient_declined", "note": "patient changed their mind"},
    )
    assert session["session"]["state"] == "stopped"


def test_reschedule_refuses_a_double_booked_chair(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY)
    first = start_course(
        api, enrolled_patient(api, clinic_clock), MONDAY.date(), preferred_time="09:00"
    )
    second = start_course(
        api, enrolled_patient(api, clinic_clock), MONDAY.date(), preferred_time="09:00"
    )
    a, b = first["sessions"][0], second["sessions"][0]
    if a["chair_id"] == b["chair_id"]:  # the scheduler put them one after the other
        assert a["scheduled_start"] != b["scheduled_start"]
    desk = api("front_desk")
    clash = desk.post(
        f"/api/v1/sessions/{b['id']}/reschedule",
        json={
            "version": b["version"],
            "scheduled_start": a["scheduled_start"],
            "chair_id": a["chair_id"],
        },
    )
    assert clash.status_code == 409
    assert clash.json()["code"] == "chair_double_booked"
    slots = ok(
        desk.get(
            "/api/v1/schedule/free-slots",
            params={"protocol_id": "iv_racemic_infusion", "after": MONDAY.isoformat(), "count": 3},
        )
    )
    assert len(slots) == 3
    moved = desk.post(
        f"/api/v1/sessions/{b['id']}/reschedule",
        json={
            "version": b["version"],
            "scheduled_start": slots[-1]["start"],
            "chair_id": slots[-1]["chair_id"],
        },
    )
    assert moved.status_code == 200, moved.text


def test_booster_maintenance_and_end_of_course(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    prescriber = api("prescriber")
    early = prescriber.post(f"/api/v1/courses/{course['id']}/boosters", json={})
    assert early.status_code == 409  # a booster follows a dose
    planned = course["sessions"][0]
    clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
    session = act(
        api("nurse"), ok(api("nurse").get(f"/api/v1/sessions/{planned['id']}")), "check-in"
    )
    _dosing(api, session, clinic_clock)
    clinic_clock.advance(days=1)
    ended_first = prescriber.post(
        f"/api/v1/courses/{course['id']}/end", json={"reason": "switching plan"}
    )
    assert ended_first.status_code == 409  # a session is in progress
    boosted = ok(prescriber.post(f"/api/v1/courses/{course['id']}/boosters", json={}), 201)
    assert boosted["sessions"][-1]["kind"] == "booster"
    maintained = ok(
        prescriber.post(
            f"/api/v1/courses/{course['id']}/maintenance", json={"count": 3, "interval_days": 14}
        )
    )
    assert maintained["phase"] == "maintenance"
    assert [s["kind"] for s in maintained["sessions"]].count("maintenance") == 3


def test_unattended_sessions_are_marked_missed_by_the_worklist(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    first = course["sessions"][0]
    clinic_clock.set(datetime.fromisoformat(first["scheduled_start"]) + timedelta(hours=3))
    ok(api("nurse").get("/api/v1/worklists/today"))
    assert ok(api("nurse").get(f"/api/v1/sessions/{first['id']}"))["session"]["state"] == "missed"


def test_home_doses_are_kept_with_their_flags(api, chairs, clinic_clock):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock, "ketamine", "oral")
    course = start_course(api, pid, MONDAY.date(), "ketamine", "oral", home_dose_mg="100")
    nurse = api("nurse")
    url = f"/api/v1/courses/{course['id']}/home-doses"
    clinic_clock.set(MONDAY + timedelta(days=3))
    first = ok(
        nurse.post(
            url, json={"taken_at": (MONDAY + timedelta(days=2)).isoformat(), "dose_mg": "100"}
        ),
        201,
    )
    assert first["flags"] == []
    over = ok(
        nurse.post(
            url,
            json={"taken_at": (MONDAY + timedelta(days=2, hours=5)).isoformat(), "dose_mg": "150"},
        ),
        201,
    )
    assert {f["rule_id"] for f in over["flags"]} >= {"above_prescribed_dose"}
    taken = (MONDAY + timedelta(days=2, hours=6)).isoformat()
    # a microgram typed as mg, or a stray digit past the hundredth: refused, naming the field
    for slip in ("0.0001", "99.999", "NaN"):
        refused = nurse.post(url, json={"taken_at": taken, "dose_mg": slip})
        assert refused.status_code == 422, slip
        assert refused.json()["errors"][0]["field"] == "dose_mg"
    # written as on a chart, not in exponent form
    assert ok(nurse.post(url, json={"taken_at": taken, "dose_mg": "1E+2"}), 201)["dose_mg"] == "100"
    future = nurse.post(
        url, json={"taken_at": (MONDAY + timedelta(days=9)).isoformat(), "dose_mg": "100"}
    )
    assert future.status_code == 409
    assert len(ok(nurse.get(url))) == 3


def test_therapy_preparation_and_integration_drive_the_worklist(api, first_session, clinic_clock):
    pid, _, session = first_session
    therapist = api("therapist")
    due = ok(therapist.get(f"/api/v1/patients/{pid}/therapy-due"))
    assert any(d["kind"] == "preparation" for d in due)
    prep_time = clinic_clock() - timedelta(hours=1)
    ok(
        therapist.post(
            f"/api/v1/patients/{pid}/therapy-sessions",
            json={
                "kind": "preparation",
                "modality": "mindfulness_based",
                "held_at": prep_time.isoformat(),
                "duration_min": 50,
                "note": {"goals": ["notice the body"], "homework": "breathing"},
            },
        ),
        201,
    )
    session = _dosing(api, session, clinic_clock)
    clinic_clock.advance(minutes=40)
    act(api("nurse"), session, "dose/end")
    clinic_clock.advance(hours=20)
    due = ok(therapist.get(f"/api/v1/patients/{pid}/therapy-due"))
    integration = [d for d in due if d["kind"] == "integration"]
    assert integration and integration[0]["status"] == "due"
    worklist = ok(api("nurse").get("/api/v1/worklists/today"))
    assert any(t["patient_id"] == pid for t in worklist["therapy_due"])
    ok(
        therapist.post(
            f"/api/v1/patients/{pid}/therapy-sessions",
            json={
                "kind": "integration",
                "modality": "meaning_centered",
                "held_at": clinic_clock().isoformat(),
                "duration_min": 60,
                "note": {"what_came_up": "grief", "insights": "less stuck"},
            },
        ),
        201,
    )
    due = ok(therapist.get(f"/api/v1/patients/{pid}/therapy-due"))
    assert [d["status"] for d in due if d["kind"] == "integration"] == ["done"]
    ahead = therapist.post(
        f"/api/v1/patients/{pid}/therapy-sessions",
        json={
            "kind": "integration",
            "modality": "cbt",
            "held_at": (clinic_clock() + timedelta(days=2)).isoformat(),
            "duration_min": 30,
        },
    )
    assert ahead.status_code == 409
    assert (
        api("nurse")
        .post(
            f"/api/v1/patients/{pid}/therapy-sessions",
            json={
                "kind": "integration",
                "modality": "cbt",
                "held_at": clinic_clock().isoformat(),
                "duration_min": 30,
            },
        )
        .status_code
        == 403
    )


def test_worklist_shows_the_day(api, first_session, clinic_clock):
    pid, _, session = first_session
    session = _dosing(api, session, clinic_clock)
    clinic_clock.advance(minutes=10)
    act(api("nurse"), session, "readings", {**CALM, "spo2_percent": 86}, status=201)
    worklist = ok(api("nurse").get("/api/v1/worklists/today"))
    mine = [s for s in worklist["sessions"] if s["patient_id"] == pid]
    assert mine and mine[0]["state"] == "dosing"
    assert mine[0]["patient_name"]
    assert any(a["session_id"] == session["session"]["id"] for a in worklist["open_alarms"])
    assert "dosing" in worklist["counts_by_state"]
    assert api("auditor").get("/api/v1/worklists/today").status_code == 403


def test_recent_suicidality_answers_reach_the_pre_dose_checks(api, first_session, clinic_clock):
    pid, _, session = first_session
    nurse = api("nurse")
    phq9 = {str(i): 1 for i in range(1, 9)} | {"9": 2}
    ok(
        nurse.post(
            f"/api/v1/patients/{pid}/assessments", json={"instrument": "PHQ-9", "answers": phq9}
        ),
        201,
    )
    session = act(nurse, session, "readings", BASELINE, status=201)
    shown = act(nurse, session, "pre-dose-checks", READY)
    results = shown["document"]["check_runs"][-1]["results"]
    phq = [r for r in results if "phq9" in r["rule_id"]]
    assert phq and not phq[0]["passed"]  # shown to the clinician...
    assert shown["session"]["state"] == "cleared"  # ...but item 9 alone does not block


def test_high_cssrs_risk_defers_until_a_prescriber_overrides(api, first_session):
    pid, _, session = first_session
    nurse = api("nurse")
    high_risk = {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 0}  # Columbia triage: high
    ok(
        nurse.post(
            f"/api/v1/patients/{pid}/assessments",
            json={"instrument": "C-SSRS", "answers": high_risk},
        ),
        201,
    )
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    assert session["session"]["state"] == "deferred"
    blocking = [r["rule_id"] for r in session["deferred_reasons"]]
    assert any("cssrs" in rule for rule in blocking), blocking
    for rule_id in blocking:
        session = act(
            api("prescriber"),
            session,
            "overrides",
            {"rule_id": rule_id, "reason": "acute safety assessment done; plan agreed"},
        )
    assert session["session"]["state"] == "cleared"


def test_observation_advice_sits_beside_the_protocol_minimum(api, first_session, clinic_clock):
    _, _, session = first_session
    nurse = api("nurse")
    url = f"/api/v1/sessions/{session['session']['id']}/observation-advice"
    assert nurse.get(url).status_code == 409  # no dose yet
    session = _dosing(api, session, clinic_clock)
    clinic_clock.advance(minutes=40)
    act(nurse, session, "dose/end")
    advice = ok(nurse.get(url))
    started = datetime.fromisoformat(advice["dose_started_at"])
    dissociation_ends = datetime.fromisoformat(advice["end_of_dissociation_at"])
    suggested = datetime.fromisoformat(advice["suggested_earliest_discharge_at"])
    # Olofsen 2022 effect site: dissociation outlasts a 40-minute infusion, by well under 2 h.
    assert started + timedelta(minutes=40) < dissociation_ends < started + timedelta(hours=2)
    assert suggested >= dissociation_ends
    assert advice["protocol_minimum_ends_at"]
    assert advice["concentrations"] and advice["citation"] and "never" in advice["note"]
    assert api("auditor").get(url).status_code == 403


def test_rule_level_validation_is_a_422_not_a_500(api, first_session, clinic_clock):
    pid, _, session = first_session
    nurse = api("nurse")
    vague = attempt(nurse, session, "adverse-events", {"kind": "other", "severity": "mild"})
    assert vague.status_code == 409
    assert vague.json()["reasons"][0]["rule_id"] == "adverse_event_description"
    unnamed = api("therapist").post(
        f"/api/v1/patients/{pid}/therapy-sessions",
        json={
            "kind": "preparation",
            "modality": "other",
            "duration_min": 30,
            "held_at": clinic_clock().isoformat(),
        },
    )
    assert unnamed.status_code == 422, unnamed.text
    assert unnamed.headers["content-type"].startswith("application/problem+json")
