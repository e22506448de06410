"""Treatment protocols as data: one frozen value per drug and route.

A protocol owns everything the rules need to run a dosing session safely: the dose rule, how
long administration takes, the minimum spacing between doses, the series schedule, the
monitoring plan (which readings are due when, relative to what), the alarm thresholds with
their severity and the action to take, the pre-dose limits, the discharge criteria, how recent
a weight must be, and how long a chair is occupied.

Every clinical number carries its source in a comment (reference = shared/clinical-reference.md)
and in `Protocol.provenance`, so screens can label unconfirmed defaults. Numbers the reference
marks U, and numbers we chose as clinic defaults, are labelled so and are clinic-configurable
through `apply_overrides`. Label facts (esketamine's 28 mg device, 5-minute rest, 2-hour
observation, REMS enrollment) are floors: a clinic may tighten them, never loosen them.

Pure: no database, no clock, no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from ketaflow.treatment.errors import InvalidProtocolOverride

__all__ = [
    "DEFAULT_PROTOCOLS",
    "AlarmThreshold",
    "Anchor",
    "Comparator",
    "Confidence",
    "DeviceDose",
    "DischargeCriteria",
    "DoseRule",
    "Drug",
    "FixedDose",
    "Measure",
    "MonitoringPlan",
    "Phase",
    "PlannedReading",
    "PreDoseLimits",
    "Protocol",
    "ProtocolId",
    "Provenance",
    "Route",
    "SchedulePhase",
    "ScheduleRule",
    "Severity",
    "WeightBasedDose",
    "apply_overrides",
    "get_protocol",
]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Drug(StrEnum):
    racemic_ketamine = "racemic_ketamine"
    esketamine = "esketamine"


class Route(StrEnum):
    intravenous_infusion = "iv_infusion"
    intramuscular = "im"
    subcutaneous = "sc"
    intranasal = "intranasal"
    oral = "oral"
    sublingual = "sublingual"


class ProtocolId(StrEnum):
    iv_racemic_infusion = "iv_racemic_infusion"
    im_racemic = "im_racemic"
    sc_racemic = "sc_racemic"
    intranasal_esketamine_trd = "intranasal_esketamine_trd"
    intranasal_esketamine_mdd_si = "intranasal_esketamine_mdd_si"
    oral_racemic = "oral_racemic"
    sublingual_racemic = "sublingual_racemic"


class Confidence(StrEnum):
    """How sure we are of a number: the reference's H/M/U, or a default we chose."""

    high = "H"
    moderate = "M"
    unconfirmed = "U"
    # Chosen by ketaflow where the reference gives no number; always clinic-configurable.
    clinic_default = "clinic_default"
    # Set by the clinic through apply_overrides.
    clinic_setting = "clinic_setting"


class Provenance(_Value):
    source: str
    confidence: Confidence
    note: str = ""

    @property
    def unconfirmed(self) -> bool:
        return self.confidence in (Confidence.unconfirmed, Confidence.clinic_default)


# ---------------------------------------------------------------------------------------------
# Dose rules


class WeightBasedDose(_Value):
    """mg/kg x dosing weight, rounded to a step, capped. The prescriber may titrate within
    [min_mg_per_kg, max_mg_per_kg] when `titration_allowed`."""

    kind: Literal["weight_based"] = "weight_based"
    default_mg_per_kg: Decimal = Field(gt=0, le=5)
    min_mg_per_kg: Decimal = Field(gt=0, le=5)
    max_mg_per_kg: Decimal = Field(gt=0, le=5)
    # Optional absolute cap in mg, a clinic setting; None = only the mg/kg maximum applies.
    max_dose_mg: Decimal | None = Field(default=None, gt=0, le=1000)
    rounding_step_mg: Decimal = Field(gt=0, le=50)
    volume_step_ml: Decimal = Field(default=Decimal("0.01"), gt=0, le=1)
    titration_allowed: bool = False
    # Ideal body weight above a BMI threshold: attributed to Sanacora 2017, unconfirmed (U).
    use_ideal_body_weight_when_obese: bool = False
    obesity_bmi_threshold: Decimal = Field(default=Decimal(30), gt=0, le=80)

    @model_validator(mode="after")
    def _ordered(self) -> WeightBasedDose:
        if not self.min_mg_per_kg <= self.default_mg_per_kg <= self.max_mg_per_kg:
            raise ValueError("need min_mg_per_kg <= default_mg_per_kg <= max_mg_per_kg")
        return self


class DeviceDose(_Value):
    """Whole nasal devices (esketamine): dose = device count x device_mg."""

    kind: Literal["device"] = "device"
    # 28 mg per device, 2 sprays: label section 11; Instructions for Use (reference §1, H).
    device_mg: int = 28
    # 56 mg = 2 devices, 84 mg = 3 devices: label section 2 (reference §1, H).
    allowed_doses_mg: tuple[int, ...] = (56, 84)
    # First dose 56 mg; 84 mg only after a 56 mg start: label section 2 (reference §1, H).
    # None = the indication allows any allowed dose first (MDD with acute suicidal ideation).
    first_dose_mg: int | None = 56
    # 5 minutes' rest after each device: Instructions for Use (reference §1, H).
    rest_between_devices_min: int = Field(default=5, ge=5, le=30)

    @model_validator(mode="after")
    def _whole_devices(self) -> DeviceDose:
        if any(d % self.device_mg for d in self.allowed_doses_mg):
            raise ValueError("every allowed dose must be a whole number of devices")
        if self.first_dose_mg is not None and self.first_dose_mg not in self.allowed_doses_mg:
            raise ValueError("first_dose_mg must be one of allowed_doses_mg")
        return self


class FixedDose(_Value):
    """A fixed mg dose chosen by the prescriber within bounds (oral, sublingual)."""

    kind: Literal["fixed"] = "fixed"
    min_dose_mg: Decimal = Field(gt=0, le=1000)
    # Upper bound for a first dose; None = only max_dose_mg applies.
    start_max_dose_mg: Decimal | None = Field(default=None, gt=0, le=1000)
    max_dose_mg: Decimal = Field(gt=0, le=1000)
    rounding_step_mg: Decimal = Field(gt=0, le=50)

    @model_validator(mode="after")
    def _ordered(self) -> FixedDose:
        if self.min_dose_mg > self.max_dose_mg:
            raise ValueError("min_dose_mg above max_dose_mg")
        if self.start_max_dose_mg is not None and not (
            self.min_dose_mg <= self.start_max_dose_mg <= self.max_dose_mg
        ):
            raise ValueError("start_max_dose_mg must lie between min_dose_mg and max_dose_mg")
        return self


