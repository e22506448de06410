"""Treatment use cases: consents, courses and their schedules, dosing-session actions.

Each use case authorizes, loads, calls the pure rules, saves, audits, in one transaction.
Functions taking a `Session` are for other capabilities to call inside their own transaction;
they read, never authorize or audit (the caller does both)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ketaflow.core.clock import Clock, clinic_today, utc_now
from ketaflow.core.db import Database, new_id
from ketaflow.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Reason, StaleVersion
from ketaflow.patients import screening_service
from ketaflow.patients import service as patients
from ketaflow.patients.rules import age_on
from ketaflow.patients.tables import Patient, Screening
from ketaflow.pharmacology import clinical as pk
from ketaflow.pharmacology.errors import PKInputError
from ketaflow.security import audit
from ketaflow.security import service as security
from ketaflow.security.permissions import (
    CHAIR_MANAGE,
    CONSENT_RECORD,
    COURSE_MANAGE,
    COURSE_READ,
    HOME_DOSE_RECORD,
    SESSION_CHECK_IN,
    SESSION_CLINICAL,
    SESSION_CLINICAL_READ,
    SESSION_PRESCRIBE,
    SESSION_SCHEDULE,
    Actor,
    is_allowed,
)
from ketaflow.treatment import dosing, rules, scheduling
from ketaflow.treatment import schemas as s
from ketaflow.treatment.clinic import ClinicConfig
from ketaflow.treatment.discharge import DischargeInputs, observation_ends_at
from ketaflow.treatment.errors import RuleViolation
from ketaflow.treatment.monitoring import AdverseEvent, Reading
from ketaflow.treatment.protocols import (
    DeviceDose,
    FixedDose,
    Protocol,
    ProtocolId,
    Route,
    stored_protocol,
)
from ketaflow.treatment.rules import DosingSession, SessionState
from ketaflow.treatment.tables import Chair, Consent, Course, DosingSessionRow, HomeDose

# The usual protocol for each drug and route (the first is the default).
PROTOCOLS_BY_DRUG_ROUTE: dict[tuple[str, str], tuple[ProtocolId, ...]] = {
    ("ketamine", "iv"): (ProtocolId.iv_racemic_infusion,),
    ("ketamine", "im"): (ProtocolId.im_racemic,),
    ("ketamine", "sc"): (ProtocolId.sc_racemic,),
    ("ketamine", "oral"): (ProtocolId.oral_racemic,),
    ("ketamine", "sublingual"): (ProtocolId.sublingual_racemic,),
    ("esketamine", "intranasal"): (
        ProtocolId.intranasal_esketamine_trd,
        ProtocolId.intranasal_esketamine_mdd_si,
    ),
}

# States in which a session holds its chair.
BOOKED_STATES = frozenset(
    {"scheduled", "checked_in", "cleared", "deferred", "dosing", "monitoring"}
)

_SCHEDULE_LOCK_KEY = 0x6B657462  # PostgreSQL advisory lock serialising chair bookings


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


def earliest_record_dates(
    session: Session, patient_id: str, clinic_timezone: str
) -> list[tuple[str, date]]:
    """The patient's first consent and first dose, by the clinic's calendar
    (patients.service.RecordDates; in the caller's transaction)."""
    found: list[tuple[str, date]] = []
    consent = session.scalar(
        select(func.min(Consent.signed_on)).where(Consent.patient_id == patient_id)
    )
    if consent is not None:
        found.append(("first consent", consent))
    dose = session.scalar(
        select(func.min(DosingSessionRow.dose_started_at)).where(
            DosingSessionRow.patient_id == patient_id
        )
    )
    if dose is not None:
        found.append(("first dose", clinic_today(dose, clinic_timezone)))
    return found


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


@dataclass(frozen=True)
class PlannedOrGivenDose:
    """A dosing session that will happen or did: given at the dose's end, else planned."""

    session_id: str
    at: datetime
    given: bool


def dose_schedule(session: Session, patient_id: str) -> list[PlannedOrGivenDose]:
    """The patient's doses given and still planned, oldest first (for therapy worklists)."""
    rows = session.scalars(
        select(DosingSessionRow)
        .where(
            DosingSessionRow.patient_id == patient_id,
            DosingSessionRow.state.not_in(("cancelled", "missed")),
        )
        .order_by(DosingSessionRow.scheduled_start)
    )
    doses = []
    for row in rows:
        document = document_of(row)
        if document.dose_started_at is not None:
            ended = document.dose_ended_at or document.dose_started_at
            doses.append(PlannedOrGivenDose(row.id, ended, True))
        elif row.state not in ("stopped", "discharged"):
            doses.append(PlannedOrGivenDose(row.id, row.scheduled_start, False))
    return doses


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


# ---------------------------------------------------------------------------------------------
# Helpers


def rules_actor(actor: Actor) -> rules.Actor:
    """The pure rules' view of the actor; roles outside treatment never get this far."""
    try:
        role = rules.Role(str(actor.role))
    except ValueError as exc:
        raise Forbidden(f"role '{actor.role}' takes no part in dosing sessions") from exc
    return rules.Actor(
        user_id=str(actor.user_id if actor.user_id is not None else "system"), role=role
    )


def course_protocol(course: Course) -> Protocol:
    # As stored: today's label floors check overrides as applied, not older courses.
    return stored_protocol(course.protocol)


def load_course(session: Session, course_id: str) -> Course:
    course = session.get(Course, course_id)
    if course is None:
        raise NotFound(f"no course with id {course_id}")
    return course


def load_session_row(session: Session, session_id: str) -> DosingSessionRow:
    row = session.get(DosingSessionRow, session_id)
    if row is None:
        raise NotFound(f"no dosing session with id {session_id}")
    return row


def document_of(row: DosingSessionRow) -> DosingSession:
    return DosingSession.model_validate(row.document)


def _lock_schedule(session: Session) -> None:
    # SQLite already holds the write lock (BEGIN IMMEDIATE); PostgreSQL needs one so two
    # bookings cannot both take the same chair time.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEDULE_LOCK_KEY})


def _bookings(session: Session, exclude_session_id: str | None = None) -> list[scheduling.Booking]:
    rows = session.scalars(
        select(DosingSessionRow).where(
            DosingSessionRow.state.in_(BOOKED_STATES), DosingSessionRow.chair_id.is_not(None)
        )
    )
    return [
        scheduling.Booking(
            chair_id=r.chair_id, start=r.scheduled_start, end=r.expected_end, session_id=r.id
        )
        for r in rows
        if r.id != exclude_session_id
    ]


def _chairs(session: Session) -> list[str]:
    chairs = list(session.scalars(select(Chair.id).where(Chair.active).order_by(Chair.name)))
    if not chairs:
        raise RuleViolation(
            "no_chairs",
            [Reason("schedule.no_chairs", "the clinic has no active chairs: add one first")],
        )
    return chairs


def _last_dose_at(session: Session, patient_id: str, exclude: str | None = None) -> datetime | None:
    query = select(func.max(DosingSessionRow.dose_started_at)).where(
        DosingSessionRow.patient_id == patient_id
    )
    if exclude:
        query = query.where(DosingSessionRow.id != exclude)
    return session.scalar(query)


def _latest_dose(
    session: Session, patient_id: str, *, exclude: str | None, until: datetime
) -> tuple[datetime | None, bool]:
    """The patient's latest dose at or before `until`, in the clinic or at home (a home dose
    is a dose: the spacing between doses counts it), and whether it was taken at home."""
    clinic_dose = _last_dose_at(session, patient_id, exclude=exclude)
    home_dose = session.scalar(
        select(func.max(HomeDose.taken_at)).where(
            HomeDose.patient_id == patient_id, HomeDose.taken_at <= until
        )
    )
    if home_dose is not None and (clinic_dose is None or home_dose > clinic_dose):
        return home_dose, True
    return clinic_dose, False


def _patient_session_times(
    session: Session, patient_id: str, exclude: str | None = None
) -> list[datetime]:
    """When the patient's own sessions are: the dose start of each dose given, the planned
    start of each session still booked (scheduled or in progress). A new or moved session
    keeps the protocol's spacing from every one of them, not just from a free chair."""
    rows = session.scalars(
        select(DosingSessionRow).where(
            DosingSessionRow.patient_id == patient_id,
            (DosingSessionRow.dose_started_at.is_not(None))
            | (DosingSessionRow.state.in_(BOOKED_STATES)),
        )
    )
    return [r.dose_started_at or r.scheduled_start for r in rows if r.id != exclude]


def _spacing_refusal(
    session: Session,
    protocol: Protocol,
    clinic: ClinicConfig,
    patient_id: str,
    start: datetime,
    exclude: str | None,
) -> RuleViolation | None:
    """A 409 naming the patient's own session that a session at `start` would come too close
    to (inside the protocol's minimum spacing between doses), or None."""
    times = _patient_session_times(session, patient_id, exclude=exclude)
    hours = clinic.opening_hours
    clashes = scheduling.spacing_conflicts(protocol, hours.local_date(start), times, hours)
    if not clashes:
        return None
    other = min(clashes, key=lambda t: abs(t - start))
    return RuleViolation(
        "dose_spacing",
        [
            Reason(
                "schedule.dose_spacing",
                f"the patient has another session on {hours.local_date(other).isoformat()}; "
                f"{protocol.name} needs at least {protocol.min_days_between_doses} day(s) "
                "between doses",
                "protocol minimum spacing between doses",
            )
        ],
    )


def _authorize_on_session(db: Database, actor: Actor, action: str, session_id: str) -> str:
    """Authorize (a refusal names the patient in the audit log) before saying whether the
    session exists, so a refused role learns nothing about it."""
    with db.transaction() as session:
        row = session.get(DosingSessionRow, session_id)
        patient_id = row.patient_id if row else None
    security.require(db, actor, action, "dosing_session", session_id, patient_id=patient_id)
    if patient_id is None:
        raise NotFound(f"no dosing session with id {session_id}")
    return patient_id


def _authorize_on_course(db: Database, actor: Actor, action: str, course_id: str) -> str:
    with db.transaction() as session:
        course = session.get(Course, course_id)
        patient_id = course.patient_id if course else None
    security.require(db, actor, action, "course", course_id, patient_id=patient_id)
    if patient_id is None:
        raise NotFound(f"no course with id {course_id}")
    return patient_id


@contextmanager
def _course_transaction(db: Database, course_id: str) -> Iterator[Session]:
    """A transaction changing a course and its sessions. Someone else's change to one of them
    in between (the version check's StaleDataError) is a 409 to reload, never a 500."""
    try:
        with db.transaction() as session:
            yield session
    except StaleDataError as exc:
        raise StaleVersion(
            f"course {course_id} or one of its sessions was changed by someone else: reload it"
        ) from exc


def _add_sessions(
    session: Session,
    course: Course,
    protocol: Protocol,
    proposals: list[scheduling.ProposedSession],
    kind: str,
    now: datetime,
) -> list[DosingSessionRow]:
    start_sequence = (
        session.scalar(
            select(func.max(DosingSessionRow.sequence)).where(
                DosingSessionRow.course_id == course.id
            )
        )
        or 0
    )
    created = []
    for offset, proposal in enumerate(proposals, start=1):
        session_id = new_id()
        document = rules.new_session(
            session_id=session_id,
            patient_id=course.patient_id,
            course_id=course.id,
            protocol_id=protocol.id,
            scheduled_start=proposal.start,
            chair_id=proposal.chair_id,
        )
        row = DosingSessionRow(
            id=session_id,
            patient_id=course.patient_id,
            course_id=course.id,
            kind=kind,
            sequence=start_sequence + offset,
            state=document.state.value,
            scheduled_start=proposal.start,
            expected_end=proposal.end,
            chair_id=proposal.chair_id,
            document=document.model_dump(mode="json"),
            updated_at=now,
        )
        session.add(row)
        created.append(row)
    session.flush()
    return created


# What a course shows clinical readers only (sessions are shown as bookings instead).
CLINICAL_COURSE_FIELDS = frozenset({"screening_id", "home_dose_mg", "end_reason", "sessions"})


@dataclass(frozen=True)
class CourseView:
    course: Course
    sessions: list[DosingSessionRow]

    def out(self) -> s.CourseOut:
        c = self.course
        return s.CourseOut(
            id=c.id,
            patient_id=c.patient_id,
            drug=c.drug,
            route=c.route,
            protocol_id=c.protocol_id,
            protocol_name=str(c.protocol.get("name", c.protocol_id)),
            phase=c.phase,
            status=c.status,
            started_on=c.started_on,
            screening_id=c.screening_id,
            home_dose_mg=c.home_dose_mg,
            ended_at=c.ended_at,
            end_reason=c.end_reason,
            version=c.version,
            sessions=[s.SessionSummary.model_validate(r) for r in self.sessions],
        )

    def shown_to(self, actor: Actor) -> s.CourseOut | s.CourseScheduleOut:
        """The whole course for clinical readers, the booking view for everyone else."""
        if is_allowed(actor.role, SESSION_CLINICAL_READ):
            return self.out()
        return s.CourseScheduleOut(
            **self.out().model_dump(exclude=CLINICAL_COURSE_FIELDS),
            sessions=[s.ScheduledSessionSummary.model_validate(r) for r in self.sessions],
        )


def _course_sessions(session: Session, course_id: str) -> list[DosingSessionRow]:
    return list(
        session.scalars(
            select(DosingSessionRow)
            .where(DosingSessionRow.course_id == course_id)
            .order_by(DosingSessionRow.sequence)
        )
    )


# ---------------------------------------------------------------------------------------------
# Chairs and consents


def add_chair(db: Database, actor: Actor, name: str) -> Chair:
    security.require(db, actor, CHAIR_MANAGE, "chair")
    with db.transaction() as session:
        if session.scalar(select(Chair.id).where(Chair.name == name)) is not None:
            raise Conflict(f"a chair named {name!r} exists")
        chair = Chair(name=name, active=True)
        session.add(chair)
        session.flush()
        audit.record(session, actor, "chair.create", "chair", chair.id)
        return chair


def list_chairs(db: Database, actor: Actor) -> list[Chair]:
    security.require(db, actor, COURSE_READ, "chair")
    with db.transaction() as session:
        return list(session.scalars(select(Chair).order_by(Chair.name)))


def record_consent(
    db: Database,
    actor: Actor,
    patient_id: str,
    data: s.ConsentIn,
    clock: Clock = utc_now,
    *,
    clinic_timezone: str,
) -> Consent:
    """Record a consent signed on a date of the clinic's calendar (`clinic_timezone`): not
    after the clinic's today, nor before birth."""
    security.require(db, actor, CONSENT_RECORD, "consent", patient_id, patient_id=patient_id)
    now = clock()
    today = clinic_today(now, clinic_timezone)
    with db.transaction() as session:
        patient = patients.load_patient(session, patient_id)
        if data.signed_on > today or data.signed_on < patient.birth_date:
            raise InvalidInput("signed_on is not a plausible date", field_name="signed_on")
        consent = Consent(
            patient_id=patient_id,
            kind=str(data.kind),
            signed_on=data.signed_on,
            reference=data.reference,
            recorded_by=actor.user_id,
            recorded_at=now,
        )
        session.add(consent)
        session.flush()
        audit.record(
            session,
            actor,
            "consent.record",
            "consent",
            consent.id,
            patient_id=patient_id,
            now=now,
        )
        return consent


def _has_consent(session: Session, patient_id: str, kind: s.ConsentKind) -> bool:
    return (
        session.scalar(
            select(Consent.id)
            .where(
                Consent.patient_id == patient_id,
                Consent.kind == kind.value,
                Consent.revoked_at.is_(None),
            )
            .limit(1)
        )
        is not None
    )


# ---------------------------------------------------------------------------------------------
# Courses


def start_course(
    db: Database,
    actor: Actor,
    clinic: ClinicConfig,
    patient_id: str,
    data: s.CourseCreate,
    clock: Clock = utc_now,
) -> CourseView:
    """Start a course on a usable screening (or an audited override) and book its induction."""
    security.require(db, actor, COURSE_MANAGE, "course", patient_id=patient_id)
    now = clock()
    drug, route = data.drug.value, data.route.value
    allowed = PROTOCOLS_BY_DRUG_ROUTE.get((drug, route))
    if not allowed:
        raise InvalidInput(f"{drug} is not given by the {route} route here", field_name="route")
    protocol_id = data.protocol_id or allowed[0]
    if protocol_id not in allowed:
        raise InvalidInput(
            f"protocol {protocol_id} is not a {drug} {route} protocol", field_name="protocol_id"
        )
    protocol = clinic.protocol(protocol_id)
    if data.home_dose_mg is not None and not protocol.home_dosing_allowed:
        raise InvalidInput(f"{protocol.name} is never taken at home", field_name="home_dose_mg")
    today = clinic_today(now, clinic.opening_hours.timezone)
    if data.start_on < today:
        raise InvalidInput("start_on is in the past", field_name="start_on")
    with db.transaction() as session:
        patients.load_patient(session, patient_id)
        screening = screening_service.valid_screening(session, patient_id, drug, route, today)
        if screening is None:
            raise RuleViolation(
                "screening_required",
                [
                    Reason(
                        "course.screening_required",
                        f"no valid {drug} {route} screening: screen the patient (or override "
                        "an ineligible decision with a reason) first",
                        "issue 2 §6: screening precedes treatment",
                    )
                ],
            )
        # The lock before the check: two starts at once would both see no active course.
        _lock_schedule(session)
        active = session.scalar(
            select(Course.id).where(Course.patient_id == patient_id, Course.status == "active")
        )
        if active is not None:
            raise RuleViolation(
                "course_already_active",
                [Reason("course.one_active", f"course {active} is still active: end it first")],
            )
        proposals = scheduling.propose_induction(
            protocol,
            start_on=data.start_on,
            hours=clinic.opening_hours,
            chairs=_chairs(session),
            bookings=_bookings(session),
            preferred_time=data.preferred_time,
            last_dose_at=_last_dose_at(session, patient_id),
            not_before=now,
        )
        course = Course(
            patient_id=patient_id,
            drug=drug,
            route=route,
            protocol_id=protocol.id.value,
            protocol=protocol.model_dump(mode="json"),
            screening_id=screening.id,
            phase="induction" if proposals else "maintenance",
            status="active",
            started_on=data.start_on,
            home_dose_mg=str(data.home_dose_mg) if data.home_dose_mg is not None else None,
            prescribed_by=actor.user_id,
            created_at=now,
        )
        session.add(course)
        session.flush()
        rows = _add_sessions(session, course, protocol, proposals, "induction", now)
        audit.record(
            session,
            actor,
            "course.create",
            "course",
            course.id,
            patient_id=patient_id,
            detail={"sessions": len(rows), "screening": screening.id},
            now=now,
        )
        return CourseView(course, rows)


def get_course(db: Database, actor: Actor, course_id: str) -> CourseView:
    patient_id = _authorize_on_course(db, actor, COURSE_READ, course_id)
    with db.transaction() as session:
        course = load_course(session, course_id)
        audit.record(session, actor, "course.read", "course", course_id, patient_id=patient_id)
        return CourseView(course, _course_sessions(session, course_id))


def list_courses(db: Database, actor: Actor, patient_id: str) -> list[CourseView]:
    security.require(db, actor, COURSE_READ, "course", patient_id=patient_id)
    with db.transaction() as session:
        patients.load_patient(session, patient_id)
        courses = session.scalars(
            select(Course).where(Course.patient_id == patient_id).order_by(Course.created_at)
        )
        views = [CourseView(c, _course_sessions(session, c.id)) for c in courses]
        audit.record(session, actor, "course.list", "patient", patient_id, patient_id=patient_id)
        return views


def _active_course(session: Session, course_id: str) -> Course:
    course = load_course(session, course_id)
    if course.status != "active":
        raise RuleViolation(
            "course_ended", [Reason("course.ended", f"course {course_id} has ended")]
        )
    return course


def add_booster(
    db: Database,
    actor: Actor,
    clinic: ClinicConfig,
    course_id: str,
    data: s.BoosterIn,
    clock: Clock = utc_now,
) -> CourseView:
    patient_id = _authorize_on_course(db, actor, COURSE_MANAGE, course_id)
    now = clock()
    with _course_transaction(db, course_id) as session:
        # The lock before reading the course: a course ended meanwhile gets no new session.
        _lock_schedule(session)
        course = _active_course(session, course_id)
        protocol = course_protocol(course)
        last_dose = _last_dose_at(session, patient_id)
        if last_dose is None:
            raise RuleViolation(
                "no_dose_yet",
                [Reason("course.booster_needs_dose", "a booster follows a dose already given")],
            )
        proposal = scheduling.propose_booster(
            protocol,
            last_dose_at=last_dose,
            hours=clinic.opening_hours,
            chairs=_chairs(session),
            bookings=_bookings(session),
            earliest=max(data.earliest or now, now),
            preferred_time=data.preferred_time,
            patient_sessions=_patient_session_times(session, patient_id),
        )
        rows = _add_sessions(session, course, protocol, [proposal], "booster", now)
        audit.record(
            session,
            actor,
            "course.booster",
            "course",
            course_id,
            patient_id=patient_id,
            detail={"session": rows[0].id},
            now=now,
        )
        return CourseView(course, _course_sessions(session, course_id))


def switch_to_maintenance(
    db: Database,
    actor: Actor,
    clinic: ClinicConfig,
    course_id: str,
    data: s.MaintenanceIn,
    clock: Clock = utc_now,
) -> CourseView:
    patient_id = _authorize_on_course(db, actor, COURSE_MANAGE, course_id)
    now = clock()
    with _course_transaction(db, course_id) as session:
        _lock_schedule(session)  # before reading the course, as for boosters
        course = _active_course(session, course_id)
        protocol = course_protocol(course)
        last_dose = _last_dose_at(session, patient_id) or now
        proposals = scheduling.propose_maintenance(
            protocol,
            last_dose_at=max(last_dose, now - timedelta(days=1)),
            count=data.count,
            hours=clinic.opening_hours,
            chairs=_chairs(session),
            bookings=_bookings(session),
            interval_days=data.interval_days,
            preferred_time=data.preferred_time,
            not_before=now,
            patient_sessions=_patient_session_times(session, patient_id),
        )
        course.phase = "maintenance"
        rows = _add_sessions(session, course, protocol, proposals, "maintenance", now)
        audit.record(
            session,
            actor,
            "course.maintenance",
            "course",
            course_id,
            patient_id=patient_id,
            detail={"sessions": len(rows)},
            now=now,
        )
        return CourseView(course, _course_sessions(session, course_id))


def end_course(
    db: Database, actor: Actor, course_id: str, data: s.EndCourseIn, clock: Clock = utc_now
) -> CourseView:
    """End a course; its sessions still planned are cancelled with the same reason."""
    patient_id = _authorize_on_course(db, actor, COURSE_MANAGE, course_id)
    now = clock()
    with _course_transaction(db, course_id) as session:
        # Serialised with bookings, boosters and maintenance, so none adds a session to the
        # course while it ends.
        _lock_schedule(session)
        course = _active_course(session, course_id)
        sessions = _course_sessions(session, course_id)
        if any(r.state in rules.ACTIVE_STATES for r in sessions):
            raise RuleViolation(
                "session_in_progress",
                [
                    Reason(
                        "course.session_in_progress",
                        "a dosing session of this course is in progress: finish it first",
                    )
                ],
            )
        for row in sessions:
            if row.state == SessionState.scheduled.value:
                outcome = rules.cancel(
                    document_of(row),
                    reason=f"course ended: {data.reason}",
                    actor=rules_actor(actor),
                    now=now,
                )
                _store(row, outcome.session, now)
        course.status = "ended"
        course.phase = "ended"
        course.ended_at = now
        course.end_reason = data.reason
        audit.record(
            session, actor, "course.end", "course", course_id, patient_id=patient_id, now=now
        )
        return CourseView(course, sessions)


def free_slots(
    db: Database,
    actor: Actor,
    clinic: ClinicConfig,
    protocol_id: ProtocolId,
    after: datetime,
    count: int,
) -> list[scheduling.Slot]:
    security.require(db, actor, COURSE_READ, "schedule")
    protocol = clinic.protocol(protocol_id)
    with db.transaction() as session:
        return scheduling.next_free_slots(
            protocol,
            hours=clinic.opening_hours,
            chairs=_chairs(session),
            bookings=_bookings(session),
            after=after,
            count=count,
        )


def mark_missed_sessions(db: Database, clinic: ClinicConfig, clock: Clock = utc_now) -> int:
    """Planned sessions whose start passed unattended become missed (run by worklists)."""
    now = clock()
    cutoff = now - timedelta(minutes=clinic.missed_grace_minutes)
    try:
        return _mark_missed(db, clinic, now, cutoff)
    except StaleDataError:
        # a session was checked in (or moved) between our read and our write: nothing is
        # marked this time, and the next worklist read marks what is still unattended
        return 0


def _mark_missed(db: Database, clinic: ClinicConfig, now: datetime, cutoff: datetime) -> int:
    with db.transaction() as session:
        rows = session.scalars(
            select(DosingSessionRow)
            .where(
                DosingSessionRow.state == SessionState.scheduled.value,
                DosingSessionRow.scheduled_start < cutoff,
            )
            # PostgreSQL: a session someone is acting on right now is left to them
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            outcome = rules.mark_missed(
                document_of(row), now=now, grace_minutes=clinic.missed_grace_minutes
            )
            _store(row, outcome.session, now)
            audit.record(
                session,
                security.SYSTEM_ACTOR,
                "session.missed",
                "dosing_session",
                row.id,
                patient_id=row.patient_id,
                now=now,
            )
        return len(rows)


# ---------------------------------------------------------------------------------------------
# Dosing sessions


def _store(row: DosingSessionRow, document: DosingSession, now: datetime) -> None:
    row.document = document.model_dump(mode="json")
    row.state = document.state.value
    row.scheduled_start = document.scheduled_start
    row.chair_id = document.chair_id
    row.dose_started_at = document.dose_started_at
    row.updated_at = now


@dataclass(frozen=True)
class SessionView:
    row: DosingSessionRow
    document: DosingSession
    protocol: Protocol
    new_alarms: tuple = ()

    def out(self, now: datetime, clinic_timezone: str) -> s.SessionOut:
        """The whole session; readings due as of `now` on the clinic's calendar."""
        status = rules.session_status(
            self.document, self.protocol, now=now, clinic_timezone=clinic_timezone
        )
        return s.SessionOut(
            session=s.SessionSummary.model_validate(self.row),
            protocol_id=self.protocol.id.value,
            document=self.document.model_dump(mode="json"),
            due_readings=[d.model_dump(mode="json") for d in status.due_readings],
            missed_readings=[d.model_dump(mode="json") for d in status.missed_readings],
            open_alarms=[a.model_dump(mode="json") for a in status.open_alarms],
            new_alarms=[a.model_dump(mode="json") for a in self.new_alarms],
            discharge_unmet=[r.as_dict() for r in status.discharge_blockers],
            deferred_reasons=[r.as_dict() for r in status.deferred_reasons],
            observation_ends_at=status.observation_ends_at,
        )

    def schedule_out(self) -> s.SessionScheduleOut:
        """The booking only: what a role without clinical read may see."""
        return s.SessionScheduleOut(session=s.ScheduledSessionSummary.model_validate(self.row))

    def shown_to(
        self, actor: Actor, now: datetime, clinic_timezone: str
    ) -> s.SessionOut | s.SessionScheduleOut:
        """The whole session for clinical readers, the booking for everyone else."""
        if is_allowed(actor.role, SESSION_CLINICAL_READ):
            return self.out(now, clinic_timezone)
        return self.schedule_out()


Step = Callable[[Session, DosingSessionRow, DosingSession, Protocol, datetime], rules.Outcome]


def _act(
    db: Database,
    actor: Actor,
    session_id: str,
    version: int,
    permission: str,
    action: str,
    step: Step,
    clock: Clock,
    detail: dict[str, object] | None = None,
) -> SessionView:
    """Run one action of the state machine on a stored session, atomically and audited."""
    patient_id = _authorize_on_session(db, actor, permission, session_id)
    now = clock()
    try:
        with db.transaction() as session:
            row = load_session_row(session, session_id)
            if row.version != version:
                raise StaleVersion(
                    f"session was changed since version {version}: reload it",
                    expected_version=version,
                    current_version=row.version,
                )
            course = load_course(session, row.course_id)
            protocol = course_protocol(course)
            outcome = step(session, row, document_of(row), protocol, now)
            _store(row, outcome.session, now)
            session.flush()
            audit.record(
                session,
                actor,
                f"session.{action}",
                "dosing_session",
                session_id,
                patient_id=patient_id,
                # The state and ids only: the alarms an action raised (their ids name the
                # threshold crossed) are in the chart, never in the audit log.
                detail={"state": outcome.session.state.value, **(detail or {})},
                now=now,
            )
            return SessionView(row, outcome.session, protocol, outcome.alarms)
    except StaleDataError as exc:
        raise StaleVersion(
            "session was changed by someone else: reload it", expected_version=version
        ) from exc
    except (rules.RoleNotAllowed, Forbidden):
        # The rules refuse a role (a nurse stopping a dosed session...) inside the use case's
        # transaction, which rolled back: the refusal is audited in one of its own, as
        # security.require does, and answers 403.
        with db.transaction() as session:
            audit.record(
                session,
                actor,
                f"session.{action}",
                "dosing_session",
                session_id,
                patient_id=patient_id,
                allowed=False,
                now=now,
            )
        raise


def get_session(db: Database, actor: Actor, session_id: str) -> SessionView:
    """A session: its whole clinical record for roles with SESSION_CLINICAL_READ; the others
    allowed the schedule (front desk, managers) are shown its booking only (`SessionView.
    shown_to`), and the audit says which view was read."""
    patient_id = _authorize_on_session(db, actor, COURSE_READ, session_id)
    clinical = is_allowed(actor.role, SESSION_CLINICAL_READ)
    with db.transaction() as session:
        row = load_session_row(session, session_id)
        protocol = course_protocol(load_course(session, row.course_id))
        audit.record(
            session,
            actor,
            "session.read",
            "dosing_session",
            session_id,
            patient_id=patient_id,
            detail={"view": "clinical" if clinical else "schedule"},
        )
        return SessionView(row, document_of(row), protocol)


def reschedule_session(
    db: Database,
    actor: Actor,
    clinic: ClinicConfig,
    session_id: str,
    data: s.RescheduleIn,
    clock: Clock = utc_now,
) -> SessionView:
    if data.scheduled_start.tzinfo is None:
        raise InvalidInput("scheduled_start needs a time zone", field_name="scheduled_start")

    def step(session, row, doc, protocol, now):
        if data.scheduled_start < now:
            raise InvalidInput("scheduled_start is in the past", field_name="scheduled_start")
        _lock_schedule(session)
        chair = data.chair_id or row.chair_id
        if chair is None or session.get(Chair, chair) is None:
            raise InvalidInput(f"no chair {chair}", field_name="chair_id")
        end = data.scheduled_start + timedelta(minutes=protocol.chair_minutes)
        window = clinic.opening_hours.window(clinic.opening_hours.local_date(data.scheduled_start))
        if window is None or data.scheduled_start < window[0] or end > window[1]:
            raise RuleViolation(
                "outside_opening_hours",
                [
                    Reason(
                        "schedule.opening_hours",
                        "the session does not fit the clinic's opening hours",
                    )
                ],
            )
        candidate = scheduling.Booking(
            chair_id=chair, start=data.scheduled_start, end=end, session_id=row.id
        )
        clashes = scheduling.chair_conflicts(_bookings(session, row.id), candidate)
        if clashes:
            raise RuleViolation(
                "chair_double_booked",
                [
                    Reason(
                        "schedule.chair_free",
                        f"chair is booked from {clashes[0].start.isoformat()} "
                        f"to {clashes[0].end.isoformat()}",
                    )
                ],
            )
        too_close = _spacing_refusal(
            session, protocol, clinic, row.patient_id, data.scheduled_start, exclude=row.id
        )
        if too_close is not None:
            raise too_close
        row.expected_end = end
        return rules.reschedule(
            doc,
            scheduled_start=data.scheduled_start,
            chair_id=chair,
            actor=rules_actor(actor),
            now=now,
        )

    return _act(db, actor, session_id, data.version, SESSION_SCHEDULE, "reschedule", step, clock)


def cancel_session(
    db: Database, actor: Actor, session_id: str, data: s.CancelIn, clock: Clock = utc_now
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_SCHEDULE,
        "cancel",
        lambda _s, _r, doc, _p, now: rules.cancel(
            doc, reason=data.reason, actor=rules_actor(actor), now=now
        ),
        clock,
    )


def check_in(
    db: Database,
    actor: Actor,
    session_id: str,
    data: s.VersionIn,
    clock: Clock = utc_now,
    *,
    clinic: ClinicConfig,
) -> SessionView:
    """Check in, on the session's scheduled clinic date only (else reschedule it first)."""
    timezone = clinic.opening_hours.timezone
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CHECK_IN,
        "check_in",
        lambda _s, _r, doc, _p, now: rules.check_in(
            doc, actor=rules_actor(actor), now=now, clinic_timezone=timezone
        ),
        clock,
    )


SafetyInputs = Callable[[Session, str], tuple[int | None, str | None]]


def _no_safety_inputs(_session: Session, _patient_id: str) -> tuple[int | None, str | None]:
    return None, None


def pre_dose_inputs(
    session: Session,
    row: DosingSessionRow,
    course: Course,
    data: s.PreDoseIn,
    clinic: ClinicConfig,
    safety: SafetyInputs,
    now: datetime,
) -> rules.PreDoseInputs:
    """Gather what the pre-dose checks read: consent, screening, weight, last dose (in the
    clinic or at home), the latest safety flags, and what the nurse confirmed at the bedside."""
    screening = session.get(Screening, course.screening_id)
    history_revision = patients.current_history(session, row.patient_id).revision
    on_current_history = (
        screening is not None and (screening.history_revision or 0) == history_revision
    )
    today = clinic_today(now, clinic.opening_hours.timezone)
    if screening is None or not on_current_history or screening.expires_on < today:
        # the course's screening no longer covers the dose (the history was revised after
        # it, or it expired): a newer screening of the current history, if usable today,
        # covers it; the newest decision wins, so a newer refusal leaves the check failing
        newer = screening_service.valid_screening(
            session, row.patient_id, course.drug, course.route, today
        )
        if newer is not None:
            screening, on_current_history = newer, True
    latest = patients.latest_measurement(session, row.patient_id)
    phq9_item9, cssrs_risk = safety(session, row.patient_id)
    last_dose_at, at_home = _latest_dose(session, row.patient_id, exclude=row.id, until=now)
    return rules.PreDoseInputs(
        consent_on_file=_has_consent(session, row.patient_id, s.ConsentKind.treatment),
        screening_expires_on=screening.expires_on if screening else None,
        screening_override=bool(screening and screening.overridden_at is not None),
        screening_on_current_history=on_current_history,
        weight_kg=Decimal(str(latest.weight_kg)) if latest else None,
        weight_recorded_on=latest.measured_on if latest else None,
        last_dose_at=last_dose_at,
        last_dose_at_home=at_home,
        escort_confirmed=data.escort_confirmed,
        no_driving_confirmed=data.no_driving_confirmed,
        phq9_item9=phq9_item9,
        cssrs_risk=rules.CssrsRisk(cssrs_risk) if cssrs_risk else None,
        rems_patient_enrolled=_has_consent(session, row.patient_id, s.ConsentKind.rems_enrollment),
        fasting_asked=data.fasting_asked,
        last_food_at=data.last_food_at,
        last_liquid_at=data.last_liquid_at,
        nasal_product_at=data.nasal_product_at,
        concomitant_medications=(
            None
            if data.concomitant_medications is None
            else frozenset(data.concomitant_medications)
        ),
        clinic_timezone=clinic.opening_hours.timezone,
    )


def run_pre_dose_checks(
    db: Database,
    actor: Actor,
    clinic: ClinicConfig,
    session_id: str,
    data: s.PreDoseIn,
    clock: Clock = utc_now,
    safety: SafetyInputs = _no_safety_inputs,
) -> SessionView:
    def step(session, row, doc, protocol, now):
        inputs = pre_dose_inputs(
            session, row, load_course(session, row.course_id), data, clinic, safety, now
        )
        return rules.run_pre_dose_checks(doc, protocol, inputs, actor=rules_actor(actor), now=now)

    return _act(
        db, actor, session_id, data.version, SESSION_CLINICAL, "pre_dose_checks", step, clock
    )


def override_check(
    db: Database, actor: Actor, session_id: str, data: s.CheckOverrideIn, clock: Clock = utc_now
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_PRESCRIBE,
        "override",
        lambda _s, _r, doc, _p, now: rules.override_check(
            doc, rule_id=data.rule_id, reason=data.reason, actor=rules_actor(actor), now=now
        ),
        clock,
    )


def _dose_given_mg(document: dict) -> int | None:
    """The mg a started session actually gave. Esketamine counts the devices given, each
    28 mg (label section 11, reference §1: doses are whole devices), not the dose ordered: a
    56 mg session stopped after one device gave 28 mg, which is not the 56 mg start that 84 mg
    needs (label section 2, reference §1)."""
    dose = document.get("dose")
    if not dose:
        return None
    ordered = Decimal(str(dose["dose_mg"]))
    ordered_devices = dose.get("device_count")
    if ordered_devices:
        per_device = ordered / ordered_devices  # 28 mg a device (reference §1)
        return int(per_device * len(document.get("devices") or ()))
    return int(ordered)


def prior_doses_mg(session: Session, row: DosingSessionRow) -> list[int]:
    """Doses given earlier in the same course, oldest first (esketamine's 56-then-84 rule),
    as given: by the devices actually given, not the dose ordered."""
    earlier = session.scalars(
        select(DosingSessionRow)
        .where(
            DosingSessionRow.course_id == row.course_id,
            DosingSessionRow.id != row.id,
            DosingSessionRow.dose_started_at.is_not(None),
        )
        .order_by(DosingSessionRow.dose_started_at)
    )
    given = (_dose_given_mg(d.document) for d in earlier)
    return [mg for mg in given if mg]


def calculate_dose(
    session: Session, row: DosingSessionRow, protocol: Protocol, data: s.StartDoseIn
) -> rules.AdministeredDose:
    """The dose from the protocol's rule and the chart: never typed in as a final number."""
    rule = protocol.dose_rule
    if isinstance(rule, DeviceDose):
        if data.dose_mg is None:
            raise InvalidInput("dose_mg (56 or 84) is required", field_name="dose_mg")
        prior = prior_doses_mg(session, row)
        if data.dose_mg != int(data.dose_mg):
            raise InvalidInput("dose_mg must be whole devices", field_name="dose_mg")
        devices = dosing.calculate_device_dose(
            rule, dose_mg=int(data.dose_mg), prior_doses_mg=prior
        )
        return rules.AdministeredDose(
            dose_mg=Decimal(devices.dose_mg),
            device_count=devices.device_count,
            lot_number=data.lot_number,
        )
    if isinstance(rule, FixedDose):
        if data.dose_mg is None:
            raise InvalidInput("dose_mg is required for this protocol", field_name="dose_mg")
        first = _last_dose_at(session, row.patient_id, exclude=row.id) is None
        fixed = dosing.calculate_fixed_dose(
            rule,
            dose_mg=data.dose_mg,
            first_dose=first,
            concentration_mg_per_ml=data.concentration_mg_per_ml,
        )
        return rules.AdministeredDose(
            dose_mg=fixed.dose_mg,
            volume_ml=fixed.volume_ml,
            lot_number=data.lot_number,
            product_concentration_mg_per_ml=data.concentration_mg_per_ml,
        )
    latest = patients.latest_measurement(session, row.patient_id)
    if latest is None:
        raise RuleViolation(
            "weight_missing",
            [
                Reason(
                    "dose.weight_missing", "record the patient's weight before calculating the dose"
                )
            ],
        )
    if data.concentration_mg_per_ml is None:
        raise InvalidInput(
            "concentration_mg_per_ml of the product is required",
            field_name="concentration_mg_per_ml",
        )
    patient = session.get(Patient, row.patient_id)
    height = patients.latest_height_cm(session, row.patient_id)
    sex = dosing.Sex(patient.sex) if patient and patient.sex in ("female", "male") else None
    result = dosing.calculate_weight_based_dose(
        rule,
        weight_kg=Decimal(str(latest.weight_kg)),
        concentration_mg_per_ml=data.concentration_mg_per_ml,
        mg_per_kg=data.mg_per_kg,
        height_cm=Decimal(str(height)) if height else None,
        sex=sex,
        administration_minutes=protocol.administration_minutes,
    )
    return rules.AdministeredDose(
        dose_mg=result.dose_mg,
        mg_per_kg=result.mg_per_kg,
        dosing_weight_kg=result.dosing_weight_kg,
        volume_ml=result.volume_ml,
        max_dose_mg=result.max_dose_mg,
        lot_number=data.lot_number,
        product_concentration_mg_per_ml=result.concentration_mg_per_ml,
    )


def preview_dose(
    db: Database, actor: Actor, session_id: str, data: s.StartDoseIn
) -> rules.AdministeredDose:
    patient_id = _authorize_on_session(db, actor, SESSION_CLINICAL, session_id)
    with db.transaction() as session:
        row = load_session_row(session, session_id)
        protocol = course_protocol(load_course(session, row.course_id))
        dose = calculate_dose(session, row, protocol, data)
        audit.record(
            session,
            actor,
            "session.dose_preview",
            "dosing_session",
            session_id,
            patient_id=patient_id,
        )
        return dose


def start_dose(
    db: Database,
    actor: Actor,
    session_id: str,
    data: s.StartDoseIn,
    clock: Clock = utc_now,
    *,
    clinic: ClinicConfig,
) -> SessionView:
    timezone = clinic.opening_hours.timezone

    def step(session, row, doc, protocol, now):
        dose = calculate_dose(session, row, protocol, data)
        # Spacing again at the dose itself: another session of the patient's may have been
        # dosed (or a home dose reported) since this one's checks ran.
        last_dose_at, _ = _latest_dose(session, row.patient_id, exclude=row.id, until=now)
        return rules.start_dose(
            doc,
            protocol,
            dose,
            actor=rules_actor(actor),
            now=now,
            prior_doses_mg=prior_doses_mg(session, row),
            last_dose_at=last_dose_at,
            clinic_timezone=timezone,
        )

    return _act(db, actor, session_id, data.version, SESSION_CLINICAL, "start_dose", step, clock)


def record_device(
    db: Database, actor: Actor, session_id: str, data: s.DeviceIn, clock: Clock = utc_now
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CLINICAL,
        "device",
        lambda _s, _r, doc, protocol, now: rules.record_device(
            doc, protocol, actor=rules_actor(actor), now=now, lot_number=data.lot_number
        ),
        clock,
    )


def end_dose(
    db: Database, actor: Actor, session_id: str, data: s.EndDoseIn, clock: Clock = utc_now
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CLINICAL,
        "end_dose",
        lambda _s, _r, doc, protocol, now: rules.end_dose(
            doc, protocol, actor=rules_actor(actor), now=now, reason=data.reason
        ),
        clock,
    )


def pause_infusion(
    db: Database, actor: Actor, session_id: str, data: s.PauseIn, clock: Clock = utc_now
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CLINICAL,
        "pause",
        lambda _s, _r, doc, protocol, now: rules.pause_infusion(
            doc, protocol, reason=data.reason, actor=rules_actor(actor), now=now
        ),
        clock,
    )


def resume_infusion(
    db: Database, actor: Actor, session_id: str, data: s.VersionIn, clock: Clock = utc_now
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_PRESCRIBE,
        "resume",
        lambda _s, _r, doc, _p, now: rules.resume_infusion(doc, actor=rules_actor(actor), now=now),
        clock,
    )


def titrate(
    db: Database, actor: Actor, session_id: str, data: s.TitrateIn, clock: Clock = utc_now
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_PRESCRIBE,
        "titrate",
        lambda _s, _r, doc, protocol, now: rules.titrate_dose(
            doc,
            protocol,
            new_dose_mg=data.new_dose_mg,
            reason=data.reason,
            actor=rules_actor(actor),
            now=now,
        ),
        clock,
    )


def record_reading(
    db: Database, actor: Actor, session_id: str, data: s.ReadingIn, clock: Clock = utc_now
) -> SessionView:
    def step(_session, _row, doc, protocol, now):
        taken_at = data.taken_at or now
        if taken_at.tzinfo is None:
            raise InvalidInput("taken_at needs a time zone", field_name="taken_at")
        reading = Reading(
            id=new_id(),
            taken_at=taken_at,
            recorded_by=rules_actor(actor).user_id,
            **data.model_dump(exclude={"version", "taken_at"}),
        )
        return rules.record_reading(doc, protocol, reading, actor=rules_actor(actor), now=now)

    return _act(db, actor, session_id, data.version, SESSION_CLINICAL, "reading", step, clock)


def void_reading(
    db: Database,
    actor: Actor,
    session_id: str,
    reading_id: str,
    data: s.VoidIn,
    clock: Clock = utc_now,
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CLINICAL,
        "void_reading",
        lambda _s, _r, doc, _p, now: rules.void_reading(
            doc, reading_id=reading_id, reason=data.reason, actor=rules_actor(actor), now=now
        ),
        clock,
        detail={"reading": reading_id},
    )


def acknowledge_alarm(
    db: Database,
    actor: Actor,
    session_id: str,
    alarm_id: str,
    data: s.AcknowledgeIn,
    clock: Clock = utc_now,
) -> SessionView:
    # Alarm ids are "{reading}:{threshold}": the audit log names the reading only, never the
    # threshold crossed (clinical content stays in the chart).
    detail: dict[str, object] = {}

    def step(_session, _row, doc, _p, now):
        outcome = rules.acknowledge_alarm(
            doc, alarm_id=alarm_id, actor=rules_actor(actor), now=now, note=data.note
        )
        alarm = next((a for a in doc.alarms if a.id == alarm_id), None)
        if alarm is not None:
            detail["reading"] = alarm.reading_id
        return outcome

    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CLINICAL,
        "acknowledge_alarm",
        step,
        clock,
        detail=detail,
    )


