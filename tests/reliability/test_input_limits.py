"""Input the stores cannot hold, or should not, is a 422 naming the field, on both stores: a
NUL character anywhere (PostgreSQL cannot store one in text: it was a 500 there, found by a
long Schemathesis run), and lists without bounds."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta


def _fields(response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


def _patient(client) -> str:
    body = {
        "family_name": f"Nul{uuid.uuid4().hex[:8]}",
        "given_name": "Ada",
        "birth_date": "1980-04-02",
        "sex": "female",
    }
    response = client.post("/api/v1/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_nul_in_the_query_or_the_path_is_422_naming_it(api):
    client = api("prescriber")
    assert _fields(client.get("/api/v1/patients", params={"mrn": "A\x00"})) == ["mrn"]
    assert "name" in _fields(client.get("/api/v1/patients", params={"name": "\x00", "limit": 5}))
    assert _fields(client.get("/api/v1/patients/abc%00def")) == ["patient_id"]
    # the same requests without the NUL are fine
    assert client.get("/api/v1/patients", params={"mrn": "A"}).status_code == 200


def _therapy(api) -> tuple[str, dict]:
    """A new patient's therapy-sessions URL and a valid session an hour ago."""
    url = f"/api/v1/patients/{_patient(api('prescriber'))}/therapy-sessions"
    held_at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    return url, {"kind": "preparation", "modality": "cbt", "held_at": held_at, "duration_min": 50}


def test_nul_in_a_json_body_is_422_naming_the_nested_field_and_stores_nothing(api):
    url, body = _therapy(api)
    body["note"] = {"goals": ["rest", "sleep\x00"], "homework": "breathing"}
    therapist = api("therapist")
    assert _fields(therapist.post(url, json=body)) == ["note.goals[1]"]
    raw = json.dumps(body).encode()  # the same JSON without a Content-Type header
    assert _fields(therapist.post(url, content=raw)) == ["note.goals[1]"]
    assert therapist.get(url).json() == []  # nothing stored
    # a backslash followed by u0000 is ordinary text, kept as written
    body["note"]["goals"] = ["rest", "sleep \\u0000"]
    created = therapist.post(url, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["note"]["goals"] == ["rest", "sleep \\u0000"]


def test_a_therapy_note_cannot_hold_unbounded_goals(api):
    url, body = _therapy(api)
    therapist = api("therapist")
    many = therapist.post(url, json=body | {"note": {"goals": ["rest"] * 21}})
    assert _fields(many) == ["note.goals"]
    long = therapist.post(url, json=body | {"note": {"goals": ["x" * 501]}})
    assert _fields(long) == ["note.goals[0]"]
    # the patient was born in 1980: a session in 1800 is a slip in the year
    assert _fields(therapist.post(url, json=body | {"held_at": "1800-01-01T10:00:00Z"})) == [
        "held_at"
    ]
    assert therapist.get(url).json() == []


def test_nul_in_a_form_is_422_naming_the_field(api):
    response = api().post(
        "/api/v1/auth/token", data={"username": "nurse\x00", "password": "whatever it is"}
    )
    assert _fields(response) == ["username"]
    # a form the page reads itself (from the raw body, so its own limits hold)
    page = api().post("/q/not-a-real-token", data={"s0-1": "1\x00"})
    assert _fields(page) == ["s0-1"]
