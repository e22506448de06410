"""QIDS-SR16: Quick Inventory of Depressive Symptomatology, self-report, 16 items 0-3
(Rush et al. 2003; scoring from ids-qids.org; reference §3).

The total is the sum of nine domains: sleep = max(items 1-4), item 5, appetite/weight =
max(items 6-9), items 10-14, psychomotor = max(items 15, 16); range 0-27 (ids-qids.org,
reference §3). QIDS licence terms are unconfirmed, so only short labels ship.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from ketaflow.measures.instruments.base import (
    AnswerError,
    Band,
    FlagRule,
    Instrument,
    Item,
    MissingItemRule,
    Severity,
    numeric_options,
    round_half_up,
)

CODE = "QIDS-SR16"

_LABELS = (
    "Falling asleep",
    "Sleep during the night",
    "Waking up too early",
    "Sleeping too much",
    "Feeling sad",
    "Decreased appetite",
    "Increased appetite",
    "Decreased weight (last 2 weeks)",
    "Increased weight (last 2 weeks)",
    "Concentration and decision making",
    "View of myself",
    "Thoughts of death or suicide",
    "General interest",
    "Energy level",
    "Feeling slowed down",
    "Feeling restless",
)

# The self-report form asks either 6 or 7 (decreased or increased appetite) and either 8 or 9
# (weight down or up), not both. We could not confirm this from ids-qids.org itself (it is how
# published electronic versions implement the form), so both ways are accepted: at least one of
# each pair must be answered, and the appetite/weight domain is the maximum of what was answered,
# which is the same rule whichever way the form was filled in.
EITHER_OR_PAIRS: tuple[tuple[str, str], ...] = (("6", "7"), ("8", "9"))
_EITHER_OR_ITEMS = frozenset(item_id for pair in EITHER_OR_PAIRS for item_id in pair)

ITEMS = tuple(
    Item(
        id=str(number),
        label=label,
        options=numeric_options(0, 3),
        required=str(number) not in _EITHER_OR_ITEMS,
    )
    for number, label in enumerate(_LABELS, start=1)
)

# The nine domains (ids-qids.org, reference §3): each is the maximum of its items.
DOMAINS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sleep", ("1", "2", "3", "4")),
    ("sad_mood", ("5",)),
    ("appetite_weight", ("6", "7", "8", "9")),
    ("concentration", ("10",)),
    ("self_view", ("11",)),
    ("suicidal_ideation", ("12",)),
    ("interest", ("13",)),
    ("energy", ("14",)),
    ("psychomotor", ("15", "16")),
)

# Severity bands (ids-qids.org, reference §3).
BANDS = (
    Band("none", "No depression", 0, 5),
    Band("mild", "Mild depression", 6, 10),
    Band("moderate", "Moderate depression", 11, 15),
    Band("severe", "Severe depression", 16, 20),
    Band("very_severe", "Very severe depression", 21, 27),
)

SUICIDALITY_ITEM_ID = "12"

FLAG_RULES = (
    # Item 12 is the suicide item (reference §3); flagging any answer above 0 mirrors PHQ-9
    # item 9 and is a clinic-configurable default (unconfirmed).
    FlagRule(
        code="suicidality_item_positive",
        severity=Severity.CRITICAL,
        message="QIDS-SR16 item 12 (thoughts of death or suicide) is above 0: safety follow-up "
        "needed",
        item_id=SUICIDALITY_ITEM_ID,
        threshold=1,
        requires_acknowledgement=True,
        source="ids-qids.org (reference §3); cut-off > 0 is a clinic default (unconfirmed)",
        unconfirmed=True,
    ),
)


@dataclass(frozen=True)
class QidsInstrument(Instrument):
    domains: tuple[tuple[str, tuple[str, ...]], ...] = DOMAINS

    @property
    def either_or_groups(self) -> tuple[tuple[str, ...], ...]:
        return EITHER_OR_PAIRS

    def _fill_missing(
        self, answers: Mapping[str, int], rule: MissingItemRule | None
    ) -> tuple[dict[str, Fraction], tuple[str, ...]]:
        # Every unanswered pair at once, so the form is fixed in one go.
        unanswered = [
            (first, f"missing answer (answer item {first} or {second})")
            for first, second in EITHER_OR_PAIRS
            if first not in answers and second not in answers
        ]
        if unanswered:
            (first_id, first_message), *more = unanswered
            raise AnswerError(first_id, first_message, more=more)
        return super()._fill_missing(answers, rule)

    def _domain_scores(self, answers: Mapping[str, Fraction]) -> dict[str, Fraction]:
        return {
            name: max(answers[i] for i in item_ids if i in answers)
            for name, item_ids in self.domains
        }

    def _total(self, answers: Mapping[str, Fraction]) -> int | None:
        return round_half_up(sum(self._domain_scores(answers).values(), Fraction(0)))

    def _subscores(self, answers: Mapping[str, Fraction]) -> dict[str, int]:
        return {name: round_half_up(value) for name, value in self._domain_scores(answers).items()}


QIDS_SR16 = QidsInstrument(
    code=CODE,
    name="Quick Inventory of Depressive Symptomatology, Self-Report (16 items)",
    version="QIDS-SR16 (Rush et al. 2003)",
    items=ITEMS,
    total_min=0,
    total_max=27,
    bands=BANDS,
    flag_rules=FLAG_RULES,
    recall_period="past 7 days",
    licence_note="Terms unconfirmed (reference §3): short item labels and scoring only; load "
    "licensed wording from a file.",
    source="Rush AJ et al. The 16-item QIDS-C and QIDS-SR. Biol Psychiatry 2003;54:573-83; "
    "scoring per ids-qids.org",
    full_wording=False,
    notes=(
        "Remission: total <= 5 (reference §3 outcome definitions).",
        "Items 6/7 and 8/9 are either-or pairs on the self-report form: answer at least one of "
        "each (unconfirmed form detail; the domain maximum is unaffected).",
    ),
)
