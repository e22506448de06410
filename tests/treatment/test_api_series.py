"""End to end over real HTTP, on both stores: a full IV ketamine series and a full esketamine
induction, every session from check-in to discharge, with the clinic's clock moved through the
days and the monitoring windows."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from support.clinic import BASELINE, CALM, act, add_chairs, enrolled_patient, ok


def _iso(moment: datetime) -> str:
    return moment.isoformat()


@pytest.fixture
def chairs(api):
    return add_chairs(api)


def test_full_iv_series(api, chairs, clinic_clock):
    start = clinic_clock.set(datetime.fromisoformat("2031-03-03T09:00:00-05:00"))  # a Monday
    pid = enrolled_patient(api, clinic_clock, "ketamine", "iv")
    prescriber, nurse, desk = api("prescriber"), api("nurse"), api("front_desk")

    course = ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/courses",
            json={
                "drug": "ketamine",
                "route": "iv",
                "start_on": start.date().isoformat(),
                "preferred_time": "09:30",
            },
        ),
        201,
    )
    sessions = course["sessions"]
    assert course["protocol_id"] == "iv_racemic_infusion"
    assert len(sessions) == 6  # Murrough 2013: 6 infusions, 3 a week (reference §2)
    starts = [datetime.fromisoformat(x["scheduled_start"]) for x in sessions]
    assert all(b - a >= timedelta(days=2) for a, b in pairwise(starts))
    assert starts[-1] - starts[0] <= timedelta(days=14)

    for index, planned in enumerate(sessions):
        clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
        session = ok(nurse.get(f"/api/v1/sessions/{planned['id']}"))
        session = act(desk, session, "check-in")
        assert session["session"]["state"] == "checked_in"
        if index == 0:
            # Out of order: no dose before clearance.
            refused = nurse.post(
                f"/api/v1/sessions/{planned['id']}/dose/start",
                json={"version": session["session"]["version"], "concentration_mg_per_ml": 10},
            )
            assert refused.status_code == 409
            assert refused.json()["state"] == "checked_in"
        clinic_clock.advance(minutes=3)
        session = act(nurse, session, "readings", BASELINE, status=201)
        session = act(
            nurse,
            session,
            "pre-dose-checks",
            {"escort_confirmed": True, "no_driving_confirmed": True},
        )
        assert session["session"]["state"] == "cleared", session["deferred_reasons"]
        clinic_clock.advance(minutes=5)
        session = act(nurse, session, "dose/start", {"concentration_mg_per_ml": 10})
        dose = session["document"]["dose"]
        assert float(dose["dose_mg"]) == 36.0  # 0.5 mg/kg x 72 kg (Sanacora 2017)
        assert float(dose["volume_ml"]) == 3.6
        for _ in range(4):  # BP every 10 min during the infusion (Emory, reference §2)
            clinic_clock.advance(minutes=10)
            session = act(
                nurse,
                session,
                "readings",
                {**CALM, "systolic_mmhg": 136, "diastolic_mmhg": 86},
                status=201,
            )
        session = act(nurse, session, "dose/end")
        assert session["session"]["state"] == "monitoring"
        clinic_clock.advance(minutes=15)
        session = act(nurse, session, "readings", {**CALM, "moaa_s": 5}, status=201)
        if index == 0:
            # Not before the minimum observation: every unmet criterion is named.
            early = nurse.post(
                f"/api/v1/sessions/{planned['id']}/discharge",
                json={"version": session["session"]["version"], "escort_present": True},
            )
            assert early.status_code == 409
            assert early.json()["reasons"]
        clinic_clock.advance(minutes=50)
        session = act(nurse, session, "readings", BASELINE, status=201)
        assert session["discharge_unmet"] == []
        session = act(nurse, session, "discharge", {"escort_present": True})
        assert session["session"]["state"] == "discharged"

    final = ok(prescriber.get(f"/api/v1/courses/{course['id']}"))
    assert [x["state"] for x in final["sessions"]] == ["discharged"] * 6
    assert ok(api("auditor").get(f"/api/v1/patients/{pid}/access-log"))["total"] > 50


def test_full_esketamine_induction(api, chairs, clinic_clock):
    start = clinic_clock.set(datetime.fromisoformat("2031-06-02T08:30:00-04:00"))  # a Monday
    pid = enrolled_patient(
        api, clinic_clock, "esketamine", "intranasal", consents=("treatment", "rems_enrollment")
    )
    prescriber, nurse = api("prescriber"), api("nurse")
    course = ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/courses",
            json={
                "drug": "esketamine",
                "route": "intranasal",
                "start_on": start.date().isoformat(),
            },
        ),
        201,
    )
    sessions = course["sessions"]
    # SPRAVATO label section 2: twice weekly in weeks 1-4, weekly in weeks 5-8.
    assert len(sessions) == 12
    for planned in sessions:
        chair_time = datetime.fromisoformat(planned["expected_end"]) - datetime.fromisoformat(
            planned["scheduled_start"]
        )
        assert chair_time >= timedelta(hours=2, minutes=15)

    for index, planned in enumerate(sessions):
        t0 = clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
        session = act(nurse, ok(nurse.get(f"/api/v1/sessions/{planned['id']}")), "check-in")
        session = act(nurse, session, "readings", BASELINE, status=201)
        session = act(
            nurse,
            session,
            "pre-dose-checks",
            {
                "escort_confirmed": True,
                "no_driving_confirmed": True,
                "fasting_asked": True,
                "last_food_at": _iso(t0 - timedelta(hours=3)),
                "last_liquid_at": _iso(t0 - timedelta(hours=1)),
                "concomitant_medications": [],
            },
        )
        assert session["session"]["state"] == "cleared", session["deferred_reasons"]
        dose_mg = 56 if index == 0 else 84  # 84 mg only after a 56 mg start (label section 2)
        clinic_clock.advance(minutes=5)
        first_device = clinic_clock()
        session = act(nurse, session, "dose/start", {"dose_mg": dose_mg, "lot_number": "LOT-A1"})
        for _ in range(dose_mg // 28 - 1):
            if index == 0:
                too_soon = nurse.post(
                    f"/api/v1/sessions/{planned['id']}/devices",
                    json={"version": session["session"]["version"]},
                )
                assert too_soon.status_code == 409  # 5 minutes' rest (Instructions for Use)
            clinic_clock.advance(minutes=5)
            session = act(nurse, session, "devices", {"lot_number": "LOT-A1"})
        session = act(nurse, session, "dose/end")
        if index == 0:  # the PK advice for a nasal dose (was a 500: a "duration" of 10 min)
            advice = ok(nurse.get(f"/api/v1/sessions/{planned['id']}/observation-advice"))
            ends = datetime.fromisoformat(advice["end_of_dissociation_at"]) - first_device
            assert timedelta(minutes=20) < ends < timedelta(hours=2)
            suggested = datetime.fromisoformat(advice["suggested_earliest_discharge_at"])
            assert suggested >= datetime.fromisoformat(advice["end_of_dissociation_at"])
            assert advice["protocol_minimum_ends_at"]
        clinic_clock.set(first_device + timedelta(minutes=40))
        session = act(nurse, session, "readings", BASELINE, status=201)
        clinic_clock.set(first_device + timedelta(minutes=121))
        session = act(nurse, session, "readings", BASELINE, status=201)
        if index == 0:
            missing = nurse.post(
                f"/api/v1/sessions/{planned['id']}/discharge",
                json={"version": session["session"]["version"], "escort_present": True},
            )
            assert missing.status_code == 409  # the REMS questions must be answered
            later_than_observed = nurse.post(
                f"/api/v1/sessions/{planned['id']}/discharge",
                json={
                    "version": session["session"]["version"],
                    "escort_present": True,
                    "clinician_judges_stable": True,
                    "ready_without_minimum_min": 122,  # after 121 minutes of monitoring
                },
            )
            assert later_than_observed.status_code == 422, later_than_observed.text
            assert later_than_observed.json()["errors"][0]["field"] == "ready_without_minimum_min"
        session = act(
            nurse,
            session,
            "discharge",
            {
                "escort_present": True,
                "clinician_judges_stable": True,
                "ready_without_minimum_min": 75,
            },
        )
        assert session["session"]["state"] == "discharged"
        record = session["document"]["discharge"]
        assert record["observation_minutes"] >= 120

    final = ok(prescriber.get(f"/api/v1/courses/{course['id']}"))
    assert all(x["state"] == "discharged" for x in final["sessions"])


def test_two_nurses_cannot_both_act_on_one_version(api, chairs, clinic_clock):
    start = clinic_clock.set(datetime.fromisoformat("2031-09-01T09:00:00-04:00"))
    pid = enrolled_patient(api, clinic_clock, "ketamine", "iv")
    course = ok(
        api("prescriber").post(
            f"/api/v1/patients/{pid}/courses",
            json={"drug": "ketamine", "route": "iv", "start_on": start.date().isoformat()},
        ),
        201,
    )
    planned = course["sessions"][0]
    clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
    body = {"version": planned["version"]}
    first = api("nurse").post(f"/api/v1/sessions/{planned['id']}/check-in", json=body)
    second = api("front_desk").post(f"/api/v1/sessions/{planned['id']}/check-in", json=body)
    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["current_version"] == planned["version"] + 1


def test_course_needs_a_valid_screening(api, chairs, clinic_clock):
    prescriber = api("prescriber")
    patient = ok(
        prescriber.post(
            "/api/v1/patients",
            json={
                "family_name": "Unscreened",
                "given_name": "Uma",
                "birth_date": "1985-01-01",
                "sex": "female",
            },
        ),
        201,
    )
    refused = prescriber.post(
        f"/api/v1/patients/{patient['id']}/courses",
        json={"drug": "ketamine", "route": "iv", "start_on": clinic_clock().date().isoformat()},
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "screening_required"
    wrong = prescriber.post(
        f"/api/v1/patients/{patient['id']}/courses",
        json={"drug": "esketamine", "route": "iv", "start_on": clinic_clock().date().isoformat()},
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "route"
