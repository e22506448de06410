"""Eligibility screening rules: every rule with plain values, the refusals of impossible input,
the policy's floors, and Hypothesis properties (monotone decisions, decisions consistent with
their reasons, the TRD count, every reason sourced)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ketaflow.patients.history import (
    AntidepressantTrial,
    BloodPressureReading,
    ConditionCode,
    Diagnosis,
    DiagnosisCode,
    DisorderStatus,
    HepaticImpairment,
    HypertensionStatus,
    Medication,
    MedicationClass,
    PatientHistory,
    PregnancyStatus,
    PsychosisStatus,
    SubstanceUse,
    Suicidality,
    TrialOutcome,
)
from ketaflow.patients.schemas import Sex
from ketaflow.patients.screening import (
    DEFAULT_POLICY,
    RULES_VERSION,
    CssrsRisk,
    CssrsRiskFlag,
    Decision,
    Drug,
    PatientSex,
    Phq9Item9Flag,
    Route,
    ScreeningInput,
    ScreeningInputError,
    ScreeningPolicy,
    ScreeningResult,
    ScreeningVitals,
    Severity,
    allowed_routes,
    count_adequate_failed_trials,
    decide,
    screen,
)
from ketaflow.patients.screening_rules import CATALOGUE, ORDERED_PAIRS, severity_rank

TODAY = date(2026, 11, 22)
ADULT_BIRTH = date(1980, 5, 17)  # 46 on TODAY
ESK, KET = Drug.esketamine, Drug.ketamine
IN, IV, IM, SC, ORAL, SL = (
    Route.intranasal,
    Route.iv,
    Route.im,
    Route.sc,
    Route.oral,
    Route.sublingual,
)
MDD = Diagnosis(code=DiagnosisCode.major_depressive_disorder)


def trial(
    drug: str,
    outcome: TrialOutcome = TrialOutcome.no_response,
    *,
    adequate: bool = True,
    current_episode: bool = True,
) -> AntidepressantTrial:
    return AntidepressantTrial(
        drug=drug, weeks=8, adequate=adequate, outcome=outcome, current_episode=current_episode
    )


TWO_FAILED = (trial("sertraline"), trial("bupropion", TrialOutcome.partial_response))
ON_ANTIDEPRESSANT = (
    Medication(name="escitalopram", medication_class=MedicationClass.antidepressant),
)
NORMAL_VITALS = ScreeningVitals(
    systolic_mmhg=122, diastolic_mmhg=78, heart_rate_bpm=72, spo2_percent=98
)


def clean_history(**changes: Any) -> PatientHistory:
    """An adult with MDD and TRD, nothing else of note."""
    base: dict[str, Any] = {
        "diagnoses": (MDD,),
        "antidepressant_trials": TWO_FAILED,
        "current_medications": ON_ANTIDEPRESSANT,
        "pregnancy": PregnancyStatus.not_pregnant,
    }
    base.update(changes)
    return PatientHistory(**base)


def make_input(
    drug: Drug = ESK,
    route: Route | None = None,
    *,
    history: PatientHistory | None = None,
    birth_date: date = ADULT_BIRTH,
    sex: str = "female",
    weight_kg: float | None = 70.0,
    height_cm: float | None = 170.0,
    vitals: ScreeningVitals | None = NORMAL_VITALS,
    flags: tuple[Any, ...] = (),
    on_date: date = TODAY,
) -> ScreeningInput:
    return ScreeningInput(
        drug=drug,
        route=route or (IN if drug is ESK else IV),
        on_date=on_date,
        birth_date=birth_date,
        sex=sex,
        history=history or clean_history(),
        weight_kg=weight_kg,
        height_cm=height_cm,
        vitals=vitals,
        assessment_flags=flags,
    )


DECISION_RANK = {Decision.eligible: 0, Decision.eligible_with_cautions: 1, Decision.ineligible: 2}


def by_id(result: ScreeningResult) -> dict[str, Severity]:
    return {r.rule_id: r.severity for r in result.reasons}


def non_info(result: ScreeningResult) -> set[str]:
    return {r.rule_id for r in result.reasons if r.severity is not Severity.info}


# --- the clean patient ----------------------------------------------------------------------


@pytest.mark.parametrize("route", sorted(allowed_routes(KET)))
def test_clean_patient_is_eligible_on_every_racemic_route_except_home_routes(route: Route) -> None:
    result = screen(make_input(KET, route))
    assert result.decision is Decision.eligible
    assert result.treatment_resistant
    assert result.adequate_failed_trials == 2
    assert not result.urgent
    assert {"ket.trd.met"} <= result.reason_ids()
    # Home routes carry an info note (ASA 2025), never a caution on their own.
    assert ("ket.route.home_use" in result.reason_ids()) == (route in (ORAL, SL))


def test_clean_esketamine_patient_is_eligible_and_explains_itself() -> None:
    result = screen(make_input(ESK))
    assert result.decision is Decision.eligible
    assert non_info(result) == set()
    assert result.reason_ids() == {"esk.trd.met", "esk.indication.trd"}
    assert result.rule_version == RULES_VERSION
    assert result.expires_on == TODAY + timedelta(days=180)
    assert result.screened_on == TODAY
    trd = next(r for r in result.reasons if r.rule_id == "esk.trd.met")
    assert "2 adequate failed antidepressant trials" in trd.message


# --- every rule with plain values -----------------------------------------------------------

Case = tuple[str, Drug, Route, Callable[[], ScreeningInput], str, Severity]


def hist(**changes: Any) -> PatientHistory:
    return clean_history(**changes)


def with_condition(code: ConditionCode) -> PatientHistory:
    return hist(conditions=(code,))


def with_medication(cls: MedicationClass, name: str = "drug") -> PatientHistory:
    return hist(
        current_medications=(*ON_ANTIDEPRESSANT, Medication(name=name, medication_class=cls))
    )


def flag_phq9(score: int, days_ago: int = 3) -> Phq9Item9Flag:
    return Phq9Item9Flag(score=score, completed_on=TODAY - timedelta(days=days_ago))


def flag_cssrs(risk: CssrsRisk, days_ago: int = 3) -> CssrsRiskFlag:
    return CssrsRiskFlag(risk=risk, completed_on=TODAY - timedelta(days=days_ago))


def reading(days_ago: int, systolic: int, diastolic: int) -> BloodPressureReading:
    return BloodPressureReading(
        measured_on=TODAY - timedelta(days=days_ago),
        systolic_mmhg=systolic,
        diastolic_mmhg=diastolic,
    )


def both(suffix: str, build: Callable[[Drug], ScreeningInput], esk: Severity, ket: Severity):
    return [
        (f"esk.{suffix}", ESK, IN, lambda: build(ESK), f"esk.{suffix}", esk),
        (f"ket.{suffix}", KET, IV, lambda: build(KET), f"ket.{suffix}", ket),
    ]


A, R, U, I = Severity.absolute, Severity.relative, Severity.urgent, Severity.info  # noqa: E741
CONDITION_RULES = [
    ("contra.aneurysm", ConditionCode.aneurysmal_vascular_disease, A, A),
    ("contra.avm", ConditionCode.arteriovenous_malformation, A, A),
    ("contra.intracerebral_hemorrhage", ConditionCode.intracerebral_hemorrhage_history, A, A),
    ("contra.hypersensitivity", ConditionCode.ketamine_hypersensitivity, A, A),
    ("contra.raised_icp", ConditionCode.raised_intracranial_pressure, A, A),
    ("warn.cardiovascular", ConditionCode.cardiovascular_disease, R, R),
    ("warn.cerebrovascular", ConditionCode.cerebrovascular_disease, R, R),
    ("warn.raised_iop", ConditionCode.raised_intraocular_pressure, R, R),
    ("warn.hyperthyroidism", ConditionCode.uncontrolled_hyperthyroidism, R, R),
    ("warn.cognitive_impairment", ConditionCode.cognitive_impairment, R, R),
    ("warn.cystitis", ConditionCode.ulcerative_or_interstitial_cystitis, R, R),
    ("warn.respiratory", ConditionCode.respiratory_disease, R, R),
    ("warn.seizure", ConditionCode.seizure_disorder, R, R),
]


def _cases() -> list[Case]:
    cases: list[Case] = []
    for suffix, code, esk_sev, ket_sev in CONDITION_RULES:
        cases += both(
            suffix, lambda d, c=code: make_input(d, history=with_condition(c)), esk_sev, ket_sev
        )
    history_rules: list[tuple[str, dict[str, Any], Severity, Severity]] = [
        ("warn.hypertension_uncontrolled", {"hypertension": HypertensionStatus.uncontrolled}, R, A),
        ("warn.hepatic_moderate", {"hepatic_impairment": HepaticImpairment.moderate}, R, R),
        ("warn.hepatic_severe", {"hepatic_impairment": HepaticImpairment.severe}, R, R),
        ("preg.pregnant", {"pregnancy": PregnancyStatus.pregnant}, R, A),
        ("preg.breastfeeding", {"pregnancy": PregnancyStatus.breastfeeding}, R, R),
        ("preg.planning", {"pregnancy": PregnancyStatus.planning_pregnancy}, R, R),
        ("preg.unknown", {"pregnancy": PregnancyStatus.unknown}, R, R),
        ("psychosis.active", {"psychosis": PsychosisStatus.active}, A, A),
        ("psychosis.history", {"psychosis": PsychosisStatus.past}, R, R),
        (
            "dx.primary_psychotic_disorder",
            {"diagnoses": (MDD, Diagnosis(code=DiagnosisCode.schizoaffective_disorder))},
            R,
            R,
        ),
        ("dx.bipolar", {"diagnoses": (MDD, Diagnosis(code=DiagnosisCode.bipolar_ii))}, R, R),
        (
            "sud.active",
            {
                "substance_use": SubstanceUse(
                    disorder=DisorderStatus.active, substances=("alcohol",)
                )
            },
            R,
            R,
        ),
        (
            "sud.history",
            {"substance_use": SubstanceUse(disorder=DisorderStatus.in_remission)},
            R,
            R,
        ),
        (
            "misuse.dissociative",
            {"substance_use": SubstanceUse(ketamine_or_dissociative_misuse=True)},
            R,
            R,
        ),
        ("suicide.ideation", {"suicidality": Suicidality(current_ideation=True)}, U, U),
        (
            "suicide.intent_or_plan",
            {"suicidality": Suicidality(current_ideation=True, ideation_with_intent_or_plan=True)},
            U,
            U,
        ),
        (
            "suicide.recent_attempt",
            {"suicidality": Suicidality(last_attempt_on=TODAY - timedelta(days=90))},
            U,
            U,
        ),
        (
            "suicide.past_attempt",
            {"suicidality": Suicidality(last_attempt_on=TODAY - timedelta(days=91))},
            I,
            I,
        ),
        ("trd.not_met", {"antidepressant_trials": (trial("sertraline"),)}, I, I),
        (
            "trd.not_counted",
            {
                "antidepressant_trials": (
                    *TWO_FAILED,
                    trial("venlafaxine", TrialOutcome.intolerance),
                )
            },
            I,
            I,
        ),
    ]
    for suffix, changes, esk_sev, ket_sev in history_rules:
        cases += both(
            suffix, lambda d, c=changes: make_input(d, history=hist(**c)), esk_sev, ket_sev
        )
    medication_rules = [
        ("med.cns_depressant", MedicationClass.benzodiazepine),
        ("med.psychostimulant", MedicationClass.psychostimulant),
        ("med.maoi", MedicationClass.maoi),
    ]
    for suffix, cls in medication_rules:
        cases += both(suffix, lambda d, c=cls: make_input(d, history=with_medication(c)), R, R)
    flag_rules: list[tuple[str, tuple[Any, ...], Severity]] = [
        ("phq9.item9_positive", (flag_phq9(1),), U),
        ("cssrs.low", (flag_cssrs(CssrsRisk.low),), U),
        ("cssrs.moderate", (flag_cssrs(CssrsRisk.moderate),), U),
        ("cssrs.high", (flag_cssrs(CssrsRisk.high),), U),
        ("phq9.stale", (flag_phq9(2, days_ago=31),), I),
        ("cssrs.stale", (flag_cssrs(CssrsRisk.none, days_ago=31),), I),
    ]
    for suffix, flags, sev in flag_rules:
        cases += both(suffix, lambda d, f=flags: make_input(d, flags=f), sev, sev)
    cases += both("age.minor", lambda d: make_input(d, birth_date=date(2008, 11, 23)), A, A)
    cases += both(
        "spo2.today_low",
        lambda d: make_input(d, vitals=ScreeningVitals(spo2_percent=93)),
        R,
        R,
    )
    cases += both("vitals.bp_not_taken", lambda d: make_input(d, vitals=None), I, I)
    cases += both("trd.met", lambda d: make_input(d), I, I)
    cases += [
        (
            "esk.age.elderly",
            ESK,
            IN,
            lambda: make_input(ESK, birth_date=date(1961, 11, 22)),
            "esk.age.elderly",
            I,
        ),
        (
            "esk.med.nasal",
            ESK,
            IN,
            lambda: make_input(ESK, history=with_medication(MedicationClass.nasal_decongestant)),
            "esk.med.nasal",
            I,
        ),
        (
            "esk.bp.today_elevated",
            ESK,
            IN,
            lambda: make_input(ESK, vitals=ScreeningVitals(systolic_mmhg=141, diastolic_mmhg=80)),
            "esk.bp.today_elevated",
            R,
        ),
        (
            "esk.bp.recent_elevated",
            ESK,
            IN,
            lambda: make_input(
                ESK, vitals=None, history=hist(blood_pressure_readings=(reading(5, 130, 95),))
            ),
            "esk.bp.recent_elevated",
            R,
        ),
        (
            "ket.bp.today_above_limit",
            KET,
            IV,
            lambda: make_input(KET, vitals=ScreeningVitals(systolic_mmhg=170, diastolic_mmhg=101)),
            "ket.bp.today_above_limit",
            R,
        ),
        (
            "ket.bp.recent_above_limit",
            KET,
            IV,
            lambda: make_input(
                KET, vitals=None, history=hist(blood_pressure_readings=(reading(30, 181, 90),))
            ),
            "ket.bp.recent_above_limit",
            R,
        ),
        (
            "ket.hr.today_above_limit",
            KET,
            IV,
            lambda: make_input(KET, vitals=ScreeningVitals(heart_rate_bpm=111)),
            "ket.hr.today_above_limit",
            R,
        ),
        (
            "esk.indication.trd",
            ESK,
            IN,
            lambda: make_input(ESK),
            "esk.indication.trd",
            I,
        ),
        (
            "esk.indication.no_mdd",
            ESK,
            IN,
            lambda: make_input(ESK, history=hist(diagnoses=(Diagnosis(code=DiagnosisCode.ptsd),))),
            "esk.indication.no_mdd",
            R,
        ),
        (
            "esk.indication.mdd_si",
            ESK,
            IN,
            lambda: make_input(
                ESK,
                history=hist(
                    antidepressant_trials=(), suicidality=Suicidality(current_ideation=True)
                ),
            ),
            "esk.indication.mdd_si",
            I,
        ),
        (
            "esk.indication.mdd_si_without_oral_antidepressant",
            ESK,
            IN,
            lambda: make_input(
                ESK,
                history=hist(antidepressant_trials=(), current_medications=()),
                flags=(flag_cssrs(CssrsRisk.moderate),),
            ),
            "esk.indication.mdd_si_without_oral_antidepressant",
            R,
        ),
        (
            "esk.indication.off_label",
            ESK,
            IN,
            lambda: make_input(ESK, history=hist(antidepressant_trials=(trial("sertraline"),))),
            "esk.indication.off_label",
            R,
        ),
        (
            "ket.indication.no_depressive_disorder",
            KET,
            IV,
            lambda: make_input(
                KET,
                history=hist(diagnoses=(Diagnosis(code=DiagnosisCode.ptsd),)),
            ),
            "ket.indication.no_depressive_disorder",
            R,
        ),
        (
            "ket.indication.not_trd",
            KET,
            IV,
            lambda: make_input(KET, history=hist(antidepressant_trials=())),
            "ket.indication.not_trd",
            R,
        ),
        (
            "ket.route.home_use",
            KET,
            SL,
            lambda: make_input(KET, SL),
            "ket.route.home_use",
            I,
        ),
        (
            "ket.route.home_use_misuse_risk",
            KET,
            ORAL,
            lambda: make_input(
                KET,
                ORAL,
                history=hist(substance_use=SubstanceUse(ketamine_or_dissociative_misuse=True)),
            ),
            "ket.route.home_use_misuse_risk",
            R,
        ),
        (
            "ket.route.obese_dosing",
            KET,
            IM,
            lambda: make_input(KET, IM, weight_kg=100.0, height_cm=180.0),
            "ket.route.obese_dosing",
            I,
        ),
        (
            "ket.route.weight_missing",
            KET,
            SC,
            lambda: make_input(KET, SC, weight_kg=None),
            "ket.route.weight_missing",
            I,
        ),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize(
    ("drug", "route", "build", "rule_id", "severity"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_rule_fires_with_its_severity(
    drug: Drug,
    route: Route,
    build: Callable[[], ScreeningInput],
    rule_id: str,
    severity: Severity,
) -> None:
    screening = build()
    assert (screening.drug, screening.route) == (drug, route)
    result = screen(screening)
    found = by_id(result)
    assert rule_id in found, f"{rule_id} did not fire: {sorted(found)}"
    assert found[rule_id] is severity
    reason = next(r for r in result.reasons if r.rule_id == rule_id)
    assert reason.message.endswith(".")
    assert reason.source == CATALOGUE[rule_id].source
    # The decision follows the gravest reason.
    assert result.decision is decide(r.severity for r in result.reasons)
    # The decision is at least as grave as the finding.
    assert severity_rank(severity) <= DECISION_RANK[result.decision]


def test_every_catalogued_rule_has_a_case() -> None:
    covered = {case[4] for case in CASES}
    assert covered == set(CATALOGUE), sorted(set(CATALOGUE) ^ covered)


def test_default_severities_in_the_cases_match_the_catalogue() -> None:
    for _, _, _, _, rule_id, severity in CASES:
        assert CATALOGUE[rule_id].default is severity, rule_id


# --- boundaries and details -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("systolic", "diastolic", "flagged"),
    [(140, 90, False), (141, 90, True), (140, 91, True), (139, 89, False)],
)
def test_esketamine_bp_caution_is_above_140_over_90(
    systolic: int, diastolic: int, flagged: bool
) -> None:
    # Label: above 140 systolic or 90 diastolic (reference §1): 140/90 itself is not above.
    vitals = ScreeningVitals(systolic_mmhg=systolic, diastolic_mmhg=diastolic)
    result = screen(make_input(ESK, vitals=vitals))
    assert ("esk.bp.today_elevated" in result.reason_ids()) is flagged
    assert result.decision is (Decision.eligible_with_cautions if flagged else Decision.eligible)


@pytest.mark.parametrize(
    ("systolic", "diastolic", "heart_rate", "expected"),
    [
        (180, 100, 110, set()),
        (181, 100, 110, {"ket.bp.today_above_limit"}),
        (180, 101, 110, {"ket.bp.today_above_limit"}),
        (180, 100, 111, {"ket.hr.today_above_limit"}),
    ],
)
def test_racemic_limits_are_above_180_over_100_and_110(
    systolic: int, diastolic: int, heart_rate: int, expected: set[str]
) -> None:
    vitals = ScreeningVitals(
        systolic_mmhg=systolic, diastolic_mmhg=diastolic, heart_rate_bpm=heart_rate
    )
    result = screen(make_input(KET, IV, vitals=vitals))
    assert non_info(result) == expected


def test_esketamine_ignores_heart_rate_and_racemic_ignores_esketamine_bp_threshold() -> None:
    vitals = ScreeningVitals(systolic_mmhg=160, diastolic_mmhg=95, heart_rate_bpm=120)
    assert non_info(screen(make_input(ESK, vitals=vitals))) == {"esk.bp.today_elevated"}
    assert non_info(screen(make_input(KET, IV, vitals=vitals))) == {"ket.hr.today_above_limit"}


def test_stored_readings_count_only_without_todays_bp_and_within_the_look_back() -> None:
    old = hist(blood_pressure_readings=(reading(31, 160, 100),))
    assert "esk.bp.recent_elevated" not in screen(make_input(vitals=None, history=old)).reason_ids()
    # The latest reading wins over an older high one.
    settled = hist(blood_pressure_readings=(reading(10, 160, 100), reading(2, 125, 80)))
    assert non_info(screen(make_input(vitals=None, history=settled))) == set()
    # Today's BP, when taken, replaces the stored readings.
    recent_high = hist(blood_pressure_readings=(reading(2, 160, 100),))
    result = screen(make_input(history=recent_high))
    assert non_info(result) == set()
    assert "esk.vitals.bp_not_taken" not in result.reason_ids()
    # Vitals without BP (only SpO2) still count as "BP not taken".
    spo2_only = screen(make_input(vitals=ScreeningVitals(spo2_percent=97), history=recent_high))
    assert {"esk.vitals.bp_not_taken", "esk.bp.recent_elevated"} <= spo2_only.reason_ids()


def test_trd_counts_distinct_adequate_failed_trials_in_the_current_episode_only() -> None:
    trials = (
        trial("sertraline"),
        trial(" Sertraline ", TrialOutcome.partial_response),  # same drug: counted once
        trial("bupropion", TrialOutcome.intolerance),  # intolerance is not a failed adequate trial
        trial("venlafaxine", adequate=False),  # inadequate dose or duration
        trial("mirtazapine", current_episode=False),  # earlier episode
        trial("vortioxetine", TrialOutcome.ongoing),
        trial("fluoxetine", TrialOutcome.response),
    )
    assert count_adequate_failed_trials(trials) == 1
    result = screen(make_input(KET, IV, history=hist(antidepressant_trials=trials)))
    assert not result.treatment_resistant
    assert result.adequate_failed_trials == 1
    not_counted = next(r for r in result.reasons if r.rule_id == "ket.trd.not_counted")
    for words in (
        "1 repeat trial",
        "1 stopped for intolerance",
        "1 not adequate",
        "1 earlier episode",
        "1 still ongoing",
        "1 responded",
    ):
        assert words in not_counted.message


def test_trd_threshold_is_a_policy_value() -> None:
    three = dataclasses.replace(DEFAULT_POLICY, trd_min_failed_trials=3)
    result = screen(make_input(ESK), three)
    assert not result.treatment_resistant
    assert "esk.indication.off_label" in result.reason_ids()
    assert result.rule_version.startswith(f"{RULES_VERSION}+")


def test_esketamine_trd_indication_needs_no_oral_antidepressant_since_2025() -> None:
    result = screen(make_input(ESK, history=hist(current_medications=())))
    assert result.decision is Decision.eligible
    assert "esk.indication.trd" in result.reason_ids()


def test_past_mdd_diagnosis_does_not_meet_the_esketamine_indication() -> None:
    past = Diagnosis(code=DiagnosisCode.major_depressive_disorder, current=False)
    result = screen(make_input(ESK, history=hist(diagnoses=(past,))))
    assert "esk.indication.no_mdd" in result.reason_ids()


def test_recent_attempt_meets_the_acute_suicidality_indication_but_stays_urgent() -> None:
    history = hist(
        antidepressant_trials=(),
        suicidality=Suicidality(last_attempt_on=TODAY - timedelta(days=20)),
    )
    result = screen(make_input(ESK, history=history))
    assert {"esk.indication.mdd_si", "esk.suicide.recent_attempt"} <= result.reason_ids()
    assert result.urgent
    assert result.decision is Decision.eligible_with_cautions


def test_intent_or_plan_says_safety_assessment_comes_first() -> None:
    history = hist(
        suicidality=Suicidality(current_ideation=True, ideation_with_intent_or_plan=True)
    )
    result = screen(make_input(KET, IV, history=history))
    assert result.urgent
    assert {"ket.suicide.ideation", "ket.suicide.intent_or_plan"} <= result.reason_ids()
    first = result.reasons[0]
    assert first.severity is Severity.urgent
    intent = next(r for r in result.reasons if r.rule_id == "ket.suicide.intent_or_plan")
    assert "acute safety assessment" in intent.message


def test_phq9_item9_zero_raises_nothing_and_any_recent_positive_counts() -> None:
    assert non_info(screen(make_input(flags=(flag_phq9(0),)))) == set()
    # A newer negative does not hide a positive within the look-back.
    result = screen(make_input(flags=(flag_phq9(2, days_ago=20), flag_phq9(0, days_ago=1))))
    item9 = next(r for r in result.reasons if r.rule_id == "esk.phq9.item9_positive")
    assert "scored 2" in item9.message
    # A stale positive is reported as not counted, not as urgent.
    stale = screen(make_input(flags=(flag_phq9(3, days_ago=31),)))
    assert not stale.urgent
    assert "esk.phq9.stale" in stale.reason_ids()


def test_the_gravest_recent_cssrs_level_is_reported() -> None:
    flags = (flag_cssrs(CssrsRisk.high, days_ago=10), flag_cssrs(CssrsRisk.low, days_ago=1))
    result = screen(make_input(KET, IV, flags=flags))
    assert "ket.cssrs.high" in result.reason_ids()
    assert "ket.cssrs.low" not in result.reason_ids()
    assert non_info(screen(make_input(KET, IV, flags=(flag_cssrs(CssrsRisk.none),)))) == set()


def test_pregnancy_unknown_matters_only_for_a_patient_who_could_be_pregnant() -> None:
    unknown = hist(pregnancy=PregnancyStatus.unknown)
    assert "esk.preg.unknown" not in screen(make_input(history=unknown, sex="male")).reason_ids()
    old = make_input(history=unknown, birth_date=date(1960, 1, 1))
    assert "esk.preg.unknown" not in screen(old).reason_ids()
    assert "esk.preg.unknown" in screen(make_input(history=unknown, sex="unknown")).reason_ids()


def test_home_use_route_risk_needs_a_home_route_and_a_misuse_history() -> None:
    sud = hist(substance_use=SubstanceUse(disorder=DisorderStatus.in_remission))
    assert "ket.route.home_use_misuse_risk" in screen(make_input(KET, SL, history=sud)).reason_ids()
    assert (
        "ket.route.home_use_misuse_risk"
        not in screen(make_input(KET, IM, history=sud)).reason_ids()
    )
    intranasal_home = dataclasses.replace(DEFAULT_POLICY, home_use_routes=frozenset({ORAL, SL, IN}))
    result = screen(make_input(KET, IN, history=sud), intranasal_home)
    assert "ket.route.home_use_misuse_risk" in result.reason_ids()


def test_obese_dosing_note_is_for_weight_based_routes_above_bmi_30() -> None:
    under = make_input(KET, IV, weight_kg=86.0, height_cm=170.0)  # BMI 29.8
    assert "ket.route.obese_dosing" not in screen(under).reason_ids()
    oral = make_input(KET, ORAL, weight_kg=120.0, height_cm=170.0)
    assert "ket.route.obese_dosing" not in screen(oral).reason_ids()
    above = screen(make_input(KET, SC, weight_kg=87.0, height_cm=170.0))
    note = next(r for r in above.reasons if r.rule_id == "ket.route.obese_dosing")
    assert "30.1" in note.message
    assert above.decision is Decision.eligible


def test_reasons_are_ordered_gravest_first() -> None:
    history = hist(
        conditions=(ConditionCode.respiratory_disease, ConditionCode.arteriovenous_malformation),
        suicidality=Suicidality(current_ideation=True),
    )
    result = screen(make_input(ESK, history=history))
    order = [r.severity for r in result.reasons]
    assert order == sorted(order, key=[A, U, R, I].index)
    assert result.decision is Decision.ineligible
    assert result.urgent


def test_esketamine_age_floor_is_the_18th_birthday() -> None:
    assert "esk.age.minor" in screen(make_input(birth_date=date(2008, 11, 23))).reason_ids()
    assert "esk.age.minor" not in screen(make_input(birth_date=date(2008, 11, 22))).reason_ids()


def test_patient_sex_values_match_the_patients_api() -> None:
    assert set(get_args(PatientSex)) == {s.value for s in Sex}


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("route", sorted(set(Route) - {IN}))
def test_esketamine_is_intranasal_only(route: Route) -> None:
    with pytest.raises(ScreeningInputError) as caught:
        screen(make_input(ESK, route))
    assert caught.value.field == "route"
    assert isinstance(caught.value, ValueError)
    assert caught.value.status == 422


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"birth_date": TODAY + timedelta(days=1)}, "birth_date"),
        ({"birth_date": date(1900, 1, 1)}, "birth_date"),
        (
            {"history": hist(suicidality=Suicidality(last_attempt_on=TODAY + timedelta(days=1)))},
            "history.suicidality.last_attempt_on",
        ),
        (
            {"history": hist(current_episode_started_on=TODAY + timedelta(days=1))},
            "history.current_episode_started_on",
        ),
        (
            {"history": hist(blood_pressure_readings=(reading(-1, 120, 80),))},
            "history.blood_pressure_readings.0.measured_on",
        ),
        ({"flags": (flag_phq9(1, days_ago=-2),)}, "assessment_flags.0.completed_on"),
        (
            {"flags": (CssrsRiskFlag(risk=CssrsRisk.low, completed_on=date(1970, 1, 1)),)},
            "assessment_flags.0.completed_on",
        ),
    ],
)
def test_impossible_dates_are_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ScreeningInputError) as caught:
        screen(make_input(**changes))
    assert caught.value.field == field


@pytest.mark.parametrize(
    "vitals",
    [
        {"systolic_mmhg": 301, "diastolic_mmhg": 80},
        {"systolic_mmhg": 49, "diastolic_mmhg": 30},
        {"systolic_mmhg": 120, "diastolic_mmhg": 201},
        {"systolic_mmhg": 120, "diastolic_mmhg": 120},
        {"systolic_mmhg": 120},
        {"heart_rate_bpm": 19},
        {"heart_rate_bpm": 251},
        {"spo2_percent": 101},
        {"spo2_percent": 49},
    ],
)
def test_out_of_range_vitals_are_refused(vitals: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        ScreeningVitals(**vitals)


@pytest.mark.parametrize(
    ("field", "value"),
    [("drug", "ketamine_racemic"), ("route", "rectal"), ("sex", "f"), ("weight_kg", 19.0)],
)
def test_unknown_drug_route_and_bad_values_are_refused(field: str, value: Any) -> None:
    data = make_input(KET, IV).model_dump()
    data[field] = value
    with pytest.raises(ValidationError):
        ScreeningInput.model_validate(data)


def test_flags_need_a_known_kind_and_range() -> None:
    with pytest.raises(ValidationError):
        Phq9Item9Flag(score=4, completed_on=TODAY)
    data = make_input().model_dump()
    data["assessment_flags"] = [{"kind": "madrs", "score": 1, "completed_on": TODAY}]
    with pytest.raises(ValidationError):
        ScreeningInput.model_validate(data)


# --- the policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"validity_days": 0},
        {"trd_min_failed_trials": 1},
        {"esketamine_min_age_years": 17},
        {"esketamine_bp_caution_systolic_above_mmhg": 150},  # label floor: may only tighten
        {"esketamine_bp_caution_diastolic_above_mmhg": 95},
        {"recent_attempt_days": 60},  # C-SSRS: within 3 months
        {"severity_overrides": {"esk.no.such.rule": Severity.relative}},
        {"severity_overrides": {"esk.contra.aneurysm": Severity.relative}},
        {"severity_overrides": {"ket.contra.hypersensitivity": Severity.relative}},
        {"severity_overrides": {"esk.suicide.ideation": Severity.info}},
        # A past psychosis may not weigh more than an active one.
        {
            "severity_overrides": {
                "ket.psychosis.history": Severity.absolute,
                "ket.psychosis.active": Severity.relative,
            }
        },
    ],
)
def test_policy_refuses_loosening_label_floors_and_incoherent_overrides(
    changes: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(DEFAULT_POLICY, **changes)


def test_a_clinic_can_tighten_and_relax_unconfirmed_defaults() -> None:
    strict = ScreeningPolicy(
        severity_overrides={"ket.sud.active": Severity.absolute},
        ketamine_bp_limit_systolic_above_mmhg=160,
        validity_days=90,
    )
    sud = hist(substance_use=SubstanceUse(disorder=DisorderStatus.active))
    result = screen(make_input(KET, IV, history=sud), strict)
    assert result.decision is Decision.ineligible
    assert result.expires_on == TODAY + timedelta(days=90)
    vitals = ScreeningVitals(systolic_mmhg=165, diastolic_mmhg=90)
    assert (
        "ket.bp.today_above_limit"
        in screen(make_input(KET, IV, vitals=vitals), strict).reason_ids()
    )
    relaxed = ScreeningPolicy(severity_overrides={"ket.preg.pregnant": Severity.relative})
    pregnant = make_input(KET, IV, history=hist(pregnancy=PregnancyStatus.pregnant))
    assert screen(pregnant).decision is Decision.ineligible
    assert screen(pregnant, relaxed).decision is Decision.eligible_with_cautions


def test_rule_version_names_the_policy() -> None:
    policy_a = ScreeningPolicy(validity_days=90)
    policy_b = ScreeningPolicy(validity_days=90)
    assert policy_a.fingerprint() == policy_b.fingerprint()
    assert policy_a.fingerprint() != ScreeningPolicy(validity_days=91).fingerprint()
    version = screen(make_input(), policy_a).rule_version
    assert version == f"{RULES_VERSION}+{policy_a.fingerprint()}"
    assert len(version) <= 32  # the screenings.rule_version column


def test_catalogue_is_well_formed() -> None:
    for rule_id, spec in CATALOGUE.items():
        assert rule_id.split(".")[0] in ("esk", "ket")
        assert spec.default in spec.allowed
        assert spec.source.strip()
    for graver, milder in ORDERED_PAIRS:
        assert graver in CATALOGUE and milder in CATALOGUE
    label_contraindications = [r for r in CATALOGUE if r.startswith("esk.contra.")]
    assert {
        CATALOGUE[r].allowed for r in label_contraindications if r != "esk.contra.raised_icp"
    } == {frozenset({Severity.absolute})}
    for rule_id in (
        "ket.psychosis.active",
        "ket.warn.hypertension_uncontrolled",
        "ket.preg.pregnant",
    ):
        assert "(U)" in CATALOGUE[rule_id].source


# --- properties -----------------------------------------------------------------------------

RISK_DIAGNOSES = (
    DiagnosisCode.bipolar_i,
    DiagnosisCode.bipolar_ii,
    DiagnosisCode.schizophrenia,
    DiagnosisCode.schizoaffective_disorder,
    DiagnosisCode.ptsd,
)
RISK_MEDICATIONS = (
    MedicationClass.benzodiazepine,
    MedicationClass.opioid,
    MedicationClass.sedative_hypnotic,
    MedicationClass.psychostimulant,
    MedicationClass.maoi,
    MedicationClass.nasal_decongestant,
)
drug_routes = st.sampled_from([(ESK, IN)] + [(KET, route) for route in sorted(allowed_routes(KET))])
trials = st.builds(
    AntidepressantTrial,
    drug=st.sampled_from(["sertraline", "Sertraline", "bupropion", "venlafaxine", "mirtazapine"]),
    weeks=st.integers(0, 20),
    adequate=st.booleans(),
    outcome=st.sampled_from(list(TrialOutcome)),
    current_episode=st.booleans(),
)


@st.composite
def suicidalities(draw: st.DrawFn) -> Suicidality:
    ideation = draw(st.booleans())
    intent = ideation and draw(st.booleans())
    attempt_days = draw(st.none() | st.integers(0, 2000))
    return Suicidality(
        current_ideation=ideation,
        ideation_with_intent_or_plan=intent,
        last_attempt_on=None if attempt_days is None else TODAY - timedelta(days=attempt_days),
    )


@st.composite
def histories(draw: st.DrawFn) -> PatientHistory:
    diagnoses = [MDD] if draw(st.booleans()) else []
    diagnoses += [Diagnosis(code=c) for c in draw(st.sets(st.sampled_from(RISK_DIAGNOSES)))]
    medications = [
        Medication(name=str(c), medication_class=c)
        for c in draw(st.sets(st.sampled_from((*RISK_MEDICATIONS, MedicationClass.antidepressant))))
    ]
    readings = [
        reading(days, systolic, systolic - gap)
        for days, systolic, gap in draw(
            st.lists(
                st.tuples(st.integers(0, 60), st.integers(90, 220), st.integers(20, 60)), max_size=3
            )
        )
    ]
    return PatientHistory(
        diagnoses=tuple(diagnoses),
        antidepressant_trials=tuple(draw(st.lists(trials, max_size=6))),
        current_medications=tuple(medications),
        substance_use=SubstanceUse(
            disorder=draw(st.sampled_from(list(DisorderStatus))),
            ketamine_or_dissociative_misuse=draw(st.booleans()),
        ),
        psychosis=draw(st.sampled_from(list(PsychosisStatus))),
        suicidality=draw(suicidalities()),
        pregnancy=draw(st.sampled_from(list(PregnancyStatus))),
        hypertension=draw(st.sampled_from(list(HypertensionStatus))),
        blood_pressure_readings=tuple(readings),
        hepatic_impairment=draw(st.sampled_from(list(HepaticImpairment))),
        conditions=tuple(sorted(draw(st.sets(st.sampled_from(list(ConditionCode)))))),
    )


@st.composite
def vitals_values(draw: st.DrawFn) -> ScreeningVitals | None:
    if draw(st.booleans()):
        return None
    systolic = draw(st.none() | st.integers(90, 220))
    return ScreeningVitals(
        systolic_mmhg=systolic,
        diastolic_mmhg=None if systolic is None else systolic - draw(st.integers(20, 60)),
        heart_rate_bpm=draw(st.none() | st.integers(40, 150)),
        spo2_percent=draw(st.none() | st.integers(80, 100)),
    )


flag_values = st.lists(
    st.one_of(
        st.builds(flag_phq9, st.integers(0, 3), st.integers(0, 60)),
        st.builds(flag_cssrs, st.sampled_from(list(CssrsRisk)), st.integers(0, 60)),
    ),
    max_size=3,
).map(tuple)


@st.composite
def screening_inputs(draw: st.DrawFn) -> ScreeningInput:
    drug, route = draw(drug_routes)
    return make_input(
        drug,
        route,
        history=draw(histories()),
        birth_date=TODAY - timedelta(days=draw(st.integers(14 * 365, 90 * 365))),
        sex=draw(st.sampled_from(get_args(PatientSex))),
        weight_kg=draw(st.none() | st.floats(40, 200)),
        height_cm=draw(st.none() | st.floats(140, 200)),
        vitals=draw(vitals_values()),
        flags=draw(flag_values),
    )


@st.composite
def policies(draw: st.DrawFn, *, indication_overrides: bool = True) -> ScreeningPolicy:
    """Valid clinic policies: random overrides within each rule's allowed severities."""
    rule_ids = sorted(r for r in CATALOGUE if indication_overrides or ".indication." not in r)
    chosen = draw(st.lists(st.sampled_from(rule_ids), max_size=8, unique=True))
    overrides = {r: draw(st.sampled_from(sorted(CATALOGUE[r].allowed))) for r in chosen}
    try:
        return ScreeningPolicy(severity_overrides=overrides)
    except ValidationError:
        reject()


