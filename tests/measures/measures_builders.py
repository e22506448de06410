"""Shared helpers for the measures API tests: patients registered over HTTP, and dose times
inserted straight into the treatment tables (a course needs a screening row) until dosing
sessions can be walked through the treatment services in these tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from ketaflow.core.db import Database, new_id
from ketaflow.patients.tables import Screening
from ketaflow.security.tables import AuditEvent
from ketaflow.treatment import rules
from ketaflow.treatment.protocols import ProtocolId, get_protocol
from ketaflow.treatment.tables import Course, DosingSessionRow

# Rows inserted here must be valid for every reader of the shared test store (worklists too).
PROTOCOL = get_protocol(ProtocolId.iv_racemic_infusion)

PROBLEM = "application/problem+json"

# PHQ-9 answers in item order (items 1-9; item 10, difficulty, is optional and unscored).
PHQ9_ITEMS = [str(i) for i in range(1, 10)]


def phq9(total: int, item9: int = 0) -> dict[str, int]:
    """PHQ-9 answers summing to `total` with item 9 as given (filled from item 1 on)."""
    if not 0 <= item9 <= 3 or not item9 <= total <= 24 + item9:
        raise ValueError("cannot spread that total over PHQ-9 items 1-8")
    answers = {"9": item9}
    left = total - item9
    for item in PHQ9_ITEMS[:8]:
        answers[item] = min(3, left)
        left -= answers[item]
    return answers


def madrs(total: int) -> dict[str, int]:
    """MADRS answers (items 1-10, 0-6) summing to `total`, item 10 (suicidality) 0."""
    answers = {"10": 0}
    left = total
    for item in [str(i) for i in range(1, 10)]:
        answers[item] = min(6, left)
        left -= answers[item]
    if left:
        raise ValueError("MADRS total too high with item 10 at 0")
    return answers


def register_patient(client: httpx.Client) -> str:
    response = client.post(
        "/api/v1/patients",
        json={
            "family_name": "Meas" + uuid.uuid4().hex[:8],
            "given_name": "Quinn",
            "birth_date": "1979-06-15",
            "sex": "female",
            "weight_kg": 70,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def add_course(
    db: Database,
    patient_id: str,
    dose_times: Sequence[datetime],
    *,
    drug: str = "ketamine",
    route: str = "iv",
    phase: str = "induction",
    status: str = "active",
    kinds: Sequence[str] | None = None,
    created_at: datetime | None = None,
) -> tuple[str, list[str]]:
    """A course with one discharged dosing session per dose time; returns (course, sessions)."""
    first = min(dose_times) if dose_times else datetime.now(UTC)
    created = created_at or first - timedelta(days=1)
    with db.transaction() as session:
        screening = Screening(
            patient_id=patient_id,
            drug=drug,
            route=route,
            screened_on=created.date(),
            expires_on=(created + timedelta(days=180)).date(),
            decision="eligible",
            reasons=[],
            treatment_resistant=True,
            adequate_failed_trials=2,
            urgent=False,
            rule_version="test",
            inputs={},
            created_at=created,
        )
        session.add(screening)
        session.flush()
        course = Course(
            patient_id=patient_id,
            drug=drug,
            route=route,
            protocol_id=PROTOCOL.id.value,
            protocol=PROTOCOL.model_dump(mode="json"),
            screening_id=screening.id,
            phase=phase,
            status=status,
            started_on=created.date(),
            created_at=created,
        )
        session.add(course)
        session.flush()
        session_ids = []
        for index, dose_at in enumerate(sorted(dose_times)):
            row_id = new_id()
            document = rules.new_session(
                session_id=row_id,
                patient_id=patient_id,
                course_id=course.id,
                protocol_id=PROTOCOL.id,
                scheduled_start=dose_at - timedelta(minutes=15),
            ).model_copy(
                update={
                    "state": rules.SessionState.discharged,
                    "dose_started_at": dose_at,
                    "closed_at": dose_at,
                }
            )
            row = DosingSessionRow(
                id=row_id,
                patient_id=patient_id,
                course_id=course.id,
                kind=(kinds[index] if kinds else "induction"),
                sequence=index + 1,
                state="discharged",
                scheduled_start=dose_at - timedelta(minutes=15),
                expected_end=dose_at + timedelta(hours=2),
                dose_started_at=dose_at,
                document=document.model_dump(mode="json"),
                updated_at=dose_at,
            )
            session.add(row)
            session.flush()
            session_ids.append(row.id)
        return course.id, session_ids


def add_scheduled_session(db: Database, patient_id: str, course_id: str) -> str:
    """A session booked but not dosed yet (no dose time)."""
    start = datetime.now(UTC) + timedelta(days=3)
    row_id = new_id()
    document = rules.new_session(
        session_id=row_id,
        patient_id=patient_id,
        course_id=course_id,
        protocol_id=PROTOCOL.id,
        scheduled_start=start,
    )
    with db.transaction() as session:
        row = DosingSessionRow(
            id=row_id,
            patient_id=patient_id,
            course_id=course_id,
            kind="induction",
            sequence=99,
            state="scheduled",
            scheduled_start=start,
            expected_end=start + timedelta(hours=2),
            dose_started_at=None,
            document=document.model_dump(mode="json"),
            updated_at=start,
        )
        session.add(row)
        session.flush()
        return row.id


def post_assessment(
    client: httpx.Client, patient_id: str, instrument: str, answers: dict, **extra
) -> httpx.Response:
    body = {"instrument": instrument, "answers": answers, **extra}
    for key, value in list(body.items()):
        if isinstance(value, datetime):
            body[key] = value.isoformat()
    return client.post(f"/api/v1/patients/{patient_id}/assessments", json=body)


def record(client: httpx.Client, patient_id: str, instrument: str, answers: dict, **extra) -> dict:
    response = post_assessment(client, patient_id, instrument, answers, **extra)
    assert response.status_code == 201, response.text
    return response.json()


def audit_events(db: Database, **where) -> list[AuditEvent]:
    query = select(AuditEvent)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    with db.transaction() as session:
        return list(session.scalars(query.order_by(AuditEvent.id)))
