"""Shared steps for tests that walk a patient through the clinic over HTTP."""

from __future__ import annotations

import uuid

TRD_HISTORY = {
    "diagnoses": [{"code": "major_depressive_disorder", "icd10": "F33.2"}],
    "antidepressant_trials": [
        {
            "drug": "sertraline",
            "dose_mg_per_day": 200,
            "weeks": 10,
            "adequate": True,
            "outcome": "no_response",
        },
        {
            "drug": "venlafaxine",
            "dose_mg_per_day": 225,
            "weeks": 8,
            "adequate": True,
            "outcome": "partial_response",
        },
    ],
    "current_medications": [{"name": "escitalopram", "medication_class": "antidepressant"}],
    "pregnancy": "not_pregnant",
}
CALM = {
    "systolic_mmhg": 124,
    "diastolic_mmhg": 78,
    "heart_rate_bpm": 72,
    "spo2_percent": 98,
    "respiratory_rate_per_min": 14,
}
BASELINE = {**CALM, "moaa_s": 5, "cadss6": 0}
READY = {"escort_confirmed": True, "no_driving_confirmed": True}


def ok(response, status=200):
    assert response.status_code == status, response.text
    return response.json()


def add_chairs(api, count=2):
    manager = api("manager")
    return [
        ok(manager.post("/api/v1/chairs", json={"name": f"chair-{uuid.uuid4().hex[:6]}"}), 201)[
            "id"
        ]
        for _ in range(count)
    ]


def enrolled_patient(
    api, clinic_clock, drug="ketamine", route="iv", consents=("treatment",), history=TRD_HISTORY
):
    """A registered, consented patient with a favourable screening for the drug and route."""
    prescriber = api("prescriber")
    patient = ok(
        prescriber.post(
            "/api/v1/patients",
            json={
                "family_name": "Clinic" + uuid.uuid4().hex[:6],
                "given_name": "Val",
                "birth_date": "1979-03-14",
                "sex": "female",
                "weight_kg": 72,
                "height_cm": 168,
            },
        ),
        201,
    )
    pid = patient["id"]
    ok(
        prescriber.put(
            f"/api/v1/patients/{pid}/history", json={"expected_revision": 0, "history": history}
        )
    )
    today = clinic_clock().date()
    for kind in consents:
        ok(
            prescriber.post(
                f"/api/v1/patients/{pid}/consents",
                json={"kind": kind, "signed_on": today.isoformat()},
            ),
            201,
        )
    screening = ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/screenings",
            json={
                "drug": drug,
                "route": route,
                "vitals": {"systolic_mmhg": 122, "diastolic_mmhg": 76, "heart_rate_bpm": 70},
            },
        ),
        201,
    )
    assert screening["decision"] in ("eligible", "eligible_with_cautions"), screening
    return pid


def start_course(api, pid, start_on, drug="ketamine", route="iv", **extra):
    return ok(
        api("prescriber").post(
            f"/api/v1/patients/{pid}/courses",
            json={"drug": drug, "route": route, "start_on": start_on.isoformat(), **extra},
        ),
        201,
    )


def act(client, session, path, body=None, status=200):
    """POST an action on a session with the version last seen; return the new session."""
    payload = {"version": session["session"]["version"], **(body or {})}
    return ok(
        client.post(f"/api/v1/sessions/{session['session']['id']}/{path}", json=payload), status
    )


def attempt(client, session, path, body=None):
    payload = {"version": session["session"]["version"], **(body or {})}
    return client.post(f"/api/v1/sessions/{session['session']['id']}/{path}", json=payload)