def worsen(draw: st.DrawFn, screening: ScreeningInput) -> ScreeningInput:
    """The same patient with one more risk finding (never a new trial or MDD diagnosis)."""
    history = screening.history
    kind = draw(
        st.sampled_from(
            [
                "condition",
                "medication",
                "diagnosis",
                "psychosis",
                "substance",
                "misuse",
                "suicidality",
                "pregnancy",
                "hypertension",
                "hepatic",
                "vitals",
                "flag",
            ]
        )
    )
    changes: dict[str, Any] = {}
    ordered = {
        "psychosis": ("psychosis", list(PsychosisStatus)),
        "substance": ("substance_use.disorder", list(DisorderStatus)),
        "hypertension": ("hypertension", list(HypertensionStatus)),
        "hepatic": ("hepatic_impairment", list(HepaticImpairment)),
    }
    if kind == "condition":
        changes["conditions"] = tuple(
            sorted(set(history.conditions) | {draw(st.sampled_from(list(ConditionCode)))})
        )
    elif kind == "medication":
        cls = draw(st.sampled_from(RISK_MEDICATIONS))
        changes["current_medications"] = (
            *history.current_medications,
            Medication(name="added", medication_class=cls),
        )
    elif kind == "diagnosis":
        changes["diagnoses"] = (
            *history.diagnoses,
            Diagnosis(code=draw(st.sampled_from(RISK_DIAGNOSES[:4]))),
        )
    elif kind in ("psychosis", "hypertension", "hepatic"):
        field, levels = ordered[kind]
        current = levels.index(getattr(history, field))
        changes[field] = levels[draw(st.integers(current, len(levels) - 1))]
    elif kind == "substance":
        levels = list(DisorderStatus)
        current = levels.index(history.substance_use.disorder)
        changes["substance_use"] = history.substance_use.model_copy(
            update={"disorder": levels[draw(st.integers(current, len(levels) - 1))]}
        )
    elif kind == "misuse":
        changes["substance_use"] = history.substance_use.model_copy(
            update={"ketamine_or_dissociative_misuse": True}
        )
    elif kind == "suicidality":
        current = history.suicidality
        intent = current.ideation_with_intent_or_plan or draw(st.booleans())
        attempt = current.last_attempt_on
        if draw(st.booleans()):
            newer = TODAY - timedelta(days=draw(st.integers(0, 2000)))
            attempt = newer if attempt is None else max(attempt, newer)
        changes["suicidality"] = Suicidality(
            current_ideation=True, ideation_with_intent_or_plan=intent, last_attempt_on=attempt
        )
    elif kind == "pregnancy":
        if history.pregnancy in (PregnancyStatus.not_pregnant, PregnancyStatus.not_applicable):
            changes["pregnancy"] = draw(st.sampled_from(list(PregnancyStatus)))
        else:
            changes["pregnancy"] = PregnancyStatus.pregnant
    elif kind == "vitals":
        vitals = screening.vitals or ScreeningVitals()
        if vitals.systolic_mmhg is not None and vitals.diastolic_mmhg is not None:
            rise = draw(st.integers(0, 60))
            vitals = vitals.model_copy(
                update={
                    "systolic_mmhg": min(vitals.systolic_mmhg + rise, 300),
                    "diastolic_mmhg": min(vitals.diastolic_mmhg + rise, 199),
                }
            )
        if vitals.heart_rate_bpm is not None:
            vitals = vitals.model_copy(update={"heart_rate_bpm": vitals.heart_rate_bpm + 20})
        if vitals.spo2_percent is not None:
            vitals = vitals.model_copy(update={"spo2_percent": max(vitals.spo2_percent - 5, 50)})
        return screening.model_copy(update={"vitals": vitals})
    else:
        added = draw(
            st.one_of(
                st.builds(flag_phq9, st.integers(1, 3), st.integers(0, 29)),
                st.builds(
                    flag_cssrs,
                    st.sampled_from([CssrsRisk.low, CssrsRisk.moderate, CssrsRisk.high]),
                    st.integers(0, 29),
                ),
            )
        )
        return screening.model_copy(
            update={"assessment_flags": (*screening.assessment_flags, added)}
        )
    worse = PatientHistory.model_validate({**history.model_dump(), **changes})
    return screening.model_copy(update={"history": worse})


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(
    data=st.data(),
    screening=screening_inputs(),
    # New suicidality can meet an esketamine indication, or a new bipolar diagnosis a racemic
    # one: a real change, so a clinic's stricter indication rules are left out here.
    policy=policies(indication_overrides=False),
)
def test_adding_a_risk_never_makes_the_decision_more_permissive(
    data: st.DataObject, screening: ScreeningInput, policy: ScreeningPolicy
) -> None:
    worse = worsen(data.draw, screening)
    before, after = screen(screening, policy), screen(worse, policy)
    assert DECISION_RANK[after.decision] >= DECISION_RANK[before.decision]
    assert after.urgent or not before.urgent


