"""BPRS+: the four positive-symptom items of the Brief Psychiatric Rating Scale, 1-7 each,
total 4-28, used in ketamine trials to track psychotomimetic effects (reference §3, M).
"""

from __future__ import annotations

from ketaflow.measures.instruments.base import Instrument, Item, numeric_options

CODE = "BPRS+"

# Items as listed in reference §3 (ketamine trial protocols).
_LABELS = (
    "Suspiciousness",
    "Hallucinations",
    "Unusual thought content",
    "Conceptual disorganisation",
)

ITEMS = tuple(
    Item(id=str(number), label=label, options=numeric_options(1, 7), rater="clinician")
    for number, label in enumerate(_LABELS, start=1)
)

BPRS_PLUS = Instrument(
    code=CODE,
    name="Brief Psychiatric Rating Scale, positive symptoms (4 items)",
    version="BPRS+ 4-item positive subscale",
    items=ITEMS,
    total_min=4,
    total_max=28,
    bands=(),
    recall_period="now (since the dose)",
    licence_note="Terms unconfirmed: item labels and scoring only.",
    source="Ketamine trial protocols (reference §3, confidence M)",
    full_wording=False,
    notes=("No bands: read the change from the pre-dose rating.",),
)
