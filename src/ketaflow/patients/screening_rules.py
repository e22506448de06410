"""The catalogue of eligibility screening rules, as data.

Each rule has a stable id (`esk.` for intranasal esketamine, `ket.` for racemic ketamine), a
default severity, the severities a clinic may choose instead, and its source with the
reference's confidence (H primary source, M secondary, U unconfirmed; reference =
shared/clinical-reference.md). Label contraindications may only be `absolute`; numbers and
classifications the reference does not confirm are labelled "unconfirmed" and are
clinic-configurable through `ScreeningPolicy.severity_overrides`.

Pure: enums and frozen values only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "CATALOGUE",
    "ORDERED_PAIRS",
    "RULES_VERSION",
    "Decision",
    "Drug",
    "Route",
    "RuleSpec",
    "Severity",
    "severity_rank",
]

# Bump when a rule, a default severity or a message's meaning changes: stored screenings keep
# the version they were decided under.
RULES_VERSION = "screening-1.1"  # 1.1: a trial shorter than the policy minimum does not count


class Drug(StrEnum):
    ketamine = "ketamine"  # racemic ketamine
    esketamine = "esketamine"


class Route(StrEnum):
    iv = "iv"
    im = "im"
    sc = "sc"
    intranasal = "intranasal"
    oral = "oral"
    sublingual = "sublingual"


class Decision(StrEnum):
    eligible = "eligible"
    eligible_with_cautions = "eligible_with_cautions"
    ineligible = "ineligible"


class Severity(StrEnum):
    absolute = "absolute"  # blocks: decision ineligible (a prescriber may override, audited)
    relative = "relative"  # caution that needs a prescriber's judgment
    urgent = "urgent"  # marks urgency, e.g. suicidal ideation
    info = "info"  # explains a finding; never changes the decision


def severity_rank(severity: Severity) -> int:
    """How restrictive a severity is: info 0, relative and urgent 1 (cautions), absolute 2."""
    if severity is Severity.absolute:
        return 2
    if severity is Severity.info:
        return 0
    return 1


@dataclass(frozen=True)
class RuleSpec:
    rule_id: str
    default: Severity
    allowed: frozenset[Severity]
    source: str

    def __post_init__(self) -> None:
        if self.default not in self.allowed:
            raise ValueError(f"{self.rule_id}: default severity must be allowed")
        if not self.source.strip():
            raise ValueError(f"{self.rule_id}: every rule needs a source")


A = Severity.absolute
R = Severity.relative
U = Severity.urgent
I = Severity.info  # noqa: E741 - one letter like its siblings, for a readable table

# --- Sources (reference section and confidence in each) -----------------------------------
ESK_CONTRA = "SPRAVATO label section 4, contraindications (reference §1, H)"
ESK_ADULTS = (
    "SPRAVATO label sections 1 and 8.4: indicated in adults; not approved in pediatric patients (H)"
)
ESK_ELDERLY = (
    "Doherty et al. 2020 review: mean maximal BP rise 16.0/9.5 mmHg in the elderly vs "
    "13.3/8.7 in adults (reference §1, M); elderly = 65+ as in label section 8.5"
)
ESK_BP_TODAY = (
    "SPRAVATO label sections 2 and 5: BP above 140/90 mmHg before dosing, weigh the risk, "
    "not an automatic stop (reference §1, H)"
)
ESK_BP_WARNING = (
    "SPRAVATO label section 5, increase in blood pressure: cardiovascular and "
    "cerebrovascular conditions raise the risk (reference §1, H)"
)
ESK_ICP = (
    "SPRAVATO label section 5: do not give where a rise in blood pressure or intracranial "
    "pressure is a serious risk (H)"
)
ESK_INTERACTIONS = "SPRAVATO label section 7, drug interactions (reference §1, H)"
ESK_ABUSE = (
    "SPRAVATO label sections 5 and 9.2, abuse and misuse: assess substance-use history "
    "(reference §1, H)"
)
ESK_PSYCHOSIS = (
    "SPRAVATO label section 5, dissociation: assess patients with psychosis, treat only if "
    "benefit outweighs risk (H)"
)
ESK_PSYCHOSIS_ACTIVE = ESK_PSYCHOSIS + "; blocking on active psychosis is a ketaflow default (U)"
ESK_INDICATION = (
    "SPRAVATO label section 1: TRD (monotherapy allowed since January 2025), or MDD with "
    "acute suicidal ideation or behaviour with an oral antidepressant (reference §1, H)"
)
ESK_PREGNANCY = (
    "SPRAVATO label sections 5 and 8.1, embryo-fetal toxicity: not recommended in pregnancy; "
    "advise pregnancy planning and prevention (reference §1, H)"
)
ESK_LACTATION = "SPRAVATO label section 8.2: breastfeeding not recommended (reference §1, H)"
ESK_HEPATIC = (
    "SPRAVATO label section 8.6: moderate hepatic impairment, monitor longer; severe "
    "(Child-Pugh C) not studied, not recommended (H)"
)
ESK_NASAL = (
    "SPRAVATO patient information: nasal corticosteroid or decongestant at least 1 hour "
    "before dosing (reference §1, H)"
)


def esk_warning(topic: str) -> str:
    return f"SPRAVATO label section 5, warnings: {topic} (reference §1, H)"


def by_analogy(source: str) -> str:
    """A racemic ketamine rule borrowed from the esketamine label (same molecule, half of it)."""
    return f"{source}, applied to racemic ketamine by analogy; classification unconfirmed (U)"


KETALAR_BP = (
    "Ketalar (ketamine injection) label section 4: contraindicated where a significant rise "
    "in blood pressure is a serious hazard (not in the reference, M); Sanacora et al. 2017 "
    "(reference §2); classification unconfirmed (U), clinic-configurable"
)
KETALAR_HYPERSENSITIVITY = (
    "Ketalar (ketamine injection) label section 4 (M) and SPRAVATO label section 4, "
    "hypersensitivity to ketamine (reference §1, H)"
)
KETAMINE_IOP = (
    "Ketamine injection label, adverse reactions: raises intraocular pressure (not in the "
    "reference, M); classification unconfirmed (U)"
)
KETAMINE_THYROID = (
    "Ketamine injection summary of product characteristics: untreated hyperthyroidism (not in "
    "the reference, M); classification unconfirmed (U)"
)
KETAMINE_SEIZURE = (
    "Ketamine injection label: tonic-clonic movements resembling seizures (not in the "
    "reference, M); classification unconfirmed (U)"
)
SANACORA_EVAL = (
    "Sanacora et al. 2017 consensus: pre-treatment evaluation attends to substance use and "
    "psychosis history (reference §2, H); absolute vs relative unconfirmed (U), "
    "clinic-configurable"
)
SANACORA_U = (
    "commonly listed with Sanacora et al. 2017 (reference §2); absolute vs relative "
    "unconfirmed (U), clinic-configurable"
)
SANACORA_LIMITS = (
    "BP above 180/100 mmHg or HR above 110 bpm, attributed to Sanacora et al. 2017, "
    "unconfirmed (reference §2, U): clinic-configurable default"
)
SANACORA_IBW = (
    "Dose on ideal body weight when BMI is above 30, attributed to Sanacora et al. 2017, "
    "unconfirmed (reference §2, U)"
)
SANACORA_EVIDENCE = (
    "Sanacora et al. 2017 (reference §2): evidence mainly in treatment-resistant depression; "
    "racemic ketamine for depression is off-label; TRD definition (reference §3, H)"
)
ASA_HOME_USE = "ASA guidance 2025: caution with home use, vigilance for diversion (reference §2, H)"
TRD_DEFINITION = (
    "TRD: inadequate response to at least 2 antidepressants of adequate dose and duration in "
    "the current episode (reference §3, H)"
)
KROENKE_ITEM9 = (
    "Kroenke et al. 2001: PHQ-9 item 9 above 0 needs safety follow-up whatever the total "
    "(reference §3, H)"
)
CSSRS_TRIAGE = "C-SSRS screener triage: low, moderate, high risk (reference §3, H)"
CSSRS_BEHAVIOUR = (
    "C-SSRS screener triage: suicidal behaviour within 3 months is high risk (reference §3, H)"
)
SAFETY_FIRST = (
    "C-SSRS screener triage: intent or plan is high risk (reference §3, H); SPRAVATO label "
    "section 1: does not preclude hospitalization (H)"
)
CLINIC_DEFAULT = (
    "ketaflow clinic default, not from the reference (unconfirmed): clinic-configurable"
)


def _specs() -> list[RuleSpec]:
    specs: list[RuleSpec] = []

    def add(rule_id: str, default: Severity, allowed: set[Severity], source: str) -> None:
        specs.append(RuleSpec(rule_id, default, frozenset(allowed | {default}), source))

    # Age.
    add("esk.age.minor", A, {A}, ESK_ADULTS)
    add("ket.age.minor", A, {R}, CLINIC_DEFAULT + "; ketaflow treats adults")
    add("esk.age.elderly", I, set(), ESK_ELDERLY)

    # Label contraindications: absolute, never relaxed for esketamine.
    for suffix in ("aneurysm", "avm", "intracerebral_hemorrhage"):
        add(f"esk.contra.{suffix}", A, set(), ESK_CONTRA)
        add(f"ket.contra.{suffix}", A, {R}, by_analogy(ESK_CONTRA) + "; " + KETALAR_BP)
    add("esk.contra.hypersensitivity", A, set(), ESK_CONTRA)
    add("ket.contra.hypersensitivity", A, set(), KETALAR_HYPERSENSITIVITY)
    add("esk.contra.raised_icp", A, {R}, ESK_ICP)
    add("ket.contra.raised_icp", A, {R}, by_analogy(ESK_ICP))

    # Medical warnings.
    add("esk.warn.hypertension_uncontrolled", R, {A}, ESK_BP_WARNING)
    add("ket.warn.hypertension_uncontrolled", A, {R}, KETALAR_BP)
    for suffix in ("cardiovascular", "cerebrovascular"):
        add(f"esk.warn.{suffix}", R, {A}, ESK_BP_WARNING)
        add(f"ket.warn.{suffix}", R, {A}, SANACORA_U)
    add("esk.warn.raised_iop", R, {A}, KETAMINE_IOP)
    add("ket.warn.raised_iop", R, {A}, KETAMINE_IOP)
    add("esk.warn.hyperthyroidism", R, {A}, KETAMINE_THYROID)
    add("ket.warn.hyperthyroidism", R, {A}, KETAMINE_THYROID)
    add("esk.warn.cognitive_impairment", R, {A}, esk_warning("cognitive impairment"))
    add("ket.warn.cognitive_impairment", R, {A}, by_analogy(esk_warning("cognitive impairment")))
    add("esk.warn.cystitis", R, {A}, esk_warning("ulcerative or interstitial cystitis"))
    add("ket.warn.cystitis", R, {A}, by_analogy(esk_warning("ulcerative or interstitial cystitis")))
    add("esk.warn.respiratory", R, {A}, esk_warning("respiratory depression"))
    add("ket.warn.respiratory", R, {A}, by_analogy(esk_warning("respiratory depression")))
    add("esk.warn.seizure", R, {A}, KETAMINE_SEIZURE)
    add("ket.warn.seizure", R, {A}, KETAMINE_SEIZURE)
    add("esk.warn.hepatic_moderate", R, {A}, ESK_HEPATIC)
    add("esk.warn.hepatic_severe", R, {A}, ESK_HEPATIC)
    add("ket.warn.hepatic_moderate", R, {A}, by_analogy(ESK_HEPATIC))
    add("ket.warn.hepatic_severe", R, {A}, by_analogy(ESK_HEPATIC))

    # Pregnancy and lactation. Racemic ketamine is off-label with no risk programme, so
    # pregnancy blocks by default there; the esketamine label weighs it ("not recommended").
    add("esk.preg.pregnant", R, {A}, ESK_PREGNANCY)
    add("ket.preg.pregnant", A, {R}, by_analogy(ESK_PREGNANCY))
    add("esk.preg.breastfeeding", R, {A}, ESK_LACTATION)
    add("ket.preg.breastfeeding", R, {A}, by_analogy(ESK_LACTATION))
    add("esk.preg.planning", R, {A}, ESK_PREGNANCY)
    add("ket.preg.planning", R, {A}, by_analogy(ESK_PREGNANCY))
    add("esk.preg.unknown", R, {I}, ESK_PREGNANCY)
    add("ket.preg.unknown", R, {I}, by_analogy(ESK_PREGNANCY))

    # Interactions.
    for suffix, topic in (
        ("cns_depressant", "CNS depressants raise sedation"),
        ("psychostimulant", "psychostimulants raise blood pressure"),
        ("maoi", "MAOIs raise blood pressure"),
    ):
        add(f"esk.med.{suffix}", R, {A}, f"{ESK_INTERACTIONS}: {topic}")
        add(f"ket.med.{suffix}", R, {A}, by_analogy(f"{ESK_INTERACTIONS}: {topic}"))
    add("esk.med.nasal", I, set(), ESK_NASAL)

    # Psychiatric history.
    add("esk.psychosis.active", A, {R}, ESK_PSYCHOSIS_ACTIVE)
    add("ket.psychosis.active", A, {R}, SANACORA_EVAL)
    add("esk.psychosis.history", R, {A}, ESK_PSYCHOSIS)
    add("ket.psychosis.history", R, {A}, SANACORA_EVAL)
    add("esk.dx.primary_psychotic_disorder", R, {A}, ESK_PSYCHOSIS)
    add("ket.dx.primary_psychotic_disorder", R, {A}, SANACORA_EVAL)
    add("esk.dx.bipolar", R, {A}, ESK_INDICATION + "; bipolar depression is off-label")
    add("ket.dx.bipolar", R, {A}, SANACORA_U + "; risk of a switch to mania")
    add("esk.sud.active", R, {A}, ESK_ABUSE)
    add("ket.sud.active", R, {A}, SANACORA_EVAL)
    add("esk.sud.history", R, {I}, ESK_ABUSE)
    add("ket.sud.history", R, {I}, SANACORA_EVAL)
    add("esk.misuse.dissociative", R, {A}, ESK_ABUSE)
    add("ket.misuse.dissociative", R, {A}, by_analogy(ESK_ABUSE))
    add("ket.route.home_use_misuse_risk", R, {A}, ASA_HOME_USE)
    add("ket.route.home_use", I, {R}, ASA_HOME_USE)

    # Suicidality: urgent; a clinic may make the gravest findings block.
    for prefix in ("esk", "ket"):
        add(f"{prefix}.suicide.ideation", U, set(), CSSRS_TRIAGE)
        add(f"{prefix}.suicide.intent_or_plan", U, {A}, SAFETY_FIRST)
        add(f"{prefix}.suicide.recent_attempt", U, {A}, CSSRS_BEHAVIOUR)
        add(f"{prefix}.suicide.past_attempt", I, {R}, CSSRS_BEHAVIOUR)
        add(f"{prefix}.phq9.item9_positive", U, set(), KROENKE_ITEM9)
        add(f"{prefix}.cssrs.low", U, set(), CSSRS_TRIAGE)
        add(f"{prefix}.cssrs.moderate", U, set(), CSSRS_TRIAGE)
        add(f"{prefix}.cssrs.high", U, {A}, SAFETY_FIRST)
        add(f"{prefix}.phq9.stale", I, set(), CLINIC_DEFAULT + " (assessment look-back)")
        add(f"{prefix}.cssrs.stale", I, set(), CLINIC_DEFAULT + " (assessment look-back)")

    # Vitals.
    add("esk.bp.today_elevated", R, {A}, ESK_BP_TODAY)
    add("esk.bp.recent_elevated", R, {I}, ESK_BP_TODAY)
    add("ket.bp.today_above_limit", R, {A}, SANACORA_LIMITS)
    add("ket.bp.recent_above_limit", R, {I}, SANACORA_LIMITS)
    add("ket.hr.today_above_limit", R, {A}, SANACORA_LIMITS)
    add("esk.spo2.today_low", R, {A}, CLINIC_DEFAULT + "; " + esk_warning("respiratory depression"))
    add("ket.spo2.today_low", R, {A}, CLINIC_DEFAULT)
    add("esk.vitals.bp_not_taken", I, set(), ESK_BP_TODAY)
    add("ket.vitals.bp_not_taken", I, set(), SANACORA_LIMITS)

    # Treatment-resistant depression and indication.
    for prefix in ("esk", "ket"):
        add(f"{prefix}.trd.met", I, set(), TRD_DEFINITION)
        add(f"{prefix}.trd.not_met", I, set(), TRD_DEFINITION)
        add(f"{prefix}.trd.not_counted", I, set(), TRD_DEFINITION)
    add("esk.indication.no_mdd", R, {A}, ESK_INDICATION)
    add("esk.indication.trd", I, set(), ESK_INDICATION)
    add("esk.indication.mdd_si", I, set(), ESK_INDICATION)
    add("esk.indication.mdd_si_without_oral_antidepressant", R, {A}, ESK_INDICATION)
    add("esk.indication.off_label", R, {A}, ESK_INDICATION)
    add("ket.indication.no_depressive_disorder", R, {A, I}, SANACORA_EVIDENCE)
    add("ket.indication.not_trd", R, {A, I}, SANACORA_EVIDENCE)

    # Route-specific notes for racemic ketamine.
    add("ket.route.obese_dosing", I, set(), SANACORA_IBW)
    add(
        "ket.route.weight_missing",
        I,
        set(),
        CLINIC_DEFAULT + "; weight-based dosing (reference §2)",
    )
    return specs


CATALOGUE: MappingProxyType[str, RuleSpec] = MappingProxyType({s.rule_id: s for s in _specs()})

# (graver, milder): the graver finding's severity must never rank below the milder one's, so
# worsening a patient's state never makes a decision more permissive (policy validation).
ORDERED_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (f"{prefix}.{graver}", f"{prefix}.{milder}")
    for prefix in ("esk", "ket")
    for graver, milder in (
        ("psychosis.active", "psychosis.history"),
        ("sud.active", "sud.history"),
        ("warn.hepatic_severe", "warn.hepatic_moderate"),
        ("preg.pregnant", "preg.breastfeeding"),
        ("preg.pregnant", "preg.planning"),
        ("preg.pregnant", "preg.unknown"),
        ("suicide.recent_attempt", "suicide.past_attempt"),
        ("cssrs.high", "cssrs.moderate"),
    )
)
