"""Measurement-based care use cases: assessments, safety alerts, outcomes, trajectories and
one-time questionnaire links. Each use case authorizes (before its transaction), loads, calls the
pure rules (`instruments`, `outcomes`, `trajectory`), saves and audits in one transaction.

The worklist and the pre-dose checks call the plain functions in the last sections
(`open_alerts`, `booster_suggestions`, `early_non_response_suggestions`,
`latest_safety_inputs`) inside their own transaction; those neither authorize nor audit.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketaflow.core.clock import Clock, utc_now
from ketaflow.core.db import Database
from ketaflow.core.errors import Conflict, InvalidInput, KetaflowError, NotFound
from ketaflow.core.settings import Settings
from ketaflow.measures import outcomes, trajectory
from ketaflow.measures.instruments import (
    AnswerError,
    Instrument,
    Score,
    all_instruments,
    get_instrument,
)
from ketaflow.measures.tables import Assessment, QuestionnaireLink, SafetyAlert
from ketaflow.measures.wording import load_wording_file
from ketaflow.patients.rules import check_not_before_birth
from ketaflow.patients.screening import AssessmentFlag, CssrsRiskFlag, Phq9Item9Flag
from ketaflow.patients.service import load_patient
from ketaflow.security import audit
from ketaflow.security import service as security
from ketaflow.security.permissions import (
    ALERT_ACKNOWLEDGE,
    ASSESSMENT_CREATE,
    ASSESSMENT_READ,
    QUESTIONNAIRE_LINK_CREATE,
    Actor,
    is_allowed,
)
from ketaflow.security.tables import User
from ketaflow.treatment import service as treatment
from ketaflow.treatment.tables import DosingSessionRow

# A time a little ahead of the server's clock is a device clock, not a future assessment.
CLOCK_SKEW = timedelta(minutes=5)
# How far ahead an ad hoc link may open: the schedule's longest horizon (LinkSchedule, 366
# days). A scheduling limit, not a clinical threshold.
MAX_LINK_LEAD = timedelta(days=366)
MIN_ACK_NOTE_CHARS = 5
# Planned links: 24 h and 7 days after each dose, weekly in maintenance (issue 4 §6 examples;
# scheduling choices, not clinical thresholds).
AFTER_DOSE_DELAYS = (("24h_after_dose", timedelta(hours=24)), ("7d_after_dose", timedelta(days=7)))
MAINTENANCE_INTERVAL = timedelta(weeks=1)
SAME_DAY = timedelta(days=1)  # links opening closer than this ask the same question twice
DEFAULT_SCHEDULE_HORIZON = timedelta(days=28)
SELF_REPORT_ACTOR_NAME = "patient via link"
MISSING_ANSWER_MESSAGE = "Please answer this question."


# ---------------------------------------------------------------------------------------------
# The instruments a clinic uses: the registry, with its licensed wording where it loaded one.


@dataclass(frozen=True)
class InstrumentCatalogue:
    """The scales with any licensed wording applied; scoring is the registry's own."""

    reworded: Mapping[str, Instrument] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> InstrumentCatalogue:
        if not settings.instrument_wording_file:
            return cls()
        return cls(load_wording_file(settings.instrument_wording_file))

    def get(self, code: str) -> Instrument:
        """The scale for a code (case and punctuation ignored); UnknownInstrument (422)."""
        instrument = get_instrument(code)
        return self.reworded.get(instrument.code, instrument)

    def all(self) -> tuple[Instrument, ...]:
        return tuple(self.reworded.get(i.code, i) for i in all_instruments())


DEFAULT_CATALOGUE = InstrumentCatalogue()


def is_self_report(instrument: Instrument) -> bool:
    """A patient can answer it alone: every item is patient-rated."""
    return all(item.rater == "patient" for item in instrument.items)


def asked_answers(instrument: Instrument, answers: Mapping[str, int]) -> dict[str, int]:
    """Only the answers to questions the scale asks given the other answers: on a paper-like web
    form a patient may answer a question its skip logic leaves out (C-SSRS 3-5 after a "no" to
    question 2). Check `answer_problems` first: it refuses any answer above the lowest ("No")
    to a skipped question, so what is dropped here is only ever a "No"."""
    kept = dict(answers)
    while True:
        asked = set(instrument.ordered_item_ids(kept))
        pruned = {k: v for k, v in kept.items() if k in asked}
        if pruned == kept:
            return kept
        kept = pruned


def missing_items(instrument: Instrument, answers: Mapping[str, int]) -> list[str]:
    """Required questions, asked given these answers, that have no answer."""
    return [
        item_id
        for item_id in instrument.ordered_item_ids(answers)
        if item_id not in answers and instrument.item(item_id).required
    ]


def _option_label(instrument: Instrument, item_id: str, value: int) -> str:
    item = instrument.item(item_id)
    return next((o.label for o in item.options if o.value == value), str(value))


def _numbers(item_ids: Sequence[str]) -> str:
    if len(item_ids) == 1:
        return item_ids[0]
    return ", ".join(item_ids[:-1]) + " and " + item_ids[-1]


def answer_problems(instrument: Instrument, answers: Mapping[str, int]) -> dict[str, str]:
    """What the patient must fix before the answers can be saved, by item id (empty: none).

    A positive answer to a question the skip logic leaves out (C-SSRS "Yes" to 3-5 after "No"
    to 2, or "Yes" to the 3-month question after "No" to 6) is never dropped: it may be the
    one answer that shows risk, so the patient is asked to check the question that skips it.
    Then every required question still unanswered, and every either-or group (QIDS-SR16 6/7
    and 8/9) with no answer, all at once."""
    problems: dict[str, str] = {}
    kept = asked_answers(instrument, answers)
    skipped: dict[tuple[str, int], list[str]] = {}
    for item_id, value in answers.items():
        if item_id in kept or value <= instrument.item(item_id).min_value:
            continue  # asked, or a "No" to a question not asked: nothing is lost
        gate = instrument.asked_after(item_id)
        if gate is None:
            problems[item_id] = "This question is not asked with your other answers."
            continue
        skipped.setdefault(gate, []).append(item_id)
    for (gate_id, opening_value), item_ids in skipped.items():
        opens = _option_label(instrument, gate_id, opening_value)
        first = instrument.item(item_ids[0])
        given = _option_label(instrument, first.id, answers[first.id])
        lowest = _option_label(instrument, first.id, first.min_value)
        questions = ("questions " if len(item_ids) > 1 else "question ") + _numbers(item_ids)
        problems[gate_id] = (
            f"Please check this answer. You answered {given} to {questions}, which "
            f"{'are' if len(item_ids) > 1 else 'is'} only for people who answer {opens} here. "
            f"If {opens} is right here, choose {opens}; if not, answer {lowest} to {questions}."
        )
        for item_id in item_ids:
            problems[item_id] = (
                f"Please check question {gate_id}: this question is only answered after "
                f"{opens} to question {gate_id}."
            )
    for item_id in missing_items(instrument, kept):
        problems.setdefault(item_id, MISSING_ANSWER_MESSAGE)
    for group in instrument.either_or_groups:
        if not any(item_id in kept for item_id in group):
            message = f"Please answer question {' or question '.join(group)}."
            for item_id in group:
                problems.setdefault(item_id, message)
    return problems