DoseRule = Annotated[WeightBasedDose | DeviceDose | FixedDose, Field(discriminator="kind")]


# ---------------------------------------------------------------------------------------------
# Schedule


class SchedulePhase(_Value):
    """`sessions` sessions, at most `sessions_per_week` in each 7-day week of the phase."""

    name: str = Field(min_length=1, max_length=80)
    sessions: int = Field(ge=1, le=52)
    sessions_per_week: int = Field(ge=1, le=7)


class ScheduleRule(_Value):
    # The induction series, phase after phase; empty for maintenance-only protocols.
    induction: tuple[SchedulePhase, ...] = ()
    # Maintenance intervals the prescriber chooses from, in days; the first is the default.
    maintenance_interval_days: tuple[int, ...] = (7,)

    @property
    def series_sessions(self) -> int:
        return sum(phase.sessions for phase in self.induction)

    @model_validator(mode="after")
    def _intervals(self) -> ScheduleRule:
        if not self.maintenance_interval_days or any(
            not 1 <= d <= 365 for d in self.maintenance_interval_days
        ):
            raise ValueError("maintenance_interval_days needs one or more values in 1..365")
        return self


# ---------------------------------------------------------------------------------------------
# Monitoring


class Measure(StrEnum):
    systolic = "systolic_mmhg"
    diastolic = "diastolic_mmhg"
    heart_rate = "heart_rate_bpm"
    spo2 = "spo2_percent"
    respiratory_rate = "respiratory_rate_per_min"
    # MOAA/S 0-5 (Chernik 1990, reference §3): 5 = responds readily to name.
    moaa_s = "moaa_s"
    # CADSS-6 (items 1, 2, 6, 7, 15, 22; each 0-4, total 0-24): Rodrigues 2021 (reference §3).
    dissociation = "cadss6"


VITALS = frozenset({Measure.systolic, Measure.diastolic, Measure.heart_rate})
BP = frozenset({Measure.systolic, Measure.diastolic})


class Anchor(StrEnum):
    """What a planned reading's time is relative to."""

    # After check-in and before the dose starts.
    pre_dose = "pre_dose"
    # The dose start; for esketamine the first device (the observation clock starts there).
    dose_start = "dose_start"
    # The end of administration (end of infusion, last device, injection).
    dose_end = "dose_end"
    # Within `window_min` before discharge.
    pre_discharge = "pre_discharge"


class PlannedReading(_Value):
    """One reading (or a repeating series of readings) the plan expects.

    For `dose_start`/`dose_end` anchors the reading is due at anchor + offset_min (and then
    every `repeat_every_min` until `repeat_until`, exclusive); a reading taken within
    `window_min` either side of the due time satisfies it; after that it is missed. For
    `pre_dose` it is due before the dose starts; for `pre_discharge` within `window_min` before
    discharge.
    """

    id: str = Field(min_length=1, max_length=60, pattern=r"^[a-z0-9_]+$")
    label: str = Field(min_length=1, max_length=120)
    measures: frozenset[Measure]
    anchor: Anchor
    offset_min: int = Field(default=0, ge=0, le=24 * 60)
    repeat_every_min: int | None = Field(default=None, ge=1, le=24 * 60)
    # dose_end: repeat during administration; pre_discharge: repeat until discharge.
    repeat_until: Anchor | None = None
    window_min: int = Field(default=5, ge=1, le=120)
    required_for_discharge: bool = False

    @model_validator(mode="after")
    def _shape(self) -> PlannedReading:
        if not self.measures:
            raise ValueError("a planned reading needs at least one measure")
        if (self.repeat_every_min is None) != (self.repeat_until is None):
            raise ValueError("repeat_every_min and repeat_until go together")
        if self.repeat_until is not None and self.anchor not in (
            Anchor.dose_start,
            Anchor.dose_end,
        ):
            raise ValueError("only dose_start/dose_end readings repeat")
        if self.repeat_until not in (None, Anchor.dose_end, Anchor.pre_discharge):
            raise ValueError("repeat_until must be dose_end or pre_discharge")
        return self


class MonitoringPlan(_Value):
    points: tuple[PlannedReading, ...]

    @model_validator(mode="after")
    def _unique(self) -> MonitoringPlan:
        ids = [p.id for p in self.points]
        if len(ids) != len(set(ids)):
            raise ValueError("planned reading ids must be unique")
        return self


class Comparator(StrEnum):
    above = "above"
    at_or_above = "at_or_above"
    below = "below"
    at_or_below = "at_or_below"

    def crossed(self, value: Decimal, limit: Decimal) -> bool:
        match self:
            case Comparator.above:
                return value > limit
            case Comparator.at_or_above:
                return value >= limit
            case Comparator.below:
                return value < limit
            case Comparator.at_or_below:
                return value <= limit
        raise AssertionError(self)  # pragma: no cover


