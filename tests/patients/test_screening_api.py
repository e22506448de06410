"""Screening over real HTTP, on both stores: decisions that explain themselves, overrides that
are kept and audited, expiry, and bad input."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select

from ketaflow.security.tables import AuditEvent

MDD = [{"code": "major_depressive_disorder"}]
TRIALS = [
    {"drug": "sertraline", "weeks": 10, "adequate": True, "outcome": "no_response"},
    {"drug": "bupropion", "weeks": 8, "adequate": True, "outcome": "partial_response"},
]


def _patient(client, history=None):
    patient = client.post(
        "/api/v1/patients",
        json={
            "family_name": "Screen" + uuid.uuid4().hex[:6],
            "given_name": "Sol",
            "birth_date": "1982-07-07",
            "sex": "male",
            "weight_kg": 80,
            "height_cm": 180,
        },
    ).json()
    if history is not None:
        saved = client.put(
            f"/api/v1/patients/{patient['id']}/history",
            json={"expected_revision": 0, "history": history},
        )
        assert saved.status_code == 200, saved.text
    return patient["id"]


def _screen(client, pid, drug="esketamine", route="intranasal", vitals=None):
    body = {"drug": drug, "route": route}
    if vitals:
        body["vitals"] = vitals
    return client.post(f"/api/v1/patients/{pid}/screenings", json=body)


def test_trd_patient_is_eligible_and_every_reason_has_a_source(api):
    client = api("prescriber")
    pid = _patient(
        client, {"diagnoses": MDD, "antidepressant_trials": TRIALS, "pregnancy": "not_applicable"}
    )
    result = _screen(client, pid, vitals={"systolic_mmhg": 120, "diastolic_mmhg": 75})
    assert result.status_code == 201, result.text
    body = result.json()
    assert body["decision"] == "eligible"
    assert body["treatment_resistant"] is True
    assert body["adequate_failed_trials"] == 2
    assert body["history_revision"] == 1
    assert body["rule_version"]
    assert body["reasons"] and all(
        r["rule_id"] and r["message"] and r["source"] for r in body["reasons"]
    )
    listed = client.get(f"/api/v1/patients/{pid}/screenings").json()
    assert [s["id"] for s in listed] == [body["id"]]
    assert client.get(f"/api/v1/patients/{pid}/screenings/{body['id']}").json() == body


def test_label_contraindication_is_ineligible_then_a_prescriber_overrides(stack, api):
    prescriber = api("prescriber")
    pid = _patient(
        prescriber,
        {
            "diagnoses": MDD,
            "antidepressant_trials": TRIALS,
            "conditions": ["aneurysmal_vascular_disease"],
        },
    )
    body = _screen(prescriber, pid).json()
    assert body["decision"] == "ineligible"
    assert any(
        r["severity"] == "absolute" and "label" in r["source"].lower() for r in body["reasons"]
    )
    url = f"/api/v1/patients/{pid}/screenings/{body['id']}/override"
    assert api("nurse").post(url, json={"reason": "I think it is fine"}).status_code == 403
    assert prescriber.post(url, json={"reason": "short"}).status_code == 422
    reason = "Vascular surgery cleared after repair in 2020; benefit outweighs risk."
    overridden = prescriber.post(url, json={"reason": reason})
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["overridden"] is True
    assert overridden.json()["override_reason"] == reason
    assert overridden.json()["effective_decision"] == "overridden"
    again = prescriber.post(url, json={"reason": reason})
    assert again.status_code == 409
    assert again.json()["reasons"][0]["rule_id"] == "screening.already_overridden"
    with stack.db.transaction() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.resource_id == body["id"])
        ).all()
    assert "screening.override" in actions


def test_eligible_decision_cannot_be_overridden(api):
    client = api("prescriber")
    pid = _patient(
        client, {"diagnoses": MDD, "antidepressant_trials": TRIALS, "pregnancy": "not_applicable"}
    )
    body = _screen(client, pid, "ketamine", "iv").json()
    response = client.post(
        f"/api/v1/patients/{pid}/screenings/{body['id']}/override",
        json={"reason": "no reason to override this at all"},
    )
    assert response.status_code == 409


def test_suicidal_ideation_marks_urgency(api):
    client = api("prescriber")
    pid = _patient(
        client,
        {
            "diagnoses": MDD,
            "antidepressant_trials": TRIALS,
            "suicidality": {"current_ideation": True},
        },
    )
    body = _screen(client, pid, "ketamine", "iv").json()
    assert body["urgent"] is True
    assert body["decision"] != "eligible"


def test_screening_expires_after_the_validity_period(stack, api, clinic_clock):
    client = api("prescriber")
    pid = _patient(
        client, {"diagnoses": MDD, "antidepressant_trials": TRIALS, "pregnancy": "not_applicable"}
    )
    clinic_clock.set(datetime.fromisoformat("2030-01-10T10:00:00+00:00"))
    body = _screen(client, pid, "ketamine", "iv").json()
    validity = stack.settings.screening_validity_days
    assert (
        body["expires_on"] == (datetime(2030, 1, 10) + timedelta(days=validity)).date().isoformat()
    )


def test_bad_screening_input_is_422_naming_the_field(api):
    client = api("prescriber")
    pid = _patient(client, {})
    cases = [
        ({"drug": "lsd", "route": "iv"}, "drug"),
        ({"drug": "ketamine", "route": "rectal"}, "route"),
        (
            {
                "drug": "ketamine",
                "route": "iv",
                "vitals": {"systolic_mmhg": 20, "diastolic_mmhg": 300},
            },
            "vitals.systolic_mmhg",
        ),
        ({"drug": "esketamine", "route": "iv"}, "route"),
    ]
    for body, field in cases:
        response = client.post(f"/api/v1/patients/{pid}/screenings", json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], response.json()
    assert client.get(f"/api/v1/patients/{pid}/screenings").json() == []


def test_roles_that_may_not_screen_are_refused(api):
    pid = _patient(api("prescriber"), {})
    for role in ("nurse", "therapist", "front_desk", "manager", "auditor", "admin"):
        response = _screen(api(role), pid, "ketamine", "iv")
        assert response.status_code == 403, role


def test_latest_suicidality_answers_reach_the_screening(api):
    client = api("prescriber")
    pid = _patient(
        client, {"diagnoses": MDD, "antidepressant_trials": TRIALS, "pregnancy": "not_applicable"}
    )
    before = _screen(client, pid, "ketamine", "iv").json()
    assert before["urgent"] is False
    answers = {str(i): 1 for i in range(1, 10)}
    saved = api("nurse").post(
        f"/api/v1/patients/{pid}/assessments", json={"instrument": "PHQ-9", "answers": answers}
    )
    assert saved.status_code == 201, saved.text
    after = _screen(client, pid, "ketamine", "iv").json()
    assert after["urgent"] is True
    assert any("phq" in r["rule_id"].lower() for r in after["reasons"]), after["reasons"]
