"""Readings: plausibility, alarms by phase and severity, and due/done/missed planned readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketaflow.treatment.errors import InvalidReading
from ketaflow.treatment.monitoring import (
    PLAUSIBLE_RANGES,
    DueStatus,
    Reading,
    evaluate_alarms,
    latest_reading_with,
    missed_readings,
    phase_at,
    reading_schedule,
    validate_reading,
)
from ketaflow.treatment.protocols import (
    DEFAULT_PROTOCOLS,
    Measure,
    Phase,
    ProtocolId,
    Severity,
)

IV = DEFAULT_PROTOCOLS[ProtocolId.iv_racemic_infusion]
ESK = DEFAULT_PROTOCOLS[ProtocolId.intranasal_esketamine_trd]
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def m(n: float) -> timedelta:
    return timedelta(minutes=n)


def r(rid: str, at: datetime, **values) -> Reading:
    return Reading(id=rid, taken_at=at, recorded_by="n", **values)


def test_plausible_reading_passes():
    validate_reading(
        r(
            "a",
            T0,
            systolic_mmhg=120,
            diastolic_mmhg=80,
            heart_rate_bpm=70,
            spo2_percent=97,
            respiratory_rate_per_min=12,
            moaa_s=5,
            cadss6=3,
        )
    )


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({}, "reading"),
        ({"systolic_mmhg": 301, "diastolic_mmhg": 80}, "systolic_mmhg"),
        ({"systolic_mmhg": 120}, "diastolic_mmhg"),
        ({"systolic_mmhg": 120, "diastolic_mmhg": 120}, "diastolic_mmhg"),
        ({"heart_rate_bpm": 19}, "heart_rate_bpm"),
        ({"spo2_percent": 101}, "spo2_percent"),
        ({"respiratory_rate_per_min": -1}, "respiratory_rate_per_min"),
        ({"moaa_s": 6}, "moaa_s"),
        ({"cadss6": 25}, "cadss6"),
    ],
)
def test_impossible_readings_name_the_field(values, field):
    with pytest.raises(InvalidReading) as caught:
        validate_reading(r("a", T0, **values))
    assert field in [f for f, _ in caught.value.errors]
    assert caught.value.status == 422


def test_naive_times_are_refused():
    with pytest.raises(InvalidReading):
        validate_reading(r("a", T0.replace(tzinfo=None), heart_rate_bpm=70))


@settings(max_examples=100, deadline=None)
@given(
    measure=st.sampled_from(list(PLAUSIBLE_RANGES)),
    value=st.integers(min_value=-50, max_value=400),
)
def test_validation_matches_the_plausible_ranges(measure, value):
    values = {measure.value: value}
    if measure in (Measure.systolic, Measure.diastolic):
        values = {"systolic_mmhg": 299, "diastolic_mmhg": 21, measure.value: value}
    low, high = PLAUSIBLE_RANGES[measure]
    reading = r("a", T0, **values)
    plausible_pair = reading.diastolic_mmhg is None or reading.diastolic_mmhg < (
        reading.systolic_mmhg
    )
    if low <= value <= high and plausible_pair:
        validate_reading(reading)
    else:
        with pytest.raises(InvalidReading):
            validate_reading(reading)


def test_phase_follows_the_dose_times():
    assert phase_at(T0, None, None) is Phase.pre_dose
    assert phase_at(T0, T0 + m(1), None) is Phase.pre_dose
    assert phase_at(T0 + m(1), T0 + m(1), None) is Phase.dosing
    assert phase_at(T0 + m(40), T0, T0 + m(40)) is Phase.monitoring


def test_iv_hold_alarm_during_the_infusion_but_not_before_dosing():
    high = r("a", T0, systolic_mmhg=185, diastolic_mmhg=95)
    (alarm,) = evaluate_alarms(high, IV, Phase.dosing)
    assert (alarm.threshold_id, alarm.severity, alarm.limit) == (
        "systolic_hold",
        Severity.critical,
        Decimal(180),
    )
    assert alarm.unconfirmed and alarm.id == "a:systolic_hold"
    assert evaluate_alarms(high, IV, Phase.pre_dose) == ()
    assert (
        evaluate_alarms(r("b", T0, systolic_mmhg=180, diastolic_mmhg=100), IV, Phase.dosing) == ()
    )


def test_only_the_most_severe_alarm_per_measure():
    (alarm,) = evaluate_alarms(r("a", T0, spo2_percent=88), IV, Phase.monitoring)
    assert alarm.threshold_id == "spo2_critical"
    (alarm,) = evaluate_alarms(r("a", T0, spo2_percent=92), IV, Phase.monitoring)
    assert alarm.threshold_id == "spo2_low" and alarm.severity is Severity.warning
    assert evaluate_alarms(r("a", T0, spo2_percent=94), IV, Phase.monitoring) == ()


@pytest.mark.parametrize(
    ("moaa_s", "expected"),
    [
        (5, None),
        (4, None),
        (3, "sedation_deep"),
        (2, "sedation_deep"),
        (1, "sedation_unresponsive"),
    ],
)
def test_sedation_alarms(moaa_s, expected):
    alarms = evaluate_alarms(r("a", T0, moaa_s=moaa_s), ESK, Phase.monitoring)
    assert [a.threshold_id for a in alarms] == ([expected] if expected else [])


def test_esketamine_bp_alarm_is_the_label_threshold_and_confirmed():
    alarms = evaluate_alarms(
        r("a", T0, systolic_mmhg=150, diastolic_mmhg=95), ESK, Phase.monitoring
    )
    assert {a.threshold_id for a in alarms} == {"systolic_above_label", "diastolic_above_label"}
    assert not any(a.unconfirmed for a in alarms)


def test_voided_readings_raise_nothing():
    voided = r("a", T0, spo2_percent=80).model_copy(
        update={"voided_at": T0, "voided_by": "n", "void_reason": "probe off"}
    )
    assert evaluate_alarms(voided, IV, Phase.dosing) == ()
    assert latest_reading_with([voided], Measure.spo2) is None


VITALS = {"systolic_mmhg": 120, "diastolic_mmhg": 80, "heart_rate_bpm": 70, "spo2_percent": 98}


def iv_schedule(readings, *, now, dose_ended_at=None, closed_at=None):
    return reading_schedule(
        IV.monitoring,
        readings=readings,
        checked_in_at=T0,
        dose_started_at=T0 + m(10),
        dose_ended_at=dose_ended_at,
        closed_at=closed_at,
        now=now,
        clinic_tz=UTC,
    )


def test_iv_cadence_every_10_min_during_and_every_15_after():
    start = T0 + m(10)
    schedule = iv_schedule([], now=start + m(100), dose_ended_at=start + m(40))
    during = [d.due_at - start for d in schedule if d.point_id == "during_infusion"]
    after = [d.due_at - (start + m(40)) for d in schedule if d.point_id == "after_infusion"]
    assert during == [m(10), m(20), m(30)]
    assert after == [m(15), m(30), m(45), m(60), m(75)]
    # now = dose end + 60: the 75-min reading is upcoming, earlier ones missed.
    statuses = [d.status for d in schedule if d.point_id == "after_infusion"]
    assert statuses[-1] is DueStatus.upcoming
    assert statuses[-2] is DueStatus.due
    assert set(statuses[:-2]) == {DueStatus.missed}


def test_readings_inside_the_window_satisfy_a_point_and_may_be_split():
    start = T0 + m(10)
    readings = [
        r("bp", start + m(13), systolic_mmhg=130, diastolic_mmhg=85, heart_rate_bpm=80),
        r("ox", start + m(8), spo2_percent=97),
        r("late", start + m(26), **VITALS),
    ]
    schedule = iv_schedule(readings, now=start + m(35))
    during = [d for d in schedule if d.point_id == "during_infusion"]
    # +30 is satisfied by the +26 reading (window 25-35); +40 is due from +35.
    assert [d.status for d in during] == [
        DueStatus.done,
        DueStatus.missed,
        DueStatus.done,
        DueStatus.due,
    ]
    assert set(during[0].reading_ids) == {"bp", "ox"}
    assert [d.point_id for d in missed_readings(schedule)] == ["baseline", "during_infusion"]


def test_open_ended_infusion_lists_up_to_the_next_reading():
    start = T0 + m(10)
    schedule = iv_schedule([], now=start + m(23))
    during = [d for d in schedule if d.point_id == "during_infusion"]
    assert [d.due_at - start for d in during] == [m(10), m(20), m(30)]
    assert [d.status for d in during] == [DueStatus.missed, DueStatus.due, DueStatus.upcoming]


def test_pre_dose_reading_is_due_then_missed_once_the_dose_starts():
    due = reading_schedule(
        IV.monitoring,
        readings=[],
        checked_in_at=T0,
        dose_started_at=None,
        dose_ended_at=None,
        closed_at=None,
        now=T0 + m(5),
        clinic_tz=UTC,
    )
    assert [(d.point_id, d.status) for d in due] == [("baseline", DueStatus.due)]
    assert (
        reading_schedule(
            IV.monitoring,
            readings=[],
            checked_in_at=None,
            dose_started_at=None,
            dose_ended_at=None,
            closed_at=None,
            now=T0,
            clinic_tz=UTC,
        )
        == []
    )
    missed = iv_schedule([], now=T0 + m(11))
    assert next(d for d in missed if d.point_id == "baseline").status is DueStatus.missed


# A clinic in New York: 09:00 EST on Monday 2 March 2026 (T0) is 14:00 UTC.
NY = ZoneInfo("America/New_York")
BASELINE = {**VITALS, "respiratory_rate_per_min": 14, "moaa_s": 5, "cadss6": 0}


def _baseline_point(readings, *, now, dose_started_at=None, clinic_tz=NY):
    schedule = reading_schedule(
        IV.monitoring,
        readings=readings,
        checked_in_at=T0,
        dose_started_at=dose_started_at,
        dose_ended_at=None,
        closed_at=None,
        now=now,
        clinic_tz=clinic_tz,
    )
    return next(d for d in schedule if d.point_id == "baseline")


def test_a_pre_dose_reading_from_an_earlier_clinic_day_is_due_again():
    # checked in Monday, the baseline taken, deferred; Tuesday it is due again, as the pre-dose
    # checks want that day's readings (rules._pre_dose_readings_since)
    monday = [r("mon", T0 + m(5), **BASELINE)]
    assert _baseline_point(monday, now=T0 + m(30)).status is DueStatus.done
    tuesday = T0 + timedelta(days=1)
    due = _baseline_point(monday, now=tuesday)
    assert due.status is DueStatus.due and due.reading_ids == ()
    assert due.window_start == datetime(2026, 3, 3, 0, 0, tzinfo=NY)  # Tuesday's start, NY
    again = _baseline_point([*monday, r("tue", tuesday + m(2), **BASELINE)], now=tuesday + m(3))
    assert again.status is DueStatus.done and again.reading_ids == ("tue",)
    # a dose given Tuesday on Monday's reading only: the pre-dose reading was missed
    late = _baseline_point(monday, now=tuesday + m(20), dose_started_at=tuesday + m(10))
    assert late.status is DueStatus.missed


def test_the_clinic_day_is_the_clinic_time_zones_not_utcs():
    # 23:30 Monday in New York is 04:30 Tuesday UTC: the same UTC day as Tuesday 09:00 NY,
    # but another clinic day
    late_monday = datetime(2026, 3, 2, 23, 30, tzinfo=NY)
    readings = [r("late", late_monday, **BASELINE)]
    tuesday_morning = datetime(2026, 3, 3, 9, 0, tzinfo=NY)
    assert late_monday.astimezone(UTC).date() == tuesday_morning.astimezone(UTC).date()
    assert _baseline_point(readings, now=tuesday_morning).status is DueStatus.due
    assert _baseline_point(readings, now=tuesday_morning, clinic_tz=UTC).status is DueStatus.done
    # without a clinic zone (discharge), every reading since check-in counts
    assert _baseline_point(readings, now=tuesday_morning, clinic_tz=None).status is DueStatus.done


def test_esketamine_40_minute_reading_window():
    first_device = T0 + m(10)
    plan = ESK.monitoring

    def status(reading_at, now):
        readings = [
            r(
                "x",
                reading_at,
                **VITALS,
                moaa_s=5,
                cadss6=0,
            )
        ]
        schedule = reading_schedule(
            plan,
            readings=readings,
            checked_in_at=T0,
            dose_started_at=first_device,
            dose_ended_at=first_device + m(5),
            closed_at=None,
            now=now,
            clinic_tz=UTC,
        )
        return next(d for d in schedule if d.point_id == "bp_40_min").status

    assert status(first_device + m(30), first_device + m(60)) is DueStatus.done
    assert status(first_device + m(50), first_device + m(60)) is DueStatus.done
    assert status(first_device + m(29), first_device + m(60)) is DueStatus.missed
    assert status(first_device + m(29), first_device + m(35)) is DueStatus.due
    assert status(first_device + m(29), first_device + m(20)) is DueStatus.upcoming


def test_pre_discharge_reading_is_due_until_the_session_closes():
    end = T0 + m(50)
    schedule = iv_schedule([], now=end + m(30), dose_ended_at=end)
    assert next(d for d in schedule if d.point_id == "before_discharge").status is DueStatus.due
    closed = iv_schedule([], now=end + m(90), dose_ended_at=end, closed_at=end + m(61))
    assert next(d for d in closed if d.point_id == "before_discharge").status is DueStatus.missed
    # No repeats are listed after the session closed.
    assert max(d.due_at for d in closed if d.point_id == "after_infusion") < end + m(61)
