"""Eligibility screening: a patient's history, today's vitals and recent scale flags in, a
decision that explains itself out.

`screen(input, policy)` returns `eligible`, `eligible_with_cautions` or `ineligible` with every
reason behind it: a rule id, a severity, one sentence a clinician reads and its source (the
catalogue in `screening_rules`). Any absolute reason makes the decision `ineligible`; otherwise
any relative or urgent reason makes it `eligible_with_cautions`; info reasons explain the
findings (for example how treatment-resistant depression was derived) and never change it.

Treatment-resistant depression (TRD) is derived, never typed in: inadequate response to at
least 2 antidepressants of adequate dose and duration in the current episode (reference §3, H).
A trial counts when the clinician marked it adequate, it lasted the policy's minimum (6 weeks by
default: "often 6-8 weeks", reference §3), it belongs to the current episode and its outcome
was no response or a partial response; intolerance, an ongoing trial and a
response do not. Trials are counted per distinct antidepressant, so two trials of one drug
count once, as the definition speaks of antidepressants.

Pure: plain values in, a decision out; the screening date is passed in, nothing is read from
a clock, a database or the network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.dataclasses import dataclass

from ketaflow.core.errors import InvalidInput
from ketaflow.patients.history import (
    AntidepressantTrial,
    BloodPressureReading,
    ConditionCode,
    DiagnosisCode,
    DisorderStatus,
    HepaticImpairment,
    HypertensionStatus,
    MedicationClass,
    PatientHistory,
    PregnancyStatus,
    PsychosisStatus,
    TrialOutcome,
)
from ketaflow.patients.rules import MAX_AGE_YEARS, age_on
from ketaflow.patients.screening_rules import (
    CATALOGUE,
    ORDERED_PAIRS,
    RULES_VERSION,
    Decision,
    Drug,
    Route,
    Severity,
    severity_rank,
)

__all__ = [
    "DEFAULT_POLICY",
    "FAILED_TRIAL_OUTCOMES",
    "RULES_VERSION",
    "AssessmentFlag",
    "CssrsRisk",
    "CssrsRiskFlag",
    "Decision",
    "Drug",
    "PatientSex",
    "Phq9Item9Flag",
    "Route",
    "ScreeningInput",
    "ScreeningInputError",
    "ScreeningPolicy",
    "ScreeningReason",
    "ScreeningResult",
    "ScreeningVitals",
    "Severity",
    "allowed_routes",
    "check_input",
    "count_adequate_failed_trials",
    "decide",
    "screen",
]

# Values of `ketaflow.patients.schemas.Sex` (kept as a Literal here so the pure rules do not
# import the API schemas; a test checks they agree).
PatientSex = Literal["female", "male", "other", "unknown"]

# "Failed" = inadequate response: none or partial. Intolerance is not an adequate trial's
# failure (the drug was not given at an adequate dose for long enough); reference §3 (H).
FAILED_TRIAL_OUTCOMES = frozenset({TrialOutcome.no_response, TrialOutcome.partial_response})

# Which routes a clinic actually uses per drug: SPRAVATO is intranasal only (reference §1,
# label section 2); racemic ketamine on all six routes (reference §2).
_ROUTES_BY_DRUG: Mapping[Drug, frozenset[Route]] = {
    Drug.esketamine: frozenset({Route.intranasal}),
    Drug.ketamine: frozenset(Route),
}
# Routes dosed per kg of body weight (reference §2: IV 0.5 mg/kg; IM 0.25-0.5 mg/kg); SC
# follows IM (reference §6, U).
_WEIGHT_BASED_ROUTES = frozenset({Route.iv, Route.im, Route.sc})
_DEPRESSIVE_DIAGNOSES = frozenset(
    {
        DiagnosisCode.major_depressive_disorder,
        DiagnosisCode.persistent_depressive_disorder,
        DiagnosisCode.bipolar_i,
        DiagnosisCode.bipolar_ii,
    }
)
_CNS_DEPRESSANTS = frozenset(
    {MedicationClass.benzodiazepine, MedicationClass.sedative_hypnotic, MedicationClass.opioid}
)
# A trial's adequate duration: the lower end of "often 6-8 weeks" (reference §3).
DEFAULT_MIN_TRIAL_WEEKS = 6


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScreeningInputError(InvalidInput, ValueError):
    """Input that cannot describe a real screening: names the offending field. It is an
    `InvalidInput` (the API answers 422 problem+json) and a `ValueError`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(detail=message, field_name=field)

    @property
    def field(self) -> str:
        return self.field_name

    @property
    def message(self) -> str:
        return self.detail


class CssrsRisk(StrEnum):
    """C-SSRS screener triage level (reference §3, H)."""

    none = "none"
    low = "low"
    moderate = "moderate"
    high = "high"