# ---------------------------------------------------------------------------------------------
# Views


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _ids(**ids: str | None) -> dict[str, str] | None:
    """Audit detail of record ids (the ones given), never clinical content (README, audit)."""
    kept = {name: value for name, value in ids.items() if value is not None}
    return kept or None


@dataclass(frozen=True)
class AlertView:
    alert: SafetyAlert
    instrument_code: str | None = None
    acknowledged_by_username: str | None = None

    def as_dict(self) -> dict[str, Any]:
        a = self.alert
        return {
            "id": a.id,
            "patient_id": a.patient_id,
            "assessment_id": a.assessment_id,
            "instrument": self.instrument_code,
            "flag_code": a.flag_code,
            "severity": a.severity,
            "message": a.message,
            "created_at": a.created_at,
            "status": "open" if a.acknowledged_at is None else "acknowledged",
            "acknowledged_by": self.acknowledged_by_username,
            "acknowledged_at": a.acknowledged_at,
            "acknowledgement_note": a.acknowledgement_note,
        }


@dataclass(frozen=True)
class AssessmentView:
    assessment: Assessment
    alerts: tuple[SafetyAlert, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        a = self.assessment
        return {
            "id": a.id,
            "patient_id": a.patient_id,
            "instrument": a.instrument_code,
            "instrument_version": a.instrument_version,
            "answers": a.answers,
            "total": a.total,
            "band": a.band_code,
            "flags": a.flags,
            "subscores": a.subscores,
            "imputed_items": a.imputed_items,
            "missing_rule_applied": a.missing_rule_applied,
            "taken_at": a.taken_at,
            "source": a.source,
            "timing": a.timing,
            "dosing_session_id": a.dosing_session_id,
            "questionnaire_link_id": a.questionnaire_link_id,
            "recorded_by": a.recorded_by,
            "created_at": a.created_at,
            "alerts": [AlertView(alert, a.instrument_code).as_dict() for alert in self.alerts],
        }


# ---------------------------------------------------------------------------------------------
# Assessments


def _save_score(
    session: Session,
    actor: Actor,
    patient_id: str,
    score: Score,
    *,
    taken_at: datetime,
    source: str,
    timing: str,
    dosing_session_id: str | None,
    questionnaire_link_id: str | None,
    now: datetime,
) -> AssessmentView:
    """Store one scored administration and, in the same transaction, an alert for every flag
    that needs a clinician's acknowledgement; audit both."""
    row = Assessment(
        patient_id=patient_id,
        instrument_code=score.instrument_code,
        instrument_version=score.instrument_version,
        answers=dict(score.answers),
        total=score.total,
        band_code=score.band.code if score.band else None,
        flags=[flag.as_dict() for flag in score.flags],
        subscores=dict(score.subscores),
        imputed_items=list(score.imputed_items),
        missing_rule_applied=score.missing_rule_applied,
        taken_at=taken_at,
        source=source,
        timing=timing,
        dosing_session_id=dosing_session_id,
        questionnaire_link_id=questionnaire_link_id,
        recorded_by=actor.user_id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    alerts = []
    for flag in score.flags:
        if not flag.requires_acknowledgement:
            continue
        alert = SafetyAlert(
            patient_id=patient_id,
            assessment_id=row.id,
            flag_code=flag.code,
            severity=str(flag.severity),
            message=flag.message,
            created_at=now,
        )
        session.add(alert)
        alerts.append(alert)
    session.flush()
    audit.record(
        session,
        actor,
        "assessment.create",
        "assessment",
        row.id,
        patient_id=patient_id,
        # record ids only: the scale, its result and its alerts are clinical content
        detail=_ids(
            dosing_session_id=dosing_session_id, questionnaire_link_id=questionnaire_link_id
        ),
        now=now,
    )
    for alert in alerts:
        audit.record(
            session,
            actor,
            "alert.create",
            "safety_alert",
            alert.id,
            patient_id=patient_id,
            detail={"assessment_id": row.id},
            now=now,
        )
    return AssessmentView(row, tuple(alerts))


def _check_timing(
    session: Session,
    patient_id: str,
    dosing_session_id: str | None,
    timing: str | None,
    taken_at: datetime,
) -> str:
    if dosing_session_id is None:
        if timing not in (None, "standalone"):
            raise InvalidInput(
                f"{timing} needs the dosing session it belongs to", field_name="dosing_session_id"
            )
        return "standalone"
    if timing not in ("pre_dose", "post_dose"):
        raise InvalidInput(
            "an assessment tied to a dosing session is pre_dose or post_dose",
            field_name="timing",
        )
    row = session.get(DosingSessionRow, dosing_session_id)
    if row is None or row.patient_id != patient_id:
        raise InvalidInput(
            "no such dosing session for this patient", field_name="dosing_session_id"
        )
    dose_at = row.dose_started_at
    # One rule with the outcomes: strictly before the dose start is pre-dose (the baseline is
    # the last score strictly before the first dose); the dose start itself is post-dose.
    before = dose_at is not None and outcomes.taken_before_dose(taken_at, dose_at)
    if timing == "post_dose" and (dose_at is None or before):
        raise InvalidInput(
            "a post-dose assessment is taken at or after the dose started", field_name="taken_at"
        )
    if timing == "pre_dose" and dose_at is not None and not before:
        raise InvalidInput(
            "a pre-dose assessment is taken before the dose started (strictly before "
            f"{dose_at.isoformat()})",
            field_name="taken_at",
        )
    return timing


def record_assessment(
    db: Database,
    actor: Actor,
    patient_id: str,
    *,
    instrument: str,
    answers: Mapping[str, Any],
    taken_at: datetime | None = None,
    dosing_session_id: str | None = None,
    timing: str | None = None,
    catalogue: InstrumentCatalogue = DEFAULT_CATALOGUE,
    clock: Clock = utc_now,
) -> AssessmentView:
    """Score and store an assessment a staff member recorded. Bad answers raise AnswerError
    (422 naming `answers.<item>`) before anything is written."""
    security.require(db, actor, ASSESSMENT_CREATE, "assessment", patient_id=patient_id)
    now = clock()
    scale = catalogue.get(instrument)
    score = scale.score(answers)
    when = taken_at or now
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInput("give the time with its UTC offset", field_name="taken_at")
    if when > now + CLOCK_SKEW:
        raise InvalidInput("an assessment cannot be taken in the future", field_name="taken_at")
    with db.transaction() as session:
        patient = load_patient(session, patient_id)
        check_not_before_birth(when.date(), patient.birth_date, "taken_at")
        checked_timing = _check_timing(session, patient_id, dosing_session_id, timing, when)
        return _save_score(
            session,
            actor,
            patient_id,
            score,
            taken_at=when,
            source="staff",
            timing=checked_timing,
            dosing_session_id=dosing_session_id,
            questionnaire_link_id=None,
            now=now,
        )


def _alerts_of(session: Session, assessment_ids: Sequence[str]) -> dict[str, list[SafetyAlert]]:
    by_assessment: dict[str, list[SafetyAlert]] = {}
    if not assessment_ids:
        return by_assessment
    for alert in session.scalars(
        select(SafetyAlert)
        .where(SafetyAlert.assessment_id.in_(assessment_ids))
        .order_by(SafetyAlert.created_at, SafetyAlert.id)
    ):
        by_assessment.setdefault(alert.assessment_id, []).append(alert)
    return by_assessment


def list_assessments(
    db: Database,
    actor: Actor,
    patient_id: str,
    *,
    instrument: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AssessmentView], int]:
    """A patient's assessments, newest first, optionally of one scale."""
    security.require(db, actor, ASSESSMENT_READ, "assessment", patient_id=patient_id)
    query = select(Assessment).where(Assessment.patient_id == patient_id)
    if instrument:
        query = query.where(Assessment.instrument_code == get_instrument(instrument).code)
    with db.transaction() as session:
        load_patient(session, patient_id)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = list(
            session.scalars(
                query.order_by(Assessment.taken_at.desc(), Assessment.id)
                .limit(limit)
                .offset(offset)
            )
        )
        alerts = _alerts_of(session, [r.id for r in rows])
        audit.record(
            session,
            actor,
            "assessment.list",
            "patient",
            patient_id,
            patient_id=patient_id,
            detail={"returned": len(rows)},
        )
        return [AssessmentView(r, tuple(alerts.get(r.id, ()))) for r in rows], total


def _require_on_record(
    db: Database,
    actor: Actor,
    action: str,
    table: type[Assessment] | type[SafetyAlert],
    resource_type: str,
    row_id: str,
) -> None:
    """security.require for one record, naming the record's patient when the actor is refused,
    so the refusal is in that patient's access log. The owner is looked up only then, and told
    to nobody: an unauthorised caller gets 403 whether or not the record exists."""
    patient_id = None
    if not is_allowed(actor.role, action):
        with db.transaction() as session:
            patient_id = session.scalar(select(table.patient_id).where(table.id == row_id))
    security.require(db, actor, action, resource_type, row_id, patient_id=patient_id)


def get_assessment(db: Database, actor: Actor, assessment_id: str) -> AssessmentView:
    _require_on_record(db, actor, ASSESSMENT_READ, Assessment, "assessment", assessment_id)
    with db.transaction() as session:
        row = session.get(Assessment, assessment_id)
        if row is None:
            raise NotFound(f"no assessment with id {assessment_id}")
        audit.record(
            session, actor, "assessment.read", "assessment", row.id, patient_id=row.patient_id
        )
        return AssessmentView(row, tuple(_alerts_of(session, [row.id]).get(row.id, ())))


# ---------------------------------------------------------------------------------------------
# Safety alerts


def _alert_query(status: str, patient_id: str | None) -> Any:
    query = select(SafetyAlert, Assessment.instrument_code, User.username).join(
        Assessment, Assessment.id == SafetyAlert.assessment_id
    )
    query = query.outerjoin(User, User.id == SafetyAlert.acknowledged_by)
    if status == "open":
        query = query.where(SafetyAlert.acknowledged_at.is_(None))
    elif status == "acknowledged":
        query = query.where(SafetyAlert.acknowledged_at.is_not(None))
    elif status != "all":
        raise InvalidInput("status is open, acknowledged or all", field_name="status")
    if patient_id is not None:
        query = query.where(SafetyAlert.patient_id == patient_id)
    return query


def open_alerts(
    session: Session, *, patient_id: str | None = None, limit: int | None = None
) -> list[AlertView]:
    """Unacknowledged alerts, most severe first, then oldest first (for the worklist, inside
    the caller's transaction; the caller authorizes and audits)."""
    severity_rank = {"critical": 0, "warning": 1, "info": 2}
    rows = session.execute(_alert_query("open", patient_id)).all()
    views = [AlertView(alert, code, username) for alert, code, username in rows]
    views.sort(key=lambda v: (severity_rank.get(v.alert.severity, 3), v.alert.created_at))
    return views[:limit] if limit is not None else views


def list_alerts(
    db: Database,
    actor: Actor,
    *,
    status: str = "open",
    patient_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AlertView], int]:
    """Alerts, newest first; every patient on the page counts as read."""
    security.require(db, actor, ASSESSMENT_READ, "safety_alert", patient_id=patient_id)
    query = _alert_query(status, patient_id)
    with db.transaction() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.execute(
            query.order_by(SafetyAlert.created_at.desc(), SafetyAlert.id)
            .limit(limit)
            .offset(offset)
        ).all()
        views = [AlertView(alert, code, username) for alert, code, username in rows]
        for listed_patient in dict.fromkeys(v.alert.patient_id for v in views):
            audit.record(
                session,
                actor,
                "alert.list",
                "patient",
                listed_patient,
                patient_id=listed_patient,
            )
        if not views:
            audit.record(session, actor, "alert.list", "safety_alert", patient_id=patient_id)
        return views, total


