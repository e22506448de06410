"""The dosing-session state machine, as pure transition functions.

    scheduled -> checked_in -> cleared | deferred -> dosing -> monitoring -> discharged
    deferred -> cleared (checks pass on a re-run, or a prescriber overrides every failed check)
    any active state (checked_in, cleared, deferred, dosing, monitoring) -> stopped
    scheduled -> missed (the slot passed unattended) | cancelled

Every action takes the current `DosingSession` value, the protocol, the acting user and `now`,
and returns an `Outcome`: the new session value (the old one is never changed), the alarms the
action raised and the events it appended. An action out of order or against a rule raises
`RuleViolation(code, reasons, state=...)`: the reasons name every unmet rule and the state the
session is in. Impossible readings raise `InvalidReading` (422).

The session value carries its whole history (check runs, overrides, devices, readings with their
voids, alarms, adverse events, events), so the service layer can persist it as it is and the
REMS form can be filled from it. Optimistic versioning belongs to the store, not here.

Pure: no database, no clock (`now` is a parameter), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from itertools import pairwise
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ketaflow.core.errors import InvalidInput
from ketaflow.core.timezones import TimeZoneName
from ketaflow.treatment.discharge import DischargeInputs, evaluate_discharge, observation_ends_at
from ketaflow.treatment.dosing import calculate_device_dose, clinic_days_between
from ketaflow.treatment.errors import Reason, RuleViolation
from ketaflow.treatment.monitoring import (
    AdverseEvent,
    AdverseEventAction,
    AdverseEventKind,
    AdverseEventOutcome,
    Alarm,
    DueReading,
    DueStatus,
    Reading,
    active_readings,
    evaluate_alarms,
    latest_reading_with,
    phase_at,
    pre_dose_readings_since,
    reading_schedule,
    validate_reading,
)
from ketaflow.treatment.protocols import (
    Anchor,
    DeviceDose,
    Drug,
    Measure,
    Protocol,
    ProtocolId,
    WeightBasedDose,
)

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Actor",
    "AdministeredDose",
    "AlarmAcknowledgement",
    "CheckKind",
    "CheckResult",
    "CheckRun",
    "ConcomitantClass",
    "CssrsRisk",
    "DeviceAdministration",
    "DischargeRecord",
    "DosingSession",
    "InfusionPause",
    "Outcome",
    "Override",
    "PreDoseInputs",
    "Role",
    "RoleNotAllowed",
    "SessionEvent",
    "SessionState",
    "SessionStatus",
    "StopReason",
    "StopRecord",
    "Titration",
    "acknowledge_alarm",
    "cancel",
    "check_in",
    "discharge",
    "end_dose",
    "evaluate_pre_dose_checks",
    "invariant_violations",
    "mark_missed",
    "new_session",
    "override_check",
    "pause_infusion",
    "record_adverse_event",
    "record_device",
    "record_reading",
    "reschedule",
    "resume_infusion",
    "run_pre_dose_checks",
    "session_status",
    "start_dose",
    "stop",
    "titrate_dose",
    "update_adverse_event",
    "void_reading",
]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionState(StrEnum):
    scheduled = "scheduled"
    checked_in = "checked_in"
    cleared = "cleared"
    deferred = "deferred"
    dosing = "dosing"
    monitoring = "monitoring"
    discharged = "discharged"
    stopped = "stopped"
    # A planned session whose time passed unattended (issue 3 §2), or one called off.
    missed = "missed"
    cancelled = "cancelled"


ACTIVE_STATES = frozenset(
    {
        SessionState.checked_in,
        SessionState.cleared,
        SessionState.deferred,
        SessionState.dosing,
        SessionState.monitoring,
    }
)
TERMINAL_STATES = frozenset(
    {SessionState.discharged, SessionState.stopped, SessionState.missed, SessionState.cancelled}
)

# Every edge the machine may take; anything else is a bug (tests check every outcome).
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.scheduled: frozenset(
        {SessionState.checked_in, SessionState.missed, SessionState.cancelled}
    ),
    SessionState.checked_in: frozenset(
        {SessionState.cleared, SessionState.deferred, SessionState.stopped}
    ),
    SessionState.deferred: frozenset(
        {SessionState.cleared, SessionState.deferred, SessionState.stopped}
    ),
    SessionState.cleared: frozenset({SessionState.dosing, SessionState.stopped}),
    SessionState.dosing: frozenset({SessionState.monitoring, SessionState.stopped}),
    SessionState.monitoring: frozenset({SessionState.discharged, SessionState.stopped}),
    SessionState.discharged: frozenset(),
    SessionState.stopped: frozenset(),
    SessionState.missed: frozenset(),
    SessionState.cancelled: frozenset(),
}


class Role(StrEnum):
    front_desk = "front_desk"
    nurse = "nurse"
    prescriber = "prescriber"
    therapist = "therapist"


class Actor(_Value):
    """Who acts. Role values match `security.permissions.Role` for the clinical roles; the
    service passes the user's id (an int there is accepted and kept as text)."""

    user_id: str = Field(min_length=1, max_length=64)
    role: Role

    @field_validator("user_id", mode="before")
    @classmethod
    def _text_id(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


# ---------------------------------------------------------------------------------------------
# Values the session carries


class CheckKind(StrEnum):
    # Cannot be overridden (no consent, no REMS enrollment).
    hard_stop = "hard_stop"
    # Fails the check; a prescriber may override with a reason.
    block = "block"
    # Needs a prescriber's judgment (recorded as an override) but is not an automatic stop.
    caution = "caution"
    # Shown, never blocks.
    info = "info"


class CheckResult(_Value):
    rule_id: str
    passed: bool
    kind: CheckKind
    message: str
    source: str = ""

    @property
    def reason(self) -> Reason:
        return Reason(self.rule_id, self.message, self.source)

    @property
    def blocking(self) -> bool:
        return not self.passed and self.kind is not CheckKind.info


class CheckRun(_Value):
    at: datetime
    by: str
    results: tuple[CheckResult, ...]
    # The patient's latest dose (clinic or home) the run saw: dose start re-checks the spacing
    # against any dose given since.
    last_dose_at: datetime | None = None


class Override(_Value):
    """A prescriber's override of one failed check. It covers the check run it was given for
    (and so the value that failed then); re-running the checks leaves it in the history but
    no longer counts it."""

    rule_id: str
    reason: str
    by: str
    at: datetime
    # 1-based number of the check run overridden; None only in sessions stored before runs
    # were numbered (attributed to the latest run at or before `at`).
    check_run: int | None = None
    # The failed result's message as overridden (e.g. "BP 184/96 is above ...").
    overridden_result: str | None = None


class ConcomitantClass(StrEnum):
    """Concomitant medicines the esketamine REMS form asks about (reference §1)."""

    benzodiazepine = "benzodiazepine"
    non_benzodiazepine_sedative_hypnotic = "non_benzodiazepine_sedative_hypnotic"
    opioid = "opioid"
    psychostimulant = "psychostimulant"
    maoi = "maoi"


class CssrsRisk(StrEnum):
    """C-SSRS screener triage (Columbia, reference §3)."""

    none = "none"
    low = "low"
    moderate = "moderate"
    high = "high"


class AdministeredDose(_Value):
    """The dose as ordered and given. Computed beforehand with `dosing`."""

    dose_mg: Decimal = Field(gt=0, le=1000)
    mg_per_kg: Decimal | None = None
    dosing_weight_kg: Decimal | None = None
    volume_ml: Decimal | None = Field(default=None, gt=0)
    # The most a prescriber may titrate to (weight-based protocols), from the dose calculation.
    max_dose_mg: Decimal | None = Field(default=None, gt=0)
    device_count: int | None = Field(default=None, ge=1, le=10)
    lot_number: str | None = Field(default=None, min_length=1, max_length=64)
    product_concentration_mg_per_ml: Decimal | None = Field(default=None, gt=0)


class DeviceAdministration(_Value):
    number: int
    at: datetime
    lot_number: str
    by: str


class InfusionPause(_Value):
    paused_at: datetime
    reason: str
    by: str
    resumed_at: datetime | None = None
    resumed_by: str | None = None


class Titration(_Value):
    at: datetime
    from_dose_mg: Decimal
    to_dose_mg: Decimal
    reason: str
    by: str


class AlarmAcknowledgement(_Value):
    alarm_id: str
    at: datetime
    by: str
    note: str | None = None


class DischargeRecord(_Value):
    at: datetime
    by: str
    escort_present: bool
    clinician_judges_stable: bool | None
    ready_without_minimum_min: int | None
    # Minutes from the observation anchor (first device for esketamine) to discharge: the
    # REMS form's "total minutes from first device to end of monitoring".
    observation_minutes: int


class StopReason(StrEnum):
    patient_declined = "patient_declined"
    adverse_event = "adverse_event"
    emergency_transfer = "emergency_transfer"
    left_against_medical_advice = "left_against_medical_advice"
    clinical_decision = "clinical_decision"
    deferred_to_another_day = "deferred_to_another_day"
    other = "other"


class StopRecord(_Value):
    at: datetime
    by: str
    reason: StopReason
    note: str
    from_state: SessionState


class SessionEvent(_Value):
    at: datetime
    action: str
    by: str
    role: Role | None
    from_state: SessionState
    to_state: SessionState
    detail: str = ""


class PreDoseInputs(_Value):
    """Plain facts the service gathers for the pre-dose checks. Pre-dose BP and HR are not
    here: they are the session's own readings taken since check-in (a reading is stored once,
    with its alarms, and the check reads it)."""

    consent_on_file: bool
    screening_expires_on: date | None
    # An audited screening override on the course (issue 3 §2) satisfies the check.
    screening_override: bool = False
    # The screening was decided on the history as it stands (no revision since).
    screening_on_current_history: bool = True
    weight_kg: Decimal | None = None
    weight_recorded_on: date | None = None
    # The last dose of ketamine or esketamine the patient had (clinic or home), if any.
    last_dose_at: datetime | None = None
    # That last dose was one taken at home (shown in the spacing check's message).
    last_dose_at_home: bool = False
    escort_confirmed: bool
    no_driving_confirmed: bool
    # From the latest assessments, if any exist.
    phq9_item9: int | None = Field(default=None, ge=0, le=3)
    cssrs_risk: CssrsRisk | None = None
    # Esketamine (REMS and label, reference §1).
    rems_patient_enrolled: bool | None = None
    fasting_asked: bool = False
    # Last food/liquid and nasal corticosteroid/decongestant use today as reported; None =
    # none today (only meaningful when fasting_asked).
    last_food_at: datetime | None = None
    last_liquid_at: datetime | None = None
    nasal_product_at: datetime | None = None
    # None = not asked; empty = asked, none taken.
    concomitant_medications: frozenset[ConcomitantClass] | None = None
    clinic_timezone: TimeZoneName = "UTC"


class DosingSession(_Value):
    id: str = Field(min_length=1, max_length=64)
    patient_id: str = Field(min_length=1, max_length=64)
    course_id: str | None = None
    protocol_id: ProtocolId
    state: SessionState = SessionState.scheduled
    scheduled_start: datetime
    chair_id: str | None = None
    checked_in_at: datetime | None = None
    check_runs: tuple[CheckRun, ...] = ()
    overrides: tuple[Override, ...] = ()
    cleared_at: datetime | None = None
    deferred_reasons: tuple[Reason, ...] = ()
    concomitant_medications: frozenset[ConcomitantClass] | None = None
    dose: AdministeredDose | None = None
    # The observation clock: the dose start, the first device for esketamine.
    dose_started_at: datetime | None = None
    dose_ended_at: datetime | None = None
    partial_dose_reason: str | None = None
    devices: tuple[DeviceAdministration, ...] = ()
    pauses: tuple[InfusionPause, ...] = ()
    titrations: tuple[Titration, ...] = ()
    readings: tuple[Reading, ...] = ()
    alarms: tuple[Alarm, ...] = ()
    alarm_acknowledgements: tuple[AlarmAcknowledgement, ...] = ()
    adverse_events: tuple[AdverseEvent, ...] = ()
    discharge: DischargeRecord | None = None
    stop: StopRecord | None = None
    closed_at: datetime | None = None
    events: tuple[SessionEvent, ...] = ()

    @property
    def last_check_run(self) -> CheckRun | None:
        return self.check_runs[-1] if self.check_runs else None

    @property
    def overridden_rule_ids(self) -> frozenset[str]:
        """The checks overridden for the latest check run: an override covers the run (and
        the values) it was given for, never a later run."""
        return _overridden_in_run(self.check_runs, self.overrides, len(self.check_runs))

    @property
    def infusion_paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1].resumed_at is None

    @property
    def last_event_at(self) -> datetime | None:
        return self.events[-1].at if self.events else None

    @property
    def active_readings(self) -> list[Reading]:
        return active_readings(self.readings)

    @property
    def open_alarms(self) -> list[Alarm]:
        """Alarms not acknowledged whose reading was not voided (for worklists)."""
        acknowledged = {a.alarm_id for a in self.alarm_acknowledgements}
        voided = {r.id for r in self.readings if r.voided}
        return [a for a in self.alarms if a.id not in acknowledged and a.reading_id not in voided]