class ScreeningVitals(_Value):
    """Today's readings, if taken. Ranges are physiological: outside them is a typing error."""

    # Same bounds as the stored BloodPressureReading in the history model.
    systolic_mmhg: int | None = Field(default=None, ge=50, le=300)
    diastolic_mmhg: int | None = Field(default=None, ge=20, le=200)
    heart_rate_bpm: int | None = Field(default=None, ge=20, le=250)
    spo2_percent: int | None = Field(default=None, ge=50, le=100)

    @model_validator(mode="after")
    def _blood_pressure_pair(self) -> ScreeningVitals:
        if (self.systolic_mmhg is None) != (self.diastolic_mmhg is None):
            raise ValueError("systolic_mmhg and diastolic_mmhg come together")
        if (
            self.systolic_mmhg is not None
            and self.diastolic_mmhg is not None
            and self.diastolic_mmhg >= self.systolic_mmhg
        ):
            raise ValueError("diastolic_mmhg must be below systolic_mmhg")
        return self


class Phq9Item9Flag(_Value):
    """PHQ-9 item 9 (thoughts of death or self-harm) from one completed PHQ-9."""

    kind: Literal["phq9_item9"] = "phq9_item9"
    score: int = Field(ge=0, le=3)
    completed_on: date


class CssrsRiskFlag(_Value):
    """The C-SSRS screener's triage level from one completed screener."""

    kind: Literal["cssrs_risk"] = "cssrs_risk"
    risk: CssrsRisk
    completed_on: date


AssessmentFlag = Annotated[Phq9Item9Flag | CssrsRiskFlag, Field(discriminator="kind")]


class ScreeningInput(_Value):
    drug: Drug
    route: Route
    on_date: date
    birth_date: date
    sex: PatientSex
    history: PatientHistory
    # Same bounds as the patients API (patients.schemas: WeightKg, HeightCm).
    weight_kg: float | None = Field(default=None, ge=20, le=400)
    height_cm: float | None = Field(default=None, ge=100, le=250)
    vitals: ScreeningVitals | None = None
    # The latest results of the suicidality scales, any number, each with its date.
    assessment_flags: tuple[AssessmentFlag, ...] = ()


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ScreeningPolicy:
    """Every threshold screening uses, with its source. A clinic may tighten it; label facts
    are floors (bounds below), unconfirmed (U) defaults are clinic-configurable. A validated
    frozen dataclass: `dataclasses.replace(DEFAULT_POLICY, validity_days=90)` re-validates."""

    # Issue 2 §6: screenings expire, default 180 days, a setting.
    validity_days: int = Field(default=180, ge=1, le=730)  # as Settings.screening_validity_days
    # TRD definition: at least 2 adequate failed antidepressant trials (reference §3, H).
    trd_min_failed_trials: int = Field(default=2, ge=2, le=10)
    # Adequate duration, "often 6-8 weeks" (reference §3, outcome definitions): a trial marked
    # adequate but shorter does not count. The lower end as a clinic-configurable default.
    trd_min_trial_weeks: int = Field(default=DEFAULT_MIN_TRIAL_WEEKS, ge=2, le=12)
    # SPRAVATO is indicated in adults, not approved in pediatric patients (label 1, 8.4, H).
    esketamine_min_age_years: int = Field(default=18, ge=18, le=30)
    # ketaflow treats adults: clinic default, not from the reference (unconfirmed).
    ketamine_min_age_years: int = Field(default=18, ge=18, le=30)
    # Geriatric age as in the SPRAVATO label section 8.5; larger BP rise (Doherty 2020, M).
    elderly_age_years: int = Field(default=65, ge=50, le=90)
    # SPRAVATO: BP above 140/90 before dosing, weigh the risk (label 2 and 5, reference §1, H).
    esketamine_bp_caution_systolic_above_mmhg: int = Field(default=140, ge=100, le=140)
    esketamine_bp_caution_diastolic_above_mmhg: int = Field(default=90, ge=60, le=90)
    # Racemic: BP > 180/100, HR > 110, attributed to Sanacora 2017, unconfirmed (reference §2, U).
    ketamine_bp_limit_systolic_above_mmhg: int = Field(default=180, ge=100, le=220)
    ketamine_bp_limit_diastolic_above_mmhg: int = Field(default=100, ge=60, le=130)
    ketamine_hr_limit_above_bpm: int = Field(default=110, ge=60, le=150)
    # Clinic default, not in the reference: 94% is the lower end of the usual adult target
    # range (BTS oxygen guideline 2017), as in the treatment protocols' SpO2 alarm.
    spo2_caution_below_percent: int = Field(default=94, ge=80, le=100)
    # Dose on ideal body weight when BMI > 30, attributed to Sanacora 2017 (reference §2, U).
    obese_bmi_above: float = Field(default=30.0, ge=25.0, le=50.0)
    # C-SSRS: suicidal behaviour within 3 months is high risk (reference §3, H); 3 months ~ 90 d.
    recent_attempt_days: int = Field(default=90, ge=90, le=3650)
    # How old a scale result or a stored BP reading may be and still count: clinic default.
    assessment_lookback_days: int = Field(default=30, ge=1, le=365)
    bp_reading_lookback_days: int = Field(default=30, ge=1, le=365)
    # Reproductive age for the "pregnancy status unknown" caution: clinic default (unconfirmed).
    reproductive_age_min_years: int = Field(default=12, ge=8, le=20)
    reproductive_age_max_years: int = Field(default=55, ge=40, le=70)
    # Routes a patient takes at home (ASA guidance 2025: caution with home use, reference §2, H).
    # A clinic that sends intranasal racemic ketamine home adds `intranasal`; esketamine is
    # never dispensed for home use (REMS, reference §1), so this applies to racemic only.
    home_use_routes: frozenset[Route] = frozenset({Route.oral, Route.sublingual})
    # Rule id -> severity, within each rule's allowed severities (screening_rules.CATALOGUE).
    severity_overrides: dict[str, Severity] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_overrides(self) -> ScreeningPolicy:
        for rule_id, severity in self.severity_overrides.items():
            spec = CATALOGUE.get(rule_id)
            if spec is None:
                raise ValueError(f"severity_overrides: unknown rule id {rule_id!r}")
            if severity not in spec.allowed:
                allowed = ", ".join(sorted(spec.allowed))
                raise ValueError(f"severity_overrides: {rule_id} may be {allowed}, not {severity}")
        for graver, milder in ORDERED_PAIRS:
            if severity_rank(self.severity_of(graver)) < severity_rank(self.severity_of(milder)):
                raise ValueError(
                    f"severity_overrides: {graver} must not be milder than {milder}, or a "
                    "worse finding would make the decision more permissive"
                )
        return self

    def severity_of(self, rule_id: str) -> Severity:
        return self.severity_overrides.get(rule_id, CATALOGUE[rule_id].default)

    def fingerprint(self) -> str:
        """A short, stable digest of the policy, so a stored screening names its thresholds."""
        data = TypeAdapter(ScreeningPolicy).dump_python(self, mode="json")
        data["home_use_routes"] = sorted(data["home_use_routes"])
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]


