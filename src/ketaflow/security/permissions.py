"""Roles and what each may do: one table, read by every service call (least privilege).

Pure: no database, no HTTP. A new capability adds its actions here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    prescriber = "prescriber"
    nurse = "nurse"
    therapist = "therapist"
    front_desk = "front_desk"
    manager = "manager"
    auditor = "auditor"


# Patient demographics (name, date of birth, MRN, weight).
PATIENT_CREATE = "patient.create"
PATIENT_READ = "patient.read"
PATIENT_UPDATE = "patient.update"
WEIGHT_RECORD = "patient.weight.record"
# Clinical history: diagnoses, trials, medications, substance use...
HISTORY_READ = "patient.history.read"
HISTORY_UPDATE = "patient.history.update"
# Eligibility screening.
SCREENING_CREATE = "screening.create"
SCREENING_READ = "screening.read"
SCREENING_OVERRIDE = "screening.override"
# Who looked at a record.
ACCESS_LOG_READ = "patient.access_log.read"
# Staff accounts and the audit log.
USER_MANAGE = "user.manage"
AUDIT_READ = "audit.read"
# Measurement-based care: rating scales, safety alerts, outcomes, self-report links.
ASSESSMENT_CREATE = "assessment.create"
ASSESSMENT_READ = "assessment.read"
ALERT_ACKNOWLEDGE = "alert.acknowledge"
QUESTIONNAIRE_LINK_CREATE = "questionnaire_link.create"
# Treatment: courses, dosing sessions, consents, therapy sessions, worklists.
# The course list and the schedule (ids, states, times, chairs): what booking needs.
COURSE_READ = "course.read"
# A dosing session's clinical record (doses, readings, alarms, adverse events, checks), its
# observation advice and a course's home doses: clinical staff only, never scheduling roles.
SESSION_CLINICAL_READ = "session.clinical_read"
COURSE_MANAGE = "course.manage"
CHAIR_MANAGE = "chair.manage"
CONSENT_RECORD = "consent.record"
SESSION_SCHEDULE = "session.schedule"
SESSION_CHECK_IN = "session.check_in"
SESSION_CLINICAL = "session.clinical"
# Overriding a failed pre-dose check, resuming a held infusion, titrating: prescribers only.
SESSION_PRESCRIBE = "session.prescribe"
HOME_DOSE_RECORD = "home_dose.record"
THERAPY_READ = "therapy.read"
# The content of therapy notes (what came up, insights): the therapists who write them and the
# prescriber who directs the treatment. Psychotherapy notes are kept apart from the rest of the
# chart (HIPAA, 45 CFR 164.501), so nurses see what therapy is due, not what was said.
THERAPY_NOTES_READ = "therapy.notes.read"
THERAPY_RECORD = "therapy.record"
WORKLIST_READ = "worklist.read"
# Pharmacokinetic simulation (no patient data unless a patient is named).
PK_SIMULATE = "pk.simulate"

_CLINICAL_READ = frozenset(
    {
        PATIENT_READ,
        HISTORY_READ,
        SCREENING_READ,
        ASSESSMENT_READ,
        COURSE_READ,
        SESSION_CLINICAL_READ,
        THERAPY_READ,
        WORKLIST_READ,
    }
)
_BEDSIDE = frozenset(
    {SESSION_SCHEDULE, SESSION_CHECK_IN, SESSION_CLINICAL, CONSENT_RECORD, HOME_DOSE_RECORD}
)
_MEASURING = frozenset({ASSESSMENT_CREATE, ALERT_ACKNOWLEDGE, QUESTIONNAIRE_LINK_CREATE})

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    # Admins manage accounts; they do not read charts.
    Role.admin: frozenset({USER_MANAGE}),
    Role.prescriber: _CLINICAL_READ
    | _MEASURING
    | _BEDSIDE
    | {
        COURSE_MANAGE,
        SESSION_PRESCRIBE,
        PATIENT_CREATE,
        PATIENT_UPDATE,
        WEIGHT_RECORD,
        HISTORY_UPDATE,
        SCREENING_CREATE,
        SCREENING_OVERRIDE,
        ACCESS_LOG_READ,
        PK_SIMULATE,
        THERAPY_NOTES_READ,
    },
    Role.nurse: _CLINICAL_READ
    | _MEASURING
    | _BEDSIDE
    | {WEIGHT_RECORD, HISTORY_UPDATE, PK_SIMULATE},
    Role.therapist: _CLINICAL_READ | _MEASURING | {THERAPY_RECORD, THERAPY_NOTES_READ},
    # Registration and booking need demographics, not clinical history.
    Role.front_desk: frozenset(
        {
            PATIENT_CREATE,
            PATIENT_READ,
            PATIENT_UPDATE,
            QUESTIONNAIRE_LINK_CREATE,
            COURSE_READ,
            SESSION_SCHEDULE,
            SESSION_CHECK_IN,
            WORKLIST_READ,
        }
    ),
    # Schedules, stock and outcome reports: the calendar, not the chart.
    Role.manager: frozenset({PATIENT_READ, COURSE_READ, WORKLIST_READ, CHAIR_MANAGE}),
    # Auditors read the audit trail and who-accessed-what, nothing clinical.
    Role.auditor: frozenset({AUDIT_READ, ACCESS_LOG_READ}),
}


def is_allowed(role: Role | str, action: str) -> bool:
    try:
        return action in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False


def all_actions() -> frozenset[str]:
    return frozenset().union(*ROLE_PERMISSIONS.values())


@dataclass(frozen=True)
class Actor:
    """Who is acting, and from where: carried from the edge (HTTP, CLI, web) into services."""

    user_id: int | None
    username: str
    role: Role | str  # a Role, or a pseudo-role such as "unauthenticated" in the audit log
    client_address: str | None = None
