"""Rating scales: one module per scale, shared types in `base`, a registry by code."""

from ketaflow.measures.instruments.base import (
    AnswerError,
    AnswerOption,
    Band,
    Flag,
    FlagRule,
    Instrument,
    Item,
    Loinc,
    MissingItemRule,
    Score,
    Severity,
)
from ketaflow.measures.instruments.registry import (
    INSTRUMENT_CODES,
    UnknownInstrument,
    all_instruments,
    get_instrument,
    score_answers,
)

__all__ = [
    "INSTRUMENT_CODES",
    "AnswerError",
    "AnswerOption",
    "Band",
    "Flag",
    "FlagRule",
    "Instrument",
    "Item",
    "Loinc",
    "MissingItemRule",
    "Score",
    "Severity",
    "UnknownInstrument",
    "all_instruments",
    "get_instrument",
    "score_answers",
]