DEFAULT_POLICY = ScreeningPolicy()


class ScreeningReason(_Value):
    rule_id: str
    severity: Severity
    message: str = Field(min_length=1)
    source: str = Field(min_length=1)


class ScreeningResult(_Value):
    drug: Drug
    route: Route
    screened_on: date
    expires_on: date
    decision: Decision
    reasons: tuple[ScreeningReason, ...]
    treatment_resistant: bool
    adequate_failed_trials: int = Field(ge=0)
    urgent: bool
    rule_version: str = Field(max_length=32)

    def reason_ids(self) -> frozenset[str]:
        return frozenset(r.rule_id for r in self.reasons)


def allowed_routes(drug: Drug) -> frozenset[Route]:
    return _ROUTES_BY_DRUG[drug]


def count_adequate_failed_trials(
    trials: Iterable[AntidepressantTrial], min_weeks: int = DEFAULT_MIN_TRIAL_WEEKS
) -> int:
    """Distinct antidepressants with an adequate trial (marked so, and at least `min_weeks`
    long) that failed in the current episode."""
    return len(
        {
            _drug_key(trial.drug)
            for trial in trials
            if trial.adequate
            and trial.weeks >= min_weeks
            and trial.current_episode
            and trial.outcome in FAILED_TRIAL_OUTCOMES
        }
    )


def decide(severities: Iterable[Severity]) -> Decision:
    """Any absolute -> ineligible; else any relative or urgent -> with cautions; else eligible."""
    rank = max((severity_rank(s) for s in severities), default=0)
    return (
        Decision.eligible,
        Decision.eligible_with_cautions,
        Decision.ineligible,
    )[rank]


def check_input(screening: ScreeningInput) -> None:
    """Refuse input that cannot be a real screening (ranges are checked by the models)."""
    if screening.route not in allowed_routes(screening.drug):
        routes = ", ".join(sorted(allowed_routes(screening.drug)))
        raise ScreeningInputError(
            "route", f"{screening.drug} is given by {routes} only, not {screening.route}"
        )
    on_date = screening.on_date
    if screening.birth_date > on_date:
        raise ScreeningInputError("birth_date", "birth_date is after the screening date")
    if age_on(screening.birth_date, on_date) > MAX_AGE_YEARS:
        raise ScreeningInputError("birth_date", f"patient would be over {MAX_AGE_YEARS} years old")
    history = screening.history
    dated: list[tuple[str, date | None]] = [
        ("history.current_episode_started_on", history.current_episode_started_on),
        ("history.suicidality.last_attempt_on", history.suicidality.last_attempt_on),
    ]
    dated += [
        (f"assessment_flags.{i}.completed_on", flag.completed_on)
        for i, flag in enumerate(screening.assessment_flags)
    ]
    dated += [
        (f"history.blood_pressure_readings.{i}.measured_on", reading.measured_on)
        for i, reading in enumerate(history.blood_pressure_readings)
    ]
    for field, when in dated:
        if when is None:
            continue
        if when > on_date:
            raise ScreeningInputError(field, f"{field} is after the screening date")
        if when < screening.birth_date:
            raise ScreeningInputError(field, f"{field} is before the patient's birth")


