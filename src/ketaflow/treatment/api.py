"""HTTP endpoints for consents, courses, schedules and dosing sessions."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder

from ketaflow.core.clock import Clock
from ketaflow.measures import service as measures
from ketaflow.security.dependencies import ActorDep, ClockDep, DbDep, SettingsDep
from ketaflow.security.permissions import Actor
from ketaflow.treatment import schemas as s
from ketaflow.treatment import service, worklist
from ketaflow.treatment.clinic import ClinicConfig
from ketaflow.treatment.protocols import ProtocolId

router = APIRouter(tags=["treatment"])


def get_clinic(request: Request) -> ClinicConfig:
    return request.app.state.clinic


ClinicDep = Annotated[ClinicConfig, Depends(get_clinic)]


# PHQ-9 asks about the past 2 weeks (Kroenke et al. 2001, reference §3): older answers do not
# describe the patient on the day of the dose.
SAFETY_LOOKBACK = timedelta(days=14)


def _out(view: service.SessionView, clock: Clock, clinic: ClinicConfig) -> s.SessionOut:
    """The whole session, for actions only clinical staff may take; what is due is read on
    the clinic's calendar (a pre-dose reading from another clinic day is due again)."""
    return view.out(clock(), clinic.opening_hours.timezone)


# What the scheduling roles may also call (read, reschedule, cancel, check in): the whole
# session for clinical readers, the booking only for front desk and managers.
SessionOrBooking = s.SessionOut | s.SessionScheduleOut


def _shown(
    view: service.SessionView, actor: Actor, clock: Clock, clinic: ClinicConfig
) -> SessionOrBooking:
    return view.shown_to(actor, clock(), clinic.opening_hours.timezone)


@router.post("/chairs", response_model=s.ChairOut, status_code=201)
def add_chair(body: s.ChairIn, actor: ActorDep, db: DbDep) -> s.ChairOut:
    """A treatment chair or room that sessions are booked into (clinic managers)."""
    return s.ChairOut.model_validate(service.add_chair(db, actor, body.name))


@router.get("/chairs", response_model=list[s.ChairOut])
def list_chairs(actor: ActorDep, db: DbDep) -> list[s.ChairOut]:
    return [s.ChairOut.model_validate(c) for c in service.list_chairs(db, actor)]


