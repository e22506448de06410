"""Patient use cases: authorize, load, apply the rules, save, audit, in one transaction each."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ketaflow.core.clock import Clock, clinic_today, utc_now
from ketaflow.core.db import Database
from ketaflow.core.errors import Conflict, InvalidInput, NotFound, StaleVersion
from ketaflow.patients import history as history_values
from ketaflow.patients import rules
from ketaflow.patients.history import PatientHistory
from ketaflow.patients.schemas import MeasurementIn, PatientCreate, PatientUpdate
from ketaflow.patients.tables import BodyMeasurement, HistoryRevision, Patient
from ketaflow.security import audit
from ketaflow.security import service as security
from ketaflow.security.permissions import (
    ACCESS_LOG_READ,
    HISTORY_READ,
    HISTORY_UPDATE,
    PATIENT_CREATE,
    PATIENT_READ,
    PATIENT_UPDATE,
    WEIGHT_RECORD,
    Actor,
)
from ketaflow.security.tables import AuditEvent


@dataclass(frozen=True)
class PatientView:
    """A patient with the latest body measurement, as every reader sees it."""

    patient: Patient
    latest: BodyMeasurement | None

    def as_dict(self) -> dict[str, object]:
        p = self.patient
        return {
            "id": p.id,
            "mrn": p.mrn,
            "family_name": p.family_name,
            "given_name": p.given_name,
            "birth_date": p.birth_date,
            "sex": p.sex,
            "version": p.version,
            "created_at": p.created_at,
            "updated_at": p.updated_at,
            "weight_kg": self.latest.weight_kg if self.latest else None,
            "weight_measured_on": self.latest.measured_on if self.latest else None,
            "height_cm": self.latest.height_cm if self.latest else None,
        }


def load_patient(session: Session, patient_id: str) -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound(f"no patient with id {patient_id}")
    return patient


def latest_measurement(session: Session, patient_id: str) -> BodyMeasurement | None:
    return session.scalars(
        select(BodyMeasurement)
        .where(BodyMeasurement.patient_id == patient_id)
        .order_by(BodyMeasurement.measured_on.desc(), BodyMeasurement.id.desc())
        .limit(1)
    ).first()


def latest_height_cm(session: Session, patient_id: str) -> float | None:
    return session.scalars(
        select(BodyMeasurement.height_cm)
        .where(BodyMeasurement.patient_id == patient_id, BodyMeasurement.height_cm.is_not(None))
        .order_by(BodyMeasurement.measured_on.desc(), BodyMeasurement.id.desc())
        .limit(1)
    ).first()


def _new_mrn(session: Session) -> str:
    for _ in range(20):
        candidate = rules.format_mrn(secrets.randbelow(10**7))
        if session.scalar(select(Patient.id).where(Patient.mrn == candidate)) is None:
            return candidate
    raise Conflict("could not allocate a free MRN; try again")


def register_patient(
    db: Database,
    actor: Actor,
    data: PatientCreate,
    clock: Clock = utc_now,
    *,
    clinic_timezone: str,
) -> PatientView:
    security.require(db, actor, PATIENT_CREATE, "patient")
    now = clock()
    today = clinic_today(now, clinic_timezone)
    rules.check_birth_date(data.birth_date, today)
    try:
        with db.transaction() as session:
            if data.mrn and session.scalar(select(Patient.id).where(Patient.mrn == data.mrn)):
                raise Conflict(f"MRN {data.mrn} is already in use")
            patient = Patient(
                mrn=data.mrn or _new_mrn(session),
                family_name=data.family_name,
                given_name=data.given_name,
                birth_date=data.birth_date,
                sex=str(data.sex),
                created_at=now,
                updated_at=now,
            )
            session.add(patient)
            session.flush()
            measurement = None
            if data.weight_kg is not None:
                measurement = BodyMeasurement(
                    patient_id=patient.id,
                    weight_kg=data.weight_kg,
                    height_cm=data.height_cm,
                    measured_on=today,
                    recorded_by=actor.user_id,
                    recorded_at=now,
                )
                session.add(measurement)
            audit.record(
                session,
                actor,
                "patient.create",
                "patient",
                patient.id,
                patient_id=patient.id,
                now=now,
            )
            return PatientView(patient, measurement)
    except IntegrityError as exc:  # a concurrent registration took the same MRN
        raise Conflict("MRN is already in use") from exc


def get_patient(db: Database, actor: Actor, patient_id: str) -> PatientView:
    security.require(db, actor, PATIENT_READ, "patient", patient_id, patient_id=patient_id)
    with db.transaction() as session:
        patient = load_patient(session, patient_id)
        audit.record(session, actor, "patient.read", "patient", patient_id, patient_id=patient_id)
        return PatientView(patient, latest_measurement(session, patient_id))


def update_patient(
    db: Database,
    actor: Actor,
    patient_id: str,
    changes: PatientUpdate,
    clock: Clock = utc_now,
    *,
    clinic_timezone: str,
    other_records: RecordDates | None = None,
) -> PatientView:
    """`other_records` names the earliest dated records other capabilities hold for the
    patient (assessments, therapy, doses), so a birth-date correction cannot land after them."""
    security.require(db, actor, PATIENT_UPDATE, "patient", patient_id, patient_id=patient_id)
    now = clock()
    fields = changes.model_dump(exclude_unset=True, exclude={"version"})
    if "birth_date" in fields:
        rules.check_birth_date(fields["birth_date"], clinic_today(now, clinic_timezone))
    try:
        with db.transaction() as session:
            patient = load_patient(session, patient_id)
            if patient.version != changes.version:
                raise StaleVersion(
                    f"patient was changed since version {changes.version}",
                    expected_version=changes.version,
                    current_version=patient.version,
                )
            if "birth_date" in fields:
                _check_records_after_birth(session, patient_id, fields["birth_date"])
                for name, day in (other_records or _no_records)(
                    session, patient_id, clinic_timezone
                ):
                    if day < fields["birth_date"]:
                        raise InvalidInput(
                            f"birth_date is after the patient's {name} ({day.isoformat()})",
                            field_name="birth_date",
                        )
            mrn = fields.get("mrn")
            if (
                mrn
                and mrn != patient.mrn
                and session.scalar(select(Patient.id).where(Patient.mrn == mrn))
            ):
                raise Conflict(f"MRN {mrn} is already in use")
            for name, value in fields.items():
                setattr(patient, name, str(value) if name == "sex" else value)
            patient.updated_at = now
            session.flush()
            audit.record(
                session,
                actor,
                "patient.update",
                "patient",
                patient_id,
                patient_id=patient_id,
                detail={"fields": sorted(fields)},
                now=now,
            )
            return PatientView(patient, latest_measurement(session, patient_id))
    except StaleDataError as exc:  # a concurrent update committed between our read and write
        raise StaleVersion(
            "patient was changed by someone else", expected_version=changes.version
        ) from exc
    except IntegrityError as exc:  # a concurrent update or registration took the same MRN
        raise Conflict("MRN is already in use") from exc


# (session, patient id, clinic time zone) -> (what, clinic date) of a capability's earliest
# dated records of the patient.
RecordDates = Callable[[Session, str, str], Iterable[tuple[str, date]]]


def _no_records(_session: Session, _patient_id: str, _timezone: str) -> list[tuple[str, date]]:
    return []


def _check_records_after_birth(session: Session, patient_id: str, birth_date: date) -> None:
    """A corrected birth date must not come after what this patient's record already holds
    (a weight, a history date): the record would then be refused for ever after."""
    first_weighed = session.scalar(
        select(func.min(BodyMeasurement.measured_on)).where(
            BodyMeasurement.patient_id == patient_id
        )
    )
    if first_weighed is not None and first_weighed < birth_date:
        raise InvalidInput(
            f"birth_date is after a stored measurement ({first_weighed.isoformat()})",
            field_name="birth_date",
        )
    for name, day in rules.history_dates(current_history(session, patient_id).history):
        if day < birth_date:
            raise InvalidInput(
                f"birth_date is after {name} of the stored history ({day.isoformat()})",
                field_name="birth_date",
            )


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class PatientPage:
    items: list[PatientView]
    total: int


def search_patients(
    db: Database,
    actor: Actor,
    *,
    name: str | None = None,
    mrn: str | None = None,
    birth_date: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> PatientPage:
    """Every patient a search returns counts as read, so it is in that patient's access log."""
    security.require(db, actor, PATIENT_READ, "patient")
    query = select(Patient)
    for token in (name or "").split():
        pattern = f"%{_escape_like(token.lower())}%"
        query = query.where(
            or_(
                func.lower(Patient.family_name).like(pattern, escape="\\"),
                func.lower(Patient.given_name).like(pattern, escape="\\"),
            )
        )
    if mrn:
        query = query.where(Patient.mrn == mrn.strip())
    if birth_date:
        query = query.where(Patient.birth_date == birth_date)
    with db.transaction() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        patients = list(
            session.scalars(
                query.order_by(Patient.family_name, Patient.given_name, Patient.id)
                .limit(limit)
                .offset(offset)
            )
        )
        # The search itself is audited, even when it returns nobody: a `total` with no items
        # still tells whether someone is a patient. Counts only, never the terms (PHI).
        audit.record(
            session,
            actor,
            "patient.search",
            "patient",
            detail={"returned": len(patients), "total": total},
        )
        views = []
        for patient in patients:
            audit.record(
                session, actor, "patient.list", "patient", patient.id, patient_id=patient.id
            )
            views.append(PatientView(patient, latest_measurement(session, patient.id)))
        return PatientPage(views, total)