def screen(screening: ScreeningInput, policy: ScreeningPolicy = DEFAULT_POLICY) -> ScreeningResult:
    """Decide eligibility for one drug and route; raises ScreeningInputError on impossible input."""
    check_input(screening)
    rules = _Rules(screening, policy)
    rules.run()
    reasons = tuple(sorted(rules.reasons, key=lambda r: _SEVERITY_ORDER[r.severity]))
    failed = rules.adequate_failed
    version = RULES_VERSION
    if policy != DEFAULT_POLICY:
        version = f"{RULES_VERSION}+{policy.fingerprint()}"
    return ScreeningResult(
        drug=screening.drug,
        route=screening.route,
        screened_on=screening.on_date,
        expires_on=screening.on_date + timedelta(days=policy.validity_days),
        decision=decide(r.severity for r in reasons),
        reasons=reasons,
        treatment_resistant=failed >= policy.trd_min_failed_trials,
        adequate_failed_trials=failed,
        urgent=any(r.severity is Severity.urgent for r in reasons),
        rule_version=version,
    )


_CSSRS_ORDER = {CssrsRisk.none: 0, CssrsRisk.low: 1, CssrsRisk.moderate: 2, CssrsRisk.high: 3}
# Reasons read gravest first; within a severity, in the order the rules ran.
_SEVERITY_ORDER = {Severity.absolute: 0, Severity.urgent: 1, Severity.relative: 2, Severity.info: 3}