def record_adverse_event(
    db: Database, actor: Actor, session_id: str, data: s.AdverseEventIn, clock: Clock = utc_now
) -> SessionView:
    event_id = new_id()

    def step(_session, _row, doc, _p, now):
        event = AdverseEvent(
            id=event_id,
            kind=data.kind,
            description=data.description,
            severity=data.severity,
            onset_at=data.onset_at or now,
            recorded_at=now,
            recorded_by=rules_actor(actor).user_id,
            actions=tuple(data.actions),
        )
        return rules.record_adverse_event(doc, event, actor=rules_actor(actor), now=now)

    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CLINICAL,
        "adverse_event",
        step,
        clock,
        detail={"event": event_id},
    )


def update_adverse_event(
    db: Database,
    actor: Actor,
    session_id: str,
    event_id: str,
    data: s.AdverseEventUpdateIn,
    clock: Clock = utc_now,
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CLINICAL,
        "adverse_event_update",
        lambda _s, _r, doc, _p, now: rules.update_adverse_event(
            doc,
            event_id=event_id,
            outcome=data.outcome,
            actor=rules_actor(actor),
            now=now,
            resolved_at=data.resolved_at,
            add_actions=data.add_actions,
        ),
        clock,
        detail={"event": event_id},
    )


def discharge(
    db: Database, actor: Actor, session_id: str, data: s.DischargeIn, clock: Clock = utc_now
) -> SessionView:
    inputs = DischargeInputs(**data.model_dump(exclude={"version"}))
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CLINICAL,
        "discharge",
        lambda _s, _r, doc, protocol, now: rules.discharge(
            doc, protocol, inputs, actor=rules_actor(actor), now=now
        ),
        clock,
    )


