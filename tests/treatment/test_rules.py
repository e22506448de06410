"""The dosing-session state machine: every transition, every pre-dose check, every refusal,
and a Hypothesis state machine that random action sequences never break."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ketaflow.treatment import rules as R
from ketaflow.treatment.discharge import DischargeInputs, evaluate_discharge
from ketaflow.treatment.errors import InvalidReading, RuleViolation
from ketaflow.treatment.monitoring import (
    AdverseEvent,
    AdverseEventAction,
    AdverseEventKind,
    AdverseEventOutcome,
    AdverseEventSeverity,
    Reading,
)
from ketaflow.treatment.protocols import Measure
from treatment.treatment_builders import (
    DOSE_START,
    ESK,
    FRONT_DESK,
    IM,
    IV,
    NURSE,
    ORAL,
    PRESCRIBER,
    T0,
    THERAPIST,
    checked_in,
    cleared,
    discharge_inputs,
    dose_for,
    dosing,
    inputs_for,
    minutes,
    monitoring,
    normal_reading,
    reading,
    ready_to_discharge,
    scheduled,
)

S = R.SessionState


def failing(session: R.DosingSession) -> dict[str, R.CheckKind]:
    run = session.last_check_run
    assert run is not None
    return {r.rule_id: r.kind for r in run.results if not r.passed}


def run_checks(protocol, session=None, *, now=None, **changes):
    session = session if session is not None else checked_in(protocol)
    if not session.readings:
        session = R.record_reading(
            session, protocol, normal_reading(T0 + minutes(1)), actor=NURSE, now=T0 + minutes(1)
        ).session
    return R.run_pre_dose_checks(
        session, protocol, inputs_for(protocol, **changes), actor=NURSE, now=now or T0 + minutes(5)
    ).session


# ---------------------------------------------------------------------------------------------
# Full lifecycles


@pytest.mark.parametrize("protocol", [IV, IM, ESK, ORAL], ids=lambda p: p.id.value)
def test_full_lifecycle_reaches_discharge_with_valid_values(protocol):
    session, discharge_at = ready_to_discharge(protocol)
    outcome = R.discharge(
        session, protocol, discharge_inputs(protocol), actor=NURSE, now=discharge_at
    )
    done = outcome.session
    assert done.state is S.discharged
    assert done.closed_at == discharge_at
    assert R.invariant_violations(done, protocol) == []
    assert [e.to_state for e in done.events if e.to_state is not e.from_state] == [
        S.checked_in,
        S.cleared,
        S.dosing,
        S.monitoring,
        S.discharged,
    ]
    assert outcome.events[-1].action == "discharge"


def test_esketamine_observation_clock_starts_at_first_device_and_rems_fields_are_kept():
    session, discharge_at = ready_to_discharge(ESK)
    assert session.dose_started_at == DOSE_START == session.devices[0].at
    assert [d.number for d in session.devices] == [1, 2]
    assert {d.lot_number for d in session.devices} == {"LOT-1"}
    done = R.discharge(session, ESK, discharge_inputs(ESK), actor=NURSE, now=discharge_at).session
    assert done.discharge.observation_minutes == 120
    assert done.discharge.ready_without_minimum_min == 75
    assert done.discharge.clinician_judges_stable is True
    assert done.concomitant_medications == frozenset()


def test_actions_return_new_values_and_never_change_the_old_one():
    before = checked_in(IV)
    after = R.record_reading(
        before, IV, normal_reading(T0 + minutes(1)), actor=NURSE, now=T0 + minutes(1)
    ).session
    assert before.readings == () and len(after.readings) == 1
    assert before.state is S.checked_in
    with pytest.raises(Exception, match="frozen"):
        after.state = S.dosing  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Transitions refused out of order


@pytest.mark.parametrize(
    ("builder", "action"),
    [
        (scheduled, lambda s, p: R.start_dose(s, p, dose_for(p), actor=NURSE, now=T0)),
        (checked_in, lambda s, p: R.start_dose(s, p, dose_for(p), actor=NURSE, now=T0)),
        (cleared, lambda s, p: R.end_dose(s, p, actor=NURSE, now=T0 + minutes(60))),
        (
            dosing,
            lambda s, p: R.discharge(s, p, discharge_inputs(p), actor=NURSE, now=T0 + minutes(300)),
        ),
        (dosing, lambda s, p: R.check_in(s, actor=NURSE, now=T0 + minutes(60))),
        (
            scheduled,
            lambda s, p: R.record_reading(s, p, normal_reading(T0), actor=NURSE, now=T0),
        ),
    ],
)
def test_acting_out_of_order_is_refused_naming_the_state(builder, action):
    session = builder(IV)
    with pytest.raises(RuleViolation) as caught:
        action(session, IV)
    assert caught.value.code == "invalid_transition"
    assert caught.value.state == session.state.value
    assert caught.value.status == 409
    assert session.state.value in caught.value.reasons[0].message
    assert caught.value.extensions()["state"] == session.state.value


def test_readings_on_a_discharged_session_are_refused():
    session, at = ready_to_discharge(IV)
    done = R.discharge(session, IV, discharge_inputs(IV), actor=NURSE, now=at).session
    with pytest.raises(RuleViolation) as caught:
        R.record_reading(done, IV, normal_reading(at), actor=NURSE, now=at + minutes(1))
    assert caught.value.state == "discharged"
    assert caught.value.rule_ids == ["record_reading_state"]


def test_every_terminal_state_refuses_every_action():
    session, at = ready_to_discharge(IV)
    discharged = R.discharge(session, IV, discharge_inputs(IV), actor=NURSE, now=at).session
    stopped = R.stop(
        checked_in(IV),
        reason=R.StopReason.patient_declined,
        note="changed mind",
        actor=NURSE,
        now=T0 + minutes(1),
    ).session
    missed = R.mark_missed(scheduled(IV), now=T0 + minutes(61)).session
    later = at + minutes(5)
    for session in (discharged, stopped, missed):
        for action in (
            lambda s: R.check_in(s, actor=NURSE, now=later),
            lambda s: R.run_pre_dose_checks(s, IV, inputs_for(IV), actor=NURSE, now=later),
            lambda s: R.start_dose(s, IV, dose_for(IV), actor=NURSE, now=later),
            lambda s: R.end_dose(s, IV, actor=NURSE, now=later),
            lambda s: R.discharge(s, IV, discharge_inputs(IV), actor=NURSE, now=later),
            lambda s: R.stop(s, reason=R.StopReason.other, note="x", actor=PRESCRIBER, now=later),
            lambda s: R.record_reading(s, IV, normal_reading(later), actor=NURSE, now=later),
        ):
            with pytest.raises(RuleViolation) as caught:
                action(session)
            assert caught.value.code == "invalid_transition"


def test_roles_are_enforced():
    with pytest.raises(RuleViolation) as caught:
        R.check_in(scheduled(IV), actor=THERAPIST, now=T0)
    assert caught.value.code == "role_not_allowed"
    assert isinstance(caught.value, R.RoleNotAllowed) and caught.value.status == 403
    assert R.check_in(scheduled(IV), actor=FRONT_DESK, now=T0).session.state is S.checked_in
    session = checked_in(IV)
    with pytest.raises(RuleViolation, match="needs one of"):
        R.run_pre_dose_checks(session, IV, inputs_for(IV), actor=FRONT_DESK, now=T0)


def test_actions_cannot_go_back_in_time():
    session = checked_in(IV)
    with pytest.raises(RuleViolation) as caught:
        R.record_reading(session, IV, normal_reading(T0), actor=NURSE, now=T0 - minutes(1))
    assert caught.value.code == "time_order"


def test_actor_accepts_integer_user_ids_from_security():
    assert R.Actor(user_id=7, role=R.Role.nurse).user_id == "7"


# ---------------------------------------------------------------------------------------------
# Scheduled sessions


def test_mark_missed_only_after_the_grace_period():
    session = scheduled(IV)
    with pytest.raises(RuleViolation) as caught:
        R.mark_missed(session, now=T0 + minutes(60), grace_minutes=60)
    assert caught.value.code == "not_yet_missed"
    missed = R.mark_missed(session, now=T0 + minutes(61), grace_minutes=60).session
    assert missed.state is S.missed and missed.closed_at == T0 + minutes(61)
    assert missed.events[-1].by == "system"


def test_cancel_needs_a_reason_and_reschedule_moves_the_start():
    session = scheduled(IV)
    with pytest.raises(RuleViolation) as caught:
        R.cancel(session, reason="  ", actor=FRONT_DESK, now=T0 - minutes(60))
    assert caught.value.code == "reason_required"
    cancelled = R.cancel(session, reason="patient ill", actor=FRONT_DESK, now=T0 - minutes(60))
    assert cancelled.session.state is S.cancelled
    moved = R.reschedule(
        session,
        scheduled_start=T0 + timedelta(days=1),
        chair_id="B",
        actor=FRONT_DESK,
        now=T0 - minutes(60),
    ).session
    assert moved.state is S.scheduled
    assert (moved.scheduled_start, moved.chair_id) == (T0 + timedelta(days=1), "B")


# ---------------------------------------------------------------------------------------------
# Pre-dose checks


def test_all_checks_passing_clears():
    session = run_checks(IV)
    assert session.state is S.cleared
    assert session.cleared_at == T0 + minutes(5)
    assert session.deferred_reasons == ()


@pytest.mark.parametrize(
    ("changes", "rule_id", "kind"),
    [
        ({"consent_on_file": False}, "consent_on_file", R.CheckKind.hard_stop),
        ({"screening_expires_on": date(2026, 3, 1)}, "screening_valid", R.CheckKind.block),
        ({"screening_expires_on": None}, "screening_valid", R.CheckKind.block),
        ({"weight_recorded_on": date(2026, 1, 1)}, "weight_recent", R.CheckKind.block),
        ({"weight_kg": None}, "weight_recent", R.CheckKind.block),
        ({"last_dose_at": T0 - timedelta(days=1)}, "dose_spacing", R.CheckKind.block),
        ({"escort_confirmed": False}, "escort_confirmed", R.CheckKind.block),
        ({"no_driving_confirmed": False}, "no_driving_confirmed", R.CheckKind.block),
        ({"cssrs_risk": R.CssrsRisk.high}, "cssrs_risk", R.CheckKind.block),
    ],
)
def test_each_failed_check_defers_with_its_reason(changes, rule_id, kind):
    session = run_checks(IV, **changes)
    assert session.state is S.deferred
    assert failing(session) == {rule_id: kind}
    assert [r.rule_id for r in session.deferred_reasons] == [rule_id]
    assert all(r.source for r in session.deferred_reasons)


def test_screening_valid_on_its_expiry_day_and_with_an_audited_override():
    assert run_checks(IV, screening_expires_on=date(2026, 3, 2)).state is S.cleared
    # an overridden refusal counts while it is unexpired (its expiry: test_screening_currency)
    overridden = run_checks(IV, screening_expires_on=date(2026, 3, 2), screening_override=True)
    assert overridden.state is S.cleared


def test_spacing_counts_clinic_calendar_days():
    # 2 days earlier on the clinic's calendar passes; the day before does not.
    assert run_checks(IV, last_dose_at=T0 - timedelta(days=2)).state is S.cleared
    # 23:30 in New York on 28 Feb is 04:30 UTC on 1 Mar: 2 clinic days before 2 Mar.
    late_evening = T0.replace(day=1, hour=4, minute=30)
    assert run_checks(IV, last_dose_at=late_evening).state is S.deferred
    session = run_checks(IV, last_dose_at=late_evening, clinic_timezone="America/New_York")
    assert session.state is S.cleared


def test_safety_flags_are_shown_without_blocking_unless_cssrs_high():
    session = run_checks(IV, phq9_item9=2, cssrs_risk=R.CssrsRisk.moderate)
    assert session.state is S.cleared
    assert failing(session) == {"phq9_item9": R.CheckKind.info, "cssrs_risk": R.CheckKind.info}
    assert run_checks(IV, phq9_item9=0, cssrs_risk=R.CssrsRisk.none).last_check_run.results
    assert failing(run_checks(IV, phq9_item9=0)) == {}


def test_pre_dose_vitals_must_be_recorded_after_check_in():
    session = R.run_pre_dose_checks(
        checked_in(IV), IV, inputs_for(IV), actor=NURSE, now=T0 + minutes(5)
    ).session
    # No reading at all: BP and HR are missing, and so is the plan's whole pre-dose baseline
    # (a hard stop: discharge compares with it).
    assert failing(session) == {
        "pre_dose_vitals_recorded": R.CheckKind.block,
        "required_reading_baseline": R.CheckKind.hard_stop,
    }


@pytest.mark.parametrize(
    ("values", "rule_ids"),
    [
        ({"systolic_mmhg": 181}, {"pre_dose_bp"}),
        ({"diastolic_mmhg": 101}, {"pre_dose_bp"}),
        ({"heart_rate_bpm": 111}, {"pre_dose_hr"}),
        ({"systolic_mmhg": 180, "diastolic_mmhg": 100, "heart_rate_bpm": 110}, set()),
    ],
)
def test_iv_pre_dose_limits_block_above_the_unconfirmed_defaults(values, rule_ids):
    session = checked_in(IV)
    session = R.record_reading(
        session, IV, normal_reading(T0 + minutes(1), **values), actor=NURSE, now=T0 + minutes(1)
    ).session
    session = R.run_pre_dose_checks(session, IV, inputs_for(IV), actor=NURSE, now=T0 + minutes(5))
    session = session.session
    assert set(failing(session)) == rule_ids
    assert all(kind is R.CheckKind.block for kind in failing(session).values())
    if rule_ids:
        assert (
            "unconfirmed"
            in session.deferred_reasons[0].message + session.deferred_reasons[0].source
        )


def test_esketamine_bp_above_140_90_is_a_caution_for_the_prescriber_not_a_hard_stop():
    session = checked_in(ESK)
    session = R.record_reading(
        session,
        ESK,
        normal_reading(T0 + minutes(1), systolic_mmhg=150),
        actor=NURSE,
        now=T0 + minutes(1),
    ).session
    deferred = R.run_pre_dose_checks(
        session, ESK, inputs_for(ESK), actor=NURSE, now=T0 + minutes(5)
    ).session
    assert failing(deferred) == {"pre_dose_bp": R.CheckKind.caution}
    assert "weigh the risk" in deferred.deferred_reasons[0].message
    cleared_ = R.override_check(
        deferred,
        rule_id="pre_dose_bp",
        reason="anxious on arrival; repeat 146/88; benefit outweighs risk",
        actor=PRESCRIBER,
        now=T0 + minutes(8),
    ).session
    assert cleared_.state is S.cleared
    assert cleared_.overrides[0].by == PRESCRIBER.user_id


@pytest.mark.parametrize(
    ("changes", "rule_id", "kind"),
    [
        ({"rems_patient_enrolled": False}, "rems_enrolled", R.CheckKind.hard_stop),
        ({"rems_patient_enrolled": None}, "rems_enrolled", R.CheckKind.hard_stop),
        ({"fasting_asked": False}, "fasting_confirmed", R.CheckKind.block),
        ({"last_food_at": T0 + minutes(5) - minutes(119)}, "fasting_food", R.CheckKind.block),
        ({"last_liquid_at": T0 + minutes(5) - minutes(29)}, "fasting_liquids", R.CheckKind.block),
        (
            {"nasal_product_at": T0 + minutes(5) - minutes(59)},
            "nasal_product_timing",
            R.CheckKind.block,
        ),
        ({"concomitant_medications": None}, "concomitant_recorded", R.CheckKind.block),
    ],
)
def test_esketamine_rems_and_label_checks(changes, rule_id, kind):
    session = run_checks(ESK, **changes)
    assert session.state is S.deferred
    assert failing(session) == {rule_id: kind}


def test_esketamine_fasting_exactly_on_the_limits_passes():
    at = T0 + minutes(5)
    session = run_checks(
        ESK,
        last_food_at=at - minutes(120),
        last_liquid_at=at - minutes(30),
        nasal_product_at=at - minutes(60),
    )
    assert session.state is S.cleared


def test_esketamine_concomitant_medicines_are_recorded_and_shown():
    meds = frozenset({R.ConcomitantClass.benzodiazepine, R.ConcomitantClass.maoi})
    session = run_checks(ESK, concomitant_medications=meds)
    assert session.state is S.cleared
    assert session.concomitant_medications == meds
    assert failing(session) == {
        "concomitant_cns_depressant": R.CheckKind.info,
        "concomitant_bp_raising": R.CheckKind.info,
    }


def test_weight_is_not_needed_for_fixed_dose_protocols():
    assert run_checks(ESK, weight_kg=None, weight_recorded_on=None).state is S.cleared


def test_override_rules():
    deferred = run_checks(IV, escort_confirmed=False, consent_on_file=False)
    assert deferred.state is S.deferred
    with pytest.raises(RuleViolation) as caught:
        R.override_check(
            deferred, rule_id="escort_confirmed", reason="x", actor=NURSE, now=T0 + minutes(6)
        )
    assert caught.value.code == "role_not_allowed"
    with pytest.raises(RuleViolation) as caught:
        R.override_check(
            deferred, rule_id="consent_on_file", reason="x", actor=PRESCRIBER, now=T0 + minutes(6)
        )
    assert caught.value.code == "not_overridable"
    with pytest.raises(RuleViolation) as caught:
        R.override_check(
            deferred, rule_id="weight_recent", reason="x", actor=PRESCRIBER, now=T0 + minutes(6)
        )
    assert caught.value.code == "nothing_to_override"
    with pytest.raises(RuleViolation) as caught:
        R.override_check(
            deferred, rule_id="escort_confirmed", reason=" ", actor=PRESCRIBER, now=T0 + minutes(6)
        )
    assert caught.value.code == "reason_required"
    still = R.override_check(
        deferred,
        rule_id="escort_confirmed",
        reason="patient stays until collected",
        actor=PRESCRIBER,
        now=T0 + minutes(6),
    ).session
    # Consent still missing: stays deferred, with only the remaining reason.
    assert still.state is S.deferred
    assert [r.rule_id for r in still.deferred_reasons] == ["consent_on_file"]
    with pytest.raises(RuleViolation) as caught:
        R.override_check(
            still, rule_id="escort_confirmed", reason="again", actor=PRESCRIBER, now=T0 + minutes(7)
        )
    assert caught.value.code == "already_overridden"


def test_an_override_covers_its_own_run_not_a_re_run():
    # Was test_overrides_survive_a_re_run_and_fixing_clears, which encoded the defect: an
    # override given for one run kept counting on every later run, whatever the new values.
    deferred = run_checks(IV, escort_confirmed=False, no_driving_confirmed=False)
    one = R.override_check(
        deferred,
        rule_id="escort_confirmed",
        reason="stays until collected",
        actor=PRESCRIBER,
        now=T0 + minutes(6),
    ).session
    assert one.overrides[0].check_run == 1
    rerun = R.run_pre_dose_checks(
        one, IV, inputs_for(IV, escort_confirmed=False), actor=NURSE, now=T0 + minutes(8)
    ).session
    assert rerun.state is S.deferred
    assert [r.rule_id for r in rerun.deferred_reasons] == ["escort_confirmed"]
    assert len(rerun.check_runs) == 2 and len(rerun.overrides) == 1  # the history keeps it
    again = R.override_check(
        rerun,
        rule_id="escort_confirmed",
        reason="still stays until collected",
        actor=PRESCRIBER,
        now=T0 + minutes(9),
    ).session
    assert again.state is S.cleared
    assert [o.check_run for o in again.overrides] == [1, 2]
    assert R.invariant_violations(again, IV) == []


# ---------------------------------------------------------------------------------------------
# Dosing


def test_esketamine_device_rest_is_enforced():
    session = dosing(ESK)
    with pytest.raises(RuleViolation) as caught:
        R.record_device(session, ESK, actor=NURSE, now=DOSE_START + minutes(4.5))
    assert caught.value.code == "device_rest"
    assert "0 min 30 s" in caught.value.reasons[0].message
    second = R.record_device(session, ESK, actor=NURSE, now=DOSE_START + minutes(5)).session
    with pytest.raises(RuleViolation) as caught:
        R.record_device(second, ESK, actor=NURSE, now=DOSE_START + minutes(10))
    assert caught.value.code == "all_devices_given"


def test_esketamine_start_needs_lot_number_and_whole_devices():
    session = cleared(ESK)
    for dose, rule_id in (
        (R.AdministeredDose(dose_mg=Decimal(56), device_count=2), "lot_number_required"),
        (
            R.AdministeredDose(dose_mg=Decimal(56), device_count=3, lot_number="L"),
            "device_count",
        ),
        (
            R.AdministeredDose(dose_mg=Decimal(70), device_count=3, lot_number="L"),
            "esketamine_dose_not_allowed",
        ),
    ):
        with pytest.raises(RuleViolation) as caught:
            R.start_dose(session, ESK, dose, actor=NURSE, now=DOSE_START)
        assert caught.value.rule_ids == [rule_id]


def test_esketamine_84_mg_only_after_a_56_mg_start_at_dose_time():
    session = cleared(ESK)
    dose_84 = R.AdministeredDose(dose_mg=Decimal(84), device_count=3, lot_number="L")
    with pytest.raises(RuleViolation) as caught:
        R.start_dose(session, ESK, dose_84, actor=NURSE, now=DOSE_START)
    assert caught.value.rule_ids == ["esketamine_first_dose"]
    started = R.start_dose(
        session, ESK, dose_84, actor=NURSE, now=DOSE_START, prior_doses_mg=[56, 56]
    ).session
    assert started.dose.device_count == 3 and len(started.devices) == 1


def test_ending_early_needs_a_reason():
    session = dosing(ESK)
    with pytest.raises(RuleViolation) as caught:
        R.end_dose(session, ESK, actor=NURSE, now=DOSE_START + minutes(6))
    assert caught.value.rule_ids == ["partial_dose_reason"]
    ended = R.end_dose(
        session, ESK, actor=NURSE, now=DOSE_START + minutes(6), reason="nasal irritation"
    ).session
    assert ended.state is S.monitoring and ended.partial_dose_reason == "nasal irritation"
    iv = dosing(IV)
    with pytest.raises(RuleViolation):
        R.end_dose(iv, IV, actor=NURSE, now=DOSE_START + minutes(39))
    assert R.end_dose(iv, IV, actor=NURSE, now=DOSE_START + minutes(40)).session.state is (
        S.monitoring
    )


def test_infusion_pause_extends_the_required_time_and_resume_is_the_prescribers():
    session = dosing(IV)
    paused = R.pause_infusion(
        session, IV, reason="systolic 186", actor=NURSE, now=DOSE_START + minutes(20)
    ).session
    assert paused.infusion_paused
    with pytest.raises(RuleViolation) as caught:
        R.resume_infusion(paused, actor=NURSE, now=DOSE_START + minutes(30))
    assert caught.value.code == "role_not_allowed"
    resumed = R.resume_infusion(paused, actor=PRESCRIBER, now=DOSE_START + minutes(30)).session
    # 10 minutes paused: 40 min of infusion needs 50 min of wall time.
    with pytest.raises(RuleViolation):
        R.end_dose(resumed, IV, actor=NURSE, now=DOSE_START + minutes(45))
    assert R.end_dose(resumed, IV, actor=NURSE, now=DOSE_START + minutes(50)).session.state is (
        S.monitoring
    )
    with pytest.raises(RuleViolation) as caught:
        R.pause_infusion(dosing(ESK), ESK, reason="x", actor=NURSE, now=DOSE_START + minutes(1))
    assert caught.value.code == "not_an_infusion"


def test_titration_is_a_prescriber_decision_within_the_maximum():
    session = dosing(IV)
    with pytest.raises(RuleViolation):
        R.titrate_dose(
            session, IV, new_dose_mg=Decimal(50), reason="x", actor=NURSE, now=DOSE_START
        )
    with pytest.raises(RuleViolation) as caught:
        R.titrate_dose(
            session,
            IV,
            new_dose_mg=Decimal("60.5"),
            reason="x",
            actor=PRESCRIBER,
            now=DOSE_START + minutes(5),
        )
    assert caught.value.rule_ids == ["dose_above_max"]
    # 0.1 mg/kg x 80 kg = 8 mg is the floor (Sanacora 2017, reference §2)
    with pytest.raises(RuleViolation) as caught:
        R.titrate_dose(
            session,
            IV,
            new_dose_mg=Decimal("7.5"),
            reason="x",
            actor=PRESCRIBER,
            now=DOSE_START + minutes(5),
        )
    assert caught.value.rule_ids == ["dose_below_min"]
    changed = R.titrate_dose(
        session,
        IV,
        new_dose_mg=Decimal(30),
        reason="strong dissociation",
        actor=PRESCRIBER,
        now=DOSE_START + minutes(5),
    ).session
    assert changed.dose.dose_mg == Decimal(30)
    assert changed.titrations[0].from_dose_mg == Decimal(40)
    with pytest.raises(RuleViolation) as caught:
        R.titrate_dose(
            dosing(IM), IM, new_dose_mg=Decimal(30), reason="x", actor=PRESCRIBER, now=DOSE_START
        )
    assert caught.value.code == "titration_not_allowed"


# ---------------------------------------------------------------------------------------------
# Readings


def test_reading_raises_alarms_by_phase():
    session = dosing(IV)
    at = DOSE_START + minutes(20)
    outcome = R.record_reading(
        session,
        IV,
        reading(at, systolic_mmhg=186, diastolic_mmhg=96, spo2_percent=88),
        actor=NURSE,
        now=at,
    )
    assert {a.threshold_id for a in outcome.alarms} == {"systolic_hold", "spo2_critical"}
    assert outcome.session.alarms == outcome.alarms
    hold = next(a for a in outcome.alarms if a.threshold_id == "systolic_hold")
    assert hold.unconfirmed and "Pause the infusion" in hold.action
    assert {a.id for a in outcome.session.open_alarms} == {a.id for a in outcome.alarms}


def test_impossible_readings_are_refused_with_422():
    session = checked_in(IV)
    with pytest.raises(InvalidReading) as caught:
        R.record_reading(
            session,
            IV,
            reading(T0, systolic_mmhg=80, diastolic_mmhg=120, spo2_percent=101),
            actor=NURSE,
            now=T0,
        )
    assert caught.value.status == 422
    assert {f for f, _ in caught.value.errors} == {"spo2_percent", "diastolic_mmhg"}


def test_reading_times_and_ids_are_checked():
    session = checked_in(IV)
    first = normal_reading(T0 + minutes(1))
    session = R.record_reading(session, IV, first, actor=NURSE, now=T0 + minutes(1)).session
    for bad, rule_id in (
        (normal_reading(T0 + minutes(10)), "reading_in_future"),
        (normal_reading(T0 - minutes(1)), "reading_before_check_in"),
        (first, "reading_id_taken"),
    ):
        with pytest.raises(RuleViolation) as caught:
            R.record_reading(session, IV, bad, actor=NURSE, now=T0 + minutes(2))
        assert caught.value.rule_ids == [rule_id]


def test_a_wrong_reading_is_voided_never_overwritten_and_then_corrected():
    session = dosing(IV)
    at = DOSE_START + minutes(10)
    wrong = reading(at, systolic_mmhg=210, diastolic_mmhg=80)
    outcome = R.record_reading(session, IV, wrong, actor=NURSE, now=at)
    assert outcome.alarms
    with pytest.raises(RuleViolation) as caught:
        R.void_reading(outcome.session, reading_id=wrong.id, reason="", actor=NURSE, now=at)
    assert caught.value.code == "reason_required"
    voided = R.void_reading(
        outcome.session,
        reading_id=wrong.id,
        reason="cuff slipped",
        actor=NURSE,
        now=at + minutes(1),
    ).session
    kept = next(r for r in voided.readings if r.id == wrong.id)
    assert kept.systolic_mmhg == 210 and kept.voided and kept.void_reason == "cuff slipped"
    assert voided.open_alarms == []
    with pytest.raises(RuleViolation) as caught:
        R.void_reading(
            voided, reading_id=wrong.id, reason="again", actor=NURSE, now=at + minutes(1)
        )
    assert caught.value.code == "already_voided"
    correction = Reading(
        id="fix-1",
        taken_at=at,
        recorded_by="nurse-1",
        systolic_mmhg=130,
        diastolic_mmhg=80,
        corrects_reading_id=wrong.id,
    )
    corrected = R.record_reading(voided, IV, correction, actor=NURSE, now=at + minutes(2))
    assert corrected.alarms == ()
    assert len(corrected.session.readings) == len(voided.readings) + 1
    bogus = correction.model_copy(update={"id": "fix-2", "corrects_reading_id": "fix-1"})
    with pytest.raises(RuleViolation) as caught:
        R.record_reading(corrected.session, IV, bogus, actor=NURSE, now=at + minutes(3))
    assert caught.value.rule_ids == ["correction_target"]


def test_acknowledged_alarms_leave_the_open_list():
    session = dosing(IV)
    at = DOSE_START + minutes(10)
    outcome = R.record_reading(session, IV, reading(at, moaa_s=3), actor=NURSE, now=at)
    (alarm,) = outcome.alarms
    assert alarm.threshold_id == "sedation_deep"
    acked = R.acknowledge_alarm(
        outcome.session, alarm_id=alarm.id, actor=NURSE, now=at, note="rate reduced"
    ).session
    assert acked.open_alarms == []
    with pytest.raises(RuleViolation):
        R.acknowledge_alarm(acked, alarm_id=alarm.id, actor=NURSE, now=at)
    with pytest.raises(RuleViolation):
        R.acknowledge_alarm(acked, alarm_id="nope", actor=NURSE, now=at)


# ---------------------------------------------------------------------------------------------
# Adverse events and discharge


def adverse_event(at, severity=AdverseEventSeverity.severe, kind=AdverseEventKind.hypertension):
    return AdverseEvent(
        id="ae-1",
        kind=kind,
        severity=severity,
        onset_at=at,
        recorded_at=at,
        recorded_by="x",
        actions=(AdverseEventAction.dose_paused,),
    )


def test_open_severe_adverse_event_blocks_discharge_until_resolved():
    session, at = ready_to_discharge(IV)
    onset = at - minutes(30)
    with_ae = R.record_adverse_event(session, adverse_event(onset), actor=NURSE, now=at).session
    assert with_ae.adverse_events[0].recorded_by == NURSE.user_id
    with pytest.raises(RuleViolation) as caught:
        R.discharge(with_ae, IV, discharge_inputs(IV), actor=NURSE, now=at)
    assert caught.value.rule_ids == ["open_severe_adverse_event"]
    resolved = R.update_adverse_event(
        with_ae,
        event_id="ae-1",
        outcome=AdverseEventOutcome.resolved,
        actor=NURSE,
        now=at,
        add_actions=[AdverseEventAction.medication_given],
    ).session
    event = resolved.adverse_events[0]
    assert event.resolved_at == at
    assert event.actions == (AdverseEventAction.dose_paused, AdverseEventAction.medication_given)
    assert R.discharge(resolved, IV, discharge_inputs(IV), actor=NURSE, now=at).session.state is (
        S.discharged
    )


def test_adverse_event_validation():
    session = dosing(IV)
    now = DOSE_START + minutes(5)
    other = AdverseEvent(
        id="ae-2",
        kind=AdverseEventKind.other,
        severity=AdverseEventSeverity.mild,
        onset_at=now,
        recorded_at=now,
        recorded_by="x",
    )
    with pytest.raises(RuleViolation) as caught:
        R.record_adverse_event(session, other, actor=NURSE, now=now)
    assert caught.value.rule_ids == ["adverse_event_description"]
    with pytest.raises(RuleViolation) as caught:
        R.record_adverse_event(session, adverse_event(now + minutes(1)), actor=NURSE, now=now)
    assert caught.value.rule_ids == ["adverse_event_in_future"]


def test_discharge_before_the_minimum_lists_every_unmet_criterion():
    session, end = monitoring(ESK)
    with pytest.raises(RuleViolation) as caught:
        R.discharge(
            session, ESK, DischargeInputs(escort_present=False), actor=NURSE, now=end + minutes(30)
        )
    ids = set(caught.value.rule_ids)
    assert caught.value.code == "discharge_criteria_unmet"
    assert caught.value.state == "monitoring"
    assert {
        "min_observation",
        "escort_not_present",
        "clinician_stability_judgment",
        "ready_without_minimum_estimate",
        "sedation_not_assessed",
        "required_reading_bp_40_min",
    } <= ids


def test_stopping_a_dosed_session_is_the_prescribers_except_for_emergency_transfer():
    session = dosing(IV)
    now = DOSE_START + minutes(15)
    with pytest.raises(RuleViolation) as caught:
        R.stop(session, reason=R.StopReason.adverse_event, note="x", actor=NURSE, now=now)
    assert caught.value.code == "role_not_allowed"
    transfer = R.stop(
        session, reason=R.StopReason.emergency_transfer, note="chest pain", actor=NURSE, now=now
    ).session
    assert transfer.state is S.stopped and transfer.dose_ended_at == now
    assert transfer.stop.from_state is S.dosing
    left = R.stop(
        session,
        reason=R.StopReason.left_against_medical_advice,
        note="left at 25 min despite advice",
        actor=PRESCRIBER,
        now=now,
    ).session
    assert R.invariant_violations(left, IV) == []


# ---------------------------------------------------------------------------------------------
# Hypothesis: random sequences of actions


minute_steps = st.integers(min_value=0, max_value=45)
mostly_true = st.sampled_from([True, True, True, False])
values = st.fixed_dictionaries(
    {},
    optional={
        "bp": st.one_of(
            st.just((124, 78)),
            st.tuples(st.integers(90, 200), st.integers(50, 120)),
        ),
        "heart_rate_bpm": st.sampled_from([70, 80, 118]),
        "spo2_percent": st.sampled_from([98, 95, 89]),
        "moaa_s": st.sampled_from([5, 5, 4, 2]),
        "cadss6": st.sampled_from([0, 0, 6]),
    },
)


class SessionMachine(RuleBasedStateMachine):
    """Drives one session with random actions at random times; refusals are expected, but no
    sequence may produce an invalid value or a discharge before every criterion holds."""

    @initialize(protocol=st.sampled_from([IV, ESK, IM]))
    def start(self, protocol):
        self.protocol = protocol
        self.session = scheduled(protocol)
        self.now = T0
        self.counter = 0

    def act(self, action):
        try:
            outcome = action()
        except (RuleViolation, InvalidReading) as refused:
            # a role the rules refuse is a 403 (audited by the service), the rest 409/422
            if isinstance(refused, R.RoleNotAllowed):
                assert refused.status == 403 and refused.code == "role_not_allowed"
            else:
                assert refused.status in (409, 422)
            return None
        before = self.session
        self.session = outcome.session
        assert self.session.state in R.TRANSITIONS[before.state] or (
            self.session.state is before.state
        )
        return outcome

    @rule(step=minute_steps)
    def wait(self, step):
        self.now += minutes(step)

    @rule()
    def advance(self):
        """The usual next step for the state, so random runs get deep into the session."""
        state = self.session.state
        if state is S.scheduled:
            self.check_in()
        elif state in (S.checked_in, S.deferred):
            self.record_reading({}, True)
            self.run_checks(True, True, None)
        elif state is S.cleared:
            self.start_dose()
        elif state is S.dosing:
            if self.session.dose.device_count and len(self.session.devices) < (
                self.session.dose.device_count
            ):
                self.wait(5)
                self.record_device()
            else:
                self.wait(self.protocol.administration_minutes)
                self.end_dose(None)
        elif state is S.monitoring:
            self.wait(15)
            self.record_reading({}, True)
            self.discharge(True, True, 60)

    @rule()
    def check_in(self):
        self.act(lambda: R.check_in(self.session, actor=NURSE, now=self.now))

    @rule(v=values, full=st.booleans())
    def record_reading(self, v, full):
        self.counter += 1
        data = dict(v)
        if full:
            data = {
                "bp": (124, 78),
                "heart_rate_bpm": 72,
                "spo2_percent": 98,
                "moaa_s": 5,
                "cadss6": 0,
                "respiratory_rate_per_min": 14,
                **data,
            }
        bp = data.pop("bp", None)
        if bp is not None:
            data["systolic_mmhg"], data["diastolic_mmhg"] = bp
        new = Reading(id=f"h{self.counter}", taken_at=self.now, recorded_by="n", **data)
        self.act(
            lambda: R.record_reading(self.session, self.protocol, new, actor=NURSE, now=self.now)
        )

    @rule(escort=mostly_true, consent=mostly_true, food_min=st.sampled_from([None, 30, 200]))
    def run_checks(self, escort, consent, food_min):
        inputs = inputs_for(
            self.protocol,
            escort_confirmed=escort,
            consent_on_file=consent,
            last_food_at=None if food_min is None else self.now - minutes(food_min),
        )
        self.act(
            lambda: R.run_pre_dose_checks(
                self.session, self.protocol, inputs, actor=NURSE, now=self.now
            )
        )

    @precondition(lambda self: self.session.state is S.deferred)
    @rule(data=st.data())
    def override(self, data):
        rule_id = data.draw(st.sampled_from([r.rule_id for r in self.session.deferred_reasons]))
        self.act(
            lambda: R.override_check(
                self.session, rule_id=rule_id, reason="judged safe", actor=PRESCRIBER, now=self.now
            )
        )

    @rule()
    def start_dose(self):
        self.act(
            lambda: R.start_dose(
                self.session, self.protocol, dose_for(self.protocol), actor=NURSE, now=self.now
            )
        )

    @rule()
    def record_device(self):
        self.act(lambda: R.record_device(self.session, self.protocol, actor=NURSE, now=self.now))

    @rule(reason=st.sampled_from([None, "patient asked to stop"]))
    def end_dose(self, reason):
        self.act(
            lambda: R.end_dose(
                self.session, self.protocol, actor=NURSE, now=self.now, reason=reason
            )
        )

    @rule(escort=mostly_true, judged=mostly_true, ready=st.sampled_from([60, 60, None]))
    def discharge(self, escort, judged, ready):
        inputs = DischargeInputs(
            escort_present=escort, clinician_judges_stable=judged, ready_without_minimum_min=ready
        )
        outcome = self.act(
            lambda: R.discharge(self.session, self.protocol, inputs, actor=NURSE, now=self.now)
        )
        if outcome is not None:
            s = outcome.session
            evaluation = evaluate_discharge(
                self.protocol,
                readings=s.readings,
                adverse_events=s.adverse_events,
                checked_in_at=s.checked_in_at,
                dose_started_at=s.dose_started_at,
                dose_ended_at=s.dose_ended_at,
                inputs=inputs,
                at=s.discharge.at,
            )
            assert evaluation.ok
            assert s.discharge.at >= evaluation.observation_ends_at

    @rule()
    def pause_or_resume(self):
        if self.session.infusion_paused:
            self.act(lambda: R.resume_infusion(self.session, actor=PRESCRIBER, now=self.now))
        else:
            self.act(
                lambda: R.pause_infusion(
                    self.session, self.protocol, reason="hold", actor=NURSE, now=self.now
                )
            )

    @rule(new_dose=st.sampled_from([Decimal(20), Decimal(60), Decimal(61)]))
    def titrate(self, new_dose):
        self.act(
            lambda: R.titrate_dose(
                self.session,
                self.protocol,
                new_dose_mg=new_dose,
                reason="response",
                actor=PRESCRIBER,
                now=self.now,
            )
        )

    @precondition(lambda self: any(not r.voided for r in self.session.readings))
    @rule(data=st.data())
    def void(self, data):
        target = data.draw(st.sampled_from([r.id for r in self.session.readings if not r.voided]))
        self.act(
            lambda: R.void_reading(
                self.session, reading_id=target, reason="wrong", actor=NURSE, now=self.now
            )
        )

    @rule(severity=st.sampled_from(list(AdverseEventSeverity)))
    def adverse(self, severity):
        self.counter += 1
        event = AdverseEvent(
            id=f"ae{self.counter}",
            kind=AdverseEventKind.nausea,
            severity=severity,
            onset_at=self.now,
            recorded_at=self.now,
            recorded_by="n",
        )
        self.act(lambda: R.record_adverse_event(self.session, event, actor=NURSE, now=self.now))

    @precondition(lambda self: any(e.open for e in self.session.adverse_events))
    @rule()
    def resolve(self):
        event = next(e for e in self.session.adverse_events if e.open)
        self.act(
            lambda: R.update_adverse_event(
                self.session,
                event_id=event.id,
                outcome=AdverseEventOutcome.resolved,
                actor=NURSE,
                now=self.now,
            )
        )

    # Rarely: a stop ends the run, and the interesting paths are long.
    @rule(who=st.sampled_from([NURSE, PRESCRIBER]), chance=st.integers(0, 9))
    def stop(self, who, chance):
        if chance:
            return
        self.act(
            lambda: R.stop(
                self.session,
                reason=R.StopReason.clinical_decision,
                note="n",
                actor=who,
                now=self.now,
            )
        )

    @invariant()
    def valid(self):
        if hasattr(self, "session"):
            if currently_in_test_context():
                event(f"state {self.session.state.value}")
            assert R.invariant_violations(self.session, self.protocol) == []
            if self.session.state is S.discharged:
                assert self.session.discharge is not None
                anchor = (
                    self.session.dose_started_at
                    if self.protocol.discharge.observation_anchor == "dose_start"
                    else self.session.dose_ended_at
                )
                assert self.session.discharge.at - anchor >= minutes(
                    self.protocol.discharge.min_observation_min
                )
                latest_moaa = [
                    r for r in self.session.active_readings if r.value(Measure.moaa_s) is not None
                ][-1]
                assert latest_moaa.moaa_s == 5


SessionMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSessionMachine = SessionMachine.TestCase


def test_the_hypothesis_machine_can_reach_discharge():
    # Guard against a machine that only ever refuses: one scripted run through its rules.
    machine = SessionMachine()
    machine.start(IV)
    machine.check_in()
    machine.record_reading({}, True)
    machine.run_checks(True, True, None)
    assert machine.session.state is S.cleared
    machine.start_dose()
    for _ in range(4):
        machine.wait(10)
        machine.record_reading({}, True)
    machine.end_dose(None)
    for _ in range(13):
        machine.wait(5)
        machine.record_reading({}, True)
    machine.discharge(True, True, None)
    assert machine.session.state is S.discharged
    machine.stop(PRESCRIBER, 0)
    assert machine.session.state is S.discharged
    machine.valid()


def test_session_status_for_worklists():
    session = dosing(IV)
    at = DOSE_START + minutes(20)
    session = R.record_reading(
        session, IV, reading(at, systolic_mmhg=190, diastolic_mmhg=90), actor=NURSE, now=at
    ).session
    status = R.session_status(session, IV, now=DOSE_START + minutes(32), clinic_timezone="UTC")
    assert status.state is S.dosing
    assert [a.threshold_id for a in status.open_alarms] == ["systolic_hold"]
    # The 10-minute reading was missed (the 20-minute one lacks HR and SpO2: missed too).
    assert [d.due_at for d in status.missed_readings] == [
        DOSE_START + minutes(10),
        DOSE_START + minutes(20),
    ]
    assert [d.due_at for d in status.due_readings] == [DOSE_START + minutes(30)]
    assert status.observation_ends_at is None and status.discharge_blockers == ()

    monitored, end = monitoring(IV)
    status = R.session_status(monitored, IV, now=end + minutes(5), clinic_timezone="UTC")
    assert status.observation_ends_at == end + minutes(60)
    assert "min_observation" in [r.rule_id for r in status.discharge_blockers]
    ready, at = ready_to_discharge(IV)
    assert R.session_status(ready, IV, now=at, clinic_timezone="UTC").discharge_blockers == ()

    deferred = run_checks(IV, escort_confirmed=False)
    assert [
        r.rule_id
        for r in R.session_status(deferred, IV, now=T0, clinic_timezone="UTC").deferred_reasons
    ] == ["escort_confirmed"]
