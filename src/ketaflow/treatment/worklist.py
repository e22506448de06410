"""The clinic's day: sessions by state, open alarms, overdue readings, therapy due, safety
alerts and courses that need a decision, in one read (GET /api/v1/worklists/today and
`ketaflow sessions today`).

Each section appears only for roles allowed to see it: the front desk gets the day's sessions,
not the alarms or the safety alerts. Every patient shown is audited as read."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import or_, select

from ketaflow.core.clock import Clock, utc_now
from ketaflow.core.db import Database
from ketaflow.measures import service as measures
from ketaflow.patients.tables import Patient
from ketaflow.security import audit
from ketaflow.security import service as security
from ketaflow.security.permissions import (
    ASSESSMENT_READ,
    SESSION_CLINICAL,
    THERAPY_READ,
    WORKLIST_READ,
    Actor,
    is_allowed,
)
from ketaflow.therapy import service as therapy
from ketaflow.therapy.policy import TherapyDueStatus
from ketaflow.treatment import rules
from ketaflow.treatment.clinic import ClinicConfig
from ketaflow.treatment.service import (
    course_protocol,
    document_of,
    mark_missed_sessions,
)
from ketaflow.treatment.tables import Course, DosingSessionRow

_THERAPY_OPEN = {TherapyDueStatus.due, TherapyDueStatus.overdue}


def _day_bounds(now: datetime, clinic: ClinicConfig) -> tuple[datetime, datetime]:
    zone = clinic.opening_hours.zone
    local_day = now.astimezone(zone).date()
    start = datetime.combine(local_day, time(0), tzinfo=zone)
    return start, start + timedelta(days=1)


def _induction_finished(sessions: list[DosingSessionRow]) -> bool:
    induction = [s for s in sessions if s.kind == "induction"]
    open_states = rules.ACTIVE_STATES | {rules.SessionState.scheduled}
    return bool(induction) and not any(s.state in open_states for s in sessions)


def today(
    db: Database, actor: Actor, clinic: ClinicConfig, clock: Clock = utc_now
) -> dict[str, Any]:
    security.require(db, actor, WORKLIST_READ, "worklist")
    mark_missed_sessions(db, clinic, clock)
    now = clock()
    start, end = _day_bounds(now, clinic)
    clinical = is_allowed(actor.role, SESSION_CLINICAL)
    with db.transaction() as session:
        rows = list(
            session.scalars(
                select(DosingSessionRow)
                .where(
                    or_(
                        (DosingSessionRow.scheduled_start >= start)
                        & (DosingSessionRow.scheduled_start < end),
                        DosingSessionRow.state.in_([s.value for s in rules.ACTIVE_STATES]),
                    )
                )
                .order_by(DosingSessionRow.scheduled_start)
            )
        )
        courses = {
            c.id: c
            for c in session.scalars(
                select(Course).where(
                    or_(Course.status == "active", Course.id.in_({r.course_id for r in rows}))
                )
            )
        }
        patient_ids = {r.patient_id for r in rows} | {c.patient_id for c in courses.values()}
        patients = {
            p.id: p for p in session.scalars(select(Patient).where(Patient.id.in_(patient_ids)))
        }

        sessions, alarms, overdue = [], [], []
        for row in rows:
            patient = patients[row.patient_id]
            entry = {
                "session_id": row.id,
                "patient_id": row.patient_id,
                "patient_name": f"{patient.family_name}, {patient.given_name}",
                "mrn": patient.mrn,
                "course_id": row.course_id,
                "protocol_id": courses[row.course_id].protocol_id,
                "kind": row.kind,
                "sequence": row.sequence,
                "state": row.state,
                "scheduled_start": row.scheduled_start,
                "chair_id": row.chair_id,
                "version": row.version,
            }
            sessions.append(entry)
            if not clinical or row.state not in rules.ACTIVE_STATES:
                continue
            status = rules.session_status(
                document_of(row),
                course_protocol(courses[row.course_id]),
                now=now,
                clinic_timezone=clinic.opening_hours.timezone,
            )
            entry["observation_ends_at"] = status.observation_ends_at
            entry["discharge_blockers"] = [r.as_dict() for r in status.discharge_blockers]
            base = {
                "session_id": row.id,
                "patient_id": row.patient_id,
                "patient_name": entry["patient_name"],
            }
            alarms += [{**base, **a.model_dump(mode="json")} for a in status.open_alarms]
            overdue += [{**base, **d.model_dump(mode="json")} for d in status.missed_readings]

        therapy_due: list[dict[str, Any]] = []
        decisions: list[dict[str, Any]] = []
        active_courses = [c for c in courses.values() if c.status == "active"]
        if is_allowed(actor.role, THERAPY_READ):
            for course in active_courses:
                for item in therapy.therapy_due(
                    session, course.patient_id, clinic.therapy_policy, now
                ):
                    if item.status in _THERAPY_OPEN:
                        therapy_due.append(
                            {"patient_id": course.patient_id, **item.model_dump(mode="json")}
                        )
        if clinical:
            for course in active_courses:
                course_sessions = list(
                    session.scalars(
                        select(DosingSessionRow).where(DosingSessionRow.course_id == course.id)
                    )
                )
                if _induction_finished(course_sessions):
                    decisions.append(
                        {
                            "patient_id": course.patient_id,
                            "course_id": course.id,
                            "kind": "induction_complete",
                            "message": "induction series finished: judge the benefit and plan "
                            "boosters or maintenance (SPRAVATO label section 2; Murrough 2013)",
                        }
                    )
                suggestions = (
                    *measures.early_non_response_suggestions(session, course.patient_id, now),
                    *measures.booster_suggestions(session, course.patient_id, now),
                )
                decisions += [
                    {"patient_id": course.patient_id, "course_id": course.id, **s.as_dict()}
                    for s in suggestions
                ]
        alerts = []
        if is_allowed(actor.role, ASSESSMENT_READ) and clinical:
            alerts = [view.as_dict() for view in measures.open_alerts(session)]

        shown = {s["patient_id"] for s in sessions} | {t["patient_id"] for t in therapy_due}
        shown |= {d["patient_id"] for d in decisions} | {a["patient_id"] for a in alerts}
        for patient_id in sorted(shown):
            audit.record(
                session,
                actor,
                "worklist.read",
                "patient",
                patient_id,
                patient_id=patient_id,
                now=now,
            )
        return {
            "date": start.date(),
            "generated_at": now,
            "counts_by_state": dict(Counter(s["state"] for s in sessions)),
            "sessions": sessions,
            "open_alarms": alarms,
            "overdue_readings": overdue,
            "therapy_due": therapy_due,
            "safety_alerts": alerts,
            "courses_needing_decision": decisions,
        }
