"""GAD-7: Generalized Anxiety Disorder, 7 items (Spitzer et al. 2006, reference §3).

GAD-7 may be reproduced freely (reference §3, licensing): full wording ships. Like the PHQ-9 it
ends with an optional, unscored difficulty question.
"""

from __future__ import annotations

from ketaflow.measures.instruments.base import Band, Instrument, Item, Loinc
from ketaflow.measures.instruments.phq9 import DIFFICULTY_OPTIONS, FREQUENCY_OPTIONS

CODE = "GAD-7"

# The GAD-7 uses the PHQ frequency answers; their LOINC answer codes are the same list
# (reference §3 lists them under PHQ-9; the MII PRO FHIR IG's GAD-7 example uses the same codes).
# Item-level LOINC codes are not in the reference, so none ship.
_ITEMS = (
    ("1", "Nervous, anxious, on edge", "Feeling nervous, anxious, or on edge"),
    ("2", "Cannot stop worrying", "Not being able to stop or control worrying"),
    ("3", "Worrying too much", "Worrying too much about different things"),
    ("4", "Trouble relaxing", "Trouble relaxing"),
    ("5", "Restless", "Being so restless that it is hard to sit still"),
    ("6", "Annoyed or irritable", "Becoming easily annoyed or irritable"),
    (
        "7",
        "Afraid something awful might happen",
        "Feeling afraid, as if something awful might happen",
    ),
)

ITEMS = (
    *(Item(id=i, label=label, text=text, options=FREQUENCY_OPTIONS) for i, label, text in _ITEMS),
    Item(
        id="8",
        label="Difficulty",
        text=(
            "If you checked off any problems, how difficult have these problems made it for you "
            "to do your work, take care of things at home, or get along with other people?"
        ),
        options=DIFFICULTY_OPTIONS,
        scored=False,
        required=False,
    ),
)

# Severity bands (Spitzer et al. 2006, reference §3).
BANDS = (
    Band("minimal", "Minimal anxiety", 0, 4),
    Band("mild", "Mild anxiety", 5, 9),
    Band("moderate", "Moderate anxiety", 10, 14),
    Band("severe", "Severe anxiety", 15, 21),
)

GAD7 = Instrument(
    code=CODE,
    name="Generalized Anxiety Disorder-7",
    version="GAD-7 (Spitzer, Kroenke, Williams & Löwe 2006)",
    items=ITEMS,
    total_min=0,
    total_max=21,
    bands=BANDS,
    recall_period="past 2 weeks",
    instructions=(
        "Over the last 2 weeks, how often have you been bothered by the following problems?"
    ),
    panel_loinc=Loinc("69737-5", unconfirmed=True),  # panel code is U in reference §3
    total_loinc=Loinc("70274-6"),
    licence_note="GAD-7 may be reproduced freely (reference §3); developed by Drs. Robert L. "
    "Spitzer, Janet B.W. Williams, Kurt Kroenke and colleagues with an educational grant from "
    "Pfizer Inc.",
    source="Spitzer RL, Kroenke K, Williams JB, Löwe B. A brief measure for assessing "
    "generalized anxiety disorder: the GAD-7. Arch Intern Med 2006;166:1092-7",
    full_wording=True,
    wording_source="published form",
)