@router.post("/patients/{patient_id}/consents", status_code=201)
def record_consent(
    patient_id: str,
    body: s.ConsentIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> dict:
    consent = service.record_consent(
        db, actor, patient_id, body, clock=clock, clinic_timezone=settings.clinic_timezone
    )
    return {"id": consent.id, "kind": consent.kind, "signed_on": consent.signed_on}


@router.post("/patients/{patient_id}/courses", response_model=s.CourseOut, status_code=201)
def start_course(
    patient_id: str,
    body: s.CourseCreate,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.CourseOut:
    """Start a course on a valid screening; the induction series is booked into free chairs."""
    s.check_booking_horizon(body.start_on, clock(), "start_on")
    return service.start_course(db, actor, clinic, patient_id, body, clock=clock).out()


@router.get("/patients/{patient_id}/courses", response_model=list[s.CourseOrBooking])
def list_courses(patient_id: str, actor: ActorDep, db: DbDep) -> list[s.CourseOrBooking]:
    """Whole courses for clinical staff; for front desk and managers, the booking view."""
    return [v.shown_to(actor) for v in service.list_courses(db, actor, patient_id)]


@router.get("/courses/{course_id}", response_model=s.CourseOrBooking)
def get_course(course_id: str, actor: ActorDep, db: DbDep) -> s.CourseOrBooking:
    """The whole course for clinical staff; for front desk and managers, the booking view."""
    return service.get_course(db, actor, course_id).shown_to(actor)


@router.post("/courses/{course_id}/boosters", response_model=s.CourseOut, status_code=201)
def add_booster(
    course_id: str,
    body: s.BoosterIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.CourseOut:
    if body.earliest is not None:
        s.check_booking_horizon(body.earliest, clock(), "earliest")
    return service.add_booster(db, actor, clinic, course_id, body, clock=clock).out()


@router.post("/courses/{course_id}/maintenance", response_model=s.CourseOut)
def switch_to_maintenance(
    course_id: str,
    body: s.MaintenanceIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.CourseOut:
    return service.switch_to_maintenance(db, actor, clinic, course_id, body, clock=clock).out()


@router.post("/courses/{course_id}/end", response_model=s.CourseOut)
def end_course(
    course_id: str, body: s.EndCourseIn, actor: ActorDep, db: DbDep, clock: ClockDep
) -> s.CourseOut:
    return service.end_course(db, actor, course_id, body, clock=clock).out()


@router.post("/courses/{course_id}/home-doses", response_model=s.HomeDoseOut, status_code=201)
def record_home_dose(
    course_id: str,
    body: s.HomeDoseIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.HomeDoseOut:
    """An oral/sublingual dose the patient took at home; rules it broke come back as flags."""
    return s.HomeDoseOut.model_validate(
        service.record_home_dose(db, actor, clinic, course_id, body, clock=clock)
    )


@router.get("/courses/{course_id}/home-doses", response_model=list[s.HomeDoseOut])
def list_home_doses(course_id: str, actor: ActorDep, db: DbDep) -> list[s.HomeDoseOut]:
    return [s.HomeDoseOut.model_validate(h) for h in service.list_home_doses(db, actor, course_id)]


@router.get("/schedule/free-slots", response_model=list[s.SlotOut])
def free_slots(
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
    protocol_id: ProtocolId,
    after: s.QueryTime | None = None,
    count: Annotated[int, Query(ge=1, le=50)] = 5,
) -> list[s.SlotOut]:
    start = after or clock()
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    s.check_booking_horizon(start, clock(), "after")
    slots = service.free_slots(db, actor, clinic, protocol_id, start, count)
    return [s.SlotOut(chair_id=x.chair_id, start=x.start, end=x.end) for x in slots]


@router.get("/worklists/today")
def worklist_today(actor: ActorDep, db: DbDep, clock: ClockDep, clinic: ClinicDep) -> dict:
    """The clinic's day: sessions by state, open alarms, overdue readings, therapy due, safety
    alerts and courses needing a decision (sections shown by role). Marks unattended planned
    sessions missed first."""
    return jsonable_encoder(worklist.today(db, actor, clinic, clock=clock))


@router.get("/sessions/{session_id}", response_model=SessionOrBooking)
def get_session(
    session_id: str, actor: ActorDep, db: DbDep, clock: ClockDep, clinic: ClinicDep
) -> SessionOrBooking:
    """The whole session for clinical staff; the booking only (ids, state, time, chair,
    version) for front desk and clinic managers."""
    return _shown(service.get_session(db, actor, session_id), actor, clock, clinic)


@router.get("/sessions/{session_id}/observation-advice")
def observation_advice(session_id: str, actor: ActorDep, db: DbDep) -> dict:
    """The PK engine's predicted end of dissociation and a suggested earliest discharge for
    this patient and dose, beside the protocol's minimum: advice only."""
    return jsonable_encoder(service.observation_advice(db, actor, session_id))


@router.post("/sessions/{session_id}/reschedule", response_model=SessionOrBooking)
def reschedule(
    session_id: str,
    body: s.RescheduleIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> SessionOrBooking:
    s.check_booking_horizon(body.scheduled_start, clock(), "scheduled_start")
    return _shown(
        service.reschedule_session(db, actor, clinic, session_id, body, clock=clock),
        actor,
        clock,
        clinic,
    )


@router.post("/sessions/{session_id}/cancel", response_model=SessionOrBooking)
def cancel(
    session_id: str,
    body: s.CancelIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> SessionOrBooking:
    return _shown(
        service.cancel_session(db, actor, session_id, body, clock=clock), actor, clock, clinic
    )


@router.post("/sessions/{session_id}/check-in", response_model=SessionOrBooking)
def check_in(
    session_id: str,
    body: s.VersionIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> SessionOrBooking:
    return _shown(
        service.check_in(db, actor, session_id, body, clock=clock, clinic=clinic),
        actor,
        clock,
        clinic,
    )


@router.post("/sessions/{session_id}/pre-dose-checks", response_model=s.SessionOut)
def pre_dose_checks(
    session_id: str,
    body: s.PreDoseIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    """Run every pre-dose check: the session is `cleared`, or `deferred` with each reason."""
    return _out(
        service.run_pre_dose_checks(
            db,
            actor,
            clinic,
            session_id,
            body,
            clock=clock,
            safety=lambda session, patient_id: measures.latest_safety_inputs(
                session, patient_id, since=clock() - SAFETY_LOOKBACK
            ),
        ),
        clock,
        clinic,
    )


@router.post("/sessions/{session_id}/overrides", response_model=s.SessionOut)
def override_check(
    session_id: str,
    body: s.CheckOverrideIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(service.override_check(db, actor, session_id, body, clock=clock), clock, clinic)


@router.post("/sessions/{session_id}/dose-calculation")
def dose_calculation(
    session_id: str, body: s.StartDoseIn, actor: ActorDep, db: DbDep, clock: ClockDep
) -> dict:
    """What the dose would be (mg, volume to draw, devices), without giving it."""
    return service.preview_dose(db, actor, session_id, body).model_dump(mode="json")


@router.post("/sessions/{session_id}/dose/start", response_model=s.SessionOut)
def start_dose(
    session_id: str,
    body: s.StartDoseIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(
        service.start_dose(db, actor, session_id, body, clock=clock, clinic=clinic), clock, clinic
    )


@router.post("/sessions/{session_id}/devices", response_model=s.SessionOut)
def record_device(
    session_id: str,
    body: s.DeviceIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(service.record_device(db, actor, session_id, body, clock=clock), clock, clinic)


@router.post("/sessions/{session_id}/dose/end", response_model=s.SessionOut)
def end_dose(
    session_id: str,
    body: s.EndDoseIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(service.end_dose(db, actor, session_id, body, clock=clock), clock, clinic)


@router.post("/sessions/{session_id}/infusion/pause", response_model=s.SessionOut)
def pause(
    session_id: str, body: s.PauseIn, actor: ActorDep, db: DbDep, clock: ClockDep, clinic: ClinicDep
) -> s.SessionOut:
    return _out(service.pause_infusion(db, actor, session_id, body, clock=clock), clock, clinic)


@router.post("/sessions/{session_id}/infusion/resume", response_model=s.SessionOut)
def resume(
    session_id: str,
    body: s.VersionIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(service.resume_infusion(db, actor, session_id, body, clock=clock), clock, clinic)


@router.post("/sessions/{session_id}/infusion/titrate", response_model=s.SessionOut)
def titrate(
    session_id: str,
    body: s.TitrateIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(service.titrate(db, actor, session_id, body, clock=clock), clock, clinic)


@router.post("/sessions/{session_id}/readings", response_model=s.SessionOut, status_code=201)
def record_reading(
    session_id: str,
    body: s.ReadingIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    """Record vitals, sedation (MOAA/S) or dissociation (CADSS-6); alarms come back."""
    return _out(service.record_reading(db, actor, session_id, body, clock=clock), clock, clinic)


@router.post("/sessions/{session_id}/readings/{reading_id}/void", response_model=s.SessionOut)
def void_reading(
    session_id: str,
    reading_id: str,
    body: s.VoidIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(
        service.void_reading(db, actor, session_id, reading_id, body, clock=clock), clock, clinic
    )


@router.post("/sessions/{session_id}/alarms/{alarm_id}/acknowledge", response_model=s.SessionOut)
def acknowledge_alarm(
    session_id: str,
    alarm_id: str,
    body: s.AcknowledgeIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(
        service.acknowledge_alarm(db, actor, session_id, alarm_id, body, clock=clock), clock, clinic
    )


@router.post("/sessions/{session_id}/adverse-events", response_model=s.SessionOut, status_code=201)
def record_adverse_event(
    session_id: str,
    body: s.AdverseEventIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(
        service.record_adverse_event(db, actor, session_id, body, clock=clock), clock, clinic
    )


@router.patch("/sessions/{session_id}/adverse-events/{event_id}", response_model=s.SessionOut)
def update_adverse_event(
    session_id: str,
    event_id: str,
    body: s.AdverseEventUpdateIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    return _out(
        service.update_adverse_event(db, actor, session_id, event_id, body, clock=clock),
        clock,
        clinic,
    )


@router.post("/sessions/{session_id}/discharge", response_model=s.SessionOut)
def discharge(
    session_id: str,
    body: s.DischargeIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    clinic: ClinicDep,
) -> s.SessionOut:
    """Discharge only when every criterion holds; otherwise 409 listing every unmet one."""
    return _out(service.discharge(db, actor, session_id, body, clock=clock), clock, clinic)


@router.post("/sessions/{session_id}/stop", response_model=s.SessionOut)
def stop(
    session_id: str, body: s.StopIn, actor: ActorDep, db: DbDep, clock: ClockDep, clinic: ClinicDep
) -> s.SessionOut:
    return _out(service.stop_session(db, actor, session_id, body, clock=clock), clock, clinic)
