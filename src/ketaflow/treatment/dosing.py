"""Dose calculation, exact to the milligram step and the syringe step, with Decimal.

- Weight-based (IV, IM, SC racemic ketamine): mg/kg x dosing weight, rounded to the protocol's
  step, capped at the protocol's maximum; the volume to draw from the product's concentration.
  Ideal body weight when BMI is over the threshold is an unconfirmed option (reference §2, U),
  off unless the clinic turns it on.
- Device (intranasal esketamine): whole 28 mg devices; 56 mg first; 84 mg only after a 56 mg
  start (label section 2, reference §1, H) unless the indication allows 84 mg first.
- Fixed (oral, sublingual racemic): the prescriber's mg within the protocol's bounds.
- Home doses (oral/sublingual maintenance): the patient's record is kept even when it breaks a
  rule; the broken rules come back as flags for the prescriber.

Pure: no database, no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from decimal import ROUND_DOWN, ROUND_HALF_DOWN, Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ketaflow.treatment.errors import Reason, RuleViolation
from ketaflow.treatment.protocols import DeviceDose, FixedDose, Protocol, WeightBasedDose

__all__ = [
    "DeviceDoseResult",
    "FixedDoseResult",
    "HomeDoseRecord",
    "Sex",
    "WeightBasedDoseResult",
    "WeightBasis",
    "bmi",
    "calculate_device_dose",
    "calculate_fixed_dose",
    "calculate_weight_based_dose",
    "check_home_dose",
    "clinic_days_between",
    "devine_ideal_body_weight_kg",
]

_SOURCE_ESKETAMINE = "SPRAVATO label section 2 (reference §1)"
_SOURCE_IBW = "Sanacora 2017 (attributed, reference §2): unconfirmed; Devine 1974 formula"


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sex(StrEnum):
    female = "female"
    male = "male"


class WeightBasis(StrEnum):
    actual = "actual"
    ideal = "ideal"


class WeightBasedDoseResult(_Value):
    dose_mg: Decimal
    mg_per_kg: Decimal
    weight_kg: Decimal
    dosing_weight_kg: Decimal
    weight_basis: WeightBasis
    unrounded_dose_mg: Decimal
    # The largest dose the protocol allows for this patient (mg/kg maximum, absolute cap).
    max_dose_mg: Decimal
    capped: bool
    concentration_mg_per_ml: Decimal
    volume_ml: Decimal
    administration_minutes: int
    # For an infusion: mg per minute over the administration time; None for a bolus.
    rate_mg_per_min: Decimal | None
    notes: tuple[str, ...] = ()


class DeviceDoseResult(_Value):
    dose_mg: int
    device_count: int
    device_mg: int
    rest_between_devices_min: int
    first_dose: bool


class FixedDoseResult(_Value):
    dose_mg: Decimal
    # Present when a product concentration (e.g. an oral solution in mg/mL) was given.
    volume_ml: Decimal | None = None


class HomeDoseRecord(_Value):
    """A dose the patient took at home, as reported, with any rules it broke as flags."""

    dose_mg: Decimal
    taken_at: datetime
    recorded_at: datetime
    flags: tuple[Reason, ...] = ()


def bmi(weight_kg: Decimal, height_cm: Decimal) -> Decimal:
    height_m = Decimal(height_cm) / 100
    return Decimal(weight_kg) / (height_m * height_m)


def devine_ideal_body_weight_kg(height_cm: Decimal, sex: Sex) -> Decimal:
    """Devine 1974: 50 kg (men) or 45.5 kg (women) + 2.3 kg per inch over 5 feet."""
    inches_over_5_ft = Decimal(height_cm) / Decimal("2.54") - 60
    base_kg = Decimal(50) if sex is Sex.male else Decimal("45.5")
    return base_kg + Decimal("2.3") * inches_over_5_ft


def _round_to_step(value: Decimal, step: Decimal) -> Decimal:
    # Nearest step, ties toward the smaller dose.
    return (value / step).quantize(Decimal(1), rounding=ROUND_HALF_DOWN) * step


def _floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).quantize(Decimal(1), rounding=ROUND_DOWN) * step


def calculate_weight_based_dose(
    rule: WeightBasedDose,
    *,
    weight_kg: Decimal,
    concentration_mg_per_ml: Decimal,
    mg_per_kg: Decimal | None = None,
    height_cm: Decimal | None = None,
    sex: Sex | None = None,
    administration_minutes: int = 0,
) -> WeightBasedDoseResult:
    """mg = mg/kg x dosing weight, rounded to `rule.rounding_step_mg`, capped at the lower of
    max mg/kg x dosing weight and the absolute cap; volume = mg / concentration, rounded to
    `rule.volume_step_ml` (never above the dose).

    `mg_per_kg` defaults to the protocol's; outside [min, max] it is refused. With
    `use_ideal_body_weight_when_obese`, a BMI above the threshold doses on Devine ideal body
    weight (when lower than the actual weight); the height is then required. The Devine formula
    takes the sex; for a patient recorded as neither female nor male, its lower (female) form.
    Raises `RuleViolation("dose_not_allowed", ...)` with every problem.
    """
    weight_kg = Decimal(weight_kg)
    concentration = Decimal(concentration_mg_per_ml)
    chosen_mg_per_kg = rule.default_mg_per_kg if mg_per_kg is None else Decimal(mg_per_kg)
    problems: list[Reason] = []
    if not Decimal(1) <= weight_kg <= Decimal(400):
        problems.append(Reason("weight_implausible", f"weight {weight_kg} kg is implausible"))
    if concentration <= 0:
        problems.append(Reason("concentration_invalid", "product concentration must be > 0"))
    if not rule.min_mg_per_kg <= chosen_mg_per_kg <= rule.max_mg_per_kg:
        problems.append(
            Reason(
                "mg_per_kg_out_of_range",
                f"{chosen_mg_per_kg} mg/kg is outside the protocol's "
                f"{rule.min_mg_per_kg}-{rule.max_mg_per_kg} mg/kg",
                "protocol dose rule",
            )
        )
    notes: list[str] = []
    dosing_weight = weight_kg
    basis = WeightBasis.actual
    if rule.use_ideal_body_weight_when_obese and not problems:
        # Height gives the BMI; sex is asked for only when the BMI is over the threshold, where
        # the (sex-specific) Devine ideal body weight is needed.
        patient_bmi = None if height_cm is None else bmi(weight_kg, Decimal(height_cm))
        if patient_bmi is None:
            problems.append(
                Reason(
                    "height_needed",
                    "the clinic doses obese patients on ideal body weight: record the height",
                    _SOURCE_IBW,
                )
            )
        elif patient_bmi > rule.obesity_bmi_threshold:
            assert height_cm is not None
            # The Devine formula is sex-specific. For a patient recorded as neither female nor
            # male the lower (female) ideal weight is used: the smaller dose, the cautious
            # side, and said so in the notes (a clinic choice, like the option itself).
            formula_sex = sex if sex is not None else Sex.female
            ideal = devine_ideal_body_weight_kg(Decimal(height_cm), formula_sex)
            if Decimal(0) < ideal < weight_kg:
                dosing_weight = ideal.quantize(Decimal("0.1"))
                basis = WeightBasis.ideal
                notes.append(
                    f"BMI {patient_bmi.quantize(Decimal('0.1'))} > "
                    f"{rule.obesity_bmi_threshold}: dosed on ideal body weight "
                    f"{dosing_weight} kg (unconfirmed clinic option)"
                    + (
                        ""
                        if sex is not None
                        else "; sex not recorded as female or male: the lower (female) "
                        "Devine formula, the cautious choice"
                    )
                )
    if problems:
        raise RuleViolation("dose_not_allowed", problems)

    unrounded = chosen_mg_per_kg * dosing_weight
    dose = _round_to_step(unrounded, rule.rounding_step_mg)
    max_dose = rule.max_mg_per_kg * dosing_weight
    if rule.max_dose_mg is not None:
        max_dose = min(max_dose, rule.max_dose_mg)
    max_dose = _floor_to_step(max_dose, rule.rounding_step_mg)
    capped = dose > max_dose
    if capped:
        notes.append(f"capped at the protocol maximum {max_dose} mg")
        dose = max_dose
    volume = _floor_to_step(dose / concentration, rule.volume_step_ml)
    rate = (
        (dose / administration_minutes).quantize(Decimal("0.001"))
        if administration_minutes > 0
        else None
    )
    return WeightBasedDoseResult(
        dose_mg=dose,
        mg_per_kg=chosen_mg_per_kg,
        weight_kg=weight_kg,
        dosing_weight_kg=dosing_weight,
        weight_basis=basis,
        unrounded_dose_mg=unrounded,
        max_dose_mg=max_dose,
        capped=capped,
        concentration_mg_per_ml=concentration,
        volume_ml=volume,
        administration_minutes=administration_minutes,
        rate_mg_per_min=rate,
        notes=tuple(notes),
    )


def calculate_device_dose(
    rule: DeviceDose, *, dose_mg: int, prior_doses_mg: Sequence[int]
) -> DeviceDoseResult:
    """Whole devices for an esketamine dose. `prior_doses_mg` are the doses given earlier in
    the patient's esketamine treatment. Refuses a dose the label does not allow."""
    problems: list[Reason] = []
    if dose_mg not in rule.allowed_doses_mg:
        problems.append(
            Reason(
                "esketamine_dose_not_allowed",
                f"{dose_mg} mg is not an allowed esketamine dose "
                f"({', '.join(str(d) for d in rule.allowed_doses_mg)} mg)",
                _SOURCE_ESKETAMINE,
            )
        )
    first_dose = len(prior_doses_mg) == 0
    if rule.first_dose_mg is not None and dose_mg != rule.first_dose_mg:
        if first_dose:
            problems.append(
                Reason(
                    "esketamine_first_dose",
                    f"the first esketamine dose is {rule.first_dose_mg} mg",
                    _SOURCE_ESKETAMINE,
                )
            )
        elif rule.first_dose_mg not in prior_doses_mg:
            problems.append(
                Reason(
                    "esketamine_start_required",
                    f"{dose_mg} mg only after a {rule.first_dose_mg} mg start",
                    _SOURCE_ESKETAMINE,
                )
            )
    if problems:
        raise RuleViolation("dose_not_allowed", problems)
    return DeviceDoseResult(
        dose_mg=dose_mg,
        device_count=dose_mg // rule.device_mg,
        device_mg=rule.device_mg,
        rest_between_devices_min=rule.rest_between_devices_min,
        first_dose=first_dose,
    )