class Outcome(_Value):
    session: DosingSession
    alarms: tuple[Alarm, ...] = ()
    events: tuple[SessionEvent, ...] = ()


# ---------------------------------------------------------------------------------------------
# Helpers

_SRC_MACHINE = "dosing-session state machine (issue 3 §3)"


def _refuse(code: str, session: DosingSession, *reasons: Reason) -> RuleViolation:
    return RuleViolation(code, list(reasons), state=session.state.value)


def _override_run(override: Override, runs: Sequence[CheckRun]) -> int:
    """The number (1-based) of the check run an override was given for."""
    if override.check_run is not None:
        return override.check_run
    # Stored before runs were numbered: the latest run at or before the override.
    return sum(1 for run in runs if run.at <= override.at)


def _overridden_in_run(
    runs: Sequence[CheckRun], overrides: Iterable[Override], run_number: int
) -> frozenset[str]:
    if run_number < 1:
        return frozenset()
    return frozenset(o.rule_id for o in overrides if _override_run(o, runs) == run_number)


def _require_state(session: DosingSession, action: str, allowed: Iterable[SessionState]) -> None:
    allowed_set = frozenset(allowed)
    if session.state not in allowed_set:
        names = ", ".join(sorted(s.value for s in allowed_set))
        raise _refuse(
            "invalid_transition",
            session,
            Reason(
                f"{action}_state",
                f"cannot {action.replace('_', ' ')} a session that is {session.state.value}; "
                f"allowed from: {names}",
                _SRC_MACHINE,
            ),
        )


class RoleNotAllowed(RuleViolation):
    """The actor's role may not take this action (or not in this state, e.g. a nurse stopping
    a dosed session): a refusal of permission, so 403, not a 409. Code ``role_not_allowed``;
    the service audits it as a refused attempt in a transaction of its own."""

    def __init__(self, reason: Reason, *, state: str) -> None:
        super().__init__("role_not_allowed", [reason], state=state)
        self.status = 403
        self.slug = "forbidden"
        self.title = "Not permitted"


def _require_role(session: DosingSession, actor: Actor, action: str, roles: Iterable[Role]) -> None:
    role_set = frozenset(roles)
    if actor.role not in role_set:
        names = ", ".join(sorted(r.value for r in role_set))
        raise RoleNotAllowed(
            Reason(
                f"{action}_role",
                f"{action.replace('_', ' ')} needs one of: {names} (not {actor.role.value})",
                _SRC_MACHINE,
            ),
            state=session.state.value,
        )


def _require_time_order(session: DosingSession, now: datetime) -> None:
    if now.tzinfo is None:
        raise _refuse("invalid_time", session, Reason("time_aware", "times must be timezone-aware"))
    last = session.last_event_at
    if last is not None and now < last:
        raise _refuse(
            "time_order",
            session,
            Reason(
                "time_order",
                f"action at {now.isoformat()} is before the session's last event "
                f"({last.isoformat()})",
                _SRC_MACHINE,
            ),
        )


def _require_text(session: DosingSession, rule_id: str, text: str | None, what: str) -> str:
    if text is None or not text.strip():
        raise _refuse("reason_required", session, Reason(rule_id, f"{what} is required"))
    return text.strip()


def _require_protocol(session: DosingSession, protocol: Protocol) -> None:
    if protocol.id != session.protocol_id:
        raise ValueError(
            f"protocol {protocol.id} given for a {session.protocol_id} session"
        )  # a programming error, not a user's


def _move(
    session: DosingSession,
    *,
    to: SessionState,
    action: str,
    actor: Actor | None,
    now: datetime,
    detail: str = "",
    emitted: tuple[Alarm, ...] = (),
    **changes: object,
) -> Outcome:
    if to is not session.state and to not in TRANSITIONS[session.state]:
        raise AssertionError(f"{session.state} -> {to} is not an edge")  # pragma: no cover
    event = SessionEvent(
        at=now,
        action=action,
        by=actor.user_id if actor else "system",
        role=actor.role if actor else None,
        from_state=session.state,
        to_state=to,
        detail=detail,
    )
    updated = session.model_copy(
        update={**changes, "state": to, "events": (*session.events, event)}
    )
    return Outcome(session=updated, alarms=emitted, events=(event,))


_CLINICAL = (Role.nurse, Role.prescriber)


# ---------------------------------------------------------------------------------------------
# Scheduled sessions


def new_session(
    *,
    session_id: str,
    patient_id: str,
    protocol_id: ProtocolId,
    scheduled_start: datetime,
    chair_id: str | None = None,
    course_id: str | None = None,
) -> DosingSession:
    """A planned session in state `scheduled`."""
    if scheduled_start.tzinfo is None:
        raise ValueError("scheduled_start must be timezone-aware")
    return DosingSession(
        id=session_id,
        patient_id=patient_id,
        course_id=course_id,
        protocol_id=protocol_id,
        scheduled_start=scheduled_start,
        chair_id=chair_id,
    )


