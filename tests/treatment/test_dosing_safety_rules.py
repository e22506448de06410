"""Dosing-safety defects in the pure rules and the scheduler: overrides scoped to their check
run, spacing re-checked at dose start, no back-dated baseline, the plan's pre-dose readings,
check-in on the clinic date, and bookings that keep the spacing and never start in the past."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from ketaflow.treatment import rules as R
from ketaflow.treatment.errors import RuleViolation
from ketaflow.treatment.scheduling import (
    OpeningHours,
    propose_booster,
    propose_induction,
    propose_maintenance,
    spacing_conflicts,
)
from treatment.treatment_builders import (
    DOSE_START,
    ESK,
    IV,
    NURSE,
    ORAL,
    PRESCRIBER,
    T0,
    checked_in,
    cleared,
    dose_for,
    dosing,
    inputs_for,
    minutes,
    normal_reading,
    reading,
    scheduled,
)

S = R.SessionState
NY = ZoneInfo("America/New_York")
WEEKDAYS = OpeningHours(
    timezone="America/New_York", weekly={d: (time(8), time(17)) for d in range(5)}
)
MONDAY = date(2026, 3, 2)


def at_ny(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=NY).astimezone(UTC)


def _deferred_on_bp(systolic: int, diastolic: int, *, escort: bool = False) -> R.DosingSession:
    session = R.record_reading(
        checked_in(IV),
        IV,
        normal_reading(T0 + minutes(1), systolic_mmhg=systolic, diastolic_mmhg=diastolic),
        actor=NURSE,
        now=T0 + minutes(1),
    ).session
    return R.run_pre_dose_checks(
        session, IV, inputs_for(IV, escort_confirmed=escort), actor=NURSE, now=T0 + minutes(2)
    ).session


# ---------------------------------------------------------------------------------------------
# 1. Overrides


def test_an_override_is_for_its_run_and_value_only():
    deferred = _deferred_on_bp(184, 96)
    overridden = R.override_check(
        deferred,
        rule_id="pre_dose_bp",
        reason="usual for her",
        actor=PRESCRIBER,
        now=T0 + minutes(3),
    ).session
    assert overridden.state is S.deferred  # the escort is still missing
    assert overridden.overrides[0].check_run == 1
    assert "184/96" in (overridden.overrides[0].overridden_result or "")
    worse = R.record_reading(
        overridden,
        IV,
        normal_reading(T0 + minutes(10), systolic_mmhg=228, diastolic_mmhg=128),
        actor=NURSE,
        now=T0 + minutes(10),
    ).session
    rerun = R.run_pre_dose_checks(
        worse, IV, inputs_for(IV), actor=NURSE, now=T0 + minutes(11)
    ).session
    assert rerun.state is S.deferred
    assert [r.rule_id for r in rerun.deferred_reasons] == ["pre_dose_bp"]
    assert rerun.overridden_rule_ids == frozenset()
    assert len(rerun.overrides) == 1  # kept in the history
    with pytest.raises(RuleViolation) as caught:
        R.start_dose(rerun, IV, dose_for(IV), actor=NURSE, now=T0 + minutes(12))
    assert caught.value.code == "invalid_transition"


def test_a_stored_override_without_a_run_number_belongs_to_the_run_before_it():
    deferred = _deferred_on_bp(184, 96, escort=True)
    legacy = R.Override(
        rule_id="pre_dose_bp", reason="stored before runs were numbered", by="p", at=T0 + minutes(3)
    )
    old = deferred.model_copy(update={"overrides": (legacy,)})
    assert old.overridden_rule_ids == {"pre_dose_bp"}
    rerun = R.run_pre_dose_checks(old, IV, inputs_for(IV), actor=NURSE, now=T0 + minutes(4))
    assert rerun.session.state is S.deferred
    assert rerun.session.overridden_rule_ids == frozenset()


# ---------------------------------------------------------------------------------------------
# 2. Spacing again at the dose itself


def test_dose_start_refuses_a_dose_given_since_the_checks():
    session = cleared(IV)  # the checks saw no earlier dose
    other_dose = T0 + minutes(6)  # another session of the patient's, dosed meanwhile
    with pytest.raises(RuleViolation) as caught:
        R.start_dose(
            session, IV, dose_for(IV), actor=NURSE, now=DOSE_START, last_dose_at=other_dose
        )
    assert caught.value.code == "dose_spacing"
    assert caught.value.reasons[0].rule_id == "dose_spacing"
    # 2 clinic days later is fine (the IV protocol's minimum, Murrough 2013, reference §2).
    two_days_ago = DOSE_START - timedelta(days=2)
    started = R.start_dose(
        session, IV, dose_for(IV), actor=NURSE, now=DOSE_START, last_dose_at=two_days_ago
    )
    assert started.session.state is S.dosing


def test_a_spacing_override_holds_only_for_the_dose_its_run_saw():
    yesterday = T0 - timedelta(days=1)
    session = R.record_reading(
        checked_in(IV), IV, normal_reading(T0 + minutes(1)), actor=NURSE, now=T0 + minutes(1)
    ).session
    deferred = R.run_pre_dose_checks(
        session, IV, inputs_for(IV, last_dose_at=yesterday), actor=NURSE, now=T0 + minutes(2)
    ).session
    assert [r.rule_id for r in deferred.deferred_reasons] == ["dose_spacing"]
    assert deferred.last_check_run.last_dose_at == yesterday
    ok = R.override_check(
        deferred,
        rule_id="dose_spacing",
        reason="booster agreed",
        actor=PRESCRIBER,
        now=T0 + minutes(3),
    ).session
    assert ok.state is S.cleared
    started = R.start_dose(
        ok, IV, dose_for(IV), actor=NURSE, now=DOSE_START, last_dose_at=yesterday
    )
    assert started.session.state is S.dosing
    with pytest.raises(RuleViolation) as caught:
        R.start_dose(
            ok, IV, dose_for(IV), actor=NURSE, now=DOSE_START, last_dose_at=T0 + minutes(5)
        )
    assert caught.value.code == "dose_spacing"


def test_dose_start_spacing_counts_clinic_days():
    # 23:30 in New York on 1 March is 04:30 UTC on 2 March: the same UTC day as T0, but one
    # clinic day earlier, which the oral protocol's 1 day allows.
    evening_before = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)
    session = cleared(ORAL)
    dose = R.AdministeredDose(dose_mg=100)
    with pytest.raises(RuleViolation):
        R.start_dose(session, ORAL, dose, actor=NURSE, now=DOSE_START, last_dose_at=evening_before)
    started = R.start_dose(
        session,
        ORAL,
        dose,
        actor=NURSE,
        now=DOSE_START,
        last_dose_at=evening_before,
        clinic_timezone="America/New_York",
    )
    assert started.session.state is S.dosing


# ---------------------------------------------------------------------------------------------
# 3. Baselines and the plan's pre-dose readings


def test_a_reading_dated_before_the_dose_start_is_refused_after_it_started():
    session = dosing(IV)
    late = normal_reading(DOSE_START - minutes(1), systolic_mmhg=150)
    with pytest.raises(RuleViolation) as caught:
        R.record_reading(session, IV, late, actor=NURSE, now=DOSE_START + minutes(30))
    assert [r.rule_id for r in caught.value.reasons] == ["reading_before_dose_start"]
    assert "taken_at" in caught.value.reasons[0].message
    # A reading taken after the start but entered late is an ordinary late entry.
    ok = normal_reading(DOSE_START + minutes(10))
    assert R.record_reading(session, IV, ok, actor=NURSE, now=DOSE_START + minutes(30)).session


def test_a_voided_pre_dose_reading_may_still_be_corrected_with_its_own_time():
    session = dosing(IV)
    baseline = session.readings[0]
    voided = R.void_reading(
        session,
        reading_id=baseline.id,
        reason="typed into the wrong chart",
        actor=NURSE,
        now=DOSE_START + minutes(20),
    ).session
    correction = normal_reading(baseline.taken_at).model_copy(
        update={"corrects_reading_id": baseline.id}
    )
    fixed = R.record_reading(voided, IV, correction, actor=NURSE, now=DOSE_START + minutes(21))
    assert fixed.session.readings[-1].corrects_reading_id == baseline.id


def test_the_plans_pre_dose_readings_are_a_hard_stop_before_dosing():
    session = R.record_reading(
        checked_in(ESK),
        ESK,
        reading(T0 + minutes(1), systolic_mmhg=124, diastolic_mmhg=78, heart_rate_bpm=72),
        actor=NURSE,
        now=T0 + minutes(1),
    ).session
    deferred = R.run_pre_dose_checks(
        session, ESK, inputs_for(ESK), actor=NURSE, now=T0 + minutes(2)
    ).session
    assert [r.rule_id for r in deferred.deferred_reasons] == ["required_reading_before_dosing"]
    message = deferred.deferred_reasons[0].message
    assert all(m in message for m in ("spo2_percent", "moaa_s", "cadss6"))
    with pytest.raises(RuleViolation) as caught:
        R.override_check(
            deferred,
            rule_id="required_reading_before_dosing",
            reason="x",
            actor=PRESCRIBER,
            now=T0 + minutes(3),
        )
    assert caught.value.code == "not_overridable"


# ---------------------------------------------------------------------------------------------
# 12. Check-in date


def test_check_in_only_on_the_scheduled_clinic_date():
    session = scheduled(IV)  # T0 = 2 March 14:00 UTC = 09:00 in New York
    with pytest.raises(RuleViolation) as caught:
        R.check_in(session, actor=NURSE, now=T0 - timedelta(days=3))
    assert caught.value.code == "not_scheduled_today"
    assert caught.value.reasons[0].rule_id == "check_in_date"
    # 02:00 UTC on 3 March is still 2 March in New York.
    late_evening = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
    with pytest.raises(RuleViolation):
        R.check_in(session, actor=NURSE, now=late_evening)
    assert (
        R.check_in(
            session, actor=NURSE, now=late_evening, clinic_timezone="America/New_York"
        ).session.state
        is S.checked_in
    )


# ---------------------------------------------------------------------------------------------
# 2 and 4. Bookings keep the patient's spacing and never start in the past


def test_spacing_conflicts_look_both_ways_on_the_clinic_calendar():
    planned = [at_ny(MONDAY, 9), at_ny(MONDAY + timedelta(days=4), 9)]  # Mon and Fri
    assert spacing_conflicts(IV, MONDAY + timedelta(days=1), planned, WEEKDAYS) == planned[:1]
    assert spacing_conflicts(IV, MONDAY + timedelta(days=2), planned, WEEKDAYS) == []
    assert spacing_conflicts(IV, MONDAY + timedelta(days=3), planned, WEEKDAYS) == planned[1:]


def test_a_booster_skips_days_too_close_to_the_patients_planned_sessions():
    planned = [at_ny(MONDAY + timedelta(days=d), 9) for d in (2, 4)]  # Wed, Fri
    booster = propose_booster(
        IV,
        last_dose_at=at_ny(MONDAY, 9),
        hours=WEEKDAYS,
        chairs=["A"],
        bookings=[],
        preferred_time=time(10),
        patient_sessions=planned,
    )
    # Wed and Fri are the patient's; Thu is 1 day from both: the next day 2 days clear is Mon.
    assert booster.start.astimezone(NY).date() == MONDAY + timedelta(days=7)


def test_maintenance_skips_days_too_close_to_the_patients_planned_sessions():
    planned = [at_ny(MONDAY + timedelta(days=7), 9)]  # an induction session next Monday
    sessions = propose_maintenance(
        IV,
        last_dose_at=at_ny(MONDAY, 9),
        count=2,
        interval_days=7,
        hours=WEEKDAYS,
        chairs=["A"],
        bookings=[],
        patient_sessions=planned,
    )
    assert [s.start.astimezone(NY).date() for s in sessions] == [
        MONDAY + timedelta(days=9),  # Wednesday, 2 days after the planned Monday
        MONDAY + timedelta(days=16),
    ]


def test_induction_and_maintenance_never_start_before_now():
    now = at_ny(MONDAY, 15)
    series = propose_induction(
        IV, start_on=MONDAY, hours=WEEKDAYS, chairs=["A"], bookings=[], not_before=now
    )
    assert series[0].start >= now
    assert series[0].start.astimezone(NY).date() == MONDAY  # 15:00 + 115 min fits before 17:00
    late = at_ny(MONDAY, 16)
    series = propose_induction(
        IV, start_on=MONDAY, hours=WEEKDAYS, chairs=["A"], bookings=[], not_before=late
    )
    assert series[0].start.astimezone(NY).date() == MONDAY + timedelta(days=1)
    daily = propose_maintenance(
        ORAL,
        last_dose_at=at_ny(MONDAY - timedelta(days=1), 9),
        count=1,
        interval_days=1,
        hours=WEEKDAYS,
        chairs=["A"],
        bookings=[],
        not_before=now,
    )
    assert daily[0].start >= now


def test_no_slot_says_when_the_patients_own_sessions_filled_the_horizon():
    every_day = [at_ny(MONDAY + timedelta(days=d), 9) for d in range(0, 12)]
    with pytest.raises(RuleViolation) as caught:
        propose_booster(
            IV,
            last_dose_at=at_ny(MONDAY, 9),
            hours=WEEKDAYS,
            chairs=["A"],
            bookings=[],
            horizon_days=5,
            patient_sessions=every_day,
        )
    assert caught.value.code == "no_free_slot"
    assert "too close to the patient's other sessions" in caught.value.reasons[0].message
