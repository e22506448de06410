"""MADRS: Montgomery-Åsberg Depression Rating Scale, 10 clinician-rated items 0-6
(Montgomery & Åsberg 1979; bands after Snaith; reference §3).

MADRS licence terms are unconfirmed (reference §3, licensing): only short item labels ship and
the answers are the numbers 0-6 (the even steps have anchor descriptions in the licensed form,
the odd steps lie between them). A clinic may load its licensed wording (see `wording.py`).
No LOINC code for the MADRS total was found (reference §3, LOINC).
"""

from __future__ import annotations

from ketaflow.measures.instruments.base import (
    Band,
    FlagRule,
    Instrument,
    Item,
    Severity,
    numeric_options,
)

CODE = "MADRS"

# Item labels as listed in reference §3 (Montgomery & Åsberg 1979).
_LABELS = (
    "Apparent sadness",
    "Reported sadness",
    "Inner tension",
    "Reduced sleep",
    "Reduced appetite",
    "Concentration difficulties",
    "Lassitude",
    "Inability to feel",
    "Pessimistic thoughts",
    "Suicidal thoughts",
)

ITEMS = tuple(
    Item(id=str(number), label=label, options=numeric_options(0, 6), rater="clinician")
    for number, label in enumerate(_LABELS, start=1)
)

# Severity bands after Snaith (reference §3).
BANDS = (
    Band("absent", "Symptoms absent", 0, 6),
    Band("mild", "Mild depression", 7, 19),
    Band("moderate", "Moderate depression", 20, 34),
    Band("severe", "Severe depression", 35, 60),
)

SUICIDALITY_ITEM_ID = "10"

FLAG_RULES = (
    # Item 10 is the suicidality flag (reference §3). The reference gives no cut-off on the
    # item, so any rating above 0 flags: a clinic-configurable default, unconfirmed.
    FlagRule(
        code="suicidality_item_positive",
        severity=Severity.CRITICAL,
        message="MADRS item 10 (suicidal thoughts) is above 0: safety follow-up needed",
        item_id=SUICIDALITY_ITEM_ID,
        threshold=1,
        requires_acknowledgement=True,
        source="Montgomery & Åsberg 1979 (reference §3); cut-off > 0 is a clinic default "
        "(unconfirmed)",
        unconfirmed=True,
    ),
)

MADRS = Instrument(
    code=CODE,
    name="Montgomery-Åsberg Depression Rating Scale",
    version="MADRS (Montgomery & Åsberg 1979), Snaith bands",
    items=ITEMS,
    total_min=0,
    total_max=60,
    bands=BANDS,
    flag_rules=FLAG_RULES,
    recall_period="past week (clinician interview)",
    licence_note="Terms unconfirmed (reference §3): short item labels and scoring only; load "
    "licensed wording from a file.",
    source="Montgomery SA, Åsberg M. A new depression scale designed to be sensitive to change. "
    "Br J Psychiatry 1979;134:382-9; bands after Snaith et al. 1986",
    full_wording=False,
    notes=(
        "Remission: total <= 10 by default (reference §3: < 10 or <= 10; <= 12 in esketamine "
        "trials).",
        "No LOINC code for the MADRS total was found (reference §3).",
    ),
)
