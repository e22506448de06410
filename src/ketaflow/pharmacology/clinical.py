"""Clinical outputs: a population summary for a planned dose, and observation advice for one
patient (concentration curve with a 90% band, effect-site level, predicted end of
dissociation, a suggested earliest discharge). Advice only: the protocol's fixed minimum
observation (e.g. 2 h from the first SPRAVATO device, REMS) always applies. Blood levels
inform dosing and observation, never efficacy (Zarate 2012; Grunebaum 2019; reference §6).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from ketaflow.pharmacology.doses import DosePlan, DoseSpec, check_age, plan_dose
from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.models import C50_S_KETAMINE_NG_PER_ML, PKModel, RouteInfo, model_for
from ketaflow.pharmacology.population import (
    PopulationSpec,
    ProgressCallback,
    curve_bands,
    simulate_summaries,
)
from ketaflow.pharmacology.solve import (
    OUTPUT_EFFECT,
    OUTPUT_METABOLITE,
    OUTPUT_PARENT,
)

# Dissociative effects rise linearly from 50 to 200 ng/mL racemic ketamine (Bowdle 1998,
# reference §6): 50 ng/mL is the default "time above" threshold. Clinic-configurable.
DEFAULT_THRESHOLD_NG_PER_ML = 50.0
# End of dissociation: effect-site S-ketamine below this fraction of C50 (Olofsen 2022 C50).
# UNCONFIRMED default (the reference gives no such number): a clinic sets its own. At 0.5 the
# typical 56 mg SPRAVATO session ends at about 85 min and 0.5 mg/kg IV over 40 min at about
# 60 min, in line with sedation resolved by 1-1.5 h (J&J Medical Connect 2025, reference §1).
DEFAULT_FRACTION_OF_C50 = 0.5
DEFAULT_AGE_YEARS = 40.0
PERCENTILES = (5.0, 50.0, 95.0)
ADVICE_NOTE = (
    "Advice only: a model prediction, never a replacement for the protocol's minimum "
    "observation time or for clinical judgment of sedation, dissociation and vital signs."
)
METABOLITE_NAMES = {"ketamine": "norketamine", "esketamine": "noresketamine"}


@dataclass(frozen=True)
class ModelInfo:
    id: str
    title: str
    citation: str
    sampling_site: str
    route_model: str
    assumption: bool
    sources: tuple[str, ...]

    @classmethod
    def of(cls, model: PKModel, route: RouteInfo) -> ModelInfo:
        return cls(
            model.model_id,
            model.title,
            model.citation,
            model.sampling_site,
            route.description,
            route.assumption,
            route.sources,
        )


def _notes(model: PKModel, route: RouteInfo, weight_kg: float, age: float | None) -> list[str]:
    notes = model.range_warnings(weight_kg, age)
    if route.assumption:
        notes.append(
            f"{route.route} absorption is an assumption built from bioavailability and "
            f"Tmax facts, not a published model: {'; '.join(route.sources[:-1])}"
        )
    if model.drug == "ketamine":
        notes.append(
            "racemic ketamine uses an S-ketamine disposition model (Fanta 2015/Otto "
            "2021): both enantiomers are assumed to share disposition"
        )
    return notes


def _band(values: list[float]) -> dict[str, float | None]:
    """Median and 5th-95th percentiles; None where undefined (JSON has no NaN)."""
    p5, p50, p95 = (v if math.isfinite(v) else None for v in values)
    return {"median": p50, "p5": p5, "p95": p95}


def simulate(
    drug: str,
    route: str,
    dose: str,
    weight_kg: float,
    duration: str | float | None = None,
    patients: int = 1000,
    seed: int = 0,
    threshold_ng_per_ml: float = DEFAULT_THRESHOLD_NG_PER_ML,
    age_years: float | None = None,
    horizon_h: float = 24.0,
    progress: ProgressCallback | None = None,
) -> dict:
    """Population summary of a planned dose: median and 5th-95th percentiles of Cmax, Tmax,
    AUC (0-infinity), terminal half-life, time above the threshold and time to fall below it,
    for the drug and its metabolite. Times count from the start of the first dose."""
    model, route_info = model_for(drug, route)
    plan = plan_dose(drug, route, dose, weight_kg, duration)
    age = check_age(age_years)
    if not math.isfinite(threshold_ng_per_ml) or threshold_ng_per_ml <= 0:
        raise PKInputError(
            "threshold", f"the threshold must be positive, got {threshold_ng_per_ml!r}"
        )
    if not 1.0 <= horizon_h <= 72.0:
        raise PKInputError("horizon", "the horizon must be between 1 and 72 hours")
    spec = PopulationSpec(
        model,
        route,
        plan.administrations,
        int(patients),
        weight_kg,
        age if age is not None else DEFAULT_AGE_YEARS,
        seed=int(seed),
    )
    summary = simulate_summaries(
        spec,
        (OUTPUT_PARENT, OUTPUT_METABOLITE),
        (threshold_ng_per_ml, threshold_ng_per_ml),
        horizon_h * 60.0,
        progress,
    )
    pct = summary.percentiles(PERCENTILES)

    def block(name: str) -> dict[str, dict[str, float | None]]:
        keys = (
            "cmax_ng_per_ml",
            "tmax_min",
            "auc_ng_h_per_ml",
            "half_life_h",
            "time_above_threshold_min",
            "time_to_below_threshold_min",
        )
        return {k: _band(pct[name][k]) for k in keys}

    info = ModelInfo.of(model, route_info)
    report = {
        "drug": drug,
        "route": route,
        "dose_mg": plan.total_mg,
        "dose": plan.label,
        "weight_kg": weight_kg,
        "patients": spec.n_patients,
        "seed": spec.seed,
        "threshold_ng_per_ml": threshold_ng_per_ml,
        "model": asdict(info),
        "concentrations": f"{model.sampling_site} plasma",
        "time_origin": "start of the first dose" + (" (first device)" if plan.devices else ""),
        **block("parent"),
        "auc_horizon_h": horizon_h,
        "metabolite": {"name": METABOLITE_NAMES[drug], **block("metabolite")},
        "warnings": _notes(model, route_info, weight_kg, age),
    }
    for name, analyte in (("parent", drug), ("metabolite", METABOLITE_NAMES[drug])):
        still_above = summary.still_above_fraction(name)
        if still_above > 0:
            report["warnings"].append(
                f"{_percent(still_above)} of patients still have {analyte} above "
                f"{threshold_ng_per_ml:g} ng/mL at {horizon_h:g} h: they count as later than "
                f"{horizon_h:g} h in the time to fall below it (a percentile among them is "
                f"null, beyond {horizon_h:g} h), and their time above counts to {horizon_h:g} h"
            )
    return report


def _percent(fraction: float) -> str:
    """0.1% rather than a rounded 0% (or 99.9% rather than 100%) at the ends."""
    return f"{fraction:.0%}" if 0.01 <= fraction <= 0.99 or fraction == 1.0 else f"{fraction:.1%}"


@dataclass(frozen=True)
class ObservationAdvice:
    """One planned dose on one patient. Times in minutes from the first dose (first device);
    concentrations in ng/mL; curves on `times_min`. The band is the 5th-95th percentile over
    virtual patients with this patient's covariates (inter-individual variability)."""

    drug: str
    route: str
    dose_mg: float
    weight_kg: float
    model: ModelInfo
    concentrations: str
    times_min: np.ndarray
    conc_typical_ng_per_ml: np.ndarray
    conc_p5_ng_per_ml: np.ndarray
    conc_p95_ng_per_ml: np.ndarray
    effect_typical_ng_per_ml: np.ndarray  # S-ketamine effect site
    effect_p5_ng_per_ml: np.ndarray
    effect_p95_ng_per_ml: np.ndarray
    c50_ng_per_ml: float
    fraction_of_c50: float
    dissociation_threshold_ng_per_ml: float
    end_of_dissociation_min: float  # typical patient
    end_of_dissociation_p95_min: float  # 95% of virtual patients are below by then
    suggested_earliest_discharge_min: float
    warnings: tuple[str, ...]
    note: str = ADVICE_NOTE


