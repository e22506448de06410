"""HTTP endpoints for patients: registration, search, measurements, history, access log."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from ketaflow.core.pagination import Page, PageDep
from ketaflow.measures import service as measures
from ketaflow.patients import screening_service, service
from ketaflow.patients.schemas import (
    AccessLogEntry,
    HistoryIn,
    HistoryOut,
    MeasurementIn,
    MeasurementOut,
    OverrideIn,
    PatientCreate,
    PatientOut,
    PatientUpdate,
    ScreeningOut,
    ScreeningRequest,
)
from ketaflow.security.dependencies import ActorDep, ClockDep, DbDep, SettingsDep
from ketaflow.therapy import service as therapy
from ketaflow.treatment import service as treatment

router = APIRouter(prefix="/patients", tags=["patients"])


def _out(view: service.PatientView) -> PatientOut:
    return PatientOut.model_validate(view.as_dict())


def _history_out(view: service.HistoryView) -> HistoryOut:
    return HistoryOut(
        patient_id=view.patient_id,
        revision=view.revision,
        recorded_at=view.recorded_at,  # type: ignore[arg-type]
        history=view.history,
    )


@router.post("", response_model=PatientOut, status_code=201)
def register_patient(
    body: PatientCreate, actor: ActorDep, db: DbDep, settings: SettingsDep, clock: ClockDep
) -> PatientOut:
    return _out(
        service.register_patient(
            db, actor, body, clock=clock, clinic_timezone=settings.clinic_timezone
        )
    )


@router.get("", response_model=Page[PatientOut])
def search_patients(
    actor: ActorDep,
    db: DbDep,
    page: PageDep,
    name: Annotated[str | None, Query(max_length=100, description="part of a name")] = None,
    mrn: Annotated[str | None, Query(max_length=32)] = None,
    birth_date: date | None = None,
) -> Page[PatientOut]:
    result = service.search_patients(
        db, actor, name=name, mrn=mrn, birth_date=birth_date, limit=page.limit, offset=page.offset
    )
    return Page[PatientOut](
        items=[_out(v) for v in result.items], total=result.total, **page.model_dump()
    )


@router.get("/{patient_id}", response_model=PatientOut)
def get_patient(patient_id: str, actor: ActorDep, db: DbDep) -> PatientOut:
    return _out(service.get_patient(db, actor, patient_id))


@router.patch("/{patient_id}", response_model=PatientOut)
def update_patient(
    patient_id: str,
    body: PatientUpdate,
    actor: ActorDep,
    db: DbDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> PatientOut:
    return _out(
        service.update_patient(
            db,
            actor,
            patient_id,
            body,
            clock=clock,
            clinic_timezone=settings.clinic_timezone,
            other_records=_other_record_dates,
        )
    )


def _other_record_dates(session, patient_id: str, clinic_timezone: str) -> list[tuple[str, date]]:
    """What other capabilities hold dated for the patient (patients.service.RecordDates)."""
    return [
        *measures.earliest_record_dates(session, patient_id, clinic_timezone),
        *therapy.earliest_record_dates(session, patient_id, clinic_timezone),
        *treatment.earliest_record_dates(session, patient_id, clinic_timezone),
    ]


@router.post("/{patient_id}/measurements", response_model=MeasurementOut, status_code=201)
def record_measurement(
    patient_id: str,
    body: MeasurementIn,
    actor: ActorDep,
    db: DbDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> MeasurementOut:
    return MeasurementOut.model_validate(
        service.record_measurement(
            db, actor, patient_id, body, clock=clock, clinic_timezone=settings.clinic_timezone
        )
    )


@router.get("/{patient_id}/measurements", response_model=list[MeasurementOut])
def list_measurements(patient_id: str, actor: ActorDep, db: DbDep) -> list[MeasurementOut]:
    return [
        MeasurementOut.model_validate(m) for m in service.list_measurements(db, actor, patient_id)
    ]


@router.get("/{patient_id}/history", response_model=HistoryOut)
def get_history(patient_id: str, actor: ActorDep, db: DbDep) -> HistoryOut:
    return _history_out(service.get_history(db, actor, patient_id))


@router.put("/{patient_id}/history", response_model=HistoryOut)
def save_history(
    patient_id: str,
    body: HistoryIn,
    actor: ActorDep,
    db: DbDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> HistoryOut:
    return _history_out(
        service.save_history(
            db,
            actor,
            patient_id,
            body.history,
            body.expected_revision,
            clock=clock,
            clinic_timezone=settings.clinic_timezone,
        )
    )


@router.get("/{patient_id}/access-log", response_model=Page[AccessLogEntry])
def access_log(patient_id: str, actor: ActorDep, db: DbDep, page: PageDep) -> Page[AccessLogEntry]:
    events, total = service.access_log(db, actor, patient_id, limit=page.limit, offset=page.offset)
    return Page[AccessLogEntry](
        items=[AccessLogEntry.model_validate(e) for e in events], total=total, **page.model_dump()
    )


@router.post("/{patient_id}/screenings", response_model=ScreeningOut, status_code=201)
def screen_patient(
    patient_id: str,
    body: ScreeningRequest,
    actor: ActorDep,
    db: DbDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> ScreeningOut:
    """Screen for a drug and route: `eligible`, `eligible_with_cautions` or `ineligible`, each
    reason with its rule id, a sentence and its source."""
    return ScreeningOut.model_validate(
        screening_service.screen_patient(
            db,
            actor,
            settings,
            patient_id,
            body,
            clock=clock,
            assessment_flags=measures.screening_flags,
        )
    )


@router.get("/{patient_id}/screenings", response_model=list[ScreeningOut])
def list_screenings(patient_id: str, actor: ActorDep, db: DbDep) -> list[ScreeningOut]:
    return [
        ScreeningOut.model_validate(x)
        for x in screening_service.list_screenings(db, actor, patient_id)
    ]


@router.get("/{patient_id}/screenings/{screening_id}", response_model=ScreeningOut)
def get_screening(patient_id: str, screening_id: str, actor: ActorDep, db: DbDep) -> ScreeningOut:
    return ScreeningOut.model_validate(
        screening_service.get_screening(db, actor, patient_id, screening_id)
    )


@router.post("/{patient_id}/screenings/{screening_id}/override", response_model=ScreeningOut)
def override_screening(
    patient_id: str,
    screening_id: str,
    body: OverrideIn,
    actor: ActorDep,
    db: DbDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> ScreeningOut:
    """A prescriber overrides an `ineligible` decision with a reason (kept and audited)."""
    return ScreeningOut.model_validate(
        screening_service.override_screening(
            db, actor, settings, patient_id, screening_id, body.reason, clock=clock
        )
    )
