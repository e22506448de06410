"""Therapy use cases: record preparation and integration sessions, and what is due."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ketaflow.core.clock import Clock, utc_now
from ketaflow.core.db import Database, new_id
from ketaflow.core.errors import InvalidInput
from ketaflow.patients import service as patients
from ketaflow.patients.rules import check_not_before_birth
from ketaflow.security import audit
from ketaflow.security import service as security
from ketaflow.security.permissions import THERAPY_NOTES_READ, THERAPY_READ, THERAPY_RECORD, Actor
from ketaflow.therapy import policy as rules
from ketaflow.therapy.schemas import TherapySessionIn
from ketaflow.therapy.tables import TherapySessionRow
from ketaflow.treatment import service as treatment


def _as_policy_value(row: TherapySessionRow) -> rules.TherapySession:
    return rules.TherapySession(
        id=row.id,
        patient_id=row.patient_id,
        kind=rules.TherapyKind(row.kind),
        dosing_session_id=row.dosing_session_id,
        held_at=row.held_at,
        duration_min=row.duration_min,
        therapist_id=str(row.therapist_id or "unknown"),
        modality=rules.Modality(row.modality),
        modality_other=row.note.get("modality_other"),
        note=rules.TherapyNote.model_validate(row.note.get("note", {})),
    )


def _doses(session: Session, patient_id: str) -> list[rules.DoseEvent]:
    return [
        rules.DoseEvent(dosing_session_id=d.session_id, at=d.at, given=d.given)
        for d in treatment.dose_schedule(session, patient_id)
    ]


def _rows(session: Session, patient_id: str) -> list[TherapySessionRow]:
    return list(
        session.scalars(
            select(TherapySessionRow)
            .where(TherapySessionRow.patient_id == patient_id)
            .order_by(TherapySessionRow.held_at)
        )
    )


def record_therapy_session(
    db: Database, actor: Actor, patient_id: str, data: TherapySessionIn, clock: Clock = utc_now
) -> TherapySessionRow:
    security.require(db, actor, THERAPY_RECORD, "therapy_session", patient_id=patient_id)
    now = clock()
    if data.held_at.tzinfo is None:
        raise InvalidInput("held_at needs a time zone", field_name="held_at")
    with db.transaction() as session:
        patient = patients.load_patient(session, patient_id)
        check_not_before_birth(data.held_at.date(), patient.birth_date, "held_at")
        doses = _doses(session, patient_id)
        if data.dosing_session_id is not None:
            dose = next((d for d in doses if d.dosing_session_id == data.dosing_session_id), None)
            if dose is None:
                raise InvalidInput(
                    "no dosing session of this patient with that id",
                    field_name="dosing_session_id",
                )
        elif data.kind is rules.TherapyKind.preparation:
            # A preparation serves the next dose from its time, given or planned.
            dose = next((d for d in doses if d.at >= data.held_at), None)
        else:
            # An integration serves the latest dose given before it.
            dose = next((d for d in reversed(doses) if d.given and d.at <= data.held_at), None)
        row_id = new_id()
        value = rules.TherapySession(
            id=row_id,
            patient_id=patient_id,
            kind=data.kind,
            dosing_session_id=dose.dosing_session_id if dose else None,
            held_at=data.held_at,
            duration_min=data.duration_min,
            therapist_id=str(actor.user_id),
            modality=data.modality,
            modality_other=data.modality_other,
            note=data.note,
        )
        rules.validate_therapy_session(value, dose=dose, now=now)
        row = TherapySessionRow(
            id=row_id,
            patient_id=patient_id,
            dosing_session_id=value.dosing_session_id,
            kind=value.kind.value,
            modality=value.modality.value,
            held_at=value.held_at,
            duration_min=value.duration_min,
            note={
                "note": value.note.model_dump(mode="json"),
                "modality_other": value.modality_other,
            },
            therapist_id=actor.user_id,
            recorded_at=now,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            "therapy.record",
            "therapy_session",
            row_id,
            patient_id=patient_id,
            detail={"kind": row.kind},
            now=now,
        )
        return row


def earliest_record_dates(
    session: Session, patient_id: str, clinic_timezone: str
) -> list[tuple[str, date]]:
    """The patient's first therapy session, by the clinic's calendar
    (patients.service.RecordDates; in the caller's transaction)."""
    first = session.scalar(
        select(func.min(TherapySessionRow.held_at)).where(
            TherapySessionRow.patient_id == patient_id
        )
    )
    if first is None:
        return []
    return [("first therapy session", first.astimezone(ZoneInfo(clinic_timezone)).date())]


def list_therapy_sessions(db: Database, actor: Actor, patient_id: str) -> list[TherapySessionRow]:
    security.require(db, actor, THERAPY_NOTES_READ, "therapy_session", patient_id=patient_id)
    with db.transaction() as session:
        patients.load_patient(session, patient_id)
        rows = _rows(session, patient_id)
        audit.record(session, actor, "therapy.list", "patient", patient_id, patient_id=patient_id)
        return rows


def therapy_due(
    session: Session, patient_id: str, policy: rules.TherapyPolicy, now: datetime
) -> list[rules.TherapyDue]:
    """What the therapy policy asks of this patient at `now` (for worklists, inside the
    caller's transaction; the caller authorizes and audits)."""
    return rules.therapy_due(
        policy,
        doses=_doses(session, patient_id),
        sessions=[_as_policy_value(r) for r in _rows(session, patient_id)],
        now=now,
    )


def patient_therapy_due(
    db: Database, actor: Actor, patient_id: str, policy: rules.TherapyPolicy, clock: Clock = utc_now
) -> list[rules.TherapyDue]:
    security.require(db, actor, THERAPY_READ, "therapy_session", patient_id=patient_id)
    with db.transaction() as session:
        patients.load_patient(session, patient_id)
        due = therapy_due(session, patient_id, policy, clock())
        audit.record(session, actor, "therapy.due", "patient", patient_id, patient_id=patient_id)
        return due
