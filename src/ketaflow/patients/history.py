"""A patient's clinical history as plain, validated values.

The history is what screening reads: diagnoses, prior antidepressant trials (from which
treatment-resistant depression is derived), current medications, substance use, psychosis,
suicidality, pregnancy, blood pressure and the conditions the ketamine and esketamine labels and
guidance care about. It is pure data: the patients service stores each saved version as a
revision, so a screening can always name the exact history it was decided on.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# A name with something in it: "  " is no drug, and two spellings differing only in spaces are
# one drug (screening counts trials per distinct antidepressant).
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class DiagnosisCode(StrEnum):
    major_depressive_disorder = "major_depressive_disorder"
    bipolar_i = "bipolar_i"
    bipolar_ii = "bipolar_ii"
    persistent_depressive_disorder = "persistent_depressive_disorder"
    ptsd = "ptsd"
    generalized_anxiety_disorder = "generalized_anxiety_disorder"
    obsessive_compulsive_disorder = "obsessive_compulsive_disorder"
    schizophrenia = "schizophrenia"
    schizoaffective_disorder = "schizoaffective_disorder"
    other = "other"


class Diagnosis(_Value):
    code: DiagnosisCode
    icd10: str | None = Field(default=None, max_length=10, pattern=r"^[A-Z][0-9A-Z.]{1,9}$")
    description: str | None = Field(default=None, max_length=200)
    current: bool = True


class TrialOutcome(StrEnum):
    no_response = "no_response"
    partial_response = "partial_response"
    response = "response"
    intolerance = "intolerance"
    ongoing = "ongoing"


class AntidepressantTrial(_Value):
    """One prior antidepressant trial. `adequate` means adequate dose and duration, as judged
    by the clinician (often 6-8 weeks: reference §3, outcome definitions)."""

    drug: Name
    dose_mg_per_day: float | None = Field(default=None, gt=0, le=5000)
    weeks: int = Field(ge=0, le=520)
    adequate: bool
    outcome: TrialOutcome
    current_episode: bool = True


class MedicationClass(StrEnum):
    antidepressant = "antidepressant"
    benzodiazepine = "benzodiazepine"
    sedative_hypnotic = "sedative_hypnotic"
    opioid = "opioid"
    psychostimulant = "psychostimulant"
    maoi = "maoi"
    antipsychotic = "antipsychotic"
    mood_stabilizer = "mood_stabilizer"
    antihypertensive = "antihypertensive"
    nasal_corticosteroid = "nasal_corticosteroid"
    nasal_decongestant = "nasal_decongestant"
    other = "other"


class Medication(_Value):
    name: Name
    medication_class: MedicationClass
    dose: str | None = Field(default=None, max_length=100)


class DisorderStatus(StrEnum):
    none = "none"
    in_remission = "in_remission"
    active = "active"


class SubstanceUse(_Value):
    disorder: DisorderStatus = DisorderStatus.none
    substances: tuple[Name, ...] = Field(default=(), max_length=20)
    # Prior misuse of ketamine or other dissociatives weighs heavily (label warning: abuse and
    # misuse; reference §1).
    ketamine_or_dissociative_misuse: bool = False


class PsychosisStatus(StrEnum):
    none = "none"
    past = "past"
    active = "active"


class Suicidality(_Value):
    current_ideation: bool = False
    ideation_with_intent_or_plan: bool = False
    last_attempt_on: date | None = None

    @model_validator(mode="after")
    def _intent_implies_ideation(self) -> Suicidality:
        if self.ideation_with_intent_or_plan and not self.current_ideation:
            raise ValueError("ideation_with_intent_or_plan requires current_ideation")
        return self


class PregnancyStatus(StrEnum):
    not_applicable = "not_applicable"
    not_pregnant = "not_pregnant"
    pregnant = "pregnant"
    planning_pregnancy = "planning_pregnancy"
    breastfeeding = "breastfeeding"
    unknown = "unknown"


class HypertensionStatus(StrEnum):
    none = "none"
    controlled = "controlled"
    uncontrolled = "uncontrolled"


class BloodPressureReading(_Value):
    measured_on: date
    systolic_mmhg: int = Field(ge=50, le=300)
    diastolic_mmhg: int = Field(ge=20, le=200)

    @model_validator(mode="after")
    def _systolic_above_diastolic(self) -> BloodPressureReading:
        if self.diastolic_mmhg >= self.systolic_mmhg:
            raise ValueError("diastolic_mmhg must be below systolic_mmhg")
        return self


class HepaticImpairment(StrEnum):
    none = "none"
    mild = "mild"
    moderate = "moderate"
    severe = "severe"


class ConditionCode(StrEnum):
    aneurysmal_vascular_disease = "aneurysmal_vascular_disease"
    arteriovenous_malformation = "arteriovenous_malformation"
    intracerebral_hemorrhage_history = "intracerebral_hemorrhage_history"
    ketamine_hypersensitivity = "ketamine_hypersensitivity"
    cardiovascular_disease = "cardiovascular_disease"
    cerebrovascular_disease = "cerebrovascular_disease"
    raised_intracranial_pressure = "raised_intracranial_pressure"
    raised_intraocular_pressure = "raised_intraocular_pressure"
    uncontrolled_hyperthyroidism = "uncontrolled_hyperthyroidism"
    cognitive_impairment = "cognitive_impairment"
    ulcerative_or_interstitial_cystitis = "ulcerative_or_interstitial_cystitis"
    respiratory_disease = "respiratory_disease"
    seizure_disorder = "seizure_disorder"


class PatientHistory(_Value):
    """Everything screening needs to know, as the clinician recorded it."""

    # Bounds far above any chart, so a client cannot store megabytes in one history.
    diagnoses: tuple[Diagnosis, ...] = Field(default=(), max_length=50)
    current_episode_started_on: date | None = None
    antidepressant_trials: tuple[AntidepressantTrial, ...] = Field(default=(), max_length=100)
    current_medications: tuple[Medication, ...] = Field(default=(), max_length=100)
    substance_use: SubstanceUse = SubstanceUse()
    psychosis: PsychosisStatus = PsychosisStatus.none
    suicidality: Suicidality = Suicidality()
    pregnancy: PregnancyStatus = PregnancyStatus.unknown
    hypertension: HypertensionStatus = HypertensionStatus.none
    blood_pressure_readings: tuple[BloodPressureReading, ...] = Field(default=(), max_length=200)
    hepatic_impairment: HepaticImpairment = HepaticImpairment.none
    conditions: tuple[ConditionCode, ...] = ()
    notes: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _no_duplicate_conditions(self) -> PatientHistory:
        if len(set(self.conditions)) != len(self.conditions):
            raise ValueError("conditions must not repeat")
        return self

    def has(self, condition: ConditionCode) -> bool:
        return condition in self.conditions

    def medication_classes(self) -> frozenset[MedicationClass]:
        return frozenset(m.medication_class for m in self.current_medications)


UNNAMED = "(not named)"


def _clean_name(value: object) -> object:
    if not isinstance(value, str):
        return value
    return value.strip() or UNNAMED


def from_stored(document: dict) -> PatientHistory:
    """A stored revision, read: revisions saved before names were stripped and required
    (blank drug or medication names, empty substances) read as they meant, never as an error
    that would leave the patient's history unreadable and unsaveable. Only input is strict."""
    doc = dict(document)
    doc["antidepressant_trials"] = [
        {**t, "drug": _clean_name(t.get("drug"))} if isinstance(t, dict) else t
        for t in doc.get("antidepressant_trials") or ()
    ]
    doc["current_medications"] = [
        {**m, "name": _clean_name(m.get("name"))} if isinstance(m, dict) else m
        for m in doc.get("current_medications") or ()
    ]
    substance_use = doc.get("substance_use")
    if isinstance(substance_use, dict):
        doc["substance_use"] = {
            **substance_use,
            "substances": [
                s.strip() if isinstance(s, str) else s
                for s in substance_use.get("substances") or ()
                if not isinstance(s, str) or s.strip()
            ],
        }
    return PatientHistory.model_validate(doc)
