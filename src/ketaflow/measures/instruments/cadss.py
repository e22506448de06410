"""CADSS: Clinician-Administered Dissociative States Scale, 23 items 0-4 as used in ketamine
trials (19 subjective, 4 observer); total 0-92; CADSS-6 short form = items 1, 2, 6, 7, 15, 22
(Bremner 1998; Rodrigues 2021; reference §3).

There are no severity bands: what matters is the change from the pre-dose rating (reference §3).
Licence terms are unconfirmed (reference §3), and we could not confirm which printed form's item
order a clinic uses, so items ship as numbered labels only; a clinic loads its licensed wording
(which also names the observer items) from a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from ketaflow.measures.instruments.base import Instrument, Item, numeric_options, round_half_up

CODE = "CADSS"

ITEM_COUNT = 23  # Bremner 1998 / ketamine-trial form (reference §3)
CADSS6_ITEM_IDS = ("1", "2", "6", "7", "15", "22")  # Rodrigues 2021 (reference §3)

ITEMS = tuple(
    Item(
        id=str(number),
        label=f"CADSS item {number}",
        options=numeric_options(0, 4),
        rater="clinician",
    )
    for number in range(1, ITEM_COUNT + 1)
)


def change_from_pre_dose(pre_dose_total: int, post_dose_total: int) -> int:
    """The CADSS is read as the rise from the pre-dose rating (reference §3)."""
    return post_dose_total - pre_dose_total


@dataclass(frozen=True)
class CadssInstrument(Instrument):
    short_form_item_ids: tuple[str, ...] = CADSS6_ITEM_IDS

    def _subscores(self, answers: Mapping[str, Fraction]) -> dict[str, int]:
        cadss6 = sum((answers[i] for i in self.short_form_item_ids), Fraction(0))
        return {"cadss6": round_half_up(cadss6)}


CADSS = CadssInstrument(
    code=CODE,
    name="Clinician-Administered Dissociative States Scale",
    version="CADSS 23-item (19 subjective, 4 observer), with CADSS-6 subtotal",
    items=ITEMS,
    total_min=0,
    total_max=4 * ITEM_COUNT,
    bands=(),
    recall_period="now (since the dose)",
    licence_note="Terms unconfirmed (reference §3): numbered labels and scoring only; load "
    "licensed wording from a file.",
    source="Bremner JD et al. J Trauma Stress 1998;11:125-36; CADSS-6: Rodrigues NB et al. 2021",
    full_wording=False,
    notes=(
        "No bands: read the change from the pre-dose rating.",
        "Subscore cadss6 = items 1, 2, 6, 7, 15, 22 (0-24).",
    ),
)