def calculate_fixed_dose(
    rule: FixedDose,
    *,
    dose_mg: Decimal,
    first_dose: bool,
    concentration_mg_per_ml: Decimal | None = None,
) -> FixedDoseResult:
    """The prescriber's mg, which must be on the protocol's step and within its bounds (the
    start bound for a first dose)."""
    dose = Decimal(dose_mg)
    problems: list[Reason] = []
    if dose % rule.rounding_step_mg != 0:
        problems.append(
            Reason("dose_not_on_step", f"{dose} mg is not a multiple of {rule.rounding_step_mg} mg")
        )
    upper = rule.max_dose_mg
    if first_dose and rule.start_max_dose_mg is not None:
        upper = rule.start_max_dose_mg
    if not rule.min_dose_mg <= dose <= upper:
        problems.append(
            Reason(
                "dose_out_of_range",
                f"{dose} mg is outside {rule.min_dose_mg}-{upper} mg"
                + (" for a first dose" if upper != rule.max_dose_mg else ""),
                "protocol dose rule",
            )
        )
    if concentration_mg_per_ml is not None and Decimal(concentration_mg_per_ml) <= 0:
        problems.append(Reason("concentration_invalid", "product concentration must be > 0"))
    if problems:
        raise RuleViolation("dose_not_allowed", problems)
    volume = None
    if concentration_mg_per_ml is not None:
        volume = _floor_to_step(dose / Decimal(concentration_mg_per_ml), Decimal("0.01"))
    return FixedDoseResult(dose_mg=dose, volume_ml=volume)