def record_measurement(
    db: Database,
    actor: Actor,
    patient_id: str,
    data: MeasurementIn,
    clock: Clock = utc_now,
    *,
    clinic_timezone: str,
) -> BodyMeasurement:
    security.require(db, actor, WEIGHT_RECORD, "patient", patient_id, patient_id=patient_id)
    now = clock()
    today = clinic_today(now, clinic_timezone)
    with db.transaction() as session:
        patient = load_patient(session, patient_id)
        measured_on = data.measured_on or today
        rules.check_measured_on(measured_on, patient.birth_date, today)
        measurement = BodyMeasurement(
            patient_id=patient_id,
            weight_kg=data.weight_kg,
            height_cm=data.height_cm,
            measured_on=measured_on,
            recorded_by=actor.user_id,
            recorded_at=now,
        )
        session.add(measurement)
        session.flush()
        audit.record(
            session,
            actor,
            "patient.weight.record",
            "body_measurement",
            measurement.id,
            patient_id=patient_id,
            now=now,
        )
        return measurement


def list_measurements(db: Database, actor: Actor, patient_id: str) -> list[BodyMeasurement]:
    security.require(db, actor, PATIENT_READ, "patient", patient_id, patient_id=patient_id)
    with db.transaction() as session:
        load_patient(session, patient_id)
        rows = list(
            session.scalars(
                select(BodyMeasurement)
                .where(BodyMeasurement.patient_id == patient_id)
                .order_by(BodyMeasurement.measured_on.desc(), BodyMeasurement.id.desc())
            )
        )
        audit.record(
            session, actor, "patient.weight.read", "patient", patient_id, patient_id=patient_id
        )
        return rows


