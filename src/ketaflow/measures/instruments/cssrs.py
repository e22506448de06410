"""C-SSRS screener: Columbia Suicide Severity Rating Scale, screen version, six yes/no questions
and, when question 6 is yes, whether the behaviour was within the past 3 months
(Columbia screener triage, reference §3).

Skip logic: if question 2 is no, questions 3-5 are not asked (go to 6); the 3-month question is
asked only when question 6 is yes. Answers for skipped questions must be absent.
Risk: low = yes to 1 and/or 2 only; moderate = yes to 3, or 6 yes but over 3 months ago;
high = yes to 4 or 5, or 6 within 3 months (reference §3). The screener has no total.

Licensing: free for clinical use, but an electronic implementation in a commercial product needs
a sublicence (reference §3): only short labels ship; a clinic loads its licensed wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from ketaflow.measures.instruments.base import (
    YES_NO_OPTIONS,
    AnswerError,
    Band,
    Flag,
    Instrument,
    Item,
    Loinc,
    MissingItemRule,
    Severity,
)

CODE = "C-SSRS"

WITHIN_3_MONTHS_ITEM_ID = "6b"

# Short labels after reference §3; LOINC item codes from reference §3.
ITEMS = (
    Item("1", "Wish to be dead", YES_NO_OPTIONS, loinc=Loinc("93246-7")),
    Item("2", "Active suicidal thoughts", YES_NO_OPTIONS, loinc=Loinc("93247-5")),
    Item("3", "Suicidal thoughts with method", YES_NO_OPTIONS, loinc=Loinc("93248-3")),
    Item("4", "Suicidal intent without specific plan", YES_NO_OPTIONS, loinc=Loinc("93249-1")),
    Item("5", "Suicidal intent with specific plan", YES_NO_OPTIONS, loinc=Loinc("93250-9")),
    Item("6", "Suicidal behaviour (lifetime)", YES_NO_OPTIONS, loinc=Loinc("93267-3")),
    Item(
        WITHIN_3_MONTHS_ITEM_ID,
        "Suicidal behaviour within the past 3 months",
        YES_NO_OPTIONS,
        loinc=Loinc("93269-9"),
    ),
)

_GATED_BY_2 = ("3", "4", "5")

# Risk levels, ordinal 0-3; the band's low/high carry the ordinal (the screener has no total).
RISK_BANDS = (
    Band("none", "No risk identified", 0, 0),
    Band("low", "Low risk", 1, 1),
    Band("moderate", "Moderate risk", 2, 2),
    Band("high", "High risk", 3, 3),
)

_SOURCE = "Columbia screener triage (reference §3)"

RISK_FLAGS = {
    "low": Flag(
        code="cssrs_risk_low",
        severity=Severity.INFO,
        message="C-SSRS screener: low risk (wish to be dead or non-specific thoughts only)",
        source=_SOURCE,
    ),
    "moderate": Flag(
        code="cssrs_risk_moderate",
        severity=Severity.WARNING,
        message="C-SSRS screener: moderate risk (thoughts with method, or past behaviour over 3 "
        "months ago): clinician review needed",
        requires_acknowledgement=True,
        source=_SOURCE,
    ),
    "high": Flag(
        code="cssrs_risk_high",
        severity=Severity.CRITICAL,
        message="C-SSRS screener: high risk (intent, plan, or behaviour within 3 months): "
        "immediate clinician review",
        requires_acknowledgement=True,
        source=_SOURCE,
    ),
}


def risk_level(answers: Mapping[str, int]) -> str:
    """'none', 'low', 'moderate' or 'high' from validated screener answers (reference §3)."""
    yes = {item_id for item_id, value in answers.items() if value == 1}
    behaviour_recent = "6" in yes and WITHIN_3_MONTHS_ITEM_ID in yes
    behaviour_past = "6" in yes and WITHIN_3_MONTHS_ITEM_ID not in yes
    if "4" in yes or "5" in yes or behaviour_recent:
        return "high"
    if "3" in yes or behaviour_past:
        return "moderate"
    if "1" in yes or "2" in yes:
        return "low"
    return "none"


@dataclass(frozen=True)
class CssrsScreener(Instrument):
    def ordered_item_ids(self, answers_so_far: Mapping[str, int]) -> tuple[str, ...]:
        asked = ["1", "2"]
        if answers_so_far.get("2") == 1:
            asked.extend(_GATED_BY_2)
        asked.append("6")
        if answers_so_far.get("6") == 1:
            asked.append(WITHIN_3_MONTHS_ITEM_ID)
        return tuple(asked)

    def asked_after(self, item_id: str) -> tuple[str, int] | None:
        # Questions 3-5 follow a yes to 2; the 3-month question follows a yes to 6 (reference §3).
        if item_id in _GATED_BY_2:
            return "2", 1
        if item_id == WITHIN_3_MONTHS_ITEM_ID:
            return "6", 1
        return None

    def _validate_structure(self, answers: Mapping[str, int]) -> None:
        if "2" in answers and answers["2"] == 0:
            for item_id in _GATED_BY_2:
                if item_id in answers:
                    raise AnswerError(item_id, "skipped when question 2 is no: leave it out")
        if "6" in answers and answers["6"] == 0 and WITHIN_3_MONTHS_ITEM_ID in answers:
            raise AnswerError(
                WITHIN_3_MONTHS_ITEM_ID, "asked only when question 6 is yes: leave it out"
            )

    def _fill_missing(
        self, answers: Mapping[str, int], rule: MissingItemRule | None
    ) -> tuple[dict[str, Fraction], tuple[str, ...]]:
        # Every asked question must be answered: a safety screen is never prorated.
        del rule
        for item_id in self.ordered_item_ids(answers):
            if item_id not in answers:
                raise AnswerError(item_id, "missing answer")
        return {k: Fraction(v) for k, v in answers.items()}, ()

    def _total(self, answers: Mapping[str, Fraction]) -> int | None:
        del answers
        return None

    def _level(self, answers: Mapping[str, Fraction]) -> str:
        return risk_level({k: int(v) for k, v in answers.items()})

    def _band(self, answers: Mapping[str, Fraction], total: int | None) -> Band | None:
        level = self._level(answers)
        return next(band for band in RISK_BANDS if band.code == level)

    def _subscores(self, answers: Mapping[str, Fraction]) -> dict[str, int]:
        level = self._level(answers)
        return {"risk_level": next(b.low for b in RISK_BANDS if b.code == level)}

    def _extra_flags(self, answers: Mapping[str, Fraction], total: int | None) -> list[Flag]:
        flag = RISK_FLAGS.get(self._level(answers))
        return [flag] if flag else []


CSSRS = CssrsScreener(
    code=CODE,
    name="Columbia Suicide Severity Rating Scale, screener",
    version="C-SSRS screen version (Columbia), triage by risk level",
    items=ITEMS,
    total_min=None,
    total_max=None,
    bands=RISK_BANDS,
    recall_period="past month (questions 1-5); lifetime with past 3 months (question 6)",
    other_loinc=(("risk_level", Loinc("93374-7")),),
    licence_note="Free for clinical use; an electronic implementation in a commercial product "
    "needs a sublicence (reference §3): short labels and scoring only; load licensed wording "
    "from a file.",
    source="Posner K et al., Columbia-Suicide Severity Rating Scale, screen version with triage "
    "(Columbia Lighthouse Project)",
    full_wording=False,
    notes=(
        "No total: the result is the risk level (none, low, moderate, high); each band's "
        "low/high hold the level's ordinal 0-3, also given as subscore risk_level.",
        "Answers are yes (1) or no (0); skipped questions must be absent.",
    ),
)
