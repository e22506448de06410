"""Screening use cases: screen a patient, read screenings, override an ineligible decision."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketaflow.core.clock import Clock, clinic_today, utc_now
from ketaflow.core.db import Database
from ketaflow.core.errors import NotFound, Reason, RuleViolation
from ketaflow.core.settings import Settings
from ketaflow.patients import service as patients
from ketaflow.patients.schemas import ScreeningRequest
from ketaflow.patients.screening import DEFAULT_POLICY, ScreeningInput, screen
from ketaflow.patients.tables import Screening
from ketaflow.security import audit
from ketaflow.security import service as security
from ketaflow.security.permissions import (
    SCREENING_CREATE,
    SCREENING_OVERRIDE,
    SCREENING_READ,
    Actor,
)

# Reads the assessment flags (measures) inside the caller's transaction: (session, patient id,
# clinic timezone, earliest clinic date of the look-back, the screening's date).
AssessmentFlags = Callable[[Session, str, str, date, date], Sequence[object]]

# What a treatment course may start on: a favourable decision, or an overridden refusal.
USABLE_DECISIONS = frozenset({"eligible", "eligible_with_cautions"})


def is_usable(screening: Screening, on_date: date) -> bool:
    favourable = screening.decision in USABLE_DECISIONS or screening.overridden_at is not None
    return favourable and screening.screened_on <= on_date <= screening.expires_on


def valid_screening(
    session: Session, patient_id: str, drug: str, route: str, on_date: date
) -> Screening | None:
    """The newest screening for this drug and route that a course may rely on today: decided
    on the history as it stands (a history revised since, say with a new contraindication,
    needs a new screening)."""
    candidates = session.scalars(
        select(Screening)
        .where(Screening.patient_id == patient_id, Screening.drug == drug, Screening.route == route)
        # at one instant, a screening of a later history revision is the later one
        .order_by(
            Screening.created_at.desc(),
            Screening.history_revision.desc().nulls_last(),
            Screening.id.desc(),
        )
    )
    current_revision = patients.current_history(session, patient_id).revision
    for screening in candidates:
        # The newest decision wins: a newer refusal is not masked by an older approval.
        on_current_history = (screening.history_revision or 0) == current_revision
        return screening if on_current_history and is_usable(screening, on_date) else None
    return None


def screen_patient(
    db: Database,
    actor: Actor,
    settings: Settings,
    patient_id: str,
    request: ScreeningRequest,
    clock: Clock = utc_now,
    assessment_flags: AssessmentFlags | None = None,
) -> Screening:
    """Screen a patient for a drug and route from the stored history and today's vitals."""
    security.require(db, actor, SCREENING_CREATE, "screening", patient_id=patient_id)
    now = clock()
    today = clinic_today(now, settings.clinic_timezone)
    with db.transaction() as session:
        patient = patients.load_patient(session, patient_id)
        history = patients.current_history(session, patient_id)
        latest = patients.latest_measurement(session, patient_id)
        policy = replace(DEFAULT_POLICY, validity_days=settings.screening_validity_days)
        since = today - timedelta(days=policy.assessment_lookback_days)
        flags = (
            assessment_flags(session, patient_id, settings.clinic_timezone, since, today)
            if assessment_flags
            else ()
        )
        result = screen(
            ScreeningInput(
                drug=request.drug,
                route=request.route,
                on_date=today,
                birth_date=patient.birth_date,
                sex=patient.sex,
                history=history.history,
                weight_kg=latest.weight_kg if latest else None,
                height_cm=patients.latest_height_cm(session, patient_id),
                vitals=request.vitals,
                assessment_flags=tuple(flags),
            ),
            policy,
        )
        screening = Screening(
            patient_id=patient_id,
            drug=str(request.drug),
            route=str(request.route),
            screened_on=today,
            expires_on=result.expires_on,
            decision=str(result.decision),
            reasons=[_reason_dict(r) for r in result.reasons],
            treatment_resistant=result.treatment_resistant,
            adequate_failed_trials=result.adequate_failed_trials,
            urgent=result.urgent,
            rule_version=result.rule_version,
            history_revision=history.revision or None,
            inputs={
                "vitals": request.vitals.model_dump(mode="json") if request.vitals else None,
                "weight_kg": latest.weight_kg if latest else None,
            },
            screened_by=actor.user_id,
            created_at=now,
        )
        session.add(screening)
        session.flush()
        audit.record(
            session,
            actor,
            "screening.create",
            "screening",
            screening.id,
            patient_id=patient_id,
            # the rule version, never the decision: auditors see who did what, nothing clinical
            detail={"rule_version": result.rule_version},
            now=now,
        )
        return screening