def stop_session(
    db: Database, actor: Actor, session_id: str, data: s.StopIn, clock: Clock = utc_now
) -> SessionView:
    return _act(
        db,
        actor,
        session_id,
        data.version,
        SESSION_CLINICAL,
        "stop",
        lambda _s, _r, doc, _p, now: rules.stop(
            doc, reason=data.reason, note=data.note, actor=rules_actor(actor), now=now
        ),
        clock,
    )


def record_home_dose(
    db: Database,
    actor: Actor,
    clinic: ClinicConfig,
    course_id: str,
    data: s.HomeDoseIn,
    clock: Clock = utc_now,
) -> HomeDose:
    """A dose the patient took at home (oral/sublingual maintenance), as reported. A dose above
    the prescription or too soon is kept, with its flags, for the prescriber to see."""
    patient_id = _authorize_on_course(db, actor, HOME_DOSE_RECORD, course_id)
    now = clock()
    if data.taken_at.tzinfo is None:
        raise InvalidInput("taken_at needs a time zone", field_name="taken_at")
    with db.transaction() as session:
        course = _active_course(session, course_id)
        if course.home_dose_mg is None:
            raise RuleViolation(
                "no_home_prescription",
                [Reason("home_dose.not_prescribed", "this course has no at-home dose prescribed")],
            )
        previous = session.scalar(
            select(func.max(HomeDose.taken_at)).where(
                HomeDose.patient_id == patient_id, HomeDose.taken_at < data.taken_at
            )
        )
        clinic_dose = session.scalar(
            select(func.max(DosingSessionRow.dose_started_at)).where(
                DosingSessionRow.patient_id == patient_id,
                DosingSessionRow.dose_started_at < data.taken_at,
            )
        )
        latest = max((t for t in (previous, clinic_dose) if t is not None), default=None)
        record = dosing.check_home_dose(
            course_protocol(course),
            dose_mg=data.dose_mg,
            taken_at=data.taken_at,
            now=now,
            prescribed_dose_mg=Decimal(course.home_dose_mg),
            previous_dose_at=latest,
            clinic_tz=clinic.opening_hours.zone,
        )
        row = HomeDose(
            patient_id=patient_id,
            course_id=course_id,
            taken_at=record.taken_at,
            dose_mg=str(record.dose_mg),
            note=data.note,
            flags=[f.as_dict() for f in record.flags],
            recorded_by=actor.user_id,
            recorded_at=now,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            "home_dose.record",
            "home_dose",
            row.id,
            patient_id=patient_id,
            now=now,
        )
        return row


