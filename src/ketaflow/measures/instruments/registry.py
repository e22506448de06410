"""The registry of rating scales by code. Lookups ignore case and punctuation, so 'phq9',
'PHQ-9' and 'Phq 9' name the same scale, and 'MOAAS' names MOAA/S."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ketaflow.core.errors import InvalidInput
from ketaflow.measures.instruments.base import Instrument, MissingItemRule, Score
from ketaflow.measures.instruments.bprs_plus import BPRS_PLUS
from ketaflow.measures.instruments.cadss import CADSS
from ketaflow.measures.instruments.cssrs import CSSRS
from ketaflow.measures.instruments.gad7 import GAD7
from ketaflow.measures.instruments.madrs import MADRS
from ketaflow.measures.instruments.moaas import MOAAS
from ketaflow.measures.instruments.phq9 import PHQ9
from ketaflow.measures.instruments.qids_sr16 import QIDS_SR16

INSTRUMENTS: tuple[Instrument, ...] = (PHQ9, GAD7, MADRS, QIDS_SR16, CSSRS, CADSS, MOAAS, BPRS_PLUS)


class UnknownInstrument(InvalidInput, KeyError):
    """No scale has this code; the API answers 422 naming the `instrument` field."""

    def __init__(self, code: str) -> None:
        known = ", ".join(instrument.code for instrument in INSTRUMENTS)
        super().__init__(f"unknown instrument {code!r}; known: {known}", field_name="instrument")
        self.code = code

    def __str__(self) -> str:
        return self.detail


def lookup_key(code: str) -> str:
    """Case and punctuation do not matter: 'QIDS-SR16' -> 'QIDSSR16', 'BPRS+' -> 'BPRSPLUS'."""
    return re.sub(r"[^A-Z0-9]", "", code.upper().replace("+", "PLUS"))


_BY_KEY = MappingProxyType({lookup_key(instrument.code): instrument for instrument in INSTRUMENTS})

INSTRUMENT_CODES: tuple[str, ...] = tuple(instrument.code for instrument in INSTRUMENTS)


def get_instrument(code: str) -> Instrument:
    """The scale for a code ('PHQ-9', 'phq9', 'MOAAS', ...); raises UnknownInstrument."""
    instrument = _BY_KEY.get(lookup_key(code))
    if instrument is None:
        raise UnknownInstrument(code)
    return instrument


def all_instruments() -> tuple[Instrument, ...]:
    return INSTRUMENTS


def score_answers(
    code: str,
    answers: Mapping[str | int, Any],
    *,
    missing_item_rule: MissingItemRule | None = None,
) -> Score:
    """Look up a scale and score its answers: what the assessments service calls."""
    return get_instrument(code).score(answers, missing_item_rule=missing_item_rule)