class Severity(StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


SEVERITY_RANK = {Severity.info: 0, Severity.warning: 1, Severity.critical: 2}


class Phase(StrEnum):
    """Where in the session a reading was taken."""

    pre_dose = "pre_dose"
    dosing = "dosing"
    monitoring = "monitoring"


ALL_PHASES = frozenset(Phase)


class AlarmThreshold(_Value):
    id: str = Field(min_length=1, max_length=60, pattern=r"^[a-z0-9_]+$")
    measure: Measure
    comparator: Comparator
    limit: Decimal
    severity: Severity
    phases: frozenset[Phase] = ALL_PHASES
    action: str = Field(min_length=1, max_length=300)
    source: str = Field(min_length=1, max_length=200)
    confidence: Confidence

    @property
    def unconfirmed(self) -> bool:
        return self.confidence in (Confidence.unconfirmed, Confidence.clinic_default)


class PreDoseLimits(_Value):
    """Pre-dose vitals limits. `caution_only`: crossing needs a prescriber's judgment but is
    not an automatic stop (esketamine label); otherwise the check fails until overridden."""

    systolic_max_mmhg: int | None = Field(default=None, ge=60, le=260)
    diastolic_max_mmhg: int | None = Field(default=None, ge=30, le=160)
    heart_rate_max_bpm: int | None = Field(default=None, ge=30, le=220)
    caution_only: bool = False
    source: str = Field(min_length=1, max_length=200)
    confidence: Confidence


class DischargeCriteria(_Value):
    # Minimum observation, counted from `observation_anchor`.
    min_observation_min: int = Field(ge=0, le=24 * 60)
    observation_anchor: Anchor = Anchor.dose_end
    # Vitals limits for discharge; a reading also passes when near the pre-dose baseline.
    systolic_max_mmhg: int | None = Field(default=None, ge=60, le=260)
    diastolic_max_mmhg: int | None = Field(default=None, ge=30, le=160)
    heart_rate_max_bpm: int | None = Field(default=None, ge=30, le=220)
    spo2_min_percent: int | None = Field(default=None, ge=70, le=100)
    respiratory_rate_min_per_min: int | None = Field(default=None, ge=4, le=30)
    near_baseline_systolic_mmhg: int = Field(default=20, ge=0, le=60)
    near_baseline_diastolic_mmhg: int = Field(default=10, ge=0, le=40)
    near_baseline_heart_rate_bpm: int = Field(default=20, ge=0, le=60)
    # How recent the discharge readings must be.
    readings_max_age_min: int = Field(default=15, ge=1, le=120)
    # MOAA/S 5 = responds readily to name (Chernik 1990, reference §3): sedation resolved.
    sedation_resolved_moaa_s: int = Field(default=5, ge=4, le=5)
    require_dissociation_rating: bool = True
    # CADSS-6 points above the pre-dose rating still counted as resolved.
    dissociation_tolerance_points: int = Field(default=0, ge=0, le=6)
    require_escort: bool = True
    require_clinician_stability_judgment: bool = False
    require_ready_without_minimum_estimate: bool = False

    @model_validator(mode="after")
    def _anchor(self) -> DischargeCriteria:
        if self.observation_anchor not in (Anchor.dose_start, Anchor.dose_end):
            raise ValueError("observation_anchor must be dose_start or dose_end")
        return self


# ---------------------------------------------------------------------------------------------
# The protocol


class Protocol(_Value):
    id: ProtocolId
    name: str = Field(min_length=1, max_length=120)
    drug: Drug
    route: Route
    dose_rule: DoseRule
    # Administration time: infusion length; 0 for a single injection or oral dose.
    administration_minutes: int = Field(ge=0, le=600)
    # Chair time before the dose: check-in, pre-dose checks and readings.
    pre_dose_minutes: int = Field(default=15, ge=0, le=120)
    # Doses at least this many clinic-calendar days apart (1 = not twice on one day).
    min_days_between_doses: int = Field(ge=1, le=60)
    schedule: ScheduleRule
    # A weight older than this (days) fails the pre-dose check; None = weight not needed.
    weight_max_age_days: int | None = Field(default=None, ge=1, le=365)
    pre_dose_limits: PreDoseLimits | None = None
    monitoring: MonitoringPlan
    alarms: tuple[AlarmThreshold, ...]
    discharge: DischargeCriteria
    requires_rems_enrollment: bool = False
    requires_fasting_check: bool = False
    requires_concomitant_medication_record: bool = False
    # Esketamine patient information (reference §1, H): no food 2 h, no liquids 30 min,
    # nasal corticosteroid or decongestant at least 1 h before.
    fasting_food_min: int = Field(default=120, ge=0, le=24 * 60)
    fasting_liquids_min: int = Field(default=30, ge=0, le=24 * 60)
    nasal_product_min_before: int = Field(default=60, ge=0, le=24 * 60)
    home_dosing_allowed: bool = False
    provenance: dict[str, Provenance] = Field(default_factory=dict)

    @property
    def chair_minutes(self) -> int:
        """How long a chair is booked: pre-dose time, then administration and the minimum
        observation (counted from dose start for esketamine, so they overlap there)."""
        observation = self.discharge.min_observation_min
        if self.discharge.observation_anchor is Anchor.dose_start:
            return self.pre_dose_minutes + max(self.administration_minutes, observation)
        return self.pre_dose_minutes + self.administration_minutes + observation

    @property
    def series_sessions(self) -> int:
        return self.schedule.series_sessions

    @property
    def alarm_ids(self) -> list[str]:
        return [a.id for a in self.alarms]

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Protocol:
        ids = self.alarm_ids
        if len(ids) != len(set(ids)):
            raise ValueError("alarm ids must be unique")
        if isinstance(self.dose_rule, WeightBasedDose) and self.weight_max_age_days is None:
            raise ValueError("a weight-based dose needs weight_max_age_days")
        # The label floors judge a clinic's overrides as they are applied (the defaults, the
        # clinic file, `apply_overrides`), never a course's stored snapshot: a course started
        # under an override that was legal then keeps its protocol (`stored_protocol`).
        if self.drug is Drug.esketamine and not (info.context or {}).get(_STORED_SNAPSHOT):
            _esketamine_label_floors(self)
        return self


_STORED_SNAPSHOT = "stored_snapshot"


def stored_protocol(data: Mapping[str, Any]) -> Protocol:
    """A course's protocol snapshot read back as stored when the course was booked.

    The snapshot was validated, floors included, when its overrides were applied; floors
    added or tightened since apply to new courses only, so reading an older course back (its
    sessions, the worklist, every action on it) never fails on them."""
    return Protocol.model_validate(data, context={_STORED_SNAPSHOT: True})


# Label section 2 (reference §1, H): 56 mg = 2 devices, 84 mg = 3.
_LABEL_DOSES_MG = frozenset({56, 84})
# BP about 40 minutes after the first device: label sections 2 and 5; REMS monitoring form
# (reference §1, H/M). The shipped plan's window (±10 min) is the loosest a clinic may set.
_BP_RECHECK_MIN = 40
_BP_RECHECK_MAX_WINDOW_MIN = 10


def _has_40_minute_bp_recheck(plan: MonitoringPlan) -> bool:
    """A planned BP reading, required for discharge, due about 40 min after the dose start."""
    for point in plan.points:
        if (
            point.anchor is not Anchor.dose_start
            or not point.measures >= BP
            or not point.required_for_discharge
            or point.window_min > _BP_RECHECK_MAX_WINDOW_MIN
        ):
            continue
        if abs(point.offset_min - _BP_RECHECK_MIN) <= point.window_min:
            return True
        # A series repeating until discharge also covers 40 minutes if one reading falls there.
        if point.repeat_every_min and point.repeat_until is Anchor.pre_discharge:
            due = point.offset_min
            while due <= _BP_RECHECK_MIN + point.window_min:
                if abs(due - _BP_RECHECK_MIN) <= point.window_min:
                    return True
                due += point.repeat_every_min
    return False


def _esketamine_label_floors(protocol: Protocol) -> None:
    """Label and REMS facts a clinic may tighten but never loosen (reference §1, H)."""
    problems: list[str] = []
    rule = protocol.dose_rule
    if not isinstance(rule, DeviceDose) or rule.device_mg != 28:
        problems.append("esketamine is dosed in whole 28 mg devices (label section 11)")
    else:
        if not rule.allowed_doses_mg or not set(rule.allowed_doses_mg) <= _LABEL_DOSES_MG:
            problems.append("esketamine doses are 56 or 84 mg (label section 2)")
        if protocol.id is ProtocolId.intranasal_esketamine_trd and rule.first_dose_mg != 56:
            problems.append("treatment-resistant depression starts at 56 mg (label section 2)")
    if not _has_40_minute_bp_recheck(protocol.monitoring):
        problems.append(
            "esketamine BP is rechecked about 40 minutes after the first device, required for "
            "discharge (label sections 2 and 5; REMS monitoring form)"
        )
    if protocol.discharge.min_observation_min < 120:
        problems.append("esketamine observation is at least 120 minutes (boxed warning)")
    if protocol.discharge.observation_anchor is not Anchor.dose_start:
        problems.append("esketamine observation counts from the first device (REMS)")
    if not protocol.requires_rems_enrollment:
        problems.append("esketamine needs REMS enrollment before the first session (REMS)")
    if protocol.home_dosing_allowed:
        problems.append("esketamine is never dispensed for home use (REMS)")
    if protocol.fasting_food_min < 120 or protocol.fasting_liquids_min < 30:
        problems.append("esketamine fasting is at least 2 h food, 30 min liquids (label)")
    if protocol.nasal_product_min_before < 60:
        problems.append("nasal corticosteroid/decongestant at least 1 h before (label)")
    if not protocol.discharge.require_ready_without_minimum_estimate:
        problems.append("the REMS form asks when the patient would have been ready")
    if not protocol.discharge.require_clinician_stability_judgment:
        problems.append("esketamine discharge needs the clinician's judgment (REMS)")
    if problems:
        raise ValueError("; ".join(problems))


# ---------------------------------------------------------------------------------------------
# Shared pieces of the defaults

_SPO2_ACTION = (
    "Check probe and airway; stimulate, give oxygen per clinic policy; stop or pause dosing; "
    "call the prescriber."
)
# SpO2 and respiratory-rate limits are ketaflow clinic defaults: the reference gives none.
# 94% is the lower end of the usual adult target range (BTS oxygen guideline 2017: 94-98%),
# 90% the usual definition of hypoxaemia; RR below 10/min is a common sedation-monitoring
# trigger. All clinic-configurable.
_CLINIC_RESPIRATORY_ALARMS = (
    AlarmThreshold(
        id="spo2_low",
        measure=Measure.spo2,
        comparator=Comparator.below,
        limit=Decimal(94),
        severity=Severity.warning,
        action="Recheck SpO2 and the probe; encourage deep breaths; watch sedation closely.",
        source="clinic default (lower end of BTS 2017 target 94-98%); not in reference",
        confidence=Confidence.clinic_default,
    ),
    AlarmThreshold(
        id="spo2_critical",
        measure=Measure.spo2,
        comparator=Comparator.below,
        limit=Decimal(90),
        severity=Severity.critical,
        action=_SPO2_ACTION,
        source="clinic default (SpO2 < 90% = hypoxaemia); not in reference",
        confidence=Confidence.clinic_default,
    ),
    AlarmThreshold(
        id="respiratory_rate_low",
        measure=Measure.respiratory_rate,
        comparator=Comparator.below,
        limit=Decimal(10),
        severity=Severity.critical,
        action="Assess for respiratory depression: airway, stimulation, oxygen; call the "
        "prescriber.",
        source="clinic default (sedation-monitoring practice); not in reference",
        confidence=Confidence.clinic_default,
    ),
)

# MOAA/S <= 3 means the patient responds only to a loud or repeated name (Chernik 1990,
# reference §3): deeper than an office ketamine session should reach (ASKP3 2020: no
# anesthetic-level sedation in the setting). <= 1 (trapezius squeeze only) is near loss of
# consciousness. The cut-offs are ketaflow clinic defaults.
_SEDATION_ALARMS = (
    AlarmThreshold(
        id="sedation_deep",
        measure=Measure.moaa_s,
        comparator=Comparator.at_or_below,
        limit=Decimal(3),
        severity=Severity.warning,
        action="Deeper sedation than intended: pause or stop dosing, continuous SpO2, recheck "
        "every 5 minutes, inform the prescriber.",
        source="clinic default from MOAA/S (Chernik 1990) and ASKP3 2020 (reference §2-3)",
        confidence=Confidence.clinic_default,
    ),
    AlarmThreshold(
        id="sedation_unresponsive",
        measure=Measure.moaa_s,
        comparator=Comparator.at_or_below,
        limit=Decimal(1),
        severity=Severity.critical,
        action="Near loss of consciousness: stop dosing, airway support, call the prescriber "
        "and follow the emergency plan.",
        source="clinic default from MOAA/S (Chernik 1990, reference §3)",
        confidence=Confidence.clinic_default,
    ),
)

# Racemic hold limits: "BP > 180/100 or HR > 110", attributed to Sanacora 2017, unconfirmed (U).
_RACEMIC_HOLD_SOURCE = "Sanacora 2017 (attributed, reference §2): unconfirmed, clinic-configurable"


def _racemic_hold_alarms(pause_action: str) -> tuple[AlarmThreshold, ...]:
    return (
        AlarmThreshold(
            id="systolic_hold",
            measure=Measure.systolic,
            comparator=Comparator.above,
            limit=Decimal(180),
            severity=Severity.critical,
            phases=frozenset({Phase.dosing, Phase.monitoring}),
            action=pause_action,
            source=_RACEMIC_HOLD_SOURCE,
            confidence=Confidence.unconfirmed,
        ),
        AlarmThreshold(
            id="diastolic_hold",
            measure=Measure.diastolic,
            comparator=Comparator.above,
            limit=Decimal(100),
            severity=Severity.critical,
            phases=frozenset({Phase.dosing, Phase.monitoring}),
            action=pause_action,
            source=_RACEMIC_HOLD_SOURCE,
            confidence=Confidence.unconfirmed,
        ),
        AlarmThreshold(
            id="heart_rate_hold",
            measure=Measure.heart_rate,
            comparator=Comparator.above,
            limit=Decimal(110),
            severity=Severity.warning,
            phases=frozenset({Phase.dosing, Phase.monitoring}),
            action=pause_action,
            source=_RACEMIC_HOLD_SOURCE,
            confidence=Confidence.unconfirmed,
        ),
    )


_RACEMIC_PRE_DOSE_LIMITS = PreDoseLimits(
    systolic_max_mmhg=180,
    diastolic_max_mmhg=100,
    heart_rate_max_bpm=110,
    source=_RACEMIC_HOLD_SOURCE,
    confidence=Confidence.unconfirmed,
)


def _racemic_discharge(min_observation_min: int) -> DischargeCriteria:
    # Vitals limits reuse the unconfirmed hold limits (a patient may start there); near
    # baseline = within +20/+10 mmHg, +20 bpm of pre-dose, about the mean peak rise
    # (+16/+11 mmHg, Gen Hosp Psychiatry 2024, reference §2, M): clinic default.
    return DischargeCriteria(
        min_observation_min=min_observation_min,
        observation_anchor=Anchor.dose_end,
        systolic_max_mmhg=180,
        diastolic_max_mmhg=100,
        heart_rate_max_bpm=110,
        spo2_min_percent=94,
        respiratory_rate_min_per_min=10,
    )


_RACEMIC_PROVENANCE_COMMON = {
    "pre_dose_limits": Provenance(source=_RACEMIC_HOLD_SOURCE, confidence=Confidence.unconfirmed),
    "discharge.systolic_max_mmhg": Provenance(
        source=_RACEMIC_HOLD_SOURCE, confidence=Confidence.unconfirmed
    ),
    "discharge.near_baseline_systolic_mmhg": Provenance(
        source="clinic default near the mean peak rise (Gen Hosp Psychiatry 2024, §2)",
        confidence=Confidence.clinic_default,
    ),
    "discharge.readings_max_age_min": Provenance(
        source="clinic default", confidence=Confidence.clinic_default
    ),
    "pre_dose_minutes": Provenance(source="clinic default", confidence=Confidence.clinic_default),
}


def _iv_racemic() -> Protocol:
    return Protocol(
        id=ProtocolId.iv_racemic_infusion,
        name="IV racemic ketamine infusion",
        drug=Drug.racemic_ketamine,
        route=Route.intravenous_infusion,
        dose_rule=WeightBasedDose(
            # 0.5 mg/kg standard; studied range 0.1-0.75 mg/kg: Sanacora 2017 (reference §2, H).
            default_mg_per_kg=Decimal("0.5"),
            min_mg_per_kg=Decimal("0.1"),
            max_mg_per_kg=Decimal("0.75"),
            # Rounding precision, not a clinical number: clinic default.
            rounding_step_mg=Decimal("0.5"),
            titration_allowed=True,
        ),
        # Over 40 minutes: Sanacora 2017 (reference §2, H).
        administration_minutes=40,
        # 3 infusions a week over 12 days = alternate days: Murrough 2013 (reference §2, H).
        min_days_between_doses=2,
        schedule=ScheduleRule(
            # 6 infusions, 3 per week: Murrough 2013 (reference §2, H).
            induction=(SchedulePhase(name="induction", sessions=6, sessions_per_week=3),),
            # Median relapse 18 days after a 6-infusion series (Murrough 2013; NPP 2019,
            # reference §2, H/M): every 14 days is a clinic default for maintenance.
            maintenance_interval_days=(14, 7, 21, 28),
        ),
        # A weight no older than 30 days: clinic default (the reference gives none).
        weight_max_age_days=30,
        pre_dose_limits=_RACEMIC_PRE_DOSE_LIMITS,
        monitoring=MonitoringPlan(
            points=(
                PlannedReading(
                    id="baseline",
                    label="pre-dose vitals, SpO2, sedation and dissociation",
                    measures=VITALS
                    | {
                        Measure.spo2,
                        Measure.respiratory_rate,
                        Measure.moaa_s,
                        Measure.dissociation,
                    },
                    anchor=Anchor.pre_dose,
                    required_for_discharge=True,
                ),
                # BP every 10 min during the infusion, every 15 min after: Emory, J Affect
                # Disord (reference §2, M).
                PlannedReading(
                    id="during_infusion",
                    label="BP, HR and SpO2 every 10 min during the infusion",
                    measures=VITALS | {Measure.spo2},
                    anchor=Anchor.dose_start,
                    offset_min=10,
                    repeat_every_min=10,
                    repeat_until=Anchor.dose_end,
                    window_min=5,
                ),
                PlannedReading(
                    id="after_infusion",
                    label="BP, HR, SpO2 and sedation every 15 min after the infusion",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s},
                    anchor=Anchor.dose_end,
                    offset_min=15,
                    repeat_every_min=15,
                    repeat_until=Anchor.pre_discharge,
                    window_min=7,
                ),
                PlannedReading(
                    id="before_discharge",
                    label="vitals, SpO2, sedation and dissociation before discharge",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s, Measure.dissociation},
                    anchor=Anchor.pre_discharge,
                    window_min=15,
                    required_for_discharge=True,
                ),
            )
        ),
        alarms=(
            *_racemic_hold_alarms(
                "Pause the infusion, recheck in 5 minutes, and ask the prescriber whether to "
                "resume at a lower rate or stop (hold limit is an unconfirmed default)."
            ),
            *_CLINIC_RESPIRATORY_ALARMS,
            *_SEDATION_ALARMS,
        ),
        # BP back to baseline within about 1.5 h of the start (Gen Hosp Psychiatry 2024;
        # Szarmach 2020, reference §2, M) = about 50 min after a 40-min infusion: 60 min after
        # the infusion ends is a clinic default, unconfirmed.
        discharge=_racemic_discharge(min_observation_min=60),
        provenance={
            **_RACEMIC_PROVENANCE_COMMON,
            "dose_rule.default_mg_per_kg": Provenance(
                source="Sanacora et al., JAMA Psychiatry 2017 (reference §2)",
                confidence=Confidence.high,
            ),
            "dose_rule.max_mg_per_kg": Provenance(
                source="studied range 0.1-0.75 mg/kg, Sanacora 2017 (reference §2)",
                confidence=Confidence.high,
            ),
            "dose_rule.use_ideal_body_weight_when_obese": Provenance(
                source="Sanacora 2017 (attributed, reference §2): off by default",
                confidence=Confidence.unconfirmed,
            ),
            "administration_minutes": Provenance(
                source="Sanacora 2017 (reference §2)", confidence=Confidence.high
            ),
            "min_days_between_doses": Provenance(
                source="Murrough et al. 2013, 3 per week over 12 days (reference §2)",
                confidence=Confidence.high,
            ),
            "schedule.induction": Provenance(
                source="Murrough et al. 2013 (reference §2)", confidence=Confidence.high
            ),
            "schedule.maintenance_interval_days": Provenance(
                source="clinic default informed by 18-day median relapse (reference §2)",
                confidence=Confidence.clinic_default,
            ),
            "weight_max_age_days": Provenance(
                source="clinic default", confidence=Confidence.clinic_default
            ),
            "monitoring.points": Provenance(
                source="Emory, J Affect Disord (reference §2)", confidence=Confidence.moderate
            ),
            "discharge.min_observation_min": Provenance(
                source="clinic default from BP course (Gen Hosp Psychiatry 2024, §2)",
                confidence=Confidence.unconfirmed,
            ),
        },
    )