def reschedule(
    session: DosingSession,
    *,
    scheduled_start: datetime,
    chair_id: str | None,
    actor: Actor,
    now: datetime,
) -> Outcome:
    """Move a scheduled session (chair conflicts are `scheduling`'s to check)."""
    _require_state(session, "reschedule", {SessionState.scheduled})
    _require_role(session, actor, "reschedule", (Role.front_desk, *_CLINICAL))
    _require_time_order(session, now)
    if scheduled_start.tzinfo is None:
        raise ValueError("scheduled_start must be timezone-aware")
    return _move(
        session,
        to=SessionState.scheduled,
        action="reschedule",
        actor=actor,
        now=now,
        detail=f"{session.scheduled_start.isoformat()} -> {scheduled_start.isoformat()}",
        scheduled_start=scheduled_start,
        chair_id=chair_id,
    )


def cancel(session: DosingSession, *, reason: str, actor: Actor, now: datetime) -> Outcome:
    _require_state(session, "cancel", {SessionState.scheduled})
    _require_role(session, actor, "cancel", (Role.front_desk, *_CLINICAL))
    _require_time_order(session, now)
    text = _require_text(session, "cancel_reason", reason, "a reason to cancel")
    return _move(
        session,
        to=SessionState.cancelled,
        action="cancel",
        actor=actor,
        now=now,
        detail=text,
        closed_at=now,
    )


def mark_missed(session: DosingSession, *, now: datetime, grace_minutes: int = 60) -> Outcome:
    """A scheduled session not checked in `grace_minutes` after its start becomes missed."""
    _require_state(session, "mark_missed", {SessionState.scheduled})
    _require_time_order(session, now)
    limit = session.scheduled_start + timedelta(minutes=grace_minutes)
    if now <= limit:
        raise _refuse(
            "not_yet_missed",
            session,
            Reason(
                "missed_grace",
                f"the session is not missed before {limit.isoformat()}",
                "clinic setting (grace period)",
            ),
        )
    return _move(
        session, to=SessionState.missed, action="mark_missed", actor=None, now=now, closed_at=now
    )


def check_in(
    session: DosingSession, *, actor: Actor, now: datetime, clinic_timezone: str = "UTC"
) -> Outcome:
    """Check the patient in, on the session's scheduled date at the clinic only: a patient
    who comes on another day is rescheduled to it first (the booking keeps the spacing
    between doses and the chair free; an early check-in would bypass both)."""
    _require_state(session, "check_in", {SessionState.scheduled})
    _require_role(session, actor, "check_in", (Role.front_desk, *_CLINICAL))
    _require_time_order(session, now)
    zone = ZoneInfo(clinic_timezone)
    planned_on = session.scheduled_start.astimezone(zone).date()
    today = now.astimezone(zone).date()
    if today != planned_on:
        raise _refuse(
            "not_scheduled_today",
            session,
            Reason(
                "check_in_date",
                f"the session is scheduled for {planned_on.isoformat()}, not today "
                f"({today.isoformat()}): reschedule it to today before checking in",
                "booked schedule (issue 3 §2)",
            ),
        )
    return _move(
        session,
        to=SessionState.checked_in,
        action="check_in",
        actor=actor,
        now=now,
        checked_in_at=now,
    )


# ---------------------------------------------------------------------------------------------
# Pre-dose checks

_SRC_CONSENT = "informed consent: Sanacora 2017 pre-treatment evaluation (reference §2)"
_SRC_SCREENING = "eligibility screening validity (issue 2; clinic setting)"
_SRC_SPACING = "protocol minimum spacing between doses"
_SRC_DRIVING = "label section 17 (reference §1): no driving until the next day; a ride home"
_SRC_PHQ9 = "Kroenke et al. 2001 (reference §3): item 9 > 0 needs safety follow-up"
_SRC_CSSRS = "C-SSRS screener triage (reference §3)"
_SRC_REMS = "SPRAVATO REMS: patient enrolled before the first session (reference §1)"
_SRC_FASTING = "SPRAVATO label / patient information (reference §1)"
_SRC_INTERACTIONS = "SPRAVATO label section 7 (reference §1)"


def _result(rule_id: str, passed: bool, kind: CheckKind, message: str, source: str) -> CheckResult:
    return CheckResult(rule_id=rule_id, passed=passed, kind=kind, message=message, source=source)


def evaluate_pre_dose_checks(
    session: DosingSession, protocol: Protocol, inputs: PreDoseInputs, *, now: datetime
) -> tuple[CheckResult, ...]:
    """Every pre-dose check with its result (passed or not). Does not change the session.

    Safety flags: PHQ-9 item 9 > 0 and a low or moderate C-SSRS risk are shown (`info`), not
    blocks: ketamine and esketamine are given to patients with suicidal ideation (the label's
    MDD-with-acute-suicidal-ideation indication), so ideation alone must not stop a dose. A high
    C-SSRS risk (intent, plan, or behaviour within 3 months) blocks until a prescriber records
    an override with their assessment: the screener's triage calls for immediate evaluation.
    """
    _require_protocol(session, protocol)
    tz = ZoneInfo(inputs.clinic_timezone)
    today = now.astimezone(tz).date()
    results: list[CheckResult] = []
    add = results.append

    add(
        _result(
            "consent_on_file",
            inputs.consent_on_file,
            CheckKind.hard_stop,
            "informed consent is on file" if inputs.consent_on_file else "no consent on file",
            _SRC_CONSENT,
        )
    )

    # An overridden refusal is usable like a favourable decision, but it expires like one too,
    # and neither holds once the history it was decided on has been revised.
    screening = "screening overridden (audited)" if inputs.screening_override else "screening"
    if inputs.screening_expires_on is None:
        add(
            _result("screening_valid", False, CheckKind.block, "no valid screening", _SRC_SCREENING)
        )
    elif inputs.screening_expires_on < today:
        add(
            _result(
                "screening_valid",
                False,
                CheckKind.block,
                f"{screening} expired on {inputs.screening_expires_on}",
                _SRC_SCREENING,
            )
        )
    elif not inputs.screening_on_current_history:
        add(
            _result(
                "screening_valid",
                False,
                CheckKind.block,
                f"the history was revised after the {screening}: screen the patient again",
                _SRC_SCREENING,
            )
        )
    else:
        add(
            _result(
                "screening_valid",
                True,
                CheckKind.block,
                f"{screening} valid until {inputs.screening_expires_on}",
                _SRC_SCREENING,
            )
        )

    if protocol.weight_max_age_days is not None:
        if inputs.weight_kg is None or inputs.weight_recorded_on is None:
            add(
                _result(
                    "weight_recent",
                    False,
                    CheckKind.block,
                    "no weight recorded",
                    "protocol weight window",
                )
            )
        else:
            age_days = (today - inputs.weight_recorded_on).days
            ok = 0 <= age_days <= protocol.weight_max_age_days
            add(
                _result(
                    "weight_recent",
                    ok,
                    CheckKind.block,
                    f"weight {inputs.weight_kg} kg recorded {age_days} day(s) ago"
                    + ("" if ok else f"; needs one within {protocol.weight_max_age_days} days"),
                    "protocol weight window",
                )
            )

    results.extend(_vitals_checks(session, protocol, now, tz))

    if inputs.last_dose_at is None:
        add(_result("dose_spacing", True, CheckKind.block, "no previous dose", _SRC_SPACING))
    else:
        days = clinic_days_between(inputs.last_dose_at, now, tz)
        ok = days >= protocol.min_days_between_doses
        add(
            _result(
                "dose_spacing",
                ok,
                CheckKind.block,
                f"last dose{' (at home)' if inputs.last_dose_at_home else ''} {days} day(s) ago"
                + (
                    "" if ok else f"; the protocol needs at least {protocol.min_days_between_doses}"
                ),
                _SRC_SPACING,
            )
        )

    add(
        _result(
            "escort_confirmed",
            inputs.escort_confirmed,
            CheckKind.block,
            "escort home confirmed" if inputs.escort_confirmed else "no escort home confirmed",
            _SRC_DRIVING,
        )
    )
    add(
        _result(
            "no_driving_confirmed",
            inputs.no_driving_confirmed,
            CheckKind.block,
            "patient agrees not to drive until the next day"
            if inputs.no_driving_confirmed
            else "no-driving agreement not confirmed",
            _SRC_DRIVING,
        )
    )

    if inputs.phq9_item9 is not None and inputs.phq9_item9 > 0:
        add(
            _result(
                "phq9_item9",
                False,
                CheckKind.info,
                f"PHQ-9 item 9 = {inputs.phq9_item9}: confirm the safety follow-up",
                _SRC_PHQ9,
            )
        )
    if inputs.cssrs_risk is not None and inputs.cssrs_risk is not CssrsRisk.none:
        high = inputs.cssrs_risk is CssrsRisk.high
        add(
            _result(
                "cssrs_risk",
                False,
                CheckKind.block if high else CheckKind.info,
                f"C-SSRS risk {inputs.cssrs_risk.value}"
                + (": a prescriber must assess before dosing" if high else ": shown for review"),
                _SRC_CSSRS,
            )
        )

    if protocol.requires_rems_enrollment:
        enrolled = inputs.rems_patient_enrolled is True
        add(
            _result(
                "rems_enrolled",
                enrolled,
                CheckKind.hard_stop,
                "patient enrolled in the REMS" if enrolled else "patient not enrolled in the REMS",
                _SRC_REMS,
            )
        )
    if protocol.requires_fasting_check:
        results.extend(_fasting_checks(protocol, inputs, now))
    if protocol.requires_concomitant_medication_record:
        results.extend(_concomitant_checks(inputs.concomitant_medications))
    return tuple(results)