def _drug_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class _Rules:
    """One screening's evaluation: facts derived once, then each rule group adds reasons."""

    def __init__(self, screening: ScreeningInput, policy: ScreeningPolicy) -> None:
        self.input = screening
        self.policy = policy
        self.history = screening.history
        self.esk = screening.drug is Drug.esketamine
        self.prefix = "esk" if self.esk else "ket"
        self.drug_name = "esketamine" if self.esk else "ketamine"
        self.age_years = age_on(screening.birth_date, screening.on_date)
        self.adequate_failed = count_adequate_failed_trials(
            self.history.antidepressant_trials, policy.trd_min_trial_weeks
        )
        self.trd = self.adequate_failed >= policy.trd_min_failed_trials
        self.medication_classes = self.history.medication_classes()
        self.reasons: list[ScreeningReason] = []

    def add(self, suffix: str, message: str) -> None:
        rule_id = f"{self.prefix}.{suffix}"
        self.reasons.append(
            ScreeningReason(
                rule_id=rule_id,
                severity=self.policy.severity_of(rule_id),
                message=message,
                source=CATALOGUE[rule_id].source,
            )
        )

    def run(self) -> None:
        self.age()
        self.contraindications()
        self.medical_warnings()
        self.pregnancy()
        self.medications()
        self.psychiatric()
        self.suicidality()
        self.vitals()
        self.treatment_resistance()
        if self.esk:
            self.esketamine_indication()
        else:
            self.ketamine_indication()
            self.ketamine_route()

    # --- age --------------------------------------------------------------------------------
    def age(self) -> None:
        minimum = (
            self.policy.esketamine_min_age_years if self.esk else self.policy.ketamine_min_age_years
        )
        if self.age_years < minimum:
            self.add(
                "age.minor",
                f"The patient is {self.age_years}; {self.drug_name} screening in ketaflow is "
                f"for patients aged {minimum} or older.",
            )
        if self.esk and self.age_years >= self.policy.elderly_age_years:
            self.add(
                "age.elderly",
                f"The patient is {self.age_years}: blood pressure rises more after esketamine "
                "in the elderly, so watch the 40-minute reading closely.",
            )

    # --- contraindications and medical warnings ---------------------------------------------
    def contraindications(self) -> None:
        has = self.history.has
        if has(ConditionCode.aneurysmal_vascular_disease):
            self.add(
                "contra.aneurysm",
                "Aneurysmal vascular disease is recorded: the rise in blood pressure after each "
                "dose could rupture an aneurysm.",
            )
        if has(ConditionCode.arteriovenous_malformation):
            self.add(
                "contra.avm",
                "An arteriovenous malformation is recorded: a rise in blood pressure could make "
                "it bleed.",
            )
        if has(ConditionCode.intracerebral_hemorrhage_history):
            self.add(
                "contra.intracerebral_hemorrhage",
                "A history of intracerebral hemorrhage is recorded.",
            )
        if has(ConditionCode.ketamine_hypersensitivity):
            self.add(
                "contra.hypersensitivity",
                "Hypersensitivity to ketamine or esketamine is recorded.",
            )
        if has(ConditionCode.raised_intracranial_pressure):
            self.add(
                "contra.raised_icp",
                "Raised intracranial pressure is recorded: ketamine raises blood pressure and "
                "may raise intracranial pressure further.",
            )

    def medical_warnings(self) -> None:
        has = self.history.has
        if self.history.hypertension is HypertensionStatus.uncontrolled:
            self.add(
                "warn.hypertension_uncontrolled",
                "Hypertension is recorded as uncontrolled: control it before treatment, as "
                f"{self.drug_name} raises blood pressure for about 1.5 hours after each dose.",
            )
        simple = (
            (
                ConditionCode.cardiovascular_disease,
                "warn.cardiovascular",
                "Cardiovascular disease is recorded: confirm it is stable, as the dose raises "
                "blood pressure and heart rate.",
            ),
            (
                ConditionCode.cerebrovascular_disease,
                "warn.cerebrovascular",
                "Cerebrovascular disease is recorded: weigh the risk of the rise in blood "
                "pressure after each dose.",
            ),
            (
                ConditionCode.raised_intraocular_pressure,
                "warn.raised_iop",
                "Raised intraocular pressure is recorded: ketamine can raise it further.",
            ),
            (
                ConditionCode.uncontrolled_hyperthyroidism,
                "warn.hyperthyroidism",
                "Uncontrolled hyperthyroidism is recorded: it adds to ketamine's rise in blood "
                "pressure and heart rate.",
            ),
            (
                ConditionCode.cognitive_impairment,
                "warn.cognitive_impairment",
                "Cognitive impairment is recorded: confirm capacity to consent and watch for "
                "worsening cognition.",
            ),
            (
                ConditionCode.ulcerative_or_interstitial_cystitis,
                "warn.cystitis",
                "Ulcerative or interstitial cystitis is recorded: monitor urinary and bladder "
                "symptoms during treatment.",
            ),
            (
                ConditionCode.respiratory_disease,
                "warn.respiratory",
                "Respiratory disease is recorded: watch for respiratory depression with pulse "
                "oximetry after each dose.",
            ),
            (
                ConditionCode.seizure_disorder,
                "warn.seizure",
                "A seizure disorder is recorded: ketamine can cause movements that resemble "
                "seizures; confirm it is controlled.",
            ),
        )
        for condition, suffix, message in simple:
            if has(condition):
                self.add(suffix, message)
        if self.history.hepatic_impairment is HepaticImpairment.moderate:
            self.add(
                "warn.hepatic_moderate",
                "Moderate hepatic impairment: drug levels stay higher for longer, so monitor "
                "for adverse reactions for longer after each dose.",
            )
        elif self.history.hepatic_impairment is HepaticImpairment.severe:
            self.add(
                "warn.hepatic_severe",
                "Severe hepatic impairment (Child-Pugh C): not studied and not recommended.",
            )

    def pregnancy(self) -> None:
        status = self.history.pregnancy
        if status is PregnancyStatus.pregnant:
            self.add(
                "preg.pregnant",
                f"The patient is pregnant: {self.drug_name} may harm the fetus and is not "
                "recommended in pregnancy.",
            )
        elif status is PregnancyStatus.breastfeeding:
            self.add(
                "preg.breastfeeding",
                f"The patient is breastfeeding: {self.drug_name} passes into breast milk and "
                "breastfeeding is not recommended during treatment.",
            )
        elif status is PregnancyStatus.planning_pregnancy:
            self.add(
                "preg.planning",
                "The patient is planning a pregnancy: discuss the risk to a fetus and "
                "pregnancy prevention during treatment.",
            )
        elif status is PregnancyStatus.unknown and self._could_be_pregnant():
            self.add(
                "preg.unknown",
                "Pregnancy status is not recorded for a patient of reproductive age: record it "
                "before treatment.",
            )

    def _could_be_pregnant(self) -> bool:
        policy = self.policy
        in_age = (
            policy.reproductive_age_min_years <= self.age_years <= policy.reproductive_age_max_years
        )
        return in_age and self.input.sex != "male"

    def medications(self) -> None:
        classes = self.medication_classes
        depressants = sorted(
            m.name
            for m in self.history.current_medications
            if m.medication_class in _CNS_DEPRESSANTS
        )
        if depressants:
            self.add(
                "med.cns_depressant",
                f"CNS depressants are taken ({', '.join(depressants)}): they deepen sedation "
                "and respiratory depression after the dose.",
            )
        if MedicationClass.psychostimulant in classes:
            self.add(
                "med.psychostimulant",
                "A psychostimulant is taken: it adds to the rise in blood pressure after the dose.",
            )
        if MedicationClass.maoi in classes:
            self.add(
                "med.maoi",
                "An MAOI is taken: it adds to the rise in blood pressure after the dose.",
            )
        nasal = {MedicationClass.nasal_corticosteroid, MedicationClass.nasal_decongestant}
        if self.esk and classes & nasal:
            self.add(
                "med.nasal",
                "A nasal corticosteroid or decongestant is taken: use it at least 1 hour before "
                "each esketamine dose.",
            )

    # --- psychiatric history ----------------------------------------------------------------
    def psychiatric(self) -> None:
        history = self.history
        if history.psychosis is PsychosisStatus.active:
            self.add(
                "psychosis.active",
                f"Active psychosis is recorded: {self.drug_name} can worsen psychotic symptoms.",
            )
        elif history.psychosis is PsychosisStatus.past:
            self.add(
                "psychosis.history",
                "A past psychotic episode is recorded: weigh the risk of a relapse of psychosis "
                "against the benefit.",
            )
        codes = {d.code for d in history.diagnoses}
        psychotic = codes & {DiagnosisCode.schizophrenia, DiagnosisCode.schizoaffective_disorder}
        if psychotic:
            names = " and ".join(sorted(code.replace("_", " ") for code in psychotic))
            self.add(
                "dx.primary_psychotic_disorder",
                f"A primary psychotic disorder is diagnosed ({names}): ketamine can worsen it.",
            )
        if codes & {DiagnosisCode.bipolar_i, DiagnosisCode.bipolar_ii}:
            self.add(
                "dx.bipolar",
                "Bipolar disorder is diagnosed: watch for a switch to mania and confirm a mood "
                "stabilizer plan.",
            )
        substance = history.substance_use
        substances = f" ({', '.join(substance.substances)})" if substance.substances else ""
        if substance.disorder is DisorderStatus.active:
            self.add(
                "sud.active",
                f"An active substance use disorder is recorded{substances}: assess the risk of "
                "abuse and misuse and monitor for it.",
            )
        elif substance.disorder is DisorderStatus.in_remission:
            self.add(
                "sud.history",
                f"A substance use disorder in remission is recorded{substances}: assess the "
                "risk of relapse, abuse and misuse.",
            )
        if substance.ketamine_or_dissociative_misuse:
            self.add(
                "misuse.dissociative",
                "Past misuse of ketamine or another dissociative is recorded: the risk of "
                "abuse and misuse is high.",
            )

    # --- suicidality ------------------------------------------------------------------------
    def suicidality(self) -> None:
        suicidality = self.history.suicidality
        if suicidality.current_ideation:
            self.add(
                "suicide.ideation",
                "Current suicidal ideation is recorded: treat this screening as urgent and "
                "follow the clinic's suicide-risk protocol.",
            )
        if suicidality.ideation_with_intent_or_plan:
            self.add(
                "suicide.intent_or_plan",
                "Suicidal ideation with intent or a plan is recorded: an acute safety "
                "assessment, and hospitalization if needed, comes before any ketamine "
                "treatment.",
            )
        attempt_on = suicidality.last_attempt_on
        if attempt_on is not None:
            days_ago = (self.input.on_date - attempt_on).days
            if days_ago <= self.policy.recent_attempt_days:
                self.add(
                    "suicide.recent_attempt",
                    f"A suicide attempt on {attempt_on.isoformat()} ({days_ago} days ago) is "
                    "recorded: high risk; assess safety before treatment.",
                )
            else:
                self.add(
                    "suicide.past_attempt",
                    f"A past suicide attempt on {attempt_on.isoformat()} is recorded.",
                )
        self._scale_flags()

    def _scale_flags(self) -> None:
        """Any positive result within the look-back counts (the latest positive is reported);
        a scale whose every result is older is reported as not counted."""
        flags = self.input.assessment_flags
        phq9 = [f for f in flags if isinstance(f, Phq9Item9Flag)]
        recent_phq9 = [f for f in phq9 if self._is_recent(f.completed_on)]
        positive_phq9 = [f for f in recent_phq9 if f.score > 0]
        if positive_phq9:
            latest = max(positive_phq9, key=lambda f: (f.completed_on, f.score))
            self.add(
                "phq9.item9_positive",
                f"PHQ-9 item 9 scored {latest.score} on {latest.completed_on.isoformat()}: "
                "follow up on suicide risk whatever the total.",
            )
        elif phq9 and not recent_phq9:
            self._stale("phq9", "PHQ-9", max(f.completed_on for f in phq9))
        cssrs = [f for f in flags if isinstance(f, CssrsRiskFlag)]
        recent_cssrs = [f for f in cssrs if self._is_recent(f.completed_on)]
        if recent_cssrs:
            gravest = max(recent_cssrs, key=lambda f: (_CSSRS_ORDER[f.risk], f.completed_on))
            self._cssrs(gravest.risk, gravest.completed_on)
        elif cssrs:
            self._stale("cssrs", "C-SSRS screener", max(f.completed_on for f in cssrs))

    def _cssrs(self, risk: CssrsRisk, completed_on: date) -> None:
        when = completed_on.isoformat()
        if risk is CssrsRisk.low:
            self.add(
                "cssrs.low",
                f"C-SSRS screener on {when}: low risk (wish to be dead or suicidal thoughts); "
                "follow up on suicide risk.",
            )
        elif risk is CssrsRisk.moderate:
            self.add(
                "cssrs.moderate",
                f"C-SSRS screener on {when}: moderate risk; a suicide-risk assessment is needed "
                "before treatment.",
            )
        elif risk is CssrsRisk.high:
            self.add(
                "cssrs.high",
                f"C-SSRS screener on {when}: high risk; an acute safety assessment, and "
                "hospitalization if needed, comes before any ketamine treatment.",
            )

    def _is_recent(self, when: date) -> bool:
        return (self.input.on_date - when).days <= self.policy.assessment_lookback_days

    def _stale(self, rule: str, scale: str, completed_on: date) -> None:
        self.add(
            f"{rule}.stale",
            f"The {scale} from {completed_on.isoformat()} is older than "
            f"{self.policy.assessment_lookback_days} days and was not counted: repeat it.",
        )

    def _acute_suicidality(self) -> bool:
        """Acute suicidal ideation or behaviour, as the second esketamine indication reads it."""
        suicidality = self.history.suicidality
        attempt = suicidality.last_attempt_on
        recent_attempt = (
            attempt is not None
            and (self.input.on_date - attempt).days <= self.policy.recent_attempt_days
        )
        cssrs_positive = any(
            isinstance(f, CssrsRiskFlag)
            and f.risk is not CssrsRisk.none
            and self._is_recent(f.completed_on)
            for f in self.input.assessment_flags
        )
        return suicidality.current_ideation or recent_attempt or cssrs_positive

    # --- vitals -----------------------------------------------------------------------------
    def vitals(self) -> None:
        vitals = self.input.vitals
        policy = self.policy
        if self.esk:
            systolic_above = policy.esketamine_bp_caution_systolic_above_mmhg
            diastolic_above = policy.esketamine_bp_caution_diastolic_above_mmhg
            today_rule, recent_rule = "bp.today_elevated", "bp.recent_elevated"
            consequence = "weigh the short rise in blood pressure after dosing against the benefit"
        else:
            systolic_above = policy.ketamine_bp_limit_systolic_above_mmhg
            diastolic_above = policy.ketamine_bp_limit_diastolic_above_mmhg
            today_rule, recent_rule = "bp.today_above_limit", "bp.recent_above_limit"
            consequence = "recheck and control it before the first dose"
        limit = f"{systolic_above}/{diastolic_above} mmHg"
        systolic = vitals.systolic_mmhg if vitals is not None else None
        if vitals is not None and systolic is not None:
            diastolic = vitals.diastolic_mmhg or 0  # present with systolic (validated pair)
            if systolic > systolic_above or diastolic > diastolic_above:
                self.add(
                    today_rule,
                    f"Blood pressure today is {systolic}/{diastolic} mmHg, above "
                    f"{limit}: {consequence}.",
                )
        else:
            self.add(
                "vitals.bp_not_taken",
                "No blood pressure was taken today: measure it before the first dose.",
            )
            reading = self._latest_recent_reading()
            if reading is not None and (
                reading.systolic_mmhg > systolic_above or reading.diastolic_mmhg > diastolic_above
            ):
                self.add(
                    recent_rule,
                    f"The latest recorded blood pressure, {reading.systolic_mmhg}/"
                    f"{reading.diastolic_mmhg} mmHg on {reading.measured_on.isoformat()}, is "
                    f"above {limit}: {consequence}.",
                )
        if vitals is None:
            return
        if (
            not self.esk
            and vitals.heart_rate_bpm is not None
            and vitals.heart_rate_bpm > policy.ketamine_hr_limit_above_bpm
        ):
            self.add(
                "hr.today_above_limit",
                f"Heart rate today is {vitals.heart_rate_bpm}/min, above "
                f"{policy.ketamine_hr_limit_above_bpm}/min: find the cause before the first "
                "dose.",
            )
        if (
            vitals.spo2_percent is not None
            and vitals.spo2_percent < policy.spo2_caution_below_percent
        ):
            self.add(
                "spo2.today_low",
                f"SpO2 today is {vitals.spo2_percent}%, below "
                f"{policy.spo2_caution_below_percent}%: assess breathing before a drug that can "
                "depress it.",
            )

    def _latest_recent_reading(self) -> BloodPressureReading | None:
        window = self.policy.bp_reading_lookback_days
        recent = [
            r
            for r in self.history.blood_pressure_readings
            if (self.input.on_date - r.measured_on).days <= window
        ]
        # Latest date wins; on the same day, the higher reading (the cautious one).
        return max(
            recent,
            key=lambda r: (r.measured_on, r.systolic_mmhg, r.diastolic_mmhg),
            default=None,
        )

    # --- treatment-resistant depression and indication --------------------------------------
    def treatment_resistance(self) -> None:
        needed = self.policy.trd_min_failed_trials
        count = _plural(self.adequate_failed, "adequate failed antidepressant trial")
        if self.trd:
            self.add(
                "trd.met",
                f"Treatment-resistant depression: {count} in the current episode (at least "
                f"{needed} needed).",
            )
        else:
            self.add(
                "trd.not_met",
                f"Not treatment-resistant: {count} in the current episode, {needed} needed.",
            )
        not_counted = self._uncounted_trials()
        if not_counted:
            self.add(
                "trd.not_counted",
                f"Trials not counted toward TRD: {'; '.join(not_counted)}.",
            )

    def _uncounted_trials(self) -> list[str]:
        trials = self.history.antidepressant_trials
        counted_drugs: set[str] = set()
        notes: dict[str, int] = {}

        def note(label: str) -> None:
            notes[label] = notes.get(label, 0) + 1

        for trial in trials:
            if not trial.current_episode:
                note("earlier episode")
            elif not trial.adequate:
                note("not adequate in dose or duration")
            elif trial.weeks < self.policy.trd_min_trial_weeks:
                note(f"marked adequate but shorter than {self.policy.trd_min_trial_weeks} weeks")
            elif trial.outcome is TrialOutcome.intolerance:
                note("stopped for intolerance")
            elif trial.outcome is TrialOutcome.ongoing:
                note("still ongoing")
            elif trial.outcome is TrialOutcome.response:
                note("responded")
            elif _drug_key(trial.drug) in counted_drugs:
                note("repeat trial of a drug already counted")
            else:
                counted_drugs.add(_drug_key(trial.drug))
        return [f"{n} {label}" for label, n in notes.items()]

    def _has_current_diagnosis(self, codes: frozenset[DiagnosisCode]) -> bool:
        return any(d.current and d.code in codes for d in self.history.diagnoses)

    def esketamine_indication(self) -> None:
        if not self._has_current_diagnosis(frozenset({DiagnosisCode.major_depressive_disorder})):
            self.add(
                "indication.no_mdd",
                "No current major depressive disorder is recorded: both esketamine indications "
                "are for major depressive disorder, so use would be off-label.",
            )
            return
        if self.trd:
            self.add(
                "indication.trd",
                "Within the label: treatment-resistant depression (with or without an oral "
                "antidepressant).",
            )
            return
        if self._acute_suicidality():
            if MedicationClass.antidepressant in self.medication_classes:
                self.add(
                    "indication.mdd_si",
                    "Within the label: major depressive disorder with acute suicidal ideation "
                    "or behaviour, with an oral antidepressant.",
                )
            else:
                self.add(
                    "indication.mdd_si_without_oral_antidepressant",
                    "Major depressive disorder with acute suicidal ideation or behaviour: the "
                    "label requires an oral antidepressant alongside, and none is recorded.",
                )
            return
        self.add(
            "indication.off_label",
            f"Neither labelled indication is met: not treatment-resistant "
            f"({self.adequate_failed} of {self.policy.trd_min_failed_trials} adequate failed "
            "trials) and no acute suicidal ideation or behaviour, so use would be off-label.",
        )

    def ketamine_indication(self) -> None:
        if not self._has_current_diagnosis(_DEPRESSIVE_DIAGNOSES):
            self.add(
                "indication.no_depressive_disorder",
                "No current depressive disorder is recorded: the evidence for ketamine is in "
                "depression.",
            )
        elif not self.trd:
            self.add(
                "indication.not_trd",
                f"Not treatment-resistant ({self.adequate_failed} of "
                f"{self.policy.trd_min_failed_trials} adequate failed trials): the evidence "
                "for off-label ketamine is mainly in treatment-resistant depression.",
            )

    def ketamine_route(self) -> None:
        route = self.input.route
        substance = self.history.substance_use
        if route in self.policy.home_use_routes:
            self.add(
                "route.home_use",
                f"{route.capitalize()} ketamine may be taken at home: plan a defined course, "
                "the minimum effective dose, periodic face-to-face visits and safe storage.",
            )
            if substance.disorder is not DisorderStatus.none or (
                substance.ketamine_or_dissociative_misuse
            ):
                self.add(
                    "route.home_use_misuse_risk",
                    f"Home {route} ketamine with a history of substance use disorder or "
                    "dissociative misuse: the risk of misuse and diversion is higher; prefer "
                    "supervised dosing.",
                )
        if route in _WEIGHT_BASED_ROUTES:
            weight_kg, height_cm = self.input.weight_kg, self.input.height_cm
            if weight_kg is None:
                self.add(
                    "route.weight_missing",
                    f"No weight is recorded: {route.upper()} ketamine is dosed per kilogram.",
                )
            elif height_cm is not None:
                bmi = weight_kg / (height_cm / 100) ** 2
                if bmi > self.policy.obese_bmi_above:
                    self.add(
                        "route.obese_dosing",
                        f"BMI is {bmi:.1f}, above {self.policy.obese_bmi_above:g}: consider "
                        "dosing on ideal body weight (unconfirmed default).",
                    )
