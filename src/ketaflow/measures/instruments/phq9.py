"""PHQ-9: Patient Health Questionnaire, 9 items (Kroenke et al. 2001, reference §3).

PHQ-9 may be reproduced freely (reference §3, licensing), so it ships with its full wording and
answer options. The 10th question (difficulty) is optional and not scored (Kroenke et al. 2001).
"""

from __future__ import annotations

from ketaflow.measures.instruments.base import (
    Band,
    FlagRule,
    Instrument,
    Item,
    Loinc,
    MissingItemRule,
    Severity,
    frequency_options,
)

CODE = "PHQ-9"

# Answer wording and LOINC answer codes LA6568-5..LA6571-9 (reference §3, LOINC).
FREQUENCY_LABELS = ("Not at all", "Several days", "More than half the days", "Nearly every day")
FREQUENCY_LOINC = ("LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9")
FREQUENCY_OPTIONS = frequency_options(FREQUENCY_LABELS, FREQUENCY_LOINC)

DIFFICULTY_OPTIONS = frequency_options(
    ("Not difficult at all", "Somewhat difficult", "Very difficult", "Extremely difficult")
)

# (id, short label, full wording, item LOINC) — LOINC item codes from reference §3.
_ITEMS = (
    ("1", "Little interest or pleasure", "Little interest or pleasure in doing things", "44250-9"),
    ("2", "Feeling down", "Feeling down, depressed, or hopeless", "44255-8"),
    (
        "3",
        "Sleep problems",
        "Trouble falling or staying asleep, or sleeping too much",
        "44259-0",
    ),
    ("4", "Tired, little energy", "Feeling tired or having little energy", "44254-1"),
    ("5", "Appetite", "Poor appetite or overeating", "44251-7"),
    (
        "6",
        "Feeling bad about yourself",
        "Feeling bad about yourself — or that you are a failure or have let yourself or your "
        "family down",
        "44258-2",
    ),
    (
        "7",
        "Trouble concentrating",
        "Trouble concentrating on things, such as reading the newspaper or watching television",
        "44252-5",
    ),
    (
        "8",
        "Moving or speaking slowly, or restless",
        "Moving or speaking so slowly that other people could have noticed? Or the opposite — "
        "being so fidgety or restless that you have been moving around a lot more than usual",
        "44253-3",
    ),
    (
        "9",
        "Thoughts of death or self-harm",
        "Thoughts that you would be better off dead or of hurting yourself in some way",
        "44260-8",
    ),
)

ITEMS = (
    *(
        Item(id=i, label=label, text=text, options=FREQUENCY_OPTIONS, loinc=Loinc(loinc))
        for i, label, text, loinc in _ITEMS
    ),
    Item(
        id="10",
        label="Difficulty",
        text=(
            "If you checked off any problems, how difficult have these problems made it for you "
            "to do your work, take care of things at home, or get along with other people?"
        ),
        options=DIFFICULTY_OPTIONS,
        scored=False,  # not scored (Kroenke et al. 2001, reference §3)
        required=False,
    ),
)

# Severity bands (Kroenke et al. 2001, reference §3).
BANDS = (
    Band("minimal", "Minimal depression", 0, 4),
    Band("mild", "Mild depression", 5, 9),
    Band("moderate", "Moderate depression", 10, 14),
    Band("moderately_severe", "Moderately severe depression", 15, 19),
    Band("severe", "Severe depression", 20, 27),
)

SUICIDALITY_ITEM_ID = "9"

FLAG_RULES = (
    # Item 9 > 0 needs safety follow-up whatever the total (Kroenke et al. 2001, reference §3).
    FlagRule(
        code="suicidality_item_positive",
        severity=Severity.CRITICAL,
        message="PHQ-9 item 9 (thoughts of death or self-harm) is positive: safety follow-up "
        "needed whatever the total",
        item_id=SUICIDALITY_ITEM_ID,
        threshold=1,
        requires_acknowledgement=True,
        source="Kroenke et al. 2001 (reference §3)",
    ),
)

# Prorating is common practice, but it is not in the reference and we could not confirm it in
# the PHQ instruction manual; the only source found is secondary (qscorer's scoring_phq9, citing
# Arrieta et al. 2017, J Clin Psychol, doi 10.1002/jclp.22390: up to two missing items take the
# mean of the answered ones). So PHQ-9 does not prorate by default: a clinic may opt in by
# passing this rule to `score(..., missing_item_rule=PRORATING_UNCONFIRMED)`.
PRORATING_UNCONFIRMED = MissingItemRule(
    max_missing=2,
    source="Arrieta et al. 2017 via qscorer scoring_phq9; not in the PHQ manual as checked",
    unconfirmed=True,
)

PHQ9 = Instrument(
    code=CODE,
    name="Patient Health Questionnaire-9",
    version="PHQ-9 (Kroenke, Spitzer & Williams 2001)",
    items=ITEMS,
    total_min=0,
    total_max=27,
    bands=BANDS,
    flag_rules=FLAG_RULES,
    recall_period="past 2 weeks",
    instructions=(
        "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
    ),
    panel_loinc=Loinc("44249-1", unconfirmed=True),  # panel code is U in reference §3
    total_loinc=Loinc("44261-6"),
    licence_note="PHQ-9 may be reproduced freely (reference §3); developed by Drs. Robert L. "
    "Spitzer, Janet B.W. Williams, Kurt Kroenke and colleagues with an educational grant from "
    "Pfizer Inc.",
    source="Kroenke K, Spitzer RL, Williams JB. The PHQ-9: validity of a brief depression "
    "severity measure. J Gen Intern Med 2001;16:606-13",
    full_wording=True,
    missing_item_rule=None,
    wording_source="published form",
    notes=("Remission: total < 5 (reference §3 outcome definitions).",),
)
