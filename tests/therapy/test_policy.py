"""Therapy policy: preparation before the first dose, integration within 72 h of each dose."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ketaflow.therapy.policy import (
    DoseEvent,
    Modality,
    TherapyDueStatus,
    TherapyKind,
    TherapyNote,
    TherapyPolicy,
    TherapySession,
    therapy_due,
    validate_therapy_session,
)
from ketaflow.treatment.errors import RuleViolation

DAY1 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
POLICY = TherapyPolicy()


def h(n: float) -> timedelta:
    return timedelta(hours=n)


def therapy(
    sid: str, kind: TherapyKind, at: datetime, dosing_session_id: str | None = None
) -> TherapySession:
    return TherapySession(
        id=sid,
        patient_id="p1",
        kind=kind,
        dosing_session_id=dosing_session_id,
        held_at=at,
        duration_min=50,
        therapist_id="t1",
        modality=Modality.meaning_centered,
        note=TherapyNote(what_came_up="grief", insights="", goals=("walk daily",), homework=""),
    )


def statuses(items, kind):
    return [(i.dosing_session_id, i.status) for i in items if i.kind is kind]


def test_preparation_is_due_before_the_first_planned_dose():
    planned = [DoseEvent(dosing_session_id="d1", at=DAY1, given=False)]
    items = therapy_due(POLICY, doses=planned, sessions=[], now=DAY1 - h(48))
    assert statuses(items, TherapyKind.preparation) == [("d1", TherapyDueStatus.due)]
    assert items[0].due_by == DAY1
    assert statuses(items, TherapyKind.integration) == []
    late = therapy_due(POLICY, doses=planned, sessions=[], now=DAY1 + h(1))
    assert statuses(late, TherapyKind.preparation) == [("d1", TherapyDueStatus.overdue)]


def test_preparation_done_before_or_late_after_the_first_dose():
    doses = [DoseEvent(dosing_session_id="d1", at=DAY1)]
    before = [therapy("t1", TherapyKind.preparation, DAY1 - h(72), "d1")]
    items = therapy_due(POLICY, doses=doses, sessions=before, now=DAY1 + h(1))
    assert items[0].status is TherapyDueStatus.done and items[0].therapy_session_id == "t1"
    after = [therapy("t2", TherapyKind.preparation, DAY1 + h(24))]
    items = therapy_due(POLICY, doses=doses, sessions=after, now=DAY1 + h(30))
    assert items[0].status is TherapyDueStatus.done_late
    missing = therapy_due(POLICY, doses=doses, sessions=[], now=DAY1 + h(1))
    assert missing[0].status is TherapyDueStatus.overdue


def test_integration_within_72_hours_of_each_dose():
    doses = [
        DoseEvent(dosing_session_id="d1", at=DAY1),
        DoseEvent(dosing_session_id="d2", at=DAY1 + h(48)),
        DoseEvent(dosing_session_id="d3", at=DAY1 + h(96), given=False),
    ]
    sessions = [
        therapy("p", TherapyKind.preparation, DAY1 - h(24)),
        therapy("i1", TherapyKind.integration, DAY1 + h(20), "d1"),
    ]
    items = therapy_due(POLICY, doses=doses, sessions=sessions, now=DAY1 + h(72) + h(1))
    assert statuses(items, TherapyKind.integration) == [
        ("d1", TherapyDueStatus.done),
        ("d2", TherapyDueStatus.due),
    ]
    later = therapy_due(POLICY, doses=doses, sessions=sessions, now=DAY1 + h(48 + 72) + h(1))
    assert statuses(later, TherapyKind.integration)[1] == ("d2", TherapyDueStatus.overdue)
    d2 = next(i for i in later if i.dosing_session_id == "d2")
    assert d2.due_by == DAY1 + h(120)


def test_unlinked_integration_counts_once_inside_a_window_and_late_ones_are_marked():
    doses = [
        DoseEvent(dosing_session_id="d1", at=DAY1),
        DoseEvent(dosing_session_id="d2", at=DAY1 + h(24)),
    ]
    sessions = [therapy("i", TherapyKind.integration, DAY1 + h(30))]
    items = therapy_due(
        TherapyPolicy(preparation_required=False), doses=doses, sessions=sessions, now=DAY1 + h(40)
    )
    assert statuses(items, TherapyKind.integration) == [
        ("d1", TherapyDueStatus.done),
        ("d2", TherapyDueStatus.due),
    ]
    late = [therapy("i", TherapyKind.integration, DAY1 + h(80), "d1")]
    items = therapy_due(POLICY, doses=doses[:1], sessions=late, now=DAY1 + h(90))
    assert statuses(items, TherapyKind.integration) == [("d1", TherapyDueStatus.done_late)]


def test_policy_settings_switch_parts_off_and_change_the_window():
    doses = [DoseEvent(dosing_session_id="d1", at=DAY1)]
    assert (
        therapy_due(
            TherapyPolicy(preparation_required=False, integration_required=False),
            doses=doses,
            sessions=[],
            now=DAY1,
        )
        == []
    )
    items = therapy_due(
        TherapyPolicy(preparation_required=False, integration_within_hours=24),
        doses=doses,
        sessions=[],
        now=DAY1 + h(25),
    )
    assert statuses(items, TherapyKind.integration) == [("d1", TherapyDueStatus.overdue)]
    with pytest.raises(ValidationError):
        TherapyPolicy(integration_within_hours=0)


def test_no_doses_no_items():
    assert therapy_due(POLICY, doses=[], sessions=[], now=DAY1) == []


def test_validate_therapy_session():
    dose = DoseEvent(dosing_session_id="d1", at=DAY1)
    validate_therapy_session(
        therapy("i", TherapyKind.integration, DAY1 + h(2), "d1"), dose=dose, now=DAY1 + h(3)
    )
    validate_therapy_session(
        therapy("p", TherapyKind.preparation, DAY1 - h(2), "d1"), dose=dose, now=DAY1
    )
    cases = [
        (therapy("i", TherapyKind.integration, DAY1 - h(1), "d1"), dose, "integration_before_dose"),
        (therapy("p", TherapyKind.preparation, DAY1 + h(1), "d1"), dose, "preparation_after_dose"),
        (therapy("i", TherapyKind.integration, DAY1 + h(1), "d9"), dose, "therapy_link"),
        (therapy("i", TherapyKind.integration, DAY1 + h(1)), None, "integration_needs_dose"),
        (therapy("i", TherapyKind.integration, DAY1 + h(9), "d1"), dose, "therapy_in_future"),
    ]
    for session, linked_dose, rule_id in cases:
        with pytest.raises(RuleViolation) as caught:
            validate_therapy_session(session, dose=linked_dose, now=DAY1 + h(5))
        assert rule_id in caught.value.rule_ids


def test_modality_other_needs_a_name_and_notes_are_structured():
    with pytest.raises(ValidationError):
        TherapySession(
            id="x",
            patient_id="p",
            kind=TherapyKind.preparation,
            held_at=DAY1,
            duration_min=30,
            therapist_id="t",
            modality=Modality.other,
        )
    session = TherapySession(
        id="x",
        patient_id="p",
        kind=TherapyKind.preparation,
        held_at=DAY1,
        duration_min=30,
        therapist_id="t",
        modality=Modality.other,
        modality_other="IFS",
    )
    assert session.note.empty
    assert not TherapyNote(homework="journal").empty
    assert {m.value for m in Modality} == {"cbt", "mindfulness_based", "meaning_centered", "other"}
