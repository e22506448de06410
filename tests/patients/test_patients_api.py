"""Patients over real HTTP, on both stores: registration, reading, updates, search, history."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from ketaflow.core.clock import clinic_today, utc_now
from ketaflow.core.settings import Settings

PROBLEM = "application/problem+json"


def _unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


def _register(client, **overrides):
    body = {
        "family_name": _unique("Fam"),
        "given_name": "Ada",
        "birth_date": "1980-04-02",
        "sex": "female",
        "weight_kg": 68.5,
        "height_cm": 165,
    }
    body.update(overrides)
    response = client.post("/api/v1/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_register_then_read_back(api):
    client = api("prescriber")
    created = _register(client)
    assert created["id"]
    assert created["mrn"].startswith("KF-") and len(created["mrn"]) == 11
    assert created["version"] == 1
    assert created["weight_kg"] == 68.5
    read = client.get(f"/api/v1/patients/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created


def test_given_mrn_is_kept_and_must_be_unique(api):
    client = api("front_desk")
    mrn = _unique("EXT-")
    assert _register(client, mrn=mrn)["mrn"] == mrn
    again = client.post(
        "/api/v1/patients",
        json={
            "family_name": "X",
            "given_name": "Y",
            "birth_date": "1990-01-01",
            "sex": "male",
            "mrn": mrn,
        },
    )
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weight_kg", 0),
        ("weight_kg", 900),
        ("birth_date", (date.today() + timedelta(days=2)).isoformat()),
        ("birth_date", "not-a-date"),
        ("sex", "robot"),
        ("family_name", ""),
        ("unexpected", 1),
    ],
)
def test_bad_input_is_422_naming_the_field_and_saves_nothing(api, field, value):
    client = api("prescriber")
    family = _unique("Bad")
    body = {
        "family_name": family,
        "given_name": "Bo",
        "birth_date": "1975-05-05",
        "sex": "male",
        field: value,
    }
    response = client.post("/api/v1/patients", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]]
    if field != "family_name":
        assert client.get("/api/v1/patients", params={"name": family}).json()["total"] == 0


def test_stale_update_is_409_and_keeps_the_winner(api):
    client = api("prescriber")
    patient = _register(client)
    url = f"/api/v1/patients/{patient['id']}"
    first = client.patch(url, json={"version": 1, "given_name": "Grace"})
    assert first.status_code == 200
    assert first.json()["version"] == 2
    stale = client.patch(url, json={"version": 1, "given_name": "Lost"})
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2
    assert client.get(url).json()["given_name"] == "Grace"


def test_update_refuses_removing_required_fields(api):
    client = api("prescriber")
    patient = _register(client)
    for field in ("family_name", "birth_date", "sex", "mrn"):
        response = client.patch(
            f"/api/v1/patients/{patient['id']}",
            json={"version": 1, field: None, "given_name": "Kept"},
        )
        assert response.status_code == 422, (field, response.text)
    assert client.get(f"/api/v1/patients/{patient['id']}").json()["version"] == 1


def test_search_by_name_mrn_and_birth_date_with_pagination(api):
    client = api("prescriber")
    family = _unique("Search")
    made = [
        _register(client, family_name=family, given_name=f"G{i}", birth_date=f"19{60 + i}-01-01")
        for i in range(3)
    ]
    page = client.get("/api/v1/patients", params={"name": family.lower(), "limit": 2})
    assert page.status_code == 200
    assert page.json()["total"] == 3
    assert len(page.json()["items"]) == 2
    rest = client.get("/api/v1/patients", params={"name": family, "limit": 2, "offset": 2})
    assert len(rest.json()["items"]) == 1
    by_mrn = client.get("/api/v1/patients", params={"mrn": made[1]["mrn"]}).json()
    assert [p["id"] for p in by_mrn["items"]] == [made[1]["id"]]
    by_dob = client.get(
        "/api/v1/patients", params={"name": family, "birth_date": "1962-01-01"}
    ).json()
    assert [p["id"] for p in by_dob["items"]] == [made[2]["id"]]
    assert client.get("/api/v1/patients", params={"limit": 0}).status_code == 422
    # past the 64-bit integers the stores bind: a 422 naming the field, not a 500
    huge = client.get("/api/v1/patients", params={"offset": 2**63})
    assert huge.status_code == 422
    assert "offset" in [e["field"] for e in huge.json()["errors"]]
    far = client.get("/api/v1/patients", params={"name": family, "offset": 2**31 - 1})
    assert far.status_code == 200 and far.json()["items"] == []


def test_search_treats_like_wildcards_literally(api):
    client = api("prescriber")
    assert client.get("/api/v1/patients", params={"name": "%"}).json()["total"] == 0


def test_measurements_keep_weight_with_its_date(api):
    client = api("nurse")
    patient = _register(api("prescriber"))
    url = f"/api/v1/patients/{patient['id']}/measurements"
    older = client.post(url, json={"weight_kg": 70.2, "measured_on": "2024-01-10"})
    assert older.status_code == 201
    newer = client.post(url, json={"weight_kg": 71.0})
    # the clinic's date, not the machine's: they differ for hours around midnight
    today = clinic_today(utc_now(), Settings().clinic_timezone)
    assert newer.json()["measured_on"] == today.isoformat()
    future = client.post(
        url, json={"weight_kg": 71.0, "measured_on": (today + timedelta(1)).isoformat()}
    )
    assert future.status_code == 422
    assert future.json()["errors"][0]["field"] == "measured_on"
    weights = [m["weight_kg"] for m in client.get(url).json()]
    assert weights[0] == 71.0 and 70.2 in weights
    assert client.get(f"/api/v1/patients/{patient['id']}").json()["weight_kg"] == 71.0


def test_history_revisions_and_stale_saves(api):
    client = api("prescriber")
    patient = _register(client)
    url = f"/api/v1/patients/{patient['id']}/history"
    empty = client.get(url).json()
    assert empty["revision"] == 0
    history = {
        "diagnoses": [{"code": "major_depressive_disorder", "icd10": "F33.2"}],
        "antidepressant_trials": [
            {
                "drug": "sertraline",
                "dose_mg_per_day": 200,
                "weeks": 10,
                "adequate": True,
                "outcome": "no_response",
            },
            {"drug": "bupropion", "weeks": 8, "adequate": True, "outcome": "partial_response"},
        ],
        "current_medications": [{"name": "lorazepam", "medication_class": "benzodiazepine"}],
        "hypertension": "controlled",
        "conditions": ["cardiovascular_disease"],
    }
    saved = client.put(url, json={"expected_revision": 0, "history": history})
    assert saved.status_code == 200, saved.text
    assert saved.json()["revision"] == 1
    assert client.get(url).json()["history"]["antidepressant_trials"][1]["drug"] == "bupropion"
    stale = client.put(url, json={"expected_revision": 0, "history": history})
    assert stale.status_code == 409
    bad = client.put(
        url,
        json={"expected_revision": 1, "history": {**history, "conditions": ["unicorn_disease"]}},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"].startswith("history.conditions")
    assert client.get(url).json()["revision"] == 1
    # no history holds megabytes: lists and their texts are bounded, naming the field
    for oversized, field in (
        ({"diagnoses": [{"code": "other"}] * 51}, "history.diagnoses"),
        ({"substance_use": {"substances": ["x" * 101]}}, "history.substance_use.substances[0]"),
        ({"substance_use": {"substances": ["alcohol"] * 21}}, "history.substance_use.substances"),
    ):
        big = client.put(url, json={"expected_revision": 1, "history": {**history, **oversized}})
        assert big.status_code == 422, big.text
        assert field in [e["field"] for e in big.json()["errors"]]
    assert client.get(url).json()["revision"] == 1


def test_unknown_patient_is_404_problem(api):
    response = api("prescriber").get(f"/api/v1/patients/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)


def test_access_log_lists_who_touched_the_record(stack, api):
    prescriber, nurse = api("prescriber"), api("nurse")
    patient = _register(prescriber)
    nurse.get(f"/api/v1/patients/{patient['id']}")
    api("therapist").get(f"/api/v1/patients/{patient['id']}/history")
    api("front_desk").get(f"/api/v1/patients/{patient['id']}/history")  # denied, still logged
    log = api("auditor").get(f"/api/v1/patients/{patient['id']}/access-log").json()
    seen = {(e["actor_role"], e["action"], e["allowed"]) for e in log["items"]}
    assert ("prescriber", "patient.create", True) in seen
    assert ("nurse", "patient.read", True) in seen
    assert ("therapist", "patient.history.read", True) in seen
    assert ("front_desk", "patient.history.read", False) in seen
    assert patient["family_name"] not in str(log)  # who and when, never the chart itself