def _injected_racemic(protocol_id: ProtocolId, route: Route) -> Protocol:
    sc = route is Route.subcutaneous
    route_word = "subcutaneous" if sc else "intramuscular"
    absorption_source = (
        "SC assumed like IM (Abuhelwa 2022 not retrieved, reference §6): unconfirmed"
        if sc
        else "Chilukuri et al. 2014 (reference §2)"
    )
    absorption_confidence = Confidence.unconfirmed if sc else Confidence.moderate
    return Protocol(
        id=protocol_id,
        name=f"{route_word.capitalize()} racemic ketamine",
        drug=Drug.racemic_ketamine,
        route=route,
        dose_rule=WeightBasedDose(
            # 0.25-0.5 mg/kg IM comparable to 0.5 mg/kg IV: Chilukuri 2014 (reference §2, H/M);
            # SC assumed like IM (reference §6, U).
            default_mg_per_kg=Decimal("0.5"),
            min_mg_per_kg=Decimal("0.25"),
            max_mg_per_kg=Decimal("0.5"),
            rounding_step_mg=Decimal("0.5"),
            titration_allowed=False,
        ),
        # A single injection.
        administration_minutes=0,
        # As for IV (alternate days, Murrough 2013); injected series are clinic practice (U).
        min_days_between_doses=2,
        schedule=ScheduleRule(
            induction=(SchedulePhase(name="induction", sessions=6, sessions_per_week=3),),
            maintenance_interval_days=(14, 7, 21, 28),
        ),
        weight_max_age_days=30,
        pre_dose_limits=_RACEMIC_PRE_DOSE_LIMITS,
        monitoring=MonitoringPlan(
            points=(
                PlannedReading(
                    id="baseline",
                    label="pre-dose vitals, SpO2, sedation and dissociation",
                    measures=VITALS
                    | {
                        Measure.spo2,
                        Measure.respiratory_rate,
                        Measure.moaa_s,
                        Measure.dissociation,
                    },
                    anchor=Anchor.pre_dose,
                    required_for_discharge=True,
                ),
                # IM peak 15-30 min (reference §6): readings every 15 min after the injection,
                # the same cadence as after an infusion (Emory, reference §2, M).
                PlannedReading(
                    id="after_injection",
                    label="BP, HR, SpO2 and sedation every 15 min after the injection",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s},
                    anchor=Anchor.dose_end,
                    offset_min=15,
                    repeat_every_min=15,
                    repeat_until=Anchor.pre_discharge,
                    window_min=7,
                ),
                PlannedReading(
                    id="before_discharge",
                    label="vitals, SpO2, sedation and dissociation before discharge",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s, Measure.dissociation},
                    anchor=Anchor.pre_discharge,
                    window_min=15,
                    required_for_discharge=True,
                ),
            )
        ),
        alarms=(
            *_racemic_hold_alarms(
                "Recheck in 5 minutes and inform the prescriber; keep monitoring until back "
                "within limits (hold limit is an unconfirmed default)."
            ),
            *_CLINIC_RESPIRATORY_ALARMS,
            *_SEDATION_ALARMS,
        ),
        # 60 min after the injection, past the 15-30 min IM peak: clinic default, unconfirmed.
        discharge=_racemic_discharge(min_observation_min=60),
        provenance={
            **_RACEMIC_PROVENANCE_COMMON,
            "dose_rule.default_mg_per_kg": Provenance(
                source=absorption_source, confidence=absorption_confidence
            ),
            "min_days_between_doses": Provenance(
                source="as IV (Murrough 2013); injected series are clinic practice",
                confidence=Confidence.unconfirmed,
            ),
            "schedule.induction": Provenance(
                source="as IV (Murrough 2013); clinic practice for injections",
                confidence=Confidence.unconfirmed,
            ),
            "weight_max_age_days": Provenance(
                source="clinic default", confidence=Confidence.clinic_default
            ),
            "discharge.min_observation_min": Provenance(
                source="clinic default past the IM peak (reference §6)",
                confidence=Confidence.unconfirmed,
            ),
        },
    )


