"""MOAA/S: Modified Observer's Assessment of Alertness/Sedation, one rating 0-5 (Chernik 1990,
reference §3). Lower is deeper sedation; 0 is loss of consciousness.
"""

from __future__ import annotations

from ketaflow.measures.instruments.base import (
    AnswerOption,
    Band,
    FlagRule,
    Instrument,
    Item,
    Severity,
)

CODE = "MOAA/S"

# Level labels (Chernik 1990, reference §3).
LEVELS = (
    (0, "no_response", "No response (loss of consciousness)"),
    (1, "trapezius_squeeze", "Responds only to trapezius squeeze"),
    (2, "mild_prodding", "Responds only to mild prodding"),
    (3, "loud_name", "Responds only to loud or repeated name"),
    (4, "lethargic", "Lethargic response to name"),
    (5, "alert", "Responds readily to name"),
)

ITEMS = (
    Item(
        id="1",
        label="Responsiveness",
        options=tuple(AnswerOption(value=value, label=label) for value, _, label in LEVELS),
        rater="clinician",
    ),
)

BANDS = tuple(Band(code, label, value, value) for value, code, label in LEVELS)

# Alarm at MOAA/S <= 3: the dosing issue's sedation alarm threshold, a clinic default
# (unconfirmed); loss of consciousness is MOAA/S 0 (Chernik 1990; SPRAVATO label warnings).
DEEP_SEDATION_MAX = 3

FLAG_RULES = (
    FlagRule(
        code="loss_of_consciousness",
        severity=Severity.CRITICAL,
        message="MOAA/S 0: no response, loss of consciousness",
        item_id="1",
        threshold=0,
        comparison="at_most",
        source="Chernik 1990 (reference §3)",
    ),
    FlagRule(
        code="deep_sedation",
        severity=Severity.WARNING,
        message=f"MOAA/S <= {DEEP_SEDATION_MAX}: responds only to loud voice, touch or pain",
        item_id="1",
        threshold=DEEP_SEDATION_MAX,
        comparison="at_most",
        source="dosing issue sedation alarm; clinic default (unconfirmed)",
        unconfirmed=True,
    ),
)

MOAAS = Instrument(
    code=CODE,
    name="Modified Observer's Assessment of Alertness/Sedation",
    version="MOAA/S (Chernik 1990)",
    items=ITEMS,
    total_min=0,
    total_max=5,
    bands=BANDS,
    flag_rules=FLAG_RULES,
    recall_period="now",
    licence_note="Terms unconfirmed (reference §3): level labels and scoring only.",
    source="Chernik DA et al. J Clin Psychopharmacol 1990;10:244-51",
    full_wording=False,
    notes=("Lower is deeper sedation; sedation has resolved at 5.",),
)