def clinic_days_between(earlier: datetime, later: datetime, clinic_tz: tzinfo) -> int:
    """Calendar days between two instants, counted on the clinic's local calendar."""
    return (later.astimezone(clinic_tz).date() - earlier.astimezone(clinic_tz).date()).days


def check_home_dose(
    protocol: Protocol,
    *,
    dose_mg: Decimal,
    taken_at: datetime,
    now: datetime,
    prescribed_dose_mg: Decimal,
    previous_dose_at: datetime | None,
    clinic_tz: tzinfo,
) -> HomeDoseRecord:
    """Record a patient's at-home dose. Refuses only what cannot be recorded (home dosing not
    allowed by the protocol, a time in the future, a non-positive dose); a dose above the
    prescription or too soon after the last one is kept, with a flag."""
    dose = Decimal(dose_mg)
    refusals: list[Reason] = []
    if not protocol.home_dosing_allowed:
        refusals.append(
            Reason(
                "home_dosing_not_allowed",
                f"{protocol.name} is never taken at home",
                "REMS (reference §1)" if protocol.drug == "esketamine" else "protocol",
            )
        )
    if taken_at > now:
        refusals.append(Reason("taken_in_future", "a home dose cannot be in the future"))
    if dose <= 0:
        refusals.append(Reason("dose_not_positive", "dose must be more than 0 mg"))
    if refusals:
        raise RuleViolation("home_dose_refused", refusals)
    flags: list[Reason] = []
    if dose > Decimal(prescribed_dose_mg):
        flags.append(
            Reason(
                "above_prescribed_dose",
                f"{dose} mg is above the prescribed {prescribed_dose_mg} mg",
                "prescription",
            )
        )
    if (
        previous_dose_at is not None
        and clinic_days_between(previous_dose_at, taken_at, clinic_tz)
        < protocol.min_days_between_doses
    ):
        flags.append(
            Reason(
                "dose_spacing",
                f"taken within {protocol.min_days_between_doses} day(s) of the previous dose",
                "protocol minimum spacing",
            )
        )
    return HomeDoseRecord(dose_mg=dose, taken_at=taken_at, recorded_at=now, flags=tuple(flags))