def list_home_doses(db: Database, actor: Actor, course_id: str) -> list[HomeDose]:
    patient_id = _authorize_on_course(db, actor, SESSION_CLINICAL_READ, course_id)
    with db.transaction() as session:
        rows = list(
            session.scalars(
                select(HomeDose).where(HomeDose.course_id == course_id).order_by(HomeDose.taken_at)
            )
        )
        audit.record(session, actor, "home_dose.list", "course", course_id, patient_id=patient_id)
        return rows


@dataclass(frozen=True)
class ObservationAdvice:
    """The PK engine's advice for a dose given, next to the protocol's fixed minimum."""

    dose_started_at: datetime
    protocol_minimum_ends_at: datetime | None
    end_of_dissociation_at: datetime
    end_of_dissociation_p95_at: datetime
    suggested_earliest_discharge_at: datetime
    model: str
    citation: str
    concentrations: str
    warnings: tuple[str, ...]
    note: str


def observation_advice(db: Database, actor: Actor, session_id: str) -> ObservationAdvice:
    """When dissociation is predicted to end for this patient and dose (Olofsen 2022 effect
    site), and a suggested earliest discharge: advice shown beside the protocol's minimum,
    never a replacement for it."""
    patient_id = _authorize_on_session(db, actor, SESSION_CLINICAL_READ, session_id)
    with db.transaction() as session:
        row = load_session_row(session, session_id)
        course = load_course(session, row.course_id)
        document = document_of(row)
        if document.dose is None or document.dose_started_at is None:
            raise RuleViolation(
                "no_dose_yet",
                [Reason("advice.no_dose", "observation advice follows a dose that has started")],
            )
        patient = patients.load_patient(session, patient_id)
        latest = patients.latest_measurement(session, patient_id)
        audit.record(
            session,
            actor,
            "session.observation_advice",
            "dosing_session",
            session_id,
            patient_id=patient_id,
        )
    if latest is None:
        raise RuleViolation(
            "weight_missing",
            [Reason("advice.weight_missing", "the prediction needs the patient's weight")],
        )
    protocol = course_protocol(course)
    started = document.dose_started_at
    # Only an IV infusion has a duration in the PK engine; the nasal protocol's 10 minutes
    # are the devices' spacing, which the engine's dose plan already carries.
    infusion_min = (
        float(protocol.administration_minutes)
        if protocol.route == Route.intravenous_infusion
        else None
    )
    try:
        advice = pk.observation_advice(
            course.drug,
            course.route,
            None if document.dose.device_count else float(document.dose.dose_mg),
            latest.weight_kg,
            devices=document.dose.device_count,
            duration_min=infusion_min,
            age_years=float(age_on(patient.birth_date, started.date())),
        )
    except PKInputError as exc:  # the chart's values are outside what the models take
        raise RuleViolation(
            "advice_unavailable", [Reason(f"advice.{exc.parameter}", str(exc))]
        ) from exc
    return ObservationAdvice(
        dose_started_at=started,
        protocol_minimum_ends_at=observation_ends_at(
            protocol.discharge,
            dose_started_at=started,
            dose_ended_at=document.dose_ended_at,
        ),
        end_of_dissociation_at=started + timedelta(minutes=advice.end_of_dissociation_min),
        end_of_dissociation_p95_at=started + timedelta(minutes=advice.end_of_dissociation_p95_min),
        suggested_earliest_discharge_at=started
        + timedelta(minutes=advice.suggested_earliest_discharge_min),
        model=advice.model.title,
        citation=advice.model.citation,
        concentrations=advice.concentrations,
        warnings=tuple(advice.warnings),
        note=advice.note,
    )


def sessions_between(
    db: Database, actor: Actor, start: datetime, end: datetime
) -> list[DosingSessionRow]:
    """The clinic's sessions in a time window (the day board)."""
    security.require(db, actor, COURSE_READ, "schedule")
    with db.transaction() as session:
        rows = list(
            session.scalars(
                select(DosingSessionRow)
                .where(
                    DosingSessionRow.scheduled_start >= start,
                    DosingSessionRow.scheduled_start < end,
                )
                .order_by(DosingSessionRow.scheduled_start)
            )
        )
        for row in rows:
            audit.record(
                session, actor, "session.list", "dosing_session", row.id, patient_id=row.patient_id
            )
        return rows