@dataclass(frozen=True)
class HistoryView:
    patient_id: str
    revision: int
    recorded_at: object
    history: PatientHistory


def current_history(session: Session, patient_id: str) -> HistoryView:
    row = session.scalars(
        select(HistoryRevision)
        .where(HistoryRevision.patient_id == patient_id)
        .order_by(HistoryRevision.revision.desc())
        .limit(1)
    ).first()
    if row is None:
        return HistoryView(patient_id, 0, None, PatientHistory())
    return HistoryView(
        patient_id, row.revision, row.recorded_at, history_values.from_stored(row.document)
    )


def get_history(db: Database, actor: Actor, patient_id: str) -> HistoryView:
    security.require(db, actor, HISTORY_READ, "patient_history", patient_id, patient_id=patient_id)
    with db.transaction() as session:
        load_patient(session, patient_id)
        view = current_history(session, patient_id)
        audit.record(
            session,
            actor,
            "patient.history.read",
            "patient_history",
            patient_id,
            patient_id=patient_id,
            detail={"revision": view.revision},
        )
        return view


def save_history(
    db: Database,
    actor: Actor,
    patient_id: str,
    history: PatientHistory,
    expected_revision: int,
    clock: Clock = utc_now,
    *,
    clinic_timezone: str,
) -> HistoryView:
    security.require(
        db, actor, HISTORY_UPDATE, "patient_history", patient_id, patient_id=patient_id
    )
    now = clock()
    try:
        with db.transaction() as session:
            patient = load_patient(session, patient_id)
            rules.check_history_dates(
                history, patient.birth_date, clinic_today(now, clinic_timezone)
            )
            current = current_history(session, patient_id)
            if current.revision != expected_revision:
                raise StaleVersion(
                    f"history was changed since revision {expected_revision}",
                    expected_version=expected_revision,
                    current_version=current.revision,
                )
            revision = current.revision + 1
            session.add(
                HistoryRevision(
                    patient_id=patient_id,
                    revision=revision,
                    document=history.model_dump(mode="json"),
                    recorded_by=actor.user_id,
                    recorded_at=now,
                )
            )
            session.flush()
            audit.record(
                session,
                actor,
                "patient.history.update",
                "patient_history",
                patient_id,
                patient_id=patient_id,
                detail={"revision": revision},
                now=now,
            )
            return HistoryView(patient_id, revision, now, history)
    except IntegrityError as exc:  # a concurrent save took the same revision number
        raise StaleVersion(
            "history was changed by someone else", expected_version=expected_revision
        ) from exc


def access_log(
    db: Database, actor: Actor, patient_id: str, *, limit: int, offset: int
) -> tuple[list[AuditEvent], int]:
    """Who read or changed this patient's record, and when (newest first)."""
    security.require(db, actor, ACCESS_LOG_READ, "patient", patient_id, patient_id=patient_id)
    with db.transaction() as session:
        load_patient(session, patient_id)
        where = AuditEvent.patient_id == patient_id
        total = session.scalar(select(func.count()).select_from(AuditEvent).where(where)) or 0
        events = list(
            session.scalars(
                select(AuditEvent)
                .where(where)
                .order_by(AuditEvent.id.desc())
                .limit(limit)
                .offset(offset)
            )
        )
        audit.record(
            session, actor, "patient.access_log.read", "patient", patient_id, patient_id=patient_id
        )
        return events, total
