"""Doses and durations as people write them ("0.5mg/kg", "28mg", "2 devices", "40min"), turned
into the administrations the models take. Bad input raises PKInputError naming the parameter."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.models import (
    DEVICE_INTERVAL_MIN,
    DEVICE_MG,
    DRUGS,
    ROUTES,
    Administration,
)

# Sanity limits, not clinical rules: beyond these the input is a typo, not a plan.
WEIGHT_MIN_KG = 10.0
WEIGHT_MAX_KG = 350.0
DOSE_MIN_MG = 0.1  # a microgram-range "dose" is a unit slip (ug typed as mg), not a plan
DOSE_MAX_MG = 1000.0
DOSE_MAX_MG_PER_KG = 10.0
DURATION_MAX_MIN = 1440.0
AGE_MIN_YEARS = 1.0
AGE_MAX_YEARS = 110.0
# Esketamine: 56 or 84 mg in practice, 112 mg studied (label section 2; Perez-Ruixo 2021).
MAX_DEVICES = 4

_DOSE = re.compile(
    r"^\s*(?P<value>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>mg/kg|mg|devices?)\s*$", re.IGNORECASE
)
_DURATION = re.compile(
    r"^\s*(?P<value>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>min|mins|minutes?|m|h|hr|hours?|s|sec|seconds?|)\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DoseSpec:
    value: float
    unit: str  # "mg", "mg/kg" or "device"

    def __post_init__(self) -> None:
        if self.unit not in ("mg", "mg/kg", "device"):
            raise PKInputError("dose", f"unknown dose unit {self.unit!r}: use mg, mg/kg or devices")
        if not (isinstance(self.value, int | float) and math.isfinite(self.value)):
            raise PKInputError("dose", f"the dose must be a finite number, got {self.value!r}")
        if self.value <= 0:
            raise PKInputError("dose", f"the dose must be positive, got {self.value:g} {self.unit}")


def parse_dose(text: str) -> DoseSpec:
    """'0.5mg/kg', '35 mg', '2 devices'. A bare number is refused: whether 0.5 meant mg or
    mg/kg is the classic dosing error (ISMP: a dose always carries its unit)."""
    match = _DOSE.match(str(text))
    if not match:
        raise PKInputError(
            "dose",
            f"cannot read dose {text!r}: write the number with its unit, e.g. 0.5mg/kg, 35mg "
            "or 2 devices",
        )
    unit = match["unit"].lower()
    if unit.startswith("device"):
        unit = "device"
    return DoseSpec(float(match["value"]), unit)


def parse_duration(text: str | float | None) -> float:
    """Minutes from '40min', '1h', '90s', '40' (minutes) or a number of minutes."""
    if text is None:
        return 0.0
    if isinstance(text, int | float):
        minutes = float(text)
    else:
        match = _DURATION.match(text)
        if not match:
            raise PKInputError("duration", f"cannot read duration {text!r}: write e.g. 40min or 1h")
        value = float(match["value"])
        unit = match["unit"].lower()
        minutes = (
            value * 60.0
            if unit.startswith("h")
            else value / 60.0
            if unit.startswith("s")
            else value
        )
    if not math.isfinite(minutes) or minutes < 0:
        raise PKInputError("duration", f"the duration must be zero or positive, got {text!r}")
    if minutes > DURATION_MAX_MIN:
        raise PKInputError("duration", f"a duration over 24 h ({text!r}) is not a dose plan")
    return minutes


def check_weight(weight_kg: float) -> float:
    if not math.isfinite(weight_kg) or not WEIGHT_MIN_KG <= weight_kg <= WEIGHT_MAX_KG:
        raise PKInputError(
            "weight",
            f"weight {weight_kg!r} kg is not plausible (expected {WEIGHT_MIN_KG:g}-"
            f"{WEIGHT_MAX_KG:g} kg)",
        )
    return float(weight_kg)


def check_age(age_years: float | None) -> float | None:
    if age_years is None:
        return None
    if not math.isfinite(age_years) or not AGE_MIN_YEARS <= age_years <= AGE_MAX_YEARS:
        raise PKInputError("age", f"age {age_years!r} years is not plausible")
    return float(age_years)


def check_drug_route(drug: str, route: str) -> None:
    if drug not in DRUGS:
        raise PKInputError("drug", f"unknown drug {drug!r}; use one of {', '.join(DRUGS)}")
    if route not in ROUTES:
        raise PKInputError("route", f"unknown route {route!r}; use one of {', '.join(ROUTES)}")


@dataclass(frozen=True)
class DosePlan:
    drug: str
    route: str
    total_mg: float
    administrations: tuple[Administration, ...]
    devices: int | None = None

    @property
    def label(self) -> str:
        if self.devices:
            return (
                f"{self.total_mg:g} mg ({self.devices} devices, {DEVICE_INTERVAL_MIN:g} min apart)"
            )
        first = self.administrations[0]
        if first.duration_min > 0:
            return f"{self.total_mg:g} mg over {first.duration_min:g} min"
        return f"{self.total_mg:g} mg"


def plan_dose(
    drug: str,
    route: str,
    dose: str | DoseSpec,
    weight_kg: float,
    duration: str | float | None = None,
    start_min: float = 0.0,
) -> DosePlan:
    """One planned dose. Esketamine intranasal doses are whole 28 mg devices given 5 min apart,
    times counting from the first device (label section 11; Instructions for Use)."""
    check_drug_route(drug, route)
    weight_kg = check_weight(weight_kg)
    spec = parse_dose(dose) if isinstance(dose, str) else dose
    given = dose if isinstance(dose, str) else f"{spec.value:g} {spec.unit}"
    duration_min = parse_duration(duration)
    if duration_min > 0 and route != "iv":
        raise PKInputError("duration", f"a duration applies to IV infusions only, not {route!r}")
    if drug == "esketamine" and route == "intranasal":
        if spec.unit == "mg/kg":
            raise PKInputError("dose", "esketamine nasal doses are whole 28 mg devices, not mg/kg")
        devices_f = spec.value if spec.unit == "device" else spec.value / DEVICE_MG
        devices = round(devices_f)
        if abs(devices_f - devices) > 1e-9:
            raise PKInputError(
                "dose",
                f"esketamine nasal doses are whole 28 mg devices (28, 56, 84 mg), got {given!r}",
            )
        if not 1 <= devices <= MAX_DEVICES:
            raise PKInputError(
                "dose", f"{devices} devices is outside 1-{MAX_DEVICES} ({MAX_DEVICES * 28} mg)"
            )
        administrations = tuple(
            Administration(start_min + k * DEVICE_INTERVAL_MIN, DEVICE_MG, 0.0, k)
            for k in range(devices)
        )
        return DosePlan(drug, route, devices * DEVICE_MG, administrations, devices)
    if spec.unit == "device":
        raise PKInputError("dose", "device counts apply to esketamine nasal spray only")
    if spec.unit == "mg/kg":
        if spec.value > DOSE_MAX_MG_PER_KG:
            raise PKInputError("dose", f"{spec.value:g} mg/kg is not a plausible dose")
        total = spec.value * weight_kg
    else:
        total = spec.value
    if total < DOSE_MIN_MG:
        raise PKInputError("dose", f"{total:g} mg is under the {DOSE_MIN_MG:g} mg sanity limit")
    if total > DOSE_MAX_MG:
        raise PKInputError("dose", f"{total:g} mg is over the {DOSE_MAX_MG:g} mg sanity limit")
    return DosePlan(drug, route, total, (Administration(start_min, total, duration_min),))
