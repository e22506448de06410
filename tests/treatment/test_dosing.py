"""Dose calculation: exact mg and mL, caps, ideal body weight, esketamine devices, fixed and
home doses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketaflow.treatment.dosing import (
    Sex,
    WeightBasis,
    bmi,
    calculate_device_dose,
    calculate_fixed_dose,
    calculate_weight_based_dose,
    check_home_dose,
    clinic_days_between,
    devine_ideal_body_weight_kg,
)
from ketaflow.treatment.errors import RuleViolation
from ketaflow.treatment.protocols import DEFAULT_PROTOCOLS, ProtocolId, apply_overrides

IV = DEFAULT_PROTOCOLS[ProtocolId.iv_racemic_infusion]
ESK = DEFAULT_PROTOCOLS[ProtocolId.intranasal_esketamine_trd]
ESK_SI = DEFAULT_PROTOCOLS[ProtocolId.intranasal_esketamine_mdd_si]
ORAL = DEFAULT_PROTOCOLS[ProtocolId.oral_racemic]
SL = DEFAULT_PROTOCOLS[ProtocolId.sublingual_racemic]
NOW = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")


def iv_dose(**kwargs):
    base = {"weight_kg": Decimal(80), "concentration_mg_per_ml": Decimal(10)}
    return calculate_weight_based_dose(IV.dose_rule, **(base | kwargs))


def test_standard_iv_dose_and_volume():
    dose = iv_dose(administration_minutes=40)
    assert dose.dose_mg == Decimal(40)
    assert dose.volume_ml == Decimal("4.00")
    assert dose.rate_mg_per_min == Decimal(1)
    assert dose.max_dose_mg == Decimal(60)
    assert not dose.capped and dose.weight_basis is WeightBasis.actual


def test_rounding_to_the_step_with_ties_toward_the_smaller_dose():
    # 0.5 x 73.3 = 36.65 -> 36.5 (nearest 0.5 mg step).
    assert iv_dose(weight_kg=Decimal("73.3")).dose_mg == Decimal("36.5")
    # 0.5 x 73.5 = 36.75: exactly between 36.5 and 37.0 -> 36.5.
    assert iv_dose(weight_kg=Decimal("73.5")).dose_mg == Decimal("36.5")
    # 0.5 x 73.6 = 36.8 -> 37.0.
    assert iv_dose(weight_kg=Decimal("73.6")).dose_mg == Decimal("37.0")


def test_volume_is_floored_to_the_syringe_step_never_above_the_dose():
    dose = iv_dose(weight_kg=Decimal("73.3"), concentration_mg_per_ml=Decimal(50))
    # 36.5 / 50 = 0.73 mL exactly.
    assert dose.volume_ml == Decimal("0.73")
    dose = iv_dose(weight_kg=Decimal(70), concentration_mg_per_ml=Decimal(3))
    # 35 / 3 = 11.666... -> 11.66 mL.
    assert dose.volume_ml == Decimal("11.66")


def test_titrated_mg_per_kg_must_stay_in_the_protocols_range():
    assert iv_dose(mg_per_kg=Decimal("0.75")).dose_mg == Decimal(60)
    with pytest.raises(RuleViolation) as caught:
        iv_dose(mg_per_kg=Decimal("0.8"))
    assert caught.value.rule_ids == ["mg_per_kg_out_of_range"]


def test_absolute_cap_applies():
    rule = apply_overrides(IV, {"dose_rule.max_dose_mg": 50}).dose_rule
    dose = calculate_weight_based_dose(
        rule, weight_kg=Decimal(120), concentration_mg_per_ml=Decimal(10)
    )
    assert dose.unrounded_dose_mg == Decimal(60)
    assert dose.dose_mg == Decimal(50) and dose.capped
    assert dose.volume_ml == Decimal("5.00")
    assert any("capped" in note for note in dose.notes)


def test_rounding_never_passes_the_mg_per_kg_maximum():
    # 0.75 x 42.4 = 31.8: the nearest step (32.0) is above the maximum, so 31.5.
    dose = iv_dose(weight_kg=Decimal("42.4"), mg_per_kg=Decimal("0.75"))
    assert (dose.dose_mg, dose.max_dose_mg, dose.capped) == (Decimal("31.5"), Decimal("31.5"), True)


def test_implausible_inputs_are_refused_together():
    with pytest.raises(RuleViolation) as caught:
        iv_dose(weight_kg=Decimal("0.5"), concentration_mg_per_ml=Decimal(0))
    assert set(caught.value.rule_ids) == {"weight_implausible", "concentration_invalid"}


def test_ideal_body_weight_when_the_clinic_turns_it_on():
    rule = apply_overrides(IV, {"dose_rule.use_ideal_body_weight_when_obese": True}).dose_rule
    # 120 kg, 175 cm: BMI 39.2 > 30. Devine (male): 50 + 2.3 x (175/2.54 - 60) = 70.46 kg.
    dose = calculate_weight_based_dose(
        rule,
        weight_kg=Decimal(120),
        concentration_mg_per_ml=Decimal(10),
        height_cm=Decimal(175),
        sex=Sex.male,
    )
    assert dose.weight_basis is WeightBasis.ideal
    assert dose.dosing_weight_kg == Decimal("70.5")
    assert dose.dose_mg == Decimal("35.0")
    # BMI 26: actual weight.
    lean = calculate_weight_based_dose(
        rule,
        weight_kg=Decimal(80),
        concentration_mg_per_ml=Decimal(10),
        height_cm=Decimal(175),
        sex=Sex.female,
    )
    assert lean.weight_basis is WeightBasis.actual and lean.dose_mg == Decimal(40)
    with pytest.raises(RuleViolation) as caught:
        calculate_weight_based_dose(
            rule, weight_kg=Decimal(120), concentration_mg_per_ml=Decimal(10)
        )
    assert caught.value.rule_ids == ["height_needed"]
    # Sex (other, unknown: None) matters only where the Devine formula is used.
    lean_other = calculate_weight_based_dose(
        rule, weight_kg=Decimal(60), concentration_mg_per_ml=Decimal(10), height_cm=Decimal(170)
    )
    assert lean_other.weight_basis is WeightBasis.actual and lean_other.dose_mg == Decimal(30)
    # Over the threshold, neither female nor male: the lower (female) Devine weight
    other = calculate_weight_based_dose(
        rule, weight_kg=Decimal(120), concentration_mg_per_ml=Decimal(10), height_cm=175
    )
    female = devine_ideal_body_weight_kg(Decimal(175), Sex.female).quantize(Decimal("0.1"))
    assert other.weight_basis is WeightBasis.ideal and other.dosing_weight_kg == female
    assert female < devine_ideal_body_weight_kg(Decimal(175), Sex.male)
    assert any("the cautious choice" in note for note in other.notes)


def test_bmi_and_devine_are_exact():
    assert bmi(Decimal(80), Decimal(200)) == Decimal(20)
    assert devine_ideal_body_weight_kg(Decimal("152.4"), Sex.female) == Decimal("45.5")
    assert devine_ideal_body_weight_kg(Decimal("152.4"), Sex.male) == Decimal(50)


@settings(max_examples=150, deadline=None)
@given(
    weight=st.decimals(min_value=30, max_value=250, places=1),
    mg_per_kg=st.decimals(min_value="0.1", max_value="0.75", places=2),
    concentration=st.sampled_from([Decimal(10), Decimal(50), Decimal(100), Decimal(3)]),
)
def test_dose_is_on_the_step_within_the_maximum_and_the_volume_never_exceeds_it(
    weight, mg_per_kg, concentration
):
    dose = iv_dose(weight_kg=weight, mg_per_kg=mg_per_kg, concentration_mg_per_ml=concentration)
    assert dose.dose_mg % IV.dose_rule.rounding_step_mg == 0
    assert dose.dose_mg <= IV.dose_rule.max_mg_per_kg * weight
    step = IV.dose_rule.rounding_step_mg
    if dose.capped:
        # Rounding up would pass the maximum: the dose is the maximum floored to the step.
        assert dose.dose_mg == dose.max_dose_mg
        assert Decimal(0) < dose.unrounded_dose_mg - dose.dose_mg < step
    else:
        assert abs(dose.dose_mg - dose.unrounded_dose_mg) <= step / 2
    assert dose.volume_ml * concentration <= dose.dose_mg
    assert dose.dose_mg - dose.volume_ml * concentration < Decimal("0.01") * concentration


def test_esketamine_first_dose_is_56_mg_in_two_devices():
    first = calculate_device_dose(ESK.dose_rule, dose_mg=56, prior_doses_mg=[])
    assert (first.device_count, first.first_dose, first.rest_between_devices_min) == (2, True, 5)
    with pytest.raises(RuleViolation) as caught:
        calculate_device_dose(ESK.dose_rule, dose_mg=84, prior_doses_mg=[])
    assert caught.value.rule_ids == ["esketamine_first_dose"]


def test_esketamine_84_mg_only_after_a_56_mg_start():
    assert calculate_device_dose(ESK.dose_rule, dose_mg=84, prior_doses_mg=[56]).device_count == 3
    assert calculate_device_dose(ESK.dose_rule, dose_mg=84, prior_doses_mg=[56, 84]).device_count
    with pytest.raises(RuleViolation) as caught:
        calculate_device_dose(ESK.dose_rule, dose_mg=84, prior_doses_mg=[84])
    assert caught.value.rule_ids == ["esketamine_start_required"]


def test_esketamine_mdd_with_suicidal_ideation_may_start_at_84_mg():
    assert calculate_device_dose(ESK_SI.dose_rule, dose_mg=84, prior_doses_mg=[]).device_count == 3


def test_esketamine_only_whole_allowed_doses():
    for bad in (28, 70, 112):
        with pytest.raises(RuleViolation) as caught:
            calculate_device_dose(ESK.dose_rule, dose_mg=bad, prior_doses_mg=[56])
        assert "esketamine_dose_not_allowed" in caught.value.rule_ids


def test_fixed_doses_stay_on_the_step_and_in_bounds():
    assert calculate_fixed_dose(SL.dose_rule, dose_mg=Decimal(50), first_dose=True).dose_mg == 50
    with pytest.raises(RuleViolation) as caught:
        calculate_fixed_dose(SL.dose_rule, dose_mg=Decimal(75), first_dose=True)
    assert caught.value.rule_ids == ["dose_out_of_range"]
    assert "first dose" in caught.value.reasons[0].message
    assert calculate_fixed_dose(SL.dose_rule, dose_mg=Decimal(75), first_dose=False).dose_mg == 75
    with pytest.raises(RuleViolation) as caught:
        calculate_fixed_dose(ORAL.dose_rule, dose_mg=Decimal(27), first_dose=False)
    assert caught.value.rule_ids == ["dose_not_on_step"]
    with pytest.raises(RuleViolation):
        calculate_fixed_dose(ORAL.dose_rule, dose_mg=Decimal(305), first_dose=False)
    solution = calculate_fixed_dose(
        ORAL.dose_rule, dose_mg=Decimal(100), first_dose=False, concentration_mg_per_ml=Decimal(30)
    )
    assert solution.volume_ml == Decimal("3.33")


def test_home_doses_are_kept_with_flags():
    record = check_home_dose(
        ORAL,
        dose_mg=Decimal(150),
        taken_at=NOW - timedelta(hours=2),
        now=NOW,
        prescribed_dose_mg=Decimal(100),
        previous_dose_at=NOW - timedelta(hours=12),
        clinic_tz=UTC_ZONE,
    )
    assert record.recorded_at == NOW
    assert [f.rule_id for f in record.flags] == ["above_prescribed_dose", "dose_spacing"]
    clean = check_home_dose(
        ORAL,
        dose_mg=Decimal(100),
        taken_at=NOW,
        now=NOW,
        prescribed_dose_mg=Decimal(100),
        previous_dose_at=NOW - timedelta(days=1),
        clinic_tz=UTC_ZONE,
    )
    assert clean.flags == ()


def test_home_doses_refused_for_esketamine_and_the_future():
    with pytest.raises(RuleViolation) as caught:
        check_home_dose(
            ESK,
            dose_mg=Decimal(0),
            taken_at=NOW + timedelta(minutes=1),
            now=NOW,
            prescribed_dose_mg=Decimal(56),
            previous_dose_at=None,
            clinic_tz=UTC_ZONE,
        )
    assert set(caught.value.rule_ids) == {
        "home_dosing_not_allowed",
        "taken_in_future",
        "dose_not_positive",
    }
    assert "REMS" in caught.value.reasons[0].source


def test_clinic_days_follow_the_clinics_calendar():
    new_york = ZoneInfo("America/New_York")
    evening = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)  # 22:00 on 2 March in New York
    morning = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    assert clinic_days_between(evening, morning, UTC_ZONE) == 0
    assert clinic_days_between(evening, morning, new_york) == 1