def observation_advice(
    drug: str,
    route: str,
    dose_mg: float | None,
    weight_kg: float,
    *,
    duration_min: float = 0.0,
    devices: int | None = None,
    age_years: float | None = None,
    fraction_of_c50: float = DEFAULT_FRACTION_OF_C50,
    discharge_margin_min: float = 0.0,
    n_virtual: int = 1000,
    seed: int = 0,
    horizon_min: float = 480.0,
    step_min: float = 1.0,
) -> ObservationAdvice:
    """Predicted curves and observation advice for one planned dose on one patient.

    `dose_mg` (or `devices` for esketamine nasal spray); `duration_min` for IV infusions.
    End of dissociation: the effect-site S-ketamine level (ke0, C50 of Olofsen 2022) falls
    below `fraction_of_c50` x C50. Suggested earliest discharge: the 95th-percentile end of
    dissociation plus `discharge_margin_min`; it never replaces the protocol's minimum.
    """
    model, route_info = model_for(drug, route)
    if devices is not None:
        dose = DoseSpec(devices, "device")
    elif dose_mg is not None:
        dose = DoseSpec(dose_mg, "mg")
    else:
        raise PKInputError("dose", "give dose_mg or devices")
    plan: DosePlan = plan_dose(drug, route, dose, weight_kg, duration_min or None)
    age = check_age(age_years)
    if not 0 < fraction_of_c50 < 5:
        raise PKInputError("fraction_of_c50", "fraction_of_c50 must be between 0 and 5")
    if discharge_margin_min < 0:
        raise PKInputError("discharge_margin_min", "the discharge margin cannot be negative")
    if not 60.0 <= horizon_min <= 1440.0:
        raise PKInputError("horizon_min", "horizon_min must be between 60 and 1440")
    if not 0.1 <= step_min <= 60.0:
        raise PKInputError("step_min", "step_min must be between 0.1 and 60")
    if not 20 <= n_virtual <= 100_000:
        raise PKInputError("n_virtual", "n_virtual must be between 20 and 100000")
    threshold = fraction_of_c50 * C50_S_KETAMINE_NG_PER_ML
    base = {
        "model": model,
        "route": route,
        "doses": plan.administrations,
        "weight_kg": weight_kg,
        "age_years": age if age is not None else DEFAULT_AGE_YEARS,
        "seed": seed,
    }
    typical = PopulationSpec(n_patients=1, variability=False, **base)
    virtual = PopulationSpec(n_patients=n_virtual, **base)
    outputs = (OUTPUT_PARENT, OUTPUT_EFFECT)
    times, typical_curves = curve_bands(typical, outputs, step_min, horizon_min, (50.0,))
    _, bands = curve_bands(virtual, outputs, step_min, horizon_min, (5.0, 95.0))
    typical_end = simulate_summaries(typical, (OUTPUT_EFFECT,), (threshold,), horizon_min)
    virtual_end = simulate_summaries(virtual, (OUTPUT_EFFECT,), (threshold,), horizon_min)
    end_typical = float(typical_end.values["effect"]["time_to_below_threshold_min"][0])
    ends = virtual_end.values["effect"]["time_to_below_threshold_min"]
    warnings = _notes(model, route_info, weight_kg, age)
    if np.isnan(ends).any() or math.isnan(end_typical):
        warnings.append(
            f"some virtual patients are still above the dissociation level at "
            f"{horizon_min:g} min: the end is reported as the horizon"
        )
    ends = np.where(np.isnan(ends), horizon_min, ends)
    end_typical = horizon_min if math.isnan(end_typical) else end_typical
    end_p95 = float(np.percentile(ends, 95.0))
    return ObservationAdvice(
        drug=drug,
        route=route,
        dose_mg=plan.total_mg,
        weight_kg=weight_kg,
        model=ModelInfo.of(model, route_info),
        concentrations=f"{model.sampling_site} plasma",
        times_min=times,
        conc_typical_ng_per_ml=typical_curves[0, 0],
        conc_p5_ng_per_ml=bands[0, 0],
        conc_p95_ng_per_ml=bands[0, 1],
        effect_typical_ng_per_ml=typical_curves[1, 0],
        effect_p5_ng_per_ml=bands[1, 0],
        effect_p95_ng_per_ml=bands[1, 1],
        c50_ng_per_ml=C50_S_KETAMINE_NG_PER_ML,
        fraction_of_c50=fraction_of_c50,
        dissociation_threshold_ng_per_ml=threshold,
        end_of_dissociation_min=end_typical,
        end_of_dissociation_p95_min=end_p95,
        suggested_earliest_discharge_min=float(math.ceil(end_p95 + discharge_margin_min)),
        warnings=tuple(warnings),
    )


def warm_up() -> float:
    """Compile (or load from Numba's on-disk cache) every kernel a clinic request can reach:
    a small population summary and one observation advice per drug. Seconds taken. The
    server runs this in the background at start-up, so the first PK request of the day is not
    the one that waits about 40 s for compilation on a fresh install."""
    start = time.perf_counter()
    simulate("ketamine", "iv", "0.5mg/kg", 70.0, "40min", patients=20)
    simulate("ketamine", "im", "0.5mg/kg", 70.0, patients=20)
    observation_advice("ketamine", "iv", 35.0, 70.0, duration_min=40.0, n_virtual=20)
    observation_advice("esketamine", "intranasal", None, 70.0, devices=2, n_virtual=20)
    return time.perf_counter() - start