@PROPERTY_SETTINGS
@given(screening=screening_inputs(), policy=policies())
def test_decision_follows_the_reasons_and_every_reason_is_sourced(
    screening: ScreeningInput, policy: ScreeningPolicy
) -> None:
    result = screen(screening, policy)
    severities = {r.severity for r in result.reasons}
    if Severity.absolute in severities:
        assert result.decision is Decision.ineligible
    elif severities & {Severity.relative, Severity.urgent}:
        assert result.decision is Decision.eligible_with_cautions
    else:
        assert result.decision is Decision.eligible
    assert result.urgent == (Severity.urgent in severities)
    for reason in result.reasons:
        assert reason.rule_id.startswith("esk." if screening.drug is ESK else "ket.")
        assert reason.severity is policy.severity_of(reason.rule_id)
        assert reason.source.strip() and reason.message.strip()
        assert reason.source == CATALOGUE[reason.rule_id].source
    assert len({r.rule_id for r in result.reasons}) == len(result.reasons)
    # Every decision explains itself: at least the TRD finding is always there.
    prefix = "esk" if screening.drug is ESK else "ket"
    assert result.reason_ids() & {f"{prefix}.trd.met", f"{prefix}.trd.not_met"}
    assert result.expires_on - result.screened_on == timedelta(days=policy.validity_days)


@PROPERTY_SETTINGS
@given(trial_list=st.lists(trials, max_size=8), drug_route=drug_routes)
def test_trd_count_is_distinct_adequate_no_or_partial_responses_in_this_episode(
    trial_list: list[AntidepressantTrial], drug_route: tuple[Drug, Route]
) -> None:
    expected = {
        t.drug.strip().casefold()
        for t in trial_list
        if t.adequate
        and t.weeks >= DEFAULT_POLICY.trd_min_trial_weeks
        and t.current_episode
        and t.outcome in (TrialOutcome.no_response, TrialOutcome.partial_response)
    }
    drug, route = drug_route
    result = screen(make_input(drug, route, history=hist(antidepressant_trials=tuple(trial_list))))
    assert result.adequate_failed_trials == len(expected)
    assert result.treatment_resistant == (len(expected) >= 2)
    # Intolerance never counts, however many there are.
    intolerant = tuple(
        t.model_copy(update={"outcome": TrialOutcome.intolerance}) for t in trial_list
    )
    assert count_adequate_failed_trials(intolerant) == 0
