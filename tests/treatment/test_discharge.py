"""Discharge criteria: each one alone, all together, and the boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ketaflow.treatment.discharge import DischargeInputs, evaluate_discharge, observation_ends_at
from ketaflow.treatment.monitoring import (
    AdverseEvent,
    AdverseEventKind,
    AdverseEventOutcome,
    AdverseEventSeverity,
    Reading,
)
from ketaflow.treatment.protocols import DEFAULT_PROTOCOLS, ProtocolId, apply_overrides

IV = DEFAULT_PROTOCOLS[ProtocolId.iv_racemic_infusion]
ESK = DEFAULT_PROTOCOLS[ProtocolId.intranasal_esketamine_trd]
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
START = T0 + timedelta(minutes=10)
IV_END = START + timedelta(minutes=40)
ESK_END = START + timedelta(minutes=5)
NORMAL = {
    "systolic_mmhg": 126,
    "diastolic_mmhg": 80,
    "heart_rate_bpm": 75,
    "spo2_percent": 98,
    "respiratory_rate_per_min": 14,
    "moaa_s": 5,
    "cadss6": 0,
}


def m(n: float) -> timedelta:
    return timedelta(minutes=n)


def r(rid: str, at: datetime, **values) -> Reading:
    return Reading(id=rid, taken_at=at, recorded_by="n", **values)


def iv_readings(at: datetime, **last) -> list[Reading]:
    """Baseline and a discharge reading at `at` (with `last` changes)."""
    return [r("base", T0 + m(2), **NORMAL), r("last", at - m(1), **{**NORMAL, **last})]


def esk_readings(at: datetime, **last) -> list[Reading]:
    return [
        r("base", T0 + m(2), **NORMAL),
        r("forty", START + m(40), **NORMAL),
        r("last", at - m(1), **{**NORMAL, **last}),
    ]


def iv_eval(at: datetime, readings=None, events=(), inputs=None, protocol=IV):
    return evaluate_discharge(
        protocol,
        readings=iv_readings(at) if readings is None else readings,
        adverse_events=events,
        checked_in_at=T0,
        dose_started_at=START,
        dose_ended_at=IV_END,
        inputs=inputs or DischargeInputs(escort_present=True),
        at=at,
    )


ESK_OK = DischargeInputs(
    escort_present=True, clinician_judges_stable=True, ready_without_minimum_min=90
)


def esk_eval(at: datetime, readings=None, inputs=ESK_OK):
    return evaluate_discharge(
        ESK,
        readings=esk_readings(at) if readings is None else readings,
        adverse_events=(),
        checked_in_at=T0,
        dose_started_at=START,
        dose_ended_at=ESK_END,
        inputs=inputs,
        at=at,
    )


def test_all_criteria_met():
    at = IV_END + m(60)
    evaluation = iv_eval(at)
    assert evaluation.ok, evaluation.unmet
    assert evaluation.observation_ends_at == at


def test_minimum_observation_boundary_iv_from_dose_end():
    assert iv_eval(IV_END + m(60)).ok
    early = iv_eval(IV_END + m(59.5))
    assert early.rule_ids == ["min_observation"]
    assert "1 min to go" in early.unmet[0].message


def test_esketamine_observation_counts_from_the_first_device():
    assert observation_ends_at(ESK.discharge, dose_started_at=START, dose_ended_at=ESK_END) == (
        START + m(120)
    )
    assert esk_eval(START + m(120)).ok
    assert esk_eval(START + m(119)).rule_ids == ["min_observation"]


def test_esketamine_needs_the_clinicians_judgment_and_the_rems_estimate():
    evaluation = esk_eval(START + m(125), inputs=DischargeInputs(escort_present=True))
    assert evaluation.rule_ids == ["clinician_stability_judgment", "ready_without_minimum_estimate"]
    judged_unstable = DischargeInputs(
        escort_present=True, clinician_judges_stable=False, ready_without_minimum_min=0
    )
    assert esk_eval(START + m(125), inputs=judged_unstable).rule_ids == [
        "clinician_stability_judgment"
    ]


def test_esketamine_40_minute_reading_is_required():
    at = START + m(125)
    readings = [r("base", T0 + m(2), **NORMAL), r("last", at - m(1), **NORMAL)]
    assert esk_eval(at, readings=readings).rule_ids == ["required_reading_bp_40_min"]


def test_missing_baseline_is_reported():
    at = IV_END + m(60)
    evaluation = iv_eval(at, readings=[r("last", at - m(1), **NORMAL)])
    assert evaluation.rule_ids == ["required_reading_baseline"]


@pytest.mark.parametrize(
    ("changes", "rule_id"),
    [
        ({"systolic_mmhg": 185}, "vitals_out_of_range_systolic_mmhg"),
        ({"diastolic_mmhg": 105}, "vitals_out_of_range_diastolic_mmhg"),
        ({"heart_rate_bpm": 115}, "vitals_out_of_range_heart_rate_bpm"),
        ({"spo2_percent": 92}, "vitals_out_of_range_spo2_percent"),
        ({"respiratory_rate_per_min": 8}, "vitals_out_of_range_respiratory_rate_per_min"),
        ({"moaa_s": 4}, "sedation_not_resolved"),
        ({"cadss6": 1}, "dissociation_not_resolved"),
    ],
)
def test_each_unresolved_reading_is_a_criterion(changes, rule_id):
    at = IV_END + m(60)
    assert iv_eval(at, readings=iv_readings(at, **changes)).rule_ids == [rule_id]


def test_near_baseline_passes_when_above_the_limit():
    at = START + m(125)
    hypertensive = {**NORMAL, "systolic_mmhg": 150, "diastolic_mmhg": 92}
    readings = [
        r("base", T0 + m(2), **hypertensive),
        r("forty", START + m(40), **hypertensive),
        r("last", at - m(1), **{**hypertensive, "systolic_mmhg": 165, "diastolic_mmhg": 100}),
    ]
    assert esk_eval(at, readings=readings).ok
    readings[-1] = r("last", at - m(1), **{**hypertensive, "systolic_mmhg": 171})
    assert esk_eval(at, readings=readings).rule_ids == ["vitals_out_of_range_systolic_mmhg"]


def test_dissociation_back_to_the_pre_dose_rating_with_tolerance():
    at = IV_END + m(60)
    readings = [r("base", T0 + m(2), **{**NORMAL, "cadss6": 2}), r("last", at - m(1), **NORMAL)]
    readings[-1] = r("last", at - m(1), **{**NORMAL, "cadss6": 2})
    assert iv_eval(at, readings=readings).ok
    tolerant = apply_overrides(IV, {"discharge.dissociation_tolerance_points": 2})
    readings[-1] = r("last", at - m(1), **{**NORMAL, "cadss6": 4})
    assert iv_eval(at, readings=readings).rule_ids == ["dissociation_not_resolved"]
    assert iv_eval(at, readings=readings, protocol=tolerant).ok


def test_stale_or_voided_readings_do_not_count():
    at = IV_END + m(60)
    stale = [r("base", T0 + m(2), **NORMAL), r("last", at - m(16), **NORMAL)]
    ids = iv_eval(at, readings=stale).rule_ids
    assert "sedation_not_assessed" in ids and "vitals_missing_systolic_mmhg" in ids
    voided = iv_readings(at)
    voided[-1] = voided[-1].model_copy(
        update={"voided_at": at, "voided_by": "n", "void_reason": "wrong patient"}
    )
    assert "sedation_not_assessed" in iv_eval(at, readings=voided).rule_ids


def adverse(severity, outcome=AdverseEventOutcome.ongoing):
    return AdverseEvent(
        id=f"ae-{severity}",
        kind=AdverseEventKind.emergence_reaction,
        severity=severity,
        onset_at=START,
        recorded_at=START,
        recorded_by="n",
        outcome=outcome,
        resolved_at=None if outcome is AdverseEventOutcome.ongoing else START + m(20),
    )


def test_only_open_severe_adverse_events_block():
    at = IV_END + m(60)
    assert iv_eval(at, events=[adverse(AdverseEventSeverity.moderate)]).ok
    assert iv_eval(
        at, events=[adverse(AdverseEventSeverity.severe, AdverseEventOutcome.resolved)]
    ).ok
    blocked = iv_eval(
        at,
        events=[
            adverse(AdverseEventSeverity.severe),
            adverse(AdverseEventSeverity.life_threatening),
        ],
    )
    assert blocked.rule_ids == ["open_severe_adverse_event", "open_severe_adverse_event"]


def test_every_unmet_criterion_is_returned_at_once():
    at = IV_END + m(10)
    evaluation = iv_eval(
        at,
        readings=[r("last", at - m(1), systolic_mmhg=190, diastolic_mmhg=90, moaa_s=3)],
        events=[adverse(AdverseEventSeverity.severe)],
        inputs=DischargeInputs(escort_present=False),
    )
    assert set(evaluation.rule_ids) == {
        "min_observation",
        "vitals_out_of_range_systolic_mmhg",
        "vitals_missing_heart_rate_bpm",
        "vitals_missing_spo2_percent",
        "sedation_not_resolved",
        "dissociation_not_assessed",
        "open_severe_adverse_event",
        "escort_not_present",
        "required_reading_baseline",
    }
    assert all(reason.source for reason in evaluation.unmet)


def test_no_dose_means_no_discharge():
    evaluation = evaluate_discharge(
        IV,
        readings=[],
        adverse_events=[],
        checked_in_at=T0,
        dose_started_at=None,
        dose_ended_at=None,
        inputs=DischargeInputs(escort_present=True),
        at=T0 + m(300),
    )
    assert {"dose_not_complete", "min_observation"} <= set(evaluation.rule_ids)