_ESKETAMINE_SOURCE = "SPRAVATO label and REMS (reference §1)"


def _esketamine(protocol_id: ProtocolId) -> Protocol:
    suicidal_ideation = protocol_id is ProtocolId.intranasal_esketamine_mdd_si
    if suicidal_ideation:
        # MDD with acute suicidal ideation: 84 mg twice weekly for 4 weeks (may reduce to
        # 56 mg), with an oral antidepressant: label section 2 (reference §1, H).
        dose_rule = DeviceDose(first_dose_mg=None)
        schedule = ScheduleRule(
            induction=(SchedulePhase(name="weeks 1-4", sessions=8, sessions_per_week=2),),
            maintenance_interval_days=(7, 14),
        )
        name = "Intranasal esketamine, MDD with acute suicidal ideation"
    else:
        dose_rule = DeviceDose()
        # TRD: weeks 1-4 twice weekly, weeks 5-8 weekly, from week 9 weekly or every 2 weeks:
        # label section 2 (reference §1, H).
        schedule = ScheduleRule(
            induction=(
                SchedulePhase(name="weeks 1-4", sessions=8, sessions_per_week=2),
                SchedulePhase(name="weeks 5-8", sessions=4, sessions_per_week=1),
            ),
            maintenance_interval_days=(7, 14),
        )
        name = "Intranasal esketamine, treatment-resistant depression"
    bp_action = (
        "BP above 140/90 after dosing: recheck; keep monitoring until it falls toward the "
        "pre-dose value; discharge needs the clinician's judgment of stability (label "
        "section 5). Hypertensive-crisis symptoms: emergency care."
    )
    return Protocol(
        id=protocol_id,
        name=name,
        drug=Drug.esketamine,
        route=Route.intranasal,
        dose_rule=dose_rule,
        # Devices 5 minutes apart: at most 3 devices = 10 minutes (Instructions for Use, H).
        administration_minutes=10,
        # Twice weekly: at least 2 calendar days apart is derived from the label schedule;
        # the label states no minimum interval (clinic-configurable, unconfirmed).
        min_days_between_doses=2,
        schedule=schedule,
        weight_max_age_days=None,
        # BP above 140 systolic or 90 diastolic before dosing: weigh the risk, not an
        # automatic stop: label sections 2 and 5 (reference §1, H/M).
        pre_dose_limits=PreDoseLimits(
            systolic_max_mmhg=140,
            diastolic_max_mmhg=90,
            caution_only=True,
            source="SPRAVATO label sections 2 and 5 (reference §1)",
            confidence=Confidence.high,
        ),
        monitoring=MonitoringPlan(
            points=(
                # Before dosing, about 40 min after, before discharge: label sections 2 and 5;
                # REMS monitoring form (reference §1, H/M). Pulse oximetry: REMS page (H).
                PlannedReading(
                    id="before_dosing",
                    label="BP, HR, SpO2, sedation and dissociation before dosing",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s, Measure.dissociation},
                    anchor=Anchor.pre_dose,
                    required_for_discharge=True,
                ),
                PlannedReading(
                    id="bp_40_min",
                    label="BP, HR, SpO2, sedation and dissociation about 40 min after the "
                    "first device",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s, Measure.dissociation},
                    anchor=Anchor.dose_start,
                    offset_min=40,
                    window_min=10,
                    required_for_discharge=True,
                ),
                PlannedReading(
                    id="before_discharge",
                    label="BP, HR, SpO2, sedation and dissociation before discharge",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s, Measure.dissociation},
                    anchor=Anchor.pre_discharge,
                    window_min=15,
                    required_for_discharge=True,
                ),
            )
        ),
        alarms=(
            AlarmThreshold(
                id="systolic_above_label",
                measure=Measure.systolic,
                comparator=Comparator.above,
                limit=Decimal(140),
                severity=Severity.warning,
                phases=frozenset({Phase.dosing, Phase.monitoring}),
                action=bp_action,
                source="SPRAVATO label sections 2 and 5 (reference §1)",
                confidence=Confidence.high,
            ),
            AlarmThreshold(
                id="diastolic_above_label",
                measure=Measure.diastolic,
                comparator=Comparator.above,
                limit=Decimal(90),
                severity=Severity.warning,
                phases=frozenset({Phase.dosing, Phase.monitoring}),
                action=bp_action,
                source="SPRAVATO label sections 2 and 5 (reference §1)",
                confidence=Confidence.high,
            ),
            *_CLINIC_RESPIRATORY_ALARMS,
            *_SEDATION_ALARMS,
        ),
        discharge=DischargeCriteria(
            # At least 2 hours from the first device: boxed warning; REMS (reference §1, H).
            min_observation_min=120,
            observation_anchor=Anchor.dose_start,
            # Label threshold 140/90 (reference §1, H); near baseline per clinic default; the
            # BP is back to pre-dose range by about 1.5 h (Doherty 2020, reference §1, M).
            systolic_max_mmhg=140,
            diastolic_max_mmhg=90,
            spo2_min_percent=94,
            respiratory_rate_min_per_min=10,
            # Discharge: clinician judgment of stability (FDA REMS page, H); the REMS form asks
            # when the patient would have been ready without the 2-hour minimum (H).
            require_clinician_stability_judgment=True,
            require_ready_without_minimum_estimate=True,
        ),
        requires_rems_enrollment=True,
        requires_fasting_check=True,
        requires_concomitant_medication_record=True,
        provenance={
            "dose_rule": Provenance(source=_ESKETAMINE_SOURCE, confidence=Confidence.high),
            "schedule.induction": Provenance(
                source="SPRAVATO label section 2 (reference §1)", confidence=Confidence.high
            ),
            "min_days_between_doses": Provenance(
                source="derived from the label's twice-weekly schedule; not a label number",
                confidence=Confidence.unconfirmed,
            ),
            "pre_dose_limits": Provenance(
                source="SPRAVATO label sections 2 and 5 (reference §1)",
                confidence=Confidence.high,
            ),
            "monitoring.points": Provenance(
                source="label sections 2 and 5; REMS monitoring form (reference §1)",
                confidence=Confidence.moderate,
            ),
            "discharge.min_observation_min": Provenance(
                source="boxed warning; FDA REMS page (reference §1)", confidence=Confidence.high
            ),
            "fasting_food_min": Provenance(
                source="label / patient information (reference §1)", confidence=Confidence.high
            ),
            "discharge.near_baseline_systolic_mmhg": Provenance(
                source="clinic default near the mean maximal rise (Doherty 2020, §1)",
                confidence=Confidence.clinic_default,
            ),
            "pre_dose_minutes": Provenance(
                source="clinic default; chair 2 h 15 min per issue 3",
                confidence=Confidence.clinic_default,
            ),
        },
    )