def acknowledge_alert(
    db: Database, actor: Actor, alert_id: str, note: str, clock: Clock = utc_now
) -> AlertView:
    """A clinician acknowledges an alert with a note; a second acknowledgement is 409."""
    _require_on_record(db, actor, ALERT_ACKNOWLEDGE, SafetyAlert, "safety_alert", alert_id)
    text = note.strip()
    if len(text) < MIN_ACK_NOTE_CHARS:
        raise InvalidInput(
            f"say what was done: at least {MIN_ACK_NOTE_CHARS} characters", field_name="note"
        )
    now = clock()
    with db.transaction() as session:
        alert = session.get(SafetyAlert, alert_id)
        if alert is None:
            raise NotFound(f"no alert with id {alert_id}")
        # The guarded UPDATE is the check: of two concurrent acknowledgements exactly one
        # changes the row.
        changed = session.execute(
            update(SafetyAlert)
            .where(SafetyAlert.id == alert_id, SafetyAlert.acknowledged_at.is_(None))
            .values(acknowledged_at=now, acknowledged_by=actor.user_id, acknowledgement_note=text)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.refresh(alert)
        if changed != 1:
            raise Conflict(
                f"alert {alert_id} was already acknowledged at {_iso(alert.acknowledged_at)}"
            )
        audit.record(
            session,
            actor,
            "alert.acknowledge",
            "safety_alert",
            alert_id,
            patient_id=alert.patient_id,
            detail={"assessment_id": alert.assessment_id},
            now=now,
        )
        code = session.scalar(
            select(Assessment.instrument_code).where(Assessment.id == alert.assessment_id)
        )
        return AlertView(alert, code, actor.username)


def earliest_record_dates(
    session: Session, patient_id: str, clinic_timezone: str
) -> list[tuple[str, date]]:
    """The patient's first assessment, by the clinic's calendar (patients.service.RecordDates;
    inside the caller's transaction, which authorizes and audits)."""
    first = session.scalar(
        select(func.min(Assessment.taken_at)).where(Assessment.patient_id == patient_id)
    )
    if first is None:
        return []
    return [("first assessment", first.astimezone(ZoneInfo(clinic_timezone)).date())]


def latest_assessment(
    session: Session, patient_id: str, code: str, since: datetime | None = None
) -> Assessment | None:
    """The patient's most recent assessment on one scale (taken at or after `since`)."""
    query = select(Assessment).where(
        Assessment.patient_id == patient_id, Assessment.instrument_code == code
    )
    if since is not None:
        query = query.where(Assessment.taken_at >= since)
    return session.scalars(
        query.order_by(Assessment.taken_at.desc(), Assessment.created_at.desc()).limit(1)
    ).first()


def _assessments_since(
    session: Session, patient_id: str, code: str, since: datetime | None
) -> list[Assessment]:
    query = select(Assessment).where(
        Assessment.patient_id == patient_id, Assessment.instrument_code == code
    )
    if since is not None:
        query = query.where(Assessment.taken_at >= since)
    return list(session.scalars(query))


def latest_safety_inputs(
    session: Session, patient_id: str, since: datetime | None = None
) -> tuple[int | None, str | None]:
    """(PHQ-9 item 9 answer, C-SSRS risk level): the worst of each among the patient's
    assessments taken at or after `since` (all of them without it), what the pre-dose checks
    read. The highest item 9 and the gravest risk count, not the latest: a later negative
    result does not cancel a recent positive one (a prescriber may override the check with a
    reason). None where the window holds no such assessment. Matches
    treatment.service.SafetyInputs; the risk is 'none', 'low', 'moderate' or 'high'."""
    item9s = [
        row.answers.get("9") for row in _assessments_since(session, patient_id, "PHQ-9", since)
    ]
    item9 = max((v for v in item9s if isinstance(v, int)), default=None)
    # C-SSRS risk levels in order of gravity (reference §3 triage: none < low < moderate < high)
    rank = {band.code: band.low for band in get_instrument("C-SSRS").bands}
    risks = [
        row.band_code
        for row in _assessments_since(session, patient_id, "C-SSRS", since)
        if row.band_code in rank
    ]
    risk = max(risks, key=rank.__getitem__, default=None)
    return item9, risk


def screening_flags(
    session: Session, patient_id: str, clinic_timezone: str, since: date, today: date
) -> list[AssessmentFlag]:
    """PHQ-9 item 9 and C-SSRS risk flags, dated by the clinic's calendar, as eligibility
    screening reads them (patients.screening_service.AssessmentFlags): every result from the
    clinic date `since` on, since screening counts any positive one in its look-back (a later
    negative does not cancel it), and the latest of each scale whatever its date, so an old
    one is reported as not counted. Dates after `today` (the screening's) count as today."""
    zone = ZoneInfo(clinic_timezone)
    # a day early in UTC, then the clinic date decides
    earliest = datetime.combine(since - timedelta(days=1), time(), tzinfo=UTC)
    rows: dict[str, Assessment] = {}
    for code in ("PHQ-9", "C-SSRS"):
        latest = latest_assessment(session, patient_id, code)
        if latest is not None:
            rows[latest.id] = latest
        for row in session.scalars(
            select(Assessment).where(
                Assessment.patient_id == patient_id,
                Assessment.instrument_code == code,
                Assessment.taken_at >= earliest,
            )
        ):
            rows[row.id] = row
    flags: list[AssessmentFlag] = []
    for row in sorted(rows.values(), key=lambda r: (r.taken_at, r.id)):
        # an assessment may be stamped up to CLOCK_SKEW ahead (a device's clock): just before
        # the clinic's midnight that is tomorrow, which screening would refuse as impossible
        completed_on = min(row.taken_at.astimezone(zone).date(), today)
        if row.instrument_code == "PHQ-9":
            item9 = row.answers.get("9")
            if isinstance(item9, int):
                flags.append(Phq9Item9Flag(score=item9, completed_on=completed_on))
        elif row.band_code:
            flags.append(CssrsRiskFlag(risk=row.band_code, completed_on=completed_on))
    return flags


# ---------------------------------------------------------------------------------------------
# Outcomes and trajectories


@dataclass(frozen=True)
class CourseWindow:
    """A course, its doses, and the end of the time its outcome is judged on (the first dose of
    the next course with doses, so a later course's scores never count for an earlier one)."""

    course: treatment.CourseMarker
    doses: tuple[treatment.DoseMarker, ...]
    window_end: datetime | None


def course_windows(
    courses: Sequence[treatment.CourseMarker], doses: Sequence[treatment.DoseMarker]
) -> list[CourseWindow]:
    by_course: dict[str, list[treatment.DoseMarker]] = {}
    for dose in doses:
        by_course.setdefault(dose.course_id, []).append(dose)
    firsts = sorted(
        (min(d.dose_started_at for d in ds), course_id) for course_id, ds in by_course.items()
    )
    windows = []
    for course in courses:
        course_doses = tuple(sorted(by_course.get(course.course_id, []), key=_dose_time))
        end = None
        if course_doses:
            start = course_doses[0].dose_started_at
            end = next((first for first, _ in firsts if first > start), None)
        windows.append(CourseWindow(course, course_doses, end))
    return windows


def _dose_time(dose: treatment.DoseMarker) -> datetime:
    return dose.dose_started_at


def _score_points(session: Session, patient_id: str, instrument_code: str) -> list[Assessment]:
    return list(
        session.scalars(
            select(Assessment)
            .where(
                Assessment.patient_id == patient_id,
                Assessment.instrument_code == instrument_code,
                Assessment.total.is_not(None),
            )
            .order_by(Assessment.taken_at, Assessment.created_at)
        )
    )


def _points_in(
    rows: Iterable[Assessment], window_end: datetime | None
) -> list[tuple[datetime, int]]:
    return [
        (row.taken_at, row.total)
        for row in rows
        if row.total is not None and (window_end is None or row.taken_at < window_end)
    ]


def _course_outcome(
    instrument_code: str, rows: Sequence[Assessment], window: CourseWindow, now: datetime
) -> outcomes.CourseOutcome:
    return outcomes.evaluate_course(
        instrument_code,
        _points_in(rows, window.window_end),
        [d.dose_started_at for d in window.doses],
        as_of=now,
    )


def _current_window(windows: Sequence[CourseWindow]) -> CourseWindow | None:
    """The active course with doses that started last, if any."""
    dosed = [w for w in windows if w.doses and w.course.status == "active"]
    return max(dosed, key=lambda w: w.doses[0].dose_started_at) if dosed else None


def _scored_instrument(catalogue: InstrumentCatalogue, code: str) -> Instrument:
    instrument = catalogue.get(code)
    if instrument.total_min is None:
        raise InvalidInput(
            f"{instrument.code} has no total: outcomes and trajectories need a scored scale",
            field_name="instrument",
        )
    return instrument


def _course_summary(window: CourseWindow, outcome: outcomes.CourseOutcome) -> dict[str, Any]:
    c = window.course
    return {
        "course_id": c.course_id,
        "drug": c.drug,
        "route": c.route,
        "protocol_id": c.protocol_id,
        "phase": c.phase,
        "course_status": c.status,
        "doses": len(window.doses),
        "window_end": _iso(window.window_end),
        **outcome.as_dict(),
    }


def patient_outcomes(
    db: Database,
    actor: Actor,
    patient_id: str,
    instrument: str,
    *,
    catalogue: InstrumentCatalogue = DEFAULT_CATALOGUE,
    clock: Clock = utc_now,
) -> dict[str, Any]:
    """Per course: the baseline used, the rule version, status, response, remission, relapse,
    time to response and durability; plus the current course's worklist suggestions."""
    security.require(db, actor, ASSESSMENT_READ, "outcome", patient_id=patient_id)
    scale = _scored_instrument(catalogue, instrument)
    now = clock()
    with db.transaction() as session:
        load_patient(session, patient_id)
        rows = _score_points(session, patient_id, scale.code)
        windows = course_windows(
            treatment.course_markers(session, patient_id),
            treatment.dose_timeline(session, patient_id),
        )
        courses = [_course_summary(w, _course_outcome(scale.code, rows, w, now)) for w in windows]
        suggestions = [
            s.as_dict()
            for s in (
                *booster_suggestions(session, patient_id, now),
                *early_non_response_suggestions(session, patient_id, now),
            )
            if s.instrument_code == scale.code
        ]
        audit.record(
            session,
            actor,
            "outcome.read",
            "patient",
            patient_id,
            patient_id=patient_id,
            now=now,
        )
        return {
            "patient_id": patient_id,
            "instrument": scale.code,
            "rule_version": outcomes.RULE_VERSION,
            "as_of": now.isoformat(),
            "courses": courses,
            "suggestions": suggestions,
        }


def _dose_label(dose: treatment.DoseMarker) -> str:
    return f"{dose.drug} {dose.route.upper()} #{dose.sequence} ({dose.kind})"


def patient_trajectory(
    db: Database,
    actor: Actor,
    patient_id: str,
    instrument: str,
    *,
    catalogue: InstrumentCatalogue = DEFAULT_CATALOGUE,
    clock: Clock = utc_now,
) -> dict[str, Any]:
    """Scores over time with dose markers, the current course's status, and the figure."""
    security.require(db, actor, ASSESSMENT_READ, "trajectory", patient_id=patient_id)
    scale = _scored_instrument(catalogue, instrument)
    now = clock()
    with db.transaction() as session:
        load_patient(session, patient_id)
        rows = _score_points(session, patient_id, scale.code)
        doses = treatment.dose_timeline(session, patient_id)
        windows = course_windows(treatment.course_markers(session, patient_id), doses)
        current = _current_window(windows) or next((w for w in reversed(windows) if w.doses), None)
        outcome = _course_outcome(scale.code, rows, current, now) if current else None
        audit.record(
            session,
            actor,
            "trajectory.read",
            "patient",
            patient_id,
            patient_id=patient_id,
            now=now,
        )
    bands = {band.code: band for band in scale.bands}
    points = [
        {
            "assessment_id": row.id,
            "taken_at": row.taken_at.isoformat(),
            "total": row.total,
            "band": row.band_code,
            "band_label": bands[row.band_code].label if row.band_code in bands else None,
            "source": row.source,
            "timing": row.timing,
            "dosing_session_id": row.dosing_session_id,
        }
        for row in rows
    ]
    markers = [
        {
            "session_id": d.session_id,
            "course_id": d.course_id,
            "drug": d.drug,
            "route": d.route,
            "kind": d.kind,
            "sequence": d.sequence,
            "dose_started_at": d.dose_started_at.isoformat(),
            "label": _dose_label(d),
        }
        for d in doses
    ]
    rules = outcomes.DEFAULT_OUTCOME_RULES
    remission = rules.remission_for(scale.code)
    figure = trajectory.build_figure(
        scale.code,
        scale.name,
        [
            trajectory.TrajectoryPoint(
                row.taken_at,
                row.total or 0,
                bands[row.band_code].label if row.band_code in bands else None,
                row.source,
            )
            for row in rows
        ],
        [trajectory.DoseLine(d.dose_started_at, _dose_label(d)) for d in doses],
        [trajectory.BandArea(b.label, b.low, b.high) for b in scale.bands],
        scale.total_min,
        scale.total_max,
        trajectory.Levels(
            baseline_total=outcome.baseline.total if outcome and outcome.baseline else None,
            response_reduction=rules.response_reduction,
            remission_max_total=remission.max_total if remission else None,
        ),
    )
    status = None
    if outcome is not None and current is not None:
        status = {
            "course_id": current.course.course_id,
            "status": str(outcome.status),
            "rule_version": outcome.rule_version,
            "baseline": outcome.baseline.as_dict() if outcome.baseline else None,
            "responded": outcome.responded,
            "first_response_at": _iso(outcome.first_response_at),
            "first_remission_at": _iso(outcome.first_remission_at),
            "in_remission": bool(outcome.latest and outcome.latest.remission),
            "relapse_at": [t.isoformat() for t in outcome.relapse_at],
        }
    return {
        "patient_id": patient_id,
        "instrument": scale.code,
        "points": points,
        "markers": markers,
        "status": status,
        "figure": figure,
    }


def _windows_and_rows(
    session: Session, patient_id: str, instrument_code: str
) -> tuple[CourseWindow | None, list[Assessment]]:
    windows = course_windows(
        treatment.course_markers(session, patient_id), treatment.dose_timeline(session, patient_id)
    )
    current = _current_window(windows)
    if current is None:
        return None, []
    return current, _score_points(session, patient_id, instrument_code)


def booster_suggestions(
    session: Session,
    patient_id: str,
    now: datetime,
    rules: Sequence[outcomes.BoosterRule] = outcomes.DEFAULT_BOOSTER_RULES,
) -> tuple[outcomes.WorklistSuggestion, ...]:
    """ "consider booster" suggestions for the patient's active course (for the worklist, in the
    caller's transaction; the caller authorizes and audits)."""
    found: list[outcomes.WorklistSuggestion] = []
    for code in dict.fromkeys(rule.instrument_code for rule in rules):
        current, rows = _windows_and_rows(session, patient_id, code)
        if current is None:
            return ()
        found.extend(
            outcomes.evaluate_booster_rules(
                code,
                _points_in(rows, current.window_end),
                [d.dose_started_at for d in current.doses],
                rules,
                as_of=now,
            )
        )
    return tuple(found)


def early_non_response_suggestions(
    session: Session,
    patient_id: str,
    now: datetime,
    rule: outcomes.EarlyNonResponseRule = outcomes.DEFAULT_EARLY_NON_RESPONSE_RULE,
) -> tuple[outcomes.WorklistSuggestion, ...]:
    """ "likely non-response: review the course" for the active course, if its rule fires."""
    current, rows = _windows_and_rows(session, patient_id, rule.instrument_code)
    if current is None:
        return ()
    suggestion = outcomes.evaluate_early_non_response(
        rule.instrument_code,
        _points_in(rows, current.window_end),
        [d.dose_started_at for d in current.doses],
        current.course.route,
        rule,
        as_of=now,
    )
    return (suggestion,) if suggestion else ()


# ---------------------------------------------------------------------------------------------
# Questionnaire links


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def link_status(link: QuestionnaireLink, now: datetime) -> str:
    """'used', 'expired', 'scheduled' (not yet available) or 'open'."""
    if link.used_at is not None:
        return "used"
    if now >= link.expires_at:
        return "expired"
    if now < link.available_from:
        return "scheduled"
    return "open"


@dataclass(frozen=True)
class LinkView:
    link: QuestionnaireLink
    status: str
    url: str | None = None  # only when the link was just created: the token is never stored

    def as_dict(self) -> dict[str, Any]:
        q = self.link
        return {
            "id": q.id,
            "patient_id": q.patient_id,
            "instruments": list(q.instrument_codes),
            "purpose": q.purpose,
            "dosing_session_id": q.dosing_session_id,
            "created_at": q.created_at,
            "available_from": q.available_from,
            "expires_at": q.expires_at,
            "used_at": q.used_at,
            "status": self.status,
            "url": self.url,
        }


def _link_url(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/q/{token}"


def self_report_codes(catalogue: InstrumentCatalogue, codes: Sequence[str]) -> list[str]:
    """Canonical codes of the scales a patient can answer alone, in the order given."""
    if not codes:
        raise InvalidInput("name at least one scale", field_name="instruments")
    chosen: list[str] = []
    for index, code in enumerate(codes):
        try:
            instrument = catalogue.get(code)
        except InvalidInput as exc:
            raise InvalidInput(exc.detail, field_name=f"instruments[{index}]") from None
        if not is_self_report(instrument):
            raise InvalidInput(
                f"{instrument.code} is rated by a clinician, not the patient",
                field_name=f"instruments[{index}]",
            )
        if instrument.code in chosen:
            raise InvalidInput(
                f"{instrument.code} is listed twice", field_name=f"instruments[{index}]"
            )
        chosen.append(instrument.code)
    return chosen


def _new_link(
    session: Session,
    actor: Actor,
    settings: Settings,
    patient_id: str,
    codes: Sequence[str],
    *,
    purpose: str,
    available_from: datetime,
    expires_at: datetime,
    now: datetime,
    schedule_key: str | None = None,
    dosing_session_id: str | None = None,
) -> LinkView:
    token = secrets.token_urlsafe(32)
    link = QuestionnaireLink(
        token_sha256=token_digest(token),
        patient_id=patient_id,
        instrument_codes=list(codes),
        purpose=purpose,
        schedule_key=schedule_key,
        dosing_session_id=dosing_session_id,
        created_by=actor.user_id,
        created_at=now,
        available_from=available_from,
        expires_at=expires_at,
    )
    session.add(link)
    session.flush()
    audit.record(
        session,
        actor,
        "questionnaire_link.create",
        "questionnaire_link",
        link.id,
        patient_id=patient_id,
        detail=_ids(dosing_session_id=dosing_session_id),
        now=now,
    )
    return LinkView(link, link_status(link, now), _link_url(settings, token))


def create_link(
    db: Database,
    actor: Actor,
    settings: Settings,
    patient_id: str,
    *,
    instruments: Sequence[str],
    available_from: datetime | None = None,
    valid_hours: int | None = None,
    catalogue: InstrumentCatalogue = DEFAULT_CATALOGUE,
    clock: Clock = utc_now,
) -> LinkView:
    """A one-time ad hoc link; its URL (with the token) is in the answer and nowhere else."""
    security.require(
        db, actor, QUESTIONNAIRE_LINK_CREATE, "questionnaire_link", patient_id=patient_id
    )
    codes = self_report_codes(catalogue, instruments)
    now = clock()
    opens = available_from or now
    if opens.tzinfo is None or opens.utcoffset() is None:
        raise InvalidInput("give the time with its UTC offset", field_name="available_from")
    if opens > now + MAX_LINK_LEAD:
        raise InvalidInput(
            f"a link opens at most {MAX_LINK_LEAD.days} days ahead", field_name="available_from"
        )
    with db.transaction() as session:
        patient = load_patient(session, patient_id)
        check_not_before_birth(opens.date(), patient.birth_date, "available_from")
        expires_at = opens + timedelta(hours=valid_hours or settings.questionnaire_link_hours)
        if expires_at <= now:
            raise InvalidInput(
                "the link would expire before it is sent", field_name="available_from"
            )
        return _new_link(
            session,
            actor,
            settings,
            patient_id,
            codes,
            purpose="ad_hoc",
            available_from=opens,
            expires_at=expires_at,
            now=now,
        )


def list_links(
    db: Database, actor: Actor, patient_id: str, clock: Clock = utc_now
) -> list[LinkView]:
    """A patient's links, newest first (status only: the tokens are not kept)."""
    security.require(
        db, actor, QUESTIONNAIRE_LINK_CREATE, "questionnaire_link", patient_id=patient_id
    )
    now = clock()
    with db.transaction() as session:
        load_patient(session, patient_id)
        links = list(
            session.scalars(
                select(QuestionnaireLink)
                .where(QuestionnaireLink.patient_id == patient_id)
                .order_by(QuestionnaireLink.available_from.desc(), QuestionnaireLink.id)
            )
        )
        audit.record(
            session, actor, "questionnaire_link.list", "patient", patient_id, patient_id=patient_id
        )
        return [LinkView(link, link_status(link, now)) for link in links]


@dataclass(frozen=True)
class PlannedLink:
    schedule_key: str
    purpose: str
    available_from: datetime
    dosing_session_id: str | None


def plan_links(
    doses: Sequence[treatment.DoseMarker],
    courses: Sequence[treatment.CourseMarker],
    now: datetime,
    valid_for: timedelta,
    horizon: timedelta = DEFAULT_SCHEDULE_HORIZON,
) -> list[PlannedLink]:
    """Links to plan (pure): 24 h and 7 days after each dose, and every week of an active
    maintenance course counted from its first maintenance dose (or its last dose), up to
    `horizon` ahead. A link that would already have expired is not planned."""
    planned: list[PlannedLink] = []
    for dose in doses:
        for purpose, delay in AFTER_DOSE_DELAYS:
            opens = dose.dose_started_at + delay
            if opens + valid_for > now and opens <= now + horizon:
                planned.append(
                    PlannedLink(f"{purpose}:{dose.session_id}", purpose, opens, dose.session_id)
                )
    for course in courses:
        if course.phase != "maintenance" or course.status != "active":
            continue
        course_doses = sorted((d for d in doses if d.course_id == course.course_id), key=_dose_time)
        if not course_doses:
            continue
        maintenance = [d for d in course_doses if d.kind == "maintenance"]
        anchor = (maintenance or course_doses[-1:])[0].dose_started_at
        week = 1
        while (opens := anchor + week * MAINTENANCE_INTERVAL) <= now + horizon:
            # a week whose link an after-dose link already covers (the 7-day link of a weekly
            # maintenance dose opens the same day) is not asked twice
            covered = any(
                abs(p.available_from - opens) < SAME_DAY for p in planned if p.dosing_session_id
            )
            if opens + valid_for > now and not covered:
                planned.append(
                    PlannedLink(
                        f"weekly_maintenance:{course.course_id}:{week}",
                        "weekly_maintenance",
                        opens,
                        None,
                    )
                )
            week += 1
    return sorted(planned, key=lambda p: (p.available_from, p.schedule_key))


def schedule_links(
    db: Database,
    actor: Actor,
    settings: Settings,
    patient_id: str,
    *,
    instruments: Sequence[str] = ("PHQ-9",),
    horizon_days: int = 28,
    catalogue: InstrumentCatalogue = DEFAULT_CATALOGUE,
    clock: Clock = utc_now,
) -> tuple[list[LinkView], int]:
    """Plan the links the dose timeline calls for. Idempotent: a link already planned is not
    planned again. Returns (the new links, each with its URL once; how many already existed)."""
    security.require(
        db, actor, QUESTIONNAIRE_LINK_CREATE, "questionnaire_link", patient_id=patient_id
    )
    codes = self_report_codes(catalogue, instruments)
    now = clock()
    valid_for = timedelta(hours=settings.questionnaire_link_hours)
    try:
        with db.transaction() as session:
            load_patient(session, patient_id)
            plan = plan_links(
                treatment.dose_timeline(session, patient_id),
                treatment.course_markers(session, patient_id),
                now,
                valid_for,
                timedelta(days=horizon_days),
            )
            keys = [p.schedule_key for p in plan]
            existing = (
                set(
                    session.scalars(
                        select(QuestionnaireLink.schedule_key).where(
                            QuestionnaireLink.schedule_key.in_(keys)
                        )
                    )
                )
                if keys
                else set()
            )
            # links this patient already has, unused, opening within a day of a new one: a
            # weekly link planned weeks ahead and a dose's 7-day link planned after the dose
            # would otherwise ask the same question the same day
            pending = list(
                session.scalars(
                    select(QuestionnaireLink.available_from).where(
                        QuestionnaireLink.patient_id == patient_id,
                        QuestionnaireLink.schedule_key.is_not(None),
                        QuestionnaireLink.used_at.is_(None),
                        QuestionnaireLink.expires_at > now,
                    )
                )
            )
            created: list[LinkView] = []
            for p in plan:
                if p.schedule_key in existing:
                    continue
                if any(abs(p.available_from - at) < SAME_DAY for at in pending):
                    continue
                created.append(
                    _new_link(
                        session,
                        actor,
                        settings,
                        patient_id,
                        codes,
                        purpose=p.purpose,
                        available_from=p.available_from,
                        expires_at=p.available_from + valid_for,
                        now=now,
                        schedule_key=p.schedule_key,
                        dosing_session_id=p.dosing_session_id,
                    )
                )
                pending.append(p.available_from)
            return created, len(existing)
    except IntegrityError as exc:  # a concurrent planner took the same keys first
        raise Conflict("the schedule was being planned at the same time: try again") from exc


# ---------------------------------------------------------------------------------------------
# The patient's side of a link (no login: the token is the credential)


@dataclass
class LinkUnavailable(KetaflowError):
    """The token is unknown (404), or used, expired or not yet open (410 / 404)."""

    reason: str = "unknown"
    available_from: datetime | None = None

    def __post_init__(self) -> None:
        self.status = 410 if self.reason in ("used", "expired") else 404
        self.slug = "questionnaire-link-unavailable"
        self.title = "This questionnaire link cannot be used"


@dataclass(frozen=True)
class OpenLink:
    link_id: str
    instruments: tuple[Instrument, ...]
    expires_at: datetime


def _find_link(session: Session, token: str) -> QuestionnaireLink | None:
    if not token or len(token) > 128:
        return None
    return session.scalar(
        select(QuestionnaireLink).where(QuestionnaireLink.token_sha256 == token_digest(token))
    )


def _usable(link: QuestionnaireLink | None, now: datetime) -> QuestionnaireLink:
    if link is None:
        raise LinkUnavailable("this link is not known", reason="unknown")
    status = link_status(link, now)
    if status == "used":
        raise LinkUnavailable("this questionnaire was already answered", reason="used")
    if status == "expired":
        raise LinkUnavailable("this link has expired", reason="expired")
    if status == "scheduled":
        raise LinkUnavailable(
            "this questionnaire is not open yet",
            reason="scheduled",
            available_from=link.available_from,
        )
    return link


def open_link(
    db: Database,
    token: str,
    catalogue: InstrumentCatalogue = DEFAULT_CATALOGUE,
    clock: Clock = utc_now,
) -> OpenLink:
    """What the patient page shows for a token, or LinkUnavailable. Reveals nothing about the
    patient: only the scales to answer."""
    now = clock()
    with db.transaction() as session:
        link = _usable(_find_link(session, token), now)
        return OpenLink(
            link.id, tuple(catalogue.get(code) for code in link.instrument_codes), link.expires_at
        )


@dataclass
class SelfReportErrors(InvalidInput):
    """Answers the patient must fix, by instrument code: {code: {item id: message}}."""

    problems: dict[str, dict[str, str]] = field(default_factory=dict)


def submit_link(
    db: Database,
    token: str,
    responses: Mapping[str, Mapping[str, int]],
    client_address: str | None,
    catalogue: InstrumentCatalogue = DEFAULT_CATALOGUE,
    clock: Clock = utc_now,
) -> list[AssessmentView]:
    """Save the patient's answers as self-report assessments and use the link up, atomically:
    of two submissions only one saves. Incomplete answers, and a positive answer to a question
    the skip logic leaves out (`answer_problems`), raise SelfReportErrors, saving nothing and
    leaving the link usable."""
    now = clock()
    opened = open_link(db, token, catalogue, clock=lambda: now)
    scores: list[Score] = []
    problems: dict[str, dict[str, str]] = {}
    for instrument in opened.instruments:
        given = responses.get(instrument.code, {})
        found = answer_problems(instrument, given)
        if found:
            problems[instrument.code] = found
            continue
        try:
            # only "No" answers to skipped questions are left to drop (answer_problems)
            scores.append(instrument.score(asked_answers(instrument, given)))
        except AnswerError as exc:
            problems[instrument.code] = dict(exc.problems)
    if problems:
        raise SelfReportErrors(
            "some questions are not answered or need checking",
            field_name="answers",
            problems=problems,
        )
    patient_actor = Actor(None, SELF_REPORT_ACTOR_NAME, "patient", client_address)
    with db.transaction() as session:
        link = session.get(QuestionnaireLink, opened.link_id)
        assert link is not None  # open_link found it; links are never deleted
        used = session.execute(
            update(QuestionnaireLink)
            .where(
                QuestionnaireLink.id == link.id,
                QuestionnaireLink.used_at.is_(None),
                QuestionnaireLink.available_from <= now,
                QuestionnaireLink.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if used != 1:
            raise LinkUnavailable("this questionnaire was already answered", reason="used")
        timing = "post_dose" if link.dosing_session_id else "standalone"
        saved = [
            _save_score(
                session,
                patient_actor,
                link.patient_id,
                score,
                taken_at=now,
                source="self_report",
                timing=timing,
                dosing_session_id=link.dosing_session_id,
                questionnaire_link_id=link.id,
                now=now,
            )
            for score in scores
        ]
        audit.record(
            session,
            patient_actor,
            "questionnaire_link.use",
            "questionnaire_link",
            link.id,
            patient_id=link.patient_id,
            detail={"assessment_ids": [view.assessment.id for view in saved]},
            now=now,
        )
        return saved
