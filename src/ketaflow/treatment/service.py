"""Treatment use cases: courses, dosing sessions, readings, discharge, therapy sessions.

Functions taking a `Session` are for other capabilities to call inside their own transaction;
they read, never authorize or audit (the caller does both)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketaflow.treatment.tables import Course, DosingSessionRow


@dataclass(frozen=True)
class DoseMarker:
    """One dose given in the clinic: what outcome rules and trajectories are measured against."""

    session_id: str
    course_id: str
    drug: str
    route: str
    kind: str  # induction, booster or maintenance
    sequence: int
    dose_started_at: datetime


@dataclass(frozen=True)
class CourseMarker:
    course_id: str
    drug: str
    route: str
    protocol_id: str
    phase: str
    status: str
    started_on: date
    ended_at: datetime | None


def dose_timeline(session: Session, patient_id: str) -> list[DoseMarker]:
    """Every dose the patient was given in the clinic, oldest first."""
    rows = session.execute(
        select(DosingSessionRow, Course.drug, Course.route)
        .join(Course, Course.id == DosingSessionRow.course_id)
        .where(
            DosingSessionRow.patient_id == patient_id,
            DosingSessionRow.dose_started_at.is_not(None),
        )
        .order_by(DosingSessionRow.dose_started_at)
    ).all()
    return [
        DoseMarker(
            session_id=row.id,
            course_id=row.course_id,
            drug=drug,
            route=route,
            kind=row.kind,
            sequence=row.sequence,
            dose_started_at=row.dose_started_at,  # type: ignore[arg-type]
        )
        for row, drug, route in rows
    ]


def course_markers(session: Session, patient_id: str) -> list[CourseMarker]:
    """The patient's courses, oldest first."""
    courses = session.scalars(
        select(Course).where(Course.patient_id == patient_id).order_by(Course.created_at)
    )
    return [
        CourseMarker(
            course_id=c.id,
            drug=c.drug,
            route=c.route,
            protocol_id=c.protocol_id,
            phase=c.phase,
            status=c.status,
            started_on=c.started_on,
            ended_at=c.ended_at,
        )
        for c in courses
    ]