def _oral_or_sublingual(protocol_id: ProtocolId, route: Route) -> Protocol:
    sublingual = route is Route.sublingual
    if sublingual:
        # Troches commonly 25-50 mg to start: Chong et al. 2006 (reference §2, M). No
        # sublingual maximum in the reference: oral's 300 mg scaled by bioavailability
        # (0.23 oral / 0.32 sublingual, Chong 2006) is about 215 mg; 200 mg is an
        # unconfirmed clinic default.
        dose_rule = FixedDose(
            min_dose_mg=Decimal(25),
            start_max_dose_mg=Decimal(50),
            max_dose_mg=Decimal(200),
            rounding_step_mg=Decimal(5),
        )
        # Past the ~45 min sublingual peak (reference §6): 90 min observation, clinic default.
        observation_min = 90
        dose_source = "Chong et al. 2006 (reference §2); maximum is a clinic default"
        dose_confidence = Confidence.unconfirmed
    else:
        # Oral 25-300 mg fixed: Andrade 2019; Chong 2006 (reference §2, H).
        dose_rule = FixedDose(
            min_dose_mg=Decimal(25),
            max_dose_mg=Decimal(300),
            rounding_step_mg=Decimal(5),
        )
        observation_min = 90
        dose_source = "Andrade 2019; Chong 2006 (reference §2)"
        dose_confidence = Confidence.high
    return Protocol(
        id=protocol_id,
        name=f"{'Sublingual' if sublingual else 'Oral'} racemic ketamine (maintenance)",
        drug=Drug.racemic_ketamine,
        route=route,
        dose_rule=dose_rule,
        administration_minutes=0,
        # At most one dose a clinic day: clinic default (ASA 2025 asks for the minimum
        # effective dose and caution with home use, reference §2).
        min_days_between_doses=1,
        schedule=ScheduleRule(induction=(), maintenance_interval_days=(7, 14, 1, 3)),
        weight_max_age_days=None,
        pre_dose_limits=_RACEMIC_PRE_DOSE_LIMITS,
        monitoring=MonitoringPlan(
            points=(
                PlannedReading(
                    id="baseline",
                    label="pre-dose vitals, sedation and dissociation",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s, Measure.dissociation},
                    anchor=Anchor.pre_dose,
                    required_for_discharge=True,
                ),
                PlannedReading(
                    id="after_dose",
                    label="BP, HR, SpO2 and sedation every 30 min after the dose",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s},
                    anchor=Anchor.dose_end,
                    offset_min=30,
                    repeat_every_min=30,
                    repeat_until=Anchor.pre_discharge,
                    window_min=10,
                ),
                PlannedReading(
                    id="before_discharge",
                    label="vitals, SpO2, sedation and dissociation before discharge",
                    measures=VITALS | {Measure.spo2, Measure.moaa_s, Measure.dissociation},
                    anchor=Anchor.pre_discharge,
                    window_min=15,
                    required_for_discharge=True,
                ),
            )
        ),
        alarms=(
            *_racemic_hold_alarms(
                "Recheck in 5 minutes and inform the prescriber (hold limit is an unconfirmed "
                "default)."
            ),
            *_CLINIC_RESPIRATORY_ALARMS,
            *_SEDATION_ALARMS,
        ),
        discharge=_racemic_discharge(min_observation_min=observation_min),
        home_dosing_allowed=True,
        provenance={
            **_RACEMIC_PROVENANCE_COMMON,
            "dose_rule": Provenance(source=dose_source, confidence=dose_confidence),
            "min_days_between_doses": Provenance(
                source="clinic default", confidence=Confidence.clinic_default
            ),
            "schedule.maintenance_interval_days": Provenance(
                source="clinic default", confidence=Confidence.clinic_default
            ),
            "monitoring.points": Provenance(
                source="clinic default cadence", confidence=Confidence.clinic_default
            ),
            "discharge.min_observation_min": Provenance(
                source="clinic default past the sublingual peak (reference §6)",
                confidence=Confidence.unconfirmed,
            ),
        },
    )