def _pre_dose_readings_since(session: DosingSession, now: datetime, zone: ZoneInfo) -> datetime:
    """Pre-dose checks read the readings taken since check-in on the run's own clinic day
    (the same bound the reading schedule shows them due by)."""
    return pre_dose_readings_since(session.checked_in_at, now, zone)


def _earlier_day_note(
    session: DosingSession, measures: Iterable[Measure], since: datetime, now: datetime
) -> str:
    """Say so when what is missing today was recorded on an earlier day of this session."""
    earlier = any(
        latest_reading_with(session.readings, m, not_before=session.checked_in_at, not_after=now)
        is not None
        and latest_reading_with(session.readings, m, not_before=since, not_after=now) is None
        for m in measures
    )
    return " (readings from an earlier day do not count: record today's)" if earlier else ""


def _required_pre_dose_readings(
    session: DosingSession, protocol: Protocol, now: datetime, since: datetime
) -> list[CheckResult]:
    """Each pre-dose reading the protocol's plan requires for discharge (esketamine: BP, HR,
    SpO2, MOAA/S and CADSS-6 before dosing, label sections 2 and 5 and the REMS form,
    reference §1) must be in before the dose. A hard stop: discharge compares with these
    readings and cannot pass without them, and a reading dated before the dose cannot be added
    once it has started, so an override would strand the patient in monitoring."""
    results: list[CheckResult] = []
    for point in protocol.monitoring.points:
        if point.anchor is not Anchor.pre_dose or not point.required_for_discharge:
            continue
        missing = sorted(
            m.value
            for m in point.measures
            if latest_reading_with(session.readings, m, not_before=since, not_after=now) is None
        )
        results.append(
            _result(
                f"required_reading_{point.id}",
                not missing,
                CheckKind.hard_stop,
                f"{point.label}: recorded"
                if not missing
                else f"{point.label}: record {', '.join(missing)} before dosing "
                "(discharge needs this reading)"
                + _earlier_day_note(session, (Measure(m) for m in missing), since, now),
                "protocol monitoring plan",
            )
        )
    return results


def _vitals_checks(
    session: DosingSession, protocol: Protocol, now: datetime, zone: ZoneInfo
) -> list[CheckResult]:
    results: list[CheckResult] = []
    since = _pre_dose_readings_since(session, now, zone)
    bp = latest_reading_with(session.readings, Measure.systolic, not_before=since, not_after=now)
    hr = latest_reading_with(session.readings, Measure.heart_rate, not_before=since, not_after=now)
    if bp is None or hr is None:
        results.append(
            _result(
                "pre_dose_vitals_recorded",
                False,
                CheckKind.block,
                "record pre-dose blood pressure and heart rate"
                + _earlier_day_note(session, (Measure.systolic, Measure.heart_rate), since, now),
                "protocol monitoring plan",
            )
        )
    results.extend(_required_pre_dose_readings(session, protocol, now, since))
    limits = protocol.pre_dose_limits
    if limits is None:
        return results
    kind = CheckKind.caution if limits.caution_only else CheckKind.block
    if bp is not None and bp.systolic_mmhg is not None and bp.diastolic_mmhg is not None:
        over = (
            limits.systolic_max_mmhg is not None and bp.systolic_mmhg > limits.systolic_max_mmhg
        ) or (
            limits.diastolic_max_mmhg is not None and bp.diastolic_mmhg > limits.diastolic_max_mmhg
        )
        label = "unconfirmed default " if limits.confidence in ("U", "clinic_default") else ""
        limit_text = f"{limits.systolic_max_mmhg}/{limits.diastolic_max_mmhg}"
        if over and limits.caution_only:
            message = (
                f"BP {bp.systolic_mmhg}/{bp.diastolic_mmhg} is above {limit_text}: a prescriber "
                "must weigh the risk before dosing"
            )
        elif over:
            message = (
                f"BP {bp.systolic_mmhg}/{bp.diastolic_mmhg} is above the {label}limit {limit_text}"
            )
        else:
            message = f"BP {bp.systolic_mmhg}/{bp.diastolic_mmhg} within {limit_text}"
        results.append(_result("pre_dose_bp", not over, kind, message, limits.source))
    if hr is not None and hr.heart_rate_bpm is not None and limits.heart_rate_max_bpm is not None:
        over = hr.heart_rate_bpm > limits.heart_rate_max_bpm
        results.append(
            _result(
                "pre_dose_hr",
                not over,
                kind,
                f"HR {hr.heart_rate_bpm} "
                + ("above" if over else "within")
                + f" {limits.heart_rate_max_bpm} bpm",
                limits.source,
            )
        )
    return results


