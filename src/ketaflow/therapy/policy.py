"""Preparation and integration therapy: session values, structured notes, and the adherence
policy that feeds worklists.

Policy (issue 3 §7), both parts clinic settings: a preparation session before the first dose,
and an integration session within 72 hours of each dose. The 72-hour window is the issue's
default, not a clinical number from the reference: clinic-configurable.

Pure: no database, no clock (`now` is a parameter), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ketaflow.core.errors import Reason
from ketaflow.treatment.errors import RuleViolation

__all__ = [
    "DoseEvent",
    "Modality",
    "TherapyDue",
    "TherapyDueStatus",
    "TherapyKind",
    "TherapyNote",
    "TherapyPolicy",
    "TherapySession",
    "therapy_due",
    "validate_therapy_session",
]

_SRC_POLICY = "therapy policy (issue 3 §7; clinic setting)"


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TherapyKind(StrEnum):
    preparation = "preparation"
    integration = "integration"


class Modality(StrEnum):
    cbt = "cbt"
    mindfulness_based = "mindfulness_based"
    meaning_centered = "meaning_centered"
    other = "other"


class TherapyNote(_Value):
    """The structured note: what came up, insights, goals, homework."""

    what_came_up: str = Field(default="", max_length=5000)
    insights: str = Field(default="", max_length=5000)
    goals: tuple[Annotated[str, StringConstraints(max_length=500)], ...] = Field(
        default=(), max_length=20
    )
    homework: str = Field(default="", max_length=5000)

    @property
    def empty(self) -> bool:
        return not (
            self.what_came_up.strip()
            or self.insights.strip()
            or self.goals
            or self.homework.strip()
        )


class TherapySession(_Value):
    id: str = Field(min_length=1, max_length=64)
    patient_id: str = Field(min_length=1, max_length=64)
    kind: TherapyKind
    # The dosing session it serves: the next dose for preparation, the dose for integration.
    dosing_session_id: str | None = None
    held_at: datetime
    duration_min: int = Field(ge=1, le=600)
    therapist_id: str = Field(min_length=1, max_length=64)
    modality: Modality
    # Required when modality is other.
    modality_other: str | None = Field(default=None, max_length=200)
    note: TherapyNote = TherapyNote()

    @model_validator(mode="after")
    def _other(self) -> TherapySession:
        if self.modality is Modality.other and not (self.modality_other or "").strip():
            raise ValueError("name the modality when it is 'other'")
        if self.held_at.tzinfo is None:
            raise ValueError("held_at must be timezone-aware")
        return self


class TherapyPolicy(_Value):
    preparation_required: bool = True
    integration_required: bool = True
    # Issue 3 §7 default; clinic-configurable.
    integration_within_hours: int = Field(default=72, ge=1, le=24 * 14)


class DoseEvent(_Value):
    """A dose, as the policy sees it: the dosing session and when the dose ended (or the
    planned start, for a dose not yet given)."""

    dosing_session_id: str
    at: datetime
    given: bool = True


class TherapyDueStatus(StrEnum):
    # Still inside its window.
    due = "due"
    # The window passed without the session.
    overdue = "overdue"
    # Held inside the window.
    done = "done"
    # Held, but after the window.
    done_late = "done_late"


class TherapyDue(_Value):
    kind: TherapyKind
    dosing_session_id: str
    due_by: datetime
    status: TherapyDueStatus
    therapy_session_id: str | None = None
    reason: Reason


def validate_therapy_session(
    session: TherapySession,
    *,
    dose: DoseEvent | None,
    now: datetime,
) -> None:
    """Refuse a therapy session that cannot be right: held in the future, a preparation held
    after the dose it prepares, an integration before the dose it integrates, or linked to a
    different dosing session than the dose given."""
    problems: list[Reason] = []
    if session.held_at > now:
        problems.append(
            Reason("therapy_in_future", "a therapy session cannot be recorded ahead", _SRC_POLICY)
        )
    if dose is not None:
        if (
            session.dosing_session_id is not None
            and session.dosing_session_id != dose.dosing_session_id
        ):
            problems.append(
                Reason("therapy_link", "linked to a different dosing session", _SRC_POLICY)
            )
        if session.kind is TherapyKind.preparation and dose.given and session.held_at > dose.at:
            problems.append(
                Reason(
                    "preparation_after_dose",
                    "a preparation session must come before the dose",
                    _SRC_POLICY,
                )
            )
        if session.kind is TherapyKind.integration:
            if not dose.given:
                problems.append(
                    Reason(
                        "integration_before_dose",
                        "integration follows a dose that was given",
                        _SRC_POLICY,
                    )
                )
            elif session.held_at < dose.at:
                problems.append(
                    Reason(
                        "integration_before_dose",
                        "an integration session must follow the dose",
                        _SRC_POLICY,
                    )
                )
    elif session.kind is TherapyKind.integration:
        problems.append(
            Reason("integration_needs_dose", "an integration session serves a dose", _SRC_POLICY)
        )
    if problems:
        raise RuleViolation("therapy_session_refused", problems)


def therapy_due(
    policy: TherapyPolicy,
    *,
    doses: Sequence[DoseEvent],
    sessions: Iterable[TherapySession],
    now: datetime,
) -> list[TherapyDue]:
    """What the patient's therapy policy asks for, and where each item stands at `now`.

    - Preparation: one before the first dose (given or planned: `doses` sorted or not). It is
      satisfied by any preparation session held before that dose; due until the dose, overdue
      once the dose was given without it.
    - Integration: one per given dose within `integration_within_hours` after it: a session
      linked to that dose, or else an unlinked integration session held in the window.
    """
    ordered = sorted(doses, key=lambda d: d.at)
    all_sessions = sorted(sessions, key=lambda s: s.held_at)
    items: list[TherapyDue] = []
    if policy.preparation_required and ordered:
        first = ordered[0]
        preparations = [s for s in all_sessions if s.kind is TherapyKind.preparation]
        before = [s for s in preparations if s.held_at <= first.at]
        if before:
            status, held = TherapyDueStatus.done, before[-1]
        elif first.given:
            late = [s for s in preparations if s.held_at > first.at]
            status = TherapyDueStatus.done_late if late else TherapyDueStatus.overdue
            held = late[0] if late else None
        else:
            status = TherapyDueStatus.overdue if now > first.at else TherapyDueStatus.due
            held = None
        items.append(
            TherapyDue(
                kind=TherapyKind.preparation,
                dosing_session_id=first.dosing_session_id,
                due_by=first.at,
                status=status,
                therapy_session_id=held.id if held else None,
                reason=Reason(
                    "preparation_before_first_dose",
                    "a preparation session before the first dose",
                    _SRC_POLICY,
                ),
            )
        )
    if policy.integration_required:
        window = timedelta(hours=policy.integration_within_hours)
        integrations = [s for s in all_sessions if s.kind is TherapyKind.integration]
        used: set[str] = set()
        for dose in (d for d in ordered if d.given):
            due_by = dose.at + window
            linked = [s for s in integrations if s.dosing_session_id == dose.dosing_session_id]
            unlinked = [
                s
                for s in integrations
                if s.dosing_session_id is None
                and s.id not in used
                and dose.at <= s.held_at <= due_by
            ]
            candidates = linked or unlinked
            held = candidates[0] if candidates else None
            if held is not None:
                used.add(held.id)
                status = (
                    TherapyDueStatus.done if held.held_at <= due_by else TherapyDueStatus.done_late
                )
            else:
                status = TherapyDueStatus.overdue if now > due_by else TherapyDueStatus.due
            items.append(
                TherapyDue(
                    kind=TherapyKind.integration,
                    dosing_session_id=dose.dosing_session_id,
                    due_by=due_by,
                    status=status,
                    therapy_session_id=held.id if held else None,
                    reason=Reason(
                        "integration_after_dose",
                        f"an integration session within {policy.integration_within_hours} h "
                        "of the dose",
                        _SRC_POLICY,
                    ),
                )
            )
    return items