def _build_defaults() -> dict[ProtocolId, Protocol]:
    protocols = [
        _iv_racemic(),
        _injected_racemic(ProtocolId.im_racemic, Route.intramuscular),
        _injected_racemic(ProtocolId.sc_racemic, Route.subcutaneous),
        _esketamine(ProtocolId.intranasal_esketamine_trd),
        _esketamine(ProtocolId.intranasal_esketamine_mdd_si),
        _oral_or_sublingual(ProtocolId.oral_racemic, Route.oral),
        _oral_or_sublingual(ProtocolId.sublingual_racemic, Route.sublingual),
    ]
    return {p.id: p for p in protocols}


DEFAULT_PROTOCOLS: Mapping[ProtocolId, Protocol] = _build_defaults()


# ---------------------------------------------------------------------------------------------
# Clinic overrides

_KEYED_LISTS = {"alarms": "id", "monitoring.points": "id", "schedule.induction": "name"}


def apply_overrides(protocol: Protocol, overrides: Mapping[str, Any]) -> Protocol:
    """Return a new protocol with a clinic's overrides applied, validated as a whole.

    Keys are dotted paths into the protocol: ``"administration_minutes"``,
    ``"dose_rule.default_mg_per_kg"``, ``"discharge.min_observation_min"``. Entries of the
    keyed lists are addressed by id (``"alarms.systolic_hold.limit"``,
    ``"monitoring.points.during_infusion.repeat_every_min"``) or, for schedule phases, by name
    (``"schedule.induction.induction.sessions"``). A whole value may be replaced too
    (``"schedule.maintenance_interval_days": [14, 28]``). Every overridden path is recorded in
    `provenance` as a clinic setting.

    Raises `InvalidProtocolOverride` (422) naming every unknown path or invalid value,
    including an attempt to loosen an esketamine label floor. The protocol id cannot change.
    """
    data = protocol.model_dump(mode="python")
    errors: list[tuple[str, str]] = []
    for path, value in overrides.items():
        if path in ("id", "provenance") or path.startswith("provenance."):
            errors.append((path, "cannot be overridden"))
            continue
        try:
            _set_path(data, path, copy.deepcopy(value))
        except KeyError as exc:
            errors.append((path, str(exc.args[0])))
    if errors:
        raise InvalidProtocolOverride(errors)
    provenance = dict(data.get("provenance") or {})
    for path in overrides:
        provenance[path] = Provenance(
            source="clinic setting", confidence=Confidence.clinic_setting
        ).model_dump()
    data["provenance"] = provenance
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        raise InvalidProtocolOverride(
            (".".join(str(p) for p in err["loc"]) or "protocol", err["msg"]) for err in exc.errors()
        ) from exc


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = data
    walked: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        last = i == len(parts) - 1
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"unknown setting {'.'.join([*walked, part])!r}")
        walked.append(part)
        list_key = _KEYED_LISTS.get(".".join(walked))
        if list_key is not None and not last:
            entry_id = parts[i + 1]
            items = list(node[part])
            matches = [n for n, item in enumerate(items) if item.get(list_key) == entry_id]
            if not matches:
                raise KeyError(f"no entry {entry_id!r} in {'.'.join(walked)!r}")
            items[matches[0]] = dict(items[matches[0]])
            node[part] = items
            node = items[matches[0]]
            walked.append(entry_id)
            i += 2
            if i == len(parts):
                raise KeyError(f"{path!r} names a list entry; name one of its fields")
            continue
        if last:
            node[part] = value
            return
        node = node[part]
        i += 1


def get_protocol(
    protocol_id: ProtocolId | str,
    clinic_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Protocol:
    """The default protocol with the clinic's overrides for it applied.

    `clinic_overrides` maps a protocol id to its overrides (as `apply_overrides` takes them),
    e.g. the clinic's settings document.
    """
    pid = ProtocolId(protocol_id)
    protocol = DEFAULT_PROTOCOLS[pid]
    overrides = (clinic_overrides or {}).get(pid.value) or {}
    return apply_overrides(protocol, overrides) if overrides else protocol
