"""Every role against the permission table, over HTTP: allowed works, denied is 403 and audited."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from ketaflow.security import permissions as p
from ketaflow.security.permissions import ROLE_PERMISSIONS, Role, is_allowed
from ketaflow.security.tables import AuditEvent


@pytest.fixture(scope="module")
def patient_id(stack):
    client = stack.client(Role.prescriber)
    created = client.post(
        "/api/v1/patients",
        json={
            "family_name": "Matrix",
            "given_name": "Pat",
            "birth_date": "1970-01-01",
            "sex": "other",
        },
    )
    return created.json()["id"]


# action -> a request exercising it: (method, path template, json body)
ENDPOINTS = {
    p.PATIENT_CREATE: (
        "POST",
        "/api/v1/patients",
        {"family_name": "Perm", "given_name": "Test", "birth_date": "1980-01-01", "sex": "male"},
    ),
    p.PATIENT_READ: ("GET", "/api/v1/patients/{pid}", None),
    p.PATIENT_UPDATE: ("PATCH", "/api/v1/patients/{pid}", {"version": 10**6}),
    p.WEIGHT_RECORD: ("POST", "/api/v1/patients/{pid}/measurements", {"weight_kg": 70}),
    p.HISTORY_READ: ("GET", "/api/v1/patients/{pid}/history", None),
    p.HISTORY_UPDATE: (
        "PUT",
        "/api/v1/patients/{pid}/history",
        {"expected_revision": 10**6, "history": {}},
    ),
    p.ACCESS_LOG_READ: ("GET", "/api/v1/patients/{pid}/access-log", None),
    p.USER_MANAGE: ("GET", "/api/v1/users", None),
    p.SCREENING_CREATE: (
        "POST",
        "/api/v1/patients/{pid}/screenings",
        {"drug": "ketamine", "route": "iv"},
    ),
    p.SCREENING_READ: ("GET", "/api/v1/patients/{pid}/screenings", None),
    p.SCREENING_OVERRIDE: (
        "POST",
        "/api/v1/patients/{pid}/screenings/{missing}/override",
        {"reason": "a reason long enough"},
    ),
    p.CONSENT_RECORD: (
        "POST",
        "/api/v1/patients/{pid}/consents",
        {"kind": "treatment", "signed_on": "2024-01-01"},
    ),
    p.COURSE_READ: ("GET", "/api/v1/patients/{pid}/courses", None),
    p.SESSION_CLINICAL_READ: ("GET", "/api/v1/sessions/{missing}/observation-advice", None),
    p.COURSE_MANAGE: ("POST", "/api/v1/courses/{missing}/end", {"reason": "a reason"}),
    p.CHAIR_MANAGE: ("POST", "/api/v1/chairs", {"name": "perm-{missing}"}),
    p.SESSION_CHECK_IN: ("POST", "/api/v1/sessions/{missing}/check-in", {"version": 1}),
    p.SESSION_CLINICAL: (
        "POST",
        "/api/v1/sessions/{missing}/readings",
        {"version": 1, "heart_rate_bpm": 70},
    ),
    p.SESSION_PRESCRIBE: (
        "POST",
        "/api/v1/sessions/{missing}/overrides",
        {"version": 1, "rule_id": "x", "reason": "a reason"},
    ),
    p.SESSION_SCHEDULE: (
        "POST",
        "/api/v1/sessions/{missing}/cancel",
        {"version": 1, "reason": "a reason"},
    ),
    p.AUDIT_READ: ("GET", "/api/v1/audit", None),
    p.THERAPY_NOTES_READ: ("GET", "/api/v1/patients/{pid}/therapy-sessions", None),
}

CASES = [(role, action) for role in Role for action in ENDPOINTS]


@pytest.mark.parametrize(("role", "action"), CASES, ids=[f"{r}-{a}" for r, a in CASES])
def test_role_against_permission_table(stack, patient_id, role, action):
    method, path, body = ENDPOINTS[action]
    client = stack.client(role)
    missing = uuid.uuid4().hex
    if isinstance(body, dict):
        body = {k: v.format(missing=missing) if isinstance(v, str) else v for k, v in body.items()}
    response = client.request(method, path.format(pid=patient_id, missing=missing), json=body)
    if is_allowed(role, action):
        # Allowed: anything but a refusal (a deliberately stale version answers 409, a
        # missing record 404, a rule 409 or 422).
        assert response.status_code in (200, 201, 404, 409, 422), response.text
    else:
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["action"] == action
        with stack.db.transaction() as session:
            denied = session.scalars(
                select(AuditEvent).where(
                    AuditEvent.actor_id == stack.actors[role].user_id,
                    AuditEvent.action == action,
                    AuditEvent.allowed.is_(False),
                )
            ).all()
        assert denied, f"denied {action} by {role} was not audited"


def test_least_privilege_spot_checks():
    # The table is the specification; these pin the intent behind it.
    assert not is_allowed(Role.auditor, p.PATIENT_READ)
    assert not is_allowed(Role.admin, p.PATIENT_READ)
    assert not is_allowed(Role.front_desk, p.HISTORY_READ)
    # Booking needs the schedule, not the chart: doses, readings, adverse events.
    for scheduling_role in (Role.front_desk, Role.manager):
        assert is_allowed(scheduling_role, p.COURSE_READ)
        assert not is_allowed(scheduling_role, p.SESSION_CLINICAL_READ)
    assert not is_allowed(Role.therapist, p.SCREENING_OVERRIDE)
    assert not is_allowed(Role.nurse, p.SCREENING_OVERRIDE)
    assert is_allowed(Role.prescriber, p.SCREENING_OVERRIDE)
    assert ROLE_PERMISSIONS[Role.auditor] == {p.AUDIT_READ, p.ACCESS_LOG_READ}
    assert not is_allowed("patient", p.PATIENT_READ)
    # therapy notes: those who write them and the prescriber, not the rest of the clinic
    assert {r for r in Role if is_allowed(r, p.THERAPY_NOTES_READ)} == {
        Role.therapist,
        Role.prescriber,
    }


def test_unknown_route_is_a_problem_document(stack):
    response = stack.client(Role.nurse).get("/api/v1/" + uuid.uuid4().hex)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
