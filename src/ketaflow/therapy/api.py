"""HTTP endpoints for preparation and integration sessions."""

from __future__ import annotations

from fastapi import APIRouter

from ketaflow.security.dependencies import ActorDep, ClockDep, DbDep
from ketaflow.therapy import service
from ketaflow.therapy.policy import TherapyDue
from ketaflow.therapy.schemas import TherapySessionIn, TherapySessionOut
from ketaflow.therapy.tables import TherapySessionRow
from ketaflow.treatment.api import ClinicDep

router = APIRouter(prefix="/patients/{patient_id}", tags=["therapy"])


def _out(row: TherapySessionRow) -> TherapySessionOut:
    return TherapySessionOut(
        id=row.id,
        patient_id=row.patient_id,
        kind=row.kind,
        modality=row.modality,
        modality_other=row.note.get("modality_other"),
        held_at=row.held_at,
        duration_min=row.duration_min,
        dosing_session_id=row.dosing_session_id,
        note=row.note.get("note", {}),
        recorded_at=row.recorded_at,
    )


@router.post("/therapy-sessions", response_model=TherapySessionOut, status_code=201)
def record_therapy_session(
    patient_id: str, body: TherapySessionIn, actor: ActorDep, db: DbDep, clock: ClockDep
) -> TherapySessionOut:
    """A preparation or integration session, tied to the dose it serves."""
    return _out(service.record_therapy_session(db, actor, patient_id, body, clock=clock))


@router.get("/therapy-sessions", response_model=list[TherapySessionOut])
def list_therapy_sessions(patient_id: str, actor: ActorDep, db: DbDep) -> list[TherapySessionOut]:
    return [_out(r) for r in service.list_therapy_sessions(db, actor, patient_id)]


@router.get("/therapy-due", response_model=list[TherapyDue])
def therapy_due(
    patient_id: str, actor: ActorDep, db: DbDep, clock: ClockDep, clinic: ClinicDep
) -> list[TherapyDue]:
    """Preparation before the first dose, integration within the policy's hours of each dose."""
    return service.patient_therapy_due(db, actor, patient_id, clinic.therapy_policy, clock=clock)