def _fasting_checks(protocol: Protocol, inputs: PreDoseInputs, now: datetime) -> list[CheckResult]:
    if not inputs.fasting_asked:
        return [
            _result(
                "fasting_confirmed",
                False,
                CheckKind.block,
                "ask about food, liquids and nasal sprays today",
                _SRC_FASTING,
            )
        ]
    results = []
    for rule_id, last_at, minimum, what in (
        ("fasting_food", inputs.last_food_at, protocol.fasting_food_min, "food"),
        ("fasting_liquids", inputs.last_liquid_at, protocol.fasting_liquids_min, "liquids"),
        (
            "nasal_product_timing",
            inputs.nasal_product_at,
            protocol.nasal_product_min_before,
            "nasal corticosteroid or decongestant",
        ),
    ):
        if last_at is None:
            results.append(
                _result(rule_id, True, CheckKind.block, f"no {what} today", _SRC_FASTING)
            )
            continue
        minutes = int((now - last_at).total_seconds() // 60)
        ok = minutes >= minimum
        results.append(
            _result(
                rule_id,
                ok,
                CheckKind.block,
                f"{what} {minutes} min ago" + ("" if ok else f"; needs at least {minimum} min"),
                _SRC_FASTING,
            )
        )
    return results


def _concomitant_checks(
    medications: frozenset[ConcomitantClass] | None,
) -> list[CheckResult]:
    if medications is None:
        return [
            _result(
                "concomitant_recorded",
                False,
                CheckKind.block,
                "record concomitant benzodiazepines, sedative-hypnotics, opioids, "
                "psychostimulants and MAOIs (REMS form)",
                "REMS Patient Monitoring Form (reference §1)",
            )
        ]
    results = [
        _result(
            "concomitant_recorded",
            True,
            CheckKind.block,
            "concomitant medicines recorded: "
            + (", ".join(sorted(m.value for m in medications)) or "none"),
            "REMS Patient Monitoring Form (reference §1)",
        )
    ]
    depressants = medications & {
        ConcomitantClass.benzodiazepine,
        ConcomitantClass.non_benzodiazepine_sedative_hypnotic,
        ConcomitantClass.opioid,
    }
    if depressants:
        results.append(
            _result(
                "concomitant_cns_depressant",
                False,
                CheckKind.info,
                "CNS depressants ("
                + ", ".join(sorted(m.value for m in depressants))
                + ") may increase sedation: watch closely",
                _SRC_INTERACTIONS,
            )
        )
    pressors = medications & {ConcomitantClass.psychostimulant, ConcomitantClass.maoi}
    if pressors:
        results.append(
            _result(
                "concomitant_bp_raising",
                False,
                CheckKind.info,
                "psychostimulants or MAOIs ("
                + ", ".join(sorted(m.value for m in pressors))
                + ") may increase blood pressure: monitor closely",
                _SRC_INTERACTIONS,
            )
        )
    return results


def _unresolved(results: Iterable[CheckResult], overridden: frozenset[str]) -> list[CheckResult]:
    return [
        r
        for r in results
        if r.blocking and not (r.rule_id in overridden and r.kind is not CheckKind.hard_stop)
    ]


def run_pre_dose_checks(
    session: DosingSession,
    protocol: Protocol,
    inputs: PreDoseInputs,
    *,
    actor: Actor,
    now: datetime,
) -> Outcome:
    """Run every pre-dose check: `cleared` when none blocks (or each is overridden), otherwise
    `deferred` with the failing checks as `deferred_reasons`. May be re-run from `deferred`
    (after fixing what failed). A re-run is a new run on the values as they are now:
    overrides given for an earlier run stay in the history but do not carry over (a BP
    overridden at 184/96 is not overridden at 228/128); what still fails needs a new one."""
    _require_state(session, "run_pre_dose_checks", {SessionState.checked_in, SessionState.deferred})
    _require_role(session, actor, "run_pre_dose_checks", _CLINICAL)
    _require_time_order(session, now)
    results = evaluate_pre_dose_checks(session, protocol, inputs, now=now)
    run = CheckRun(at=now, by=actor.user_id, results=results, last_dose_at=inputs.last_dose_at)
    unresolved = _unresolved(results, frozenset())  # a new run: nothing is overridden yet
    changes: dict[str, object] = {
        "check_runs": (*session.check_runs, run),
        "concomitant_medications": inputs.concomitant_medications,
        "deferred_reasons": tuple(r.reason for r in unresolved),
    }
    if unresolved:
        return _move(
            session,
            to=SessionState.deferred,
            action="run_pre_dose_checks",
            actor=actor,
            now=now,
            detail="deferred: " + ", ".join(r.rule_id for r in unresolved),
            **changes,
        )
    return _move(
        session,
        to=SessionState.cleared,
        action="run_pre_dose_checks",
        actor=actor,
        now=now,
        detail="cleared",
        cleared_at=now,
        **changes,
    )


def override_check(
    session: DosingSession,
    *,
    rule_id: str,
    reason: str,
    actor: Actor,
    now: datetime,
) -> Outcome:
    """A prescriber overrides one failed pre-dose check with a reason (audited by the
    service). The session clears once no failing check is left un-overridden."""
    _require_state(session, "override_check", {SessionState.deferred})
    _require_role(session, actor, "override_check", {Role.prescriber})
    _require_time_order(session, now)
    text = _require_text(session, "override_reason", reason, "a reason for the override")
    run = session.last_check_run
    failing = {r.rule_id: r for r in (run.results if run else ()) if r.blocking}
    result = failing.get(rule_id)
    if result is None:
        raise _refuse(
            "nothing_to_override",
            session,
            Reason(
                "override_target",
                f"{rule_id!r} is not a failed check in the latest run "
                f"(failed: {', '.join(sorted(failing)) or 'none'})",
                _SRC_MACHINE,
            ),
        )
    if result.kind is CheckKind.hard_stop:
        raise _refuse(
            "not_overridable",
            session,
            Reason(rule_id, f"{result.message}: this check cannot be overridden", result.source),
        )
    if rule_id in session.overridden_rule_ids:
        raise _refuse(
            "already_overridden",
            session,
            Reason("override_target", f"{rule_id!r} is already overridden"),
        )
    run_number = len(session.check_runs)
    overrides = (
        *session.overrides,
        Override(
            rule_id=rule_id,
            reason=text,
            by=actor.user_id,
            at=now,
            check_run=run_number,
            overridden_result=result.message,
        ),
    )
    overridden = _overridden_in_run(session.check_runs, overrides, run_number)
    assert run is not None
    unresolved = _unresolved(run.results, overridden)
    to = SessionState.deferred if unresolved else SessionState.cleared
    return _move(
        session,
        to=to,
        action="override_check",
        actor=actor,
        now=now,
        detail=f"{rule_id}: {text}",
        overrides=overrides,
        deferred_reasons=tuple(r.reason for r in unresolved),
        cleared_at=None if unresolved else now,
    )


# ---------------------------------------------------------------------------------------------
# Dosing


def _require_spacing_at_dose(
    session: DosingSession,
    protocol: Protocol,
    last_dose_at: datetime | None,
    now: datetime,
    clinic_timezone: str,
) -> None:
    if last_dose_at is None:
        return
    days = clinic_days_between(last_dose_at, now, ZoneInfo(clinic_timezone))
    if days >= protocol.min_days_between_doses:
        return
    run = session.last_check_run
    if "dose_spacing" in session.overridden_rule_ids and run is not None:
        if run.last_dose_at is not None:
            seen = run.last_dose_at >= last_dose_at
        else:
            # A run stored before runs recorded the dose they saw (its spacing failed, so it
            # saw one): every dose dated at or before the run counts as seen by it.
            spacing_failed = any(r.rule_id == "dose_spacing" and not r.passed for r in run.results)
            seen = spacing_failed and last_dose_at <= run.at
        if seen:
            return  # the prescriber overrode the spacing knowing this very dose
    raise _refuse(
        "dose_spacing",
        session,
        Reason(
            "dose_spacing",
            f"the patient was given a dose at {last_dose_at.isoformat()} ({days} day(s) ago); "
            f"{protocol.name} needs at least {protocol.min_days_between_doses} day(s) between "
            "doses: stop this session and reschedule it",
            _SRC_SPACING,
        ),
    )


def _require_cleared_today(session: DosingSession, now: datetime, clinic_timezone: str) -> None:
    """The checks that cleared the session read that clinic day's readings and answers: a
    dose on a later day needs them taken again."""
    run = session.last_check_run
    zone = ZoneInfo(clinic_timezone)
    today = now.astimezone(zone).date()
    run_day = run.at.astimezone(zone).date() if run is not None else None
    if run_day == today:
        return
    raise _refuse(
        "cleared_on_another_day",
        session,
        Reason(
            "pre_dose_checks_today",
            f"the pre-dose checks that cleared this session were run on "
            f"{run_day.isoformat() if run_day else 'no day'}, not today ({today.isoformat()}): "
            "its readings and answers are out of date; stop this session (reason "
            "deferred_to_another_day) and book the dose again",
            "pre-dose checks on the day of the dose (label sections 2 and 5, reference §1)",
        ),
    )


def start_dose(
    session: DosingSession,
    protocol: Protocol,
    dose: AdministeredDose,
    *,
    actor: Actor,
    now: datetime,
    prior_doses_mg: Sequence[int] = (),
    last_dose_at: datetime | None = None,
    clinic_timezone: str = "UTC",
) -> Outcome:
    """Start the dose. For esketamine this is the first device, given at `now` (the
    observation clock starts here); the lot number and the device count are required, and
    `prior_doses_mg` (the patient's earlier esketamine doses) enforces the label's 56 mg start:
    left empty, the session counts as a first dose, so 84 mg is refused (fail-safe).

    `last_dose_at` is the patient's latest dose now (clinic or home): the spacing between
    doses is checked again here, since another session may have been dosed after this one was
    cleared. A spacing a prescriber overrode holds only for the dose that run saw."""
    _require_protocol(session, protocol)
    _require_state(session, "start_dose", {SessionState.cleared})
    _require_role(session, actor, "start_dose", _CLINICAL)
    _require_time_order(session, now)
    _require_cleared_today(session, now, clinic_timezone)
    _require_spacing_at_dose(session, protocol, last_dose_at, now, clinic_timezone)
    problems: list[Reason] = []
    rule = protocol.dose_rule
    devices: tuple[DeviceAdministration, ...] = ()
    if isinstance(rule, DeviceDose):
        src = "SPRAVATO label; REMS form (reference §1)"
        if dose.lot_number is None:
            problems.append(Reason("lot_number_required", "record the device lot number", src))
        if (
            dose.dose_mg != dose.dose_mg.to_integral_value()
            or int(dose.dose_mg) not in rule.allowed_doses_mg
        ):
            problems.append(
                Reason(
                    "esketamine_dose_not_allowed", f"{dose.dose_mg} mg is not an allowed dose", src
                )
            )
        else:
            try:
                calculate_device_dose(
                    rule, dose_mg=int(dose.dose_mg), prior_doses_mg=list(prior_doses_mg)
                )
            except RuleViolation as refused:
                problems.extend(refused.reasons)
        if not problems and dose.device_count != int(dose.dose_mg) // rule.device_mg:
            problems.append(
                Reason(
                    "device_count",
                    f"{dose.dose_mg} mg is {int(dose.dose_mg) // rule.device_mg} devices, "
                    f"not {dose.device_count}",
                    src,
                )
            )
        if not problems:
            assert dose.lot_number is not None
            devices = (
                DeviceAdministration(
                    number=1, at=now, lot_number=dose.lot_number, by=actor.user_id
                ),
            )
    elif (
        isinstance(rule, WeightBasedDose)
        and dose.max_dose_mg is not None
        and dose.dose_mg > dose.max_dose_mg
    ):
        problems.append(
            Reason(
                "dose_above_max",
                f"{dose.dose_mg} mg is above the maximum {dose.max_dose_mg} mg",
                "protocol dose rule",
            )
        )
    if problems:
        raise _refuse("dose_not_allowed", session, *problems)
    return _move(
        session,
        to=SessionState.dosing,
        action="start_dose",
        actor=actor,
        now=now,
        detail=f"{dose.dose_mg} mg",
        dose=dose,
        dose_started_at=now,
        devices=devices,
    )


def record_device(
    session: DosingSession,
    protocol: Protocol,
    *,
    actor: Actor,
    now: datetime,
    lot_number: str | None = None,
) -> Outcome:
    """Record the next esketamine device; refused before the 5-minute rest has passed."""
    _require_protocol(session, protocol)
    _require_state(session, "record_device", {SessionState.dosing})
    _require_role(session, actor, "record_device", _CLINICAL)
    _require_time_order(session, now)
    rule = protocol.dose_rule
    if not isinstance(rule, DeviceDose):
        raise _refuse(
            "not_a_device_protocol",
            session,
            Reason("record_device_protocol", f"{protocol.name} has no devices"),
        )
    assert session.dose is not None and session.dose.device_count is not None
    if len(session.devices) >= session.dose.device_count:
        raise _refuse(
            "all_devices_given",
            session,
            Reason(
                "device_count",
                f"all {session.dose.device_count} devices are recorded",
                "dose order",
            ),
        )
    earliest = session.devices[-1].at + timedelta(minutes=rule.rest_between_devices_min)
    if now < earliest:
        wait_s = int((earliest - now).total_seconds())
        raise _refuse(
            "device_rest",
            session,
            Reason(
                "device_rest",
                f"rest {rule.rest_between_devices_min} min after each device: wait "
                f"{wait_s // 60} min {wait_s % 60} s more",
                "SPRAVATO Instructions for Use (reference §1)",
            ),
        )
    lot = lot_number or session.devices[-1].lot_number
    device = DeviceAdministration(
        number=len(session.devices) + 1, at=now, lot_number=lot, by=actor.user_id
    )
    return _move(
        session,
        to=SessionState.dosing,
        action="record_device",
        actor=actor,
        now=now,
        detail=f"device {device.number}",
        devices=(*session.devices, device),
    )


def _infusion_minutes_given(session: DosingSession, until: datetime) -> float:
    assert session.dose_started_at is not None
    total = (until - session.dose_started_at).total_seconds()
    for pause in session.pauses:
        end = pause.resumed_at or until
        total -= (end - pause.paused_at).total_seconds()
    return total / 60


def end_dose(
    session: DosingSession,
    protocol: Protocol,
    *,
    actor: Actor,
    now: datetime,
    reason: str | None = None,
) -> Outcome:
    """End administration; the session moves to monitoring. Ending early (fewer devices than
    ordered, or an infusion shorter than the protocol's time) needs a reason."""
    _require_protocol(session, protocol)
    _require_state(session, "end_dose", {SessionState.dosing})
    _require_role(session, actor, "end_dose", _CLINICAL)
    _require_time_order(session, now)
    assert session.dose is not None and session.dose_started_at is not None
    early = False
    if isinstance(protocol.dose_rule, DeviceDose):
        assert session.dose.device_count is not None
        early = len(session.devices) < session.dose.device_count
        early_what = f"{len(session.devices)} of {session.dose.device_count} devices given"
    else:
        given_min = _infusion_minutes_given(session, now)
        early = given_min < protocol.administration_minutes
        early_what = f"{given_min:.0f} of {protocol.administration_minutes} min given"
    partial_reason = None
    if early:
        if reason is None or not reason.strip():
            raise _refuse(
                "reason_required",
                session,
                Reason(
                    "partial_dose_reason",
                    f"the dose is incomplete ({early_what}): give a reason",
                    "dose order",
                ),
            )
        partial_reason = reason.strip()
    pauses = session.pauses
    if session.infusion_paused:
        pauses = (
            *pauses[:-1],
            pauses[-1].model_copy(update={"resumed_at": now, "resumed_by": actor.user_id}),
        )
    return _move(
        session,
        to=SessionState.monitoring,
        action="end_dose",
        actor=actor,
        now=now,
        detail=partial_reason or "",
        dose_ended_at=now,
        partial_dose_reason=partial_reason,
        pauses=pauses,
    )


def pause_infusion(
    session: DosingSession, protocol: Protocol, *, reason: str, actor: Actor, now: datetime
) -> Outcome:
    """Pause an IV infusion (e.g. on a hold alarm)."""
    _require_protocol(session, protocol)
    _require_state(session, "pause_infusion", {SessionState.dosing})
    _require_role(session, actor, "pause_infusion", _CLINICAL)
    _require_time_order(session, now)
    if protocol.administration_minutes == 0 or isinstance(protocol.dose_rule, DeviceDose):
        raise _refuse(
            "not_an_infusion",
            session,
            Reason("pause_infusion_protocol", f"{protocol.name} is not an infusion"),
        )
    if session.infusion_paused:
        raise _refuse(
            "already_paused",
            session,
            Reason("pause_infusion_paused", "the infusion is already paused"),
        )
    text = _require_text(session, "pause_reason", reason, "a reason to pause")
    pause = InfusionPause(paused_at=now, reason=text, by=actor.user_id)
    return _move(
        session,
        to=SessionState.dosing,
        action="pause_infusion",
        actor=actor,
        now=now,
        detail=text,
        pauses=(*session.pauses, pause),
    )


def resume_infusion(session: DosingSession, *, actor: Actor, now: datetime) -> Outcome:
    """Resume a paused infusion: the prescriber's decision (the hold alarm's action)."""
    _require_state(session, "resume_infusion", {SessionState.dosing})
    _require_role(session, actor, "resume_infusion", {Role.prescriber})
    _require_time_order(session, now)
    if not session.infusion_paused:
        raise _refuse(
            "not_paused", session, Reason("resume_infusion_paused", "the infusion is not paused")
        )
    last = session.pauses[-1].model_copy(update={"resumed_at": now, "resumed_by": actor.user_id})
    return _move(
        session,
        to=SessionState.dosing,
        action="resume_infusion",
        actor=actor,
        now=now,
        pauses=(*session.pauses[:-1], last),
    )


def titrate_dose(
    session: DosingSession,
    protocol: Protocol,
    *,
    new_dose_mg: Decimal,
    reason: str,
    actor: Actor,
    now: datetime,
) -> Outcome:
    """A prescriber changes the total infusion dose during dosing, within the maximum from the
    dose calculation (protocol max mg/kg x dosing weight, absolute cap)."""
    _require_protocol(session, protocol)
    _require_state(session, "titrate_dose", {SessionState.dosing})
    _require_role(session, actor, "titrate_dose", {Role.prescriber})
    _require_time_order(session, now)
    rule = protocol.dose_rule
    if not isinstance(rule, WeightBasedDose) or not rule.titration_allowed:
        raise _refuse(
            "titration_not_allowed",
            session,
            Reason("titration_protocol", f"{protocol.name} does not allow titration"),
        )
    text = _require_text(session, "titration_reason", reason, "a reason for the change")
    assert session.dose is not None
    new_dose = Decimal(new_dose_mg)
    maximum = session.dose.max_dose_mg
    if maximum is None:
        raise _refuse(
            "dose_not_allowed",
            session,
            Reason("titration_max_unknown", "the dose order has no maximum to titrate within"),
        )
    if new_dose > maximum:
        raise _refuse(
            "dose_not_allowed",
            session,
            Reason(
                "dose_above_max",
                f"{new_dose} mg is above the maximum {maximum} mg",
                "protocol dose rule",
            ),
        )
    # The floor is the protocol's minimum mg/kg x the dosing weight of the order (0.1 mg/kg
    # for IV: Sanacora 2017, reference §2), down to the dose step as the calculation rounds.
    weight = session.dose.dosing_weight_kg
    if weight is None:
        raise _refuse(
            "dose_not_allowed",
            session,
            Reason("titration_min_unknown", "the dose order has no dosing weight for a minimum"),
        )
    step = rule.rounding_step_mg
    minimum = (rule.min_mg_per_kg * weight / step).quantize(Decimal(1), ROUND_DOWN) * step
    if new_dose < minimum:
        raise _refuse(
            "dose_not_allowed",
            session,
            Reason(
                "dose_below_min",
                f"{new_dose} mg is below the minimum {minimum} mg "
                f"({rule.min_mg_per_kg} mg/kg x {weight} kg)",
                "protocol dose rule",
            ),
        )
    titration = Titration(
        at=now,
        from_dose_mg=session.dose.dose_mg,
        to_dose_mg=new_dose,
        reason=text,
        by=actor.user_id,
    )
    return _move(
        session,
        to=SessionState.dosing,
        action="titrate_dose",
        actor=actor,
        now=now,
        detail=f"{session.dose.dose_mg} -> {new_dose} mg: {text}",
        dose=session.dose.model_copy(update={"dose_mg": new_dose}),
        titrations=(*session.titrations, titration),
    )


# ---------------------------------------------------------------------------------------------
# Readings, alarms, adverse events

_READING_STATES = ACTIVE_STATES


def record_reading(
    session: DosingSession,
    protocol: Protocol,
    reading: Reading,
    *,
    actor: Actor,
    now: datetime,
) -> Outcome:
    """Record a reading and return the alarms it raises. Refused (409) outside an active
    session; impossible values raise `InvalidReading` (422). A correction names the voided
    reading in `corrects_reading_id`."""
    _require_protocol(session, protocol)
    _require_state(session, "record_reading", _READING_STATES)
    _require_role(session, actor, "record_reading", _CLINICAL)
    _require_time_order(session, now)
    validate_reading(reading)
    problems: list[Reason] = []
    if reading.voided:
        problems.append(Reason("reading_voided", "a new reading cannot arrive voided"))
    if reading.taken_at > now:
        problems.append(Reason("reading_in_future", "a reading cannot be taken in the future"))
    assert session.checked_in_at is not None
    if reading.taken_at < session.checked_in_at:
        problems.append(Reason("reading_before_check_in", "a reading cannot predate the check-in"))
    started = session.dose_started_at
    if started is not None and reading.taken_at < started:
        # Pre-dose readings are the baseline discharge compares with, and what the pre-dose
        # checks cleared on; one dated before the dose but entered after it could replace
        # them. Only the correction of a voided pre-dose reading (audited, the original kept)
        # may carry such a time.
        corrected = next((r for r in session.readings if r.id == reading.corrects_reading_id), None)
        if corrected is None or not corrected.voided or corrected.taken_at >= started:
            problems.append(
                Reason(
                    "reading_before_dose_start",
                    f"taken_at {reading.taken_at.isoformat()} is before the dose started "
                    f"({started.isoformat()}): pre-dose readings are entered before the dose",
                )
            )
    if any(r.id == reading.id for r in session.readings):
        problems.append(Reason("reading_id_taken", f"reading {reading.id} already exists"))
    if reading.corrects_reading_id is not None:
        target = next((r for r in session.readings if r.id == reading.corrects_reading_id), None)
        if target is None or not target.voided:
            problems.append(
                Reason(
                    "correction_target", "a correction must name a voided reading of this session"
                )
            )
    if problems:
        raise _refuse("reading_refused", session, *problems)
    phase = phase_at(reading.taken_at, session.dose_started_at, session.dose_ended_at)
    alarms = evaluate_alarms(reading, protocol, phase)
    return _move(
        session,
        to=session.state,
        action="record_reading",
        actor=actor,
        now=now,
        detail=reading.id,
        emitted=alarms,
        readings=(*session.readings, reading),
        alarms=(*session.alarms, *alarms),
    )


def void_reading(
    session: DosingSession,
    *,
    reading_id: str,
    reason: str,
    actor: Actor,
    now: datetime,
) -> Outcome:
    """Void a wrong reading with a reason. It stays in the session, marked voided (never
    overwritten or deleted); enter the corrected one with `record_reading`."""
    _require_state(session, "void_reading", _READING_STATES)
    _require_role(session, actor, "void_reading", _CLINICAL)
    _require_time_order(session, now)
    text = _require_text(session, "void_reason", reason, "a reason to void the reading")
    index = next((i for i, r in enumerate(session.readings) if r.id == reading_id), None)
    if index is None:
        raise _refuse(
            "reading_not_found", session, Reason("void_target", f"no reading {reading_id}")
        )
    target = session.readings[index]
    if target.voided:
        raise _refuse(
            "already_voided",
            session,
            Reason("void_target", f"reading {reading_id} is already voided"),
        )
    voided = target.model_copy(
        update={"voided_at": now, "voided_by": actor.user_id, "void_reason": text}
    )
    readings = (*session.readings[:index], voided, *session.readings[index + 1 :])
    return _move(
        session,
        to=session.state,
        action="void_reading",
        actor=actor,
        now=now,
        detail=f"{reading_id}: {text}",
        readings=readings,
    )


def acknowledge_alarm(
    session: DosingSession,
    *,
    alarm_id: str,
    actor: Actor,
    now: datetime,
    note: str | None = None,
) -> Outcome:
    """A clinician has seen an alarm (and acted); it leaves the open-alarm worklist."""
    _require_role(session, actor, "acknowledge_alarm", _CLINICAL)
    _require_time_order(session, now)
    if not any(a.id == alarm_id for a in session.alarms):
        raise _refuse(
            "alarm_not_found", session, Reason("acknowledge_target", f"no alarm {alarm_id}")
        )
    if any(a.alarm_id == alarm_id for a in session.alarm_acknowledgements):
        raise _refuse(
            "already_acknowledged",
            session,
            Reason("acknowledge_target", f"alarm {alarm_id} is acknowledged"),
        )
    ack = AlarmAcknowledgement(alarm_id=alarm_id, at=now, by=actor.user_id, note=note)
    return _move(
        session,
        to=session.state,
        action="acknowledge_alarm",
        actor=actor,
        now=now,
        detail=alarm_id,
        alarm_acknowledgements=(*session.alarm_acknowledgements, ack),
    )


# Adverse events may still be recorded after discharge (a late report from the patient).
_AE_STATES = ACTIVE_STATES | {SessionState.discharged, SessionState.stopped}


def record_adverse_event(
    session: DosingSession, event: AdverseEvent, *, actor: Actor, now: datetime
) -> Outcome:
    _require_state(session, "record_adverse_event", _AE_STATES)
    _require_role(session, actor, "record_adverse_event", _CLINICAL)
    _require_time_order(session, now)
    problems: list[Reason] = []
    if event.onset_at > now:
        problems.append(Reason("adverse_event_in_future", "onset cannot be in the future"))
    if session.checked_in_at is not None and event.onset_at < session.checked_in_at:
        problems.append(
            Reason("adverse_event_before_check_in", "onset cannot predate the check-in")
        )
    if event.kind is AdverseEventKind.other and not (event.description or "").strip():
        problems.append(Reason("adverse_event_description", "describe an 'other' adverse event"))
    if event.outcome is not AdverseEventOutcome.ongoing and event.resolved_at is None:
        problems.append(Reason("adverse_event_resolved_at", "a resolved event needs its time"))
    if any(e.id == event.id for e in session.adverse_events):
        problems.append(
            Reason("adverse_event_id_taken", f"adverse event {event.id} already exists")
        )
    if problems:
        raise _refuse("adverse_event_refused", session, *problems)
    stored = event.model_copy(update={"recorded_at": now, "recorded_by": actor.user_id})
    return _move(
        session,
        to=session.state,
        action="record_adverse_event",
        actor=actor,
        now=now,
        detail=f"{event.severity.value} {event.kind.value}",
        adverse_events=(*session.adverse_events, stored),
    )


def update_adverse_event(
    session: DosingSession,
    *,
    event_id: str,
    outcome: AdverseEventOutcome,
    actor: Actor,
    now: datetime,
    resolved_at: datetime | None = None,
    add_actions: Iterable[AdverseEventAction] = (),
) -> Outcome:
    """Record an adverse event's outcome and further actions taken."""
    _require_state(session, "update_adverse_event", _AE_STATES)
    _require_role(session, actor, "update_adverse_event", _CLINICAL)
    _require_time_order(session, now)
    index = next((i for i, e in enumerate(session.adverse_events) if e.id == event_id), None)
    if index is None:
        raise _refuse(
            "adverse_event_not_found",
            session,
            Reason("adverse_event_target", f"no adverse event {event_id}"),
        )
    current = session.adverse_events[index]
    if outcome is not AdverseEventOutcome.ongoing:
        resolved_at = resolved_at or now
        if resolved_at > now or resolved_at < current.onset_at:
            raise _refuse(
                "adverse_event_refused",
                session,
                Reason("adverse_event_resolved_at", "resolution must be between onset and now"),
            )
        detail = f"{event_id}: {outcome.value} at {resolved_at.isoformat()}"
    else:
        resolved_at = None
        detail = f"{event_id}: {outcome.value}"
        if current.resolved_at is not None:
            # Reopened: the event is open again, and the session's history keeps when (and
            # how) it had been closed, so the earlier resolution is never lost.
            detail += (
                f" (reopened; was {current.outcome.value} at {current.resolved_at.isoformat()})"
            )
    actions = (*current.actions, *(a for a in add_actions if a not in current.actions))
    updated = current.model_copy(
        update={"outcome": outcome, "resolved_at": resolved_at, "actions": actions}
    )
    events = (*session.adverse_events[:index], updated, *session.adverse_events[index + 1 :])
    return _move(
        session,
        to=session.state,
        action="update_adverse_event",
        actor=actor,
        now=now,
        detail=detail,
        adverse_events=events,
    )


# ---------------------------------------------------------------------------------------------
# Leaving


def discharge(
    session: DosingSession,
    protocol: Protocol,
    inputs: DischargeInputs,
    *,
    actor: Actor,
    now: datetime,
) -> Outcome:
    """Discharge when every criterion holds; otherwise `RuleViolation("discharge_criteria_unmet")`
    listing each unmet one. A prescriber who judges the patient must leave anyway records why
    with `stop` (e.g. left against medical advice, emergency transfer): discharge itself is
    never forced."""
    _require_protocol(session, protocol)
    _require_state(session, "discharge", {SessionState.monitoring})
    _require_role(session, actor, "discharge", _CLINICAL)
    _require_time_order(session, now)
    evaluation = evaluate_discharge(
        protocol,
        readings=session.readings,
        adverse_events=session.adverse_events,
        checked_in_at=session.checked_in_at,
        dose_started_at=session.dose_started_at,
        dose_ended_at=session.dose_ended_at,
        inputs=inputs,
        at=now,
    )
    if not evaluation.ok:
        raise _refuse("discharge_criteria_unmet", session, *evaluation.unmet)
    anchor = (
        session.dose_started_at
        if protocol.discharge.observation_anchor.value == "dose_start"
        else session.dose_ended_at
    )
    assert anchor is not None
    observed_min = int((now - anchor).total_seconds() // 60)
    ready = inputs.ready_without_minimum_min
    if ready is not None and ready > observed_min:
        # REMS form: when the patient would have been ready, counted from the first device;
        # it cannot be later than the end of the monitoring being recorded
        raise InvalidInput(
            f"ready_without_minimum_min ({ready}) is more than the {observed_min} minutes observed",
            field_name="ready_without_minimum_min",
        )
    record = DischargeRecord(
        at=now,
        by=actor.user_id,
        escort_present=inputs.escort_present,
        clinician_judges_stable=inputs.clinician_judges_stable,
        ready_without_minimum_min=ready,
        observation_minutes=observed_min,
    )
    return _move(
        session,
        to=SessionState.discharged,
        action="discharge",
        actor=actor,
        now=now,
        discharge=record,
        closed_at=now,
    )


def stop(
    session: DosingSession,
    *,
    reason: StopReason,
    note: str,
    actor: Actor,
    now: datetime,
) -> Outcome:
    """Stop an active session with a reason. Once the dose has started only a prescriber may
    stop it (they record why the patient leaves without discharge), except that a nurse may
    stop for an emergency transfer."""
    _require_state(session, "stop", ACTIVE_STATES)
    _require_time_order(session, now)
    dosed = session.state in (SessionState.dosing, SessionState.monitoring)
    if dosed and reason is not StopReason.emergency_transfer:
        _require_role(session, actor, "stop", {Role.prescriber})
    else:
        _require_role(session, actor, "stop", _CLINICAL)
    text = _require_text(session, "stop_note", note, "a note on why the session stops")
    changes: dict[str, object] = {}
    if session.state is SessionState.dosing:
        changes["dose_ended_at"] = now
        changes["partial_dose_reason"] = f"stopped: {text}"
        if session.infusion_paused:
            last = session.pauses[-1].model_copy(
                update={"resumed_at": now, "resumed_by": actor.user_id}
            )
            changes["pauses"] = (*session.pauses[:-1], last)
    record = StopRecord(
        at=now, by=actor.user_id, reason=reason, note=text, from_state=session.state
    )
    return _move(
        session,
        to=SessionState.stopped,
        action="stop",
        actor=actor,
        now=now,
        detail=f"{reason.value}: {text}",
        stop=record,
        closed_at=now,
        **changes,
    )


# ---------------------------------------------------------------------------------------------
# Invariants


_REACHED_DOSING = frozenset({SessionState.dosing, SessionState.monitoring, SessionState.discharged})


def invariant_violations(session: DosingSession, protocol: Protocol) -> list[str]:
    """What is inconsistent in a session value (empty when valid): for tests and for the
    service to check a loaded value."""
    problems: list[str] = []
    state = session.state
    never_checked_in = (SessionState.scheduled, SessionState.missed, SessionState.cancelled)
    if state not in never_checked_in and session.checked_in_at is None:
        problems.append("past scheduled but never checked in")
    if state is SessionState.cleared and session.cleared_at is None:
        problems.append("cleared without cleared_at")
    if state is SessionState.deferred and not session.deferred_reasons:
        problems.append("deferred without reasons")
    if state in _REACHED_DOSING and (session.dose is None or session.dose_started_at is None):
        problems.append(f"{state} without a started dose")
    if state in _REACHED_DOSING | {SessionState.cleared}:
        run = session.last_check_run
        if run is None:
            problems.append(f"{state} without pre-dose checks")
        elif _unresolved(run.results, session.overridden_rule_ids):
            problems.append(f"{state} with unresolved pre-dose checks")
    if (
        state in (SessionState.monitoring, SessionState.discharged)
        and session.dose_ended_at is None
    ):
        problems.append(f"{state} without dose end")
    if state is SessionState.discharged:
        if session.discharge is None:
            problems.append("discharged without a discharge record")
        else:
            anchor = (
                session.dose_started_at
                if protocol.discharge.observation_anchor.value == "dose_start"
                else session.dose_ended_at
            )
            if anchor is None or session.discharge.at < anchor + timedelta(
                minutes=protocol.discharge.min_observation_min
            ):
                problems.append("discharged before the minimum observation")
    if state in TERMINAL_STATES and session.closed_at is None:
        problems.append(f"{state} without closed_at")
    if state not in TERMINAL_STATES and session.closed_at is not None:
        problems.append(f"{state} with closed_at")
    if isinstance(protocol.dose_rule, DeviceDose) and session.devices:
        rest = timedelta(minutes=protocol.dose_rule.rest_between_devices_min)
        for earlier, later in pairwise(session.devices):
            if later.at - earlier.at < rest:
                problems.append("devices closer than the rest interval")
        if session.dose is not None and len(session.devices) > (session.dose.device_count or 0):
            problems.append("more devices than ordered")
        if session.dose_started_at != session.devices[0].at:
            problems.append("observation clock not at the first device")
    if protocol.drug is Drug.esketamine and state is SessionState.discharged:
        record = session.discharge
        if record is None or record.ready_without_minimum_min is None:
            problems.append("esketamine discharge without the REMS readiness estimate")
    times = [e.at for e in session.events]
    if times != sorted(times):
        problems.append("events out of time order")
    for event in session.events:
        if (
            event.to_state is not event.from_state
            and event.to_state not in TRANSITIONS[event.from_state]
        ):
            problems.append(f"illegal edge {event.from_state} -> {event.to_state}")
    if session.events and session.events[-1].to_state is not state:
        problems.append("state differs from the last event")
    dose = session.dose
    if dose is not None and dose.max_dose_mg is not None and dose.dose_mg > dose.max_dose_mg:
        problems.append("dose above its maximum")
    if session.infusion_paused and state is not SessionState.dosing:
        problems.append(f"{state} with the infusion still paused")
    ids = [r.id for r in session.readings]
    if len(ids) != len(set(ids)):
        problems.append("duplicate reading ids")
    return problems


# ---------------------------------------------------------------------------------------------
# A session at a glance (worklists, the day board, `ketaflow sessions today`)


class SessionStatus(_Value):
    session_id: str
    state: SessionState
    open_alarms: tuple[Alarm, ...]
    # Planned readings whose window is open now, and those whose window passed unmet.
    due_readings: tuple[DueReading, ...]
    missed_readings: tuple[DueReading, ...]
    # When the minimum observation ends (None before the dose).
    observation_ends_at: datetime | None
    # In monitoring: the criteria still unmet if discharge were attempted now (escort and the
    # clinician's answers assumed given, since they are asked at the moment of discharge).
    discharge_blockers: tuple[Reason, ...]
    deferred_reasons: tuple[Reason, ...]


def session_status(
    session: DosingSession, protocol: Protocol, *, now: datetime, clinic_timezone: str
) -> SessionStatus:
    """Everything a worklist shows about one session at `now`; changes nothing. Pre-dose
    readings are shown due until taken on the clinic day (in `clinic_timezone`) of the dose,
    or of `now` before it, as the pre-dose checks require."""
    _require_protocol(session, protocol)
    schedule = reading_schedule(
        protocol.monitoring,
        readings=session.readings,
        checked_in_at=session.checked_in_at,
        dose_started_at=session.dose_started_at,
        dose_ended_at=session.dose_ended_at,
        closed_at=session.closed_at,
        now=now,
        clinic_tz=ZoneInfo(clinic_timezone),
    )
    ends_at = observation_ends_at(
        protocol.discharge,
        dose_started_at=session.dose_started_at,
        dose_ended_at=session.dose_ended_at,
    )
    blockers: tuple[Reason, ...] = ()
    if session.state is SessionState.monitoring:
        assumed = DischargeInputs(
            escort_present=True, clinician_judges_stable=True, ready_without_minimum_min=0
        )
        blockers = evaluate_discharge(
            protocol,
            readings=session.readings,
            adverse_events=session.adverse_events,
            checked_in_at=session.checked_in_at,
            dose_started_at=session.dose_started_at,
            dose_ended_at=session.dose_ended_at,
            inputs=assumed,
            at=now,
        ).unmet
    return SessionStatus(
        session_id=session.id,
        state=session.state,
        open_alarms=tuple(session.open_alarms),
        due_readings=tuple(d for d in schedule if d.status is DueStatus.due),
        missed_readings=tuple(d for d in schedule if d.status is DueStatus.missed),
        observation_ends_at=ends_at,
        discharge_blockers=blockers,
        deferred_reasons=session.deferred_reasons if session.state is SessionState.deferred else (),
    )