def _reason_dict(reason: object) -> dict[str, str]:
    return {
        "rule_id": reason.rule_id,  # type: ignore[attr-defined]
        "severity": str(reason.severity),  # type: ignore[attr-defined]
        "message": reason.message,  # type: ignore[attr-defined]
        "source": reason.source,  # type: ignore[attr-defined]
    }


def list_screenings(db: Database, actor: Actor, patient_id: str) -> list[Screening]:
    security.require(db, actor, SCREENING_READ, "screening", patient_id=patient_id)
    with db.transaction() as session:
        patients.load_patient(session, patient_id)
        rows = list(
            session.scalars(
                select(Screening)
                .where(Screening.patient_id == patient_id)
                .order_by(Screening.created_at.desc())
            )
        )
        audit.record(session, actor, "screening.list", "patient", patient_id, patient_id=patient_id)
        return rows


def _load(
    session: Session, patient_id: str, screening_id: str, *, for_update: bool = False
) -> Screening:
    # for_update: a row lock (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers),
    # so two prescribers overriding at once cannot both pass the "not yet overridden" check
    screening = session.get(Screening, screening_id, with_for_update=for_update)
    if screening is None or screening.patient_id != patient_id:
        raise NotFound(f"no screening {screening_id} for this patient")
    return screening


def get_screening(db: Database, actor: Actor, patient_id: str, screening_id: str) -> Screening:
    security.require(db, actor, SCREENING_READ, "screening", screening_id, patient_id=patient_id)
    with db.transaction() as session:
        screening = _load(session, patient_id, screening_id)
        audit.record(
            session, actor, "screening.read", "screening", screening_id, patient_id=patient_id
        )
        return screening


def override_screening(
    db: Database,
    actor: Actor,
    settings: Settings,
    patient_id: str,
    screening_id: str,
    reason: str,
    clock: Clock = utc_now,
) -> Screening:
    """A prescriber overrides an `ineligible` decision; the reason is kept and audited."""
    security.require(
        db, actor, SCREENING_OVERRIDE, "screening", screening_id, patient_id=patient_id
    )
    now = clock()
    with db.transaction() as session:
        screening = _load(session, patient_id, screening_id, for_update=True)
        problems = []
        if screening.decision != "ineligible":
            problems.append(
                Reason(
                    "screening.override_not_needed",
                    f"the decision is {screening.decision}: nothing to override",
                )
            )
        if screening.overridden_at is not None:
            problems.append(
                Reason("screening.already_overridden", "this screening was already overridden")
            )
        if screening.expires_on < clinic_today(now, settings.clinic_timezone):
            problems.append(Reason("screening.expired", "this screening has expired: screen again"))
        if problems:
            raise RuleViolation(
                "; ".join(p.message for p in problems),
                code="override_refused",
                reasons=tuple(problems),
            )
        screening.overridden_by = actor.user_id
        screening.override_reason = reason
        screening.overridden_at = now
        audit.record(
            session,
            actor,
            "screening.override",
            "screening",
            screening_id,
            patient_id=patient_id,
            now=now,
        )
        return screening
