"""Shared types of the rating scales: items, answer options, bands, flag rules, the score.

An instrument is a frozen value: its items, answer options, bands, flag rules and LOINC codes are
data, and `score(answers)` is a pure function of the answers. Scales with their own scoring
shape (QIDS-SR16 domain maxima, the C-SSRS screener's skip logic) subclass `Instrument` and
override `_total` / `_validate_structure` / `_extra_flags`. Nothing here reads a clock or a file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

from ketaflow.core.errors import InvalidInput


class AnswerError(InvalidInput, ValueError):
    """An answer the scale cannot take: missing, out of range, skipped, or unknown item.

    `item_id` names the item (as the scale numbers it), so the API can answer 422 with the field
    and the CLI can print `error: item 3: 4 is outside 0-3`."""

    def __init__(self, item_id: str, message: str, *, more: Sequence[tuple[str, str]] = ()) -> None:
        problems = ((item_id, message), *more)
        super().__init__(
            "; ".join(f"item {i}: {m}" for i, m in problems), field_name=f"answers.{item_id}"
        )
        self.item_id = item_id
        self.message = message
        # every item to fix, in order, when a scale can name several at once (item id, message)
        self.problems: tuple[tuple[str, str], ...] = problems

    def extensions(self) -> dict[str, object]:
        return {
            "errors": [
                {"field": f"answers.{item_id}", "message": f"item {item_id}: {message}"}
                for item_id, message in self.problems
            ]
        }


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Loinc:
    """A LOINC code; `unconfirmed` marks the codes the reference lists as U."""

    code: str
    unconfirmed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "unconfirmed": self.unconfirmed}


@dataclass(frozen=True)
class AnswerOption:
    value: int
    label: str
    loinc: Loinc | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "label": self.label,
            "loinc": self.loinc.as_dict() if self.loinc else None,
        }


@dataclass(frozen=True)
class Item:
    """One question. `label` is a short label we may always ship; `text` is the full wording,
    present only where the licence allows it (or a clinic loaded its licensed wording)."""

    id: str
    label: str
    options: tuple[AnswerOption, ...]
    text: str | None = None
    loinc: Loinc | None = None
    scored: bool = True
    required: bool = True
    rater: str = "patient"  # "patient" (self-report) or "clinician" / "observer"

    @property
    def min_value(self) -> int:
        return min(option.value for option in self.options)

    @property
    def max_value(self) -> int:
        return max(option.value for option in self.options)

    @property
    def values(self) -> frozenset[int]:
        return frozenset(option.value for option in self.options)

    @property
    def is_yes_no(self) -> bool:
        return self.values == frozenset({0, 1}) and len(self.options) == 2

    def range_text(self) -> str:
        return f"{self.min_value}-{self.max_value}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "text": self.text,
            "options": [option.as_dict() for option in self.options],
            "loinc": self.loinc.as_dict() if self.loinc else None,
            "scored": self.scored,
            "required": self.required,
            "rater": self.rater,
        }


@dataclass(frozen=True)
class Band:
    """A severity band: totals from `low` to `high`, both inclusive."""

    code: str
    label: str
    low: int
    high: int

    def contains(self, total: int) -> bool:
        return self.low <= total <= self.high

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "label": self.label, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Flag:
    """A structured safety flag; `requires_acknowledgement` marks the ones that become worklist
    alerts a clinician must acknowledge with a note (issue 4, safety flags)."""

    code: str
    severity: Severity
    message: str
    item_id: str | None = None
    requires_acknowledgement: bool = False
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "item_id": self.item_id,
            "requires_acknowledgement": self.requires_acknowledgement,
            "source": self.source,
        }


@dataclass(frozen=True)
class FlagRule:
    """Raise `code` when an item's answer (or, with `item_id=None`, the total) compares with
    `threshold`: `at_least` means value >= threshold, `at_most` means value <= threshold."""

    code: str
    severity: Severity
    message: str
    threshold: int
    comparison: str = "at_least"
    item_id: str | None = None
    requires_acknowledgement: bool = False
    source: str = ""
    unconfirmed: bool = False

    def __post_init__(self) -> None:
        if self.comparison not in ("at_least", "at_most"):
            raise ValueError(f"comparison must be at_least or at_most, not {self.comparison!r}")

    def fires(self, value: int) -> bool:
        if self.comparison == "at_least":
            return value >= self.threshold
        return value <= self.threshold

    def flag(self) -> Flag:
        return Flag(
            code=self.code,
            severity=self.severity,
            message=self.message,
            item_id=self.item_id,
            requires_acknowledgement=self.requires_acknowledgement,
            source=self.source,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "item_id": self.item_id,
            "comparison": self.comparison,
            "threshold": self.threshold,
            "requires_acknowledgement": self.requires_acknowledgement,
            "source": self.source,
            "unconfirmed": self.unconfirmed,
        }


@dataclass(frozen=True)
class MissingItemRule:
    """Prorating: with at most `max_missing` required items unanswered, each missing item takes
    the mean of the answered ones and the total is rounded half up to a whole number."""

    max_missing: int
    source: str
    unconfirmed: bool = True

    def describe(self) -> str:
        status = " (unconfirmed clinic default)" if self.unconfirmed else ""
        return (
            f"prorated: up to {self.max_missing} missing item(s) take the mean of the answered "
            f"items{status}; {self.source}"
        )


@dataclass(frozen=True)
class Score:
    """One scored administration. `answers` holds the validated raw answers (skipped items are
    absent); `imputed_items` and `missing_rule_applied` record any prorating, so the total can be
    recomputed and audited."""

    instrument_code: str
    instrument_version: str
    answers: Mapping[str, int]
    total: int | None
    total_min: int | None
    total_max: int | None
    band: Band | None
    flags: tuple[Flag, ...]
    subscores: Mapping[str, int] = field(default_factory=dict)
    imputed_items: tuple[str, ...] = ()
    missing_rule_applied: str | None = None

    @property
    def flag_codes(self) -> tuple[str, ...]:
        return tuple(flag.code for flag in self.flags)

    def has_flag(self, code: str) -> bool:
        return code in self.flag_codes

    def as_dict(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument_code,
            "instrument_version": self.instrument_version,
            "answers": dict(self.answers),
            "total": self.total,
            "total_min": self.total_min,
            "total_max": self.total_max,
            "band": self.band.as_dict() if self.band else None,
            "flags": [flag.as_dict() for flag in self.flags],
            "subscores": dict(self.subscores),
            "imputed_items": list(self.imputed_items),
            "missing_rule_applied": self.missing_rule_applied,
        }


def round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


@dataclass(frozen=True)
class Instrument:
    """A rating scale. The default scoring is the sum of the scored items; subclasses change it."""

    code: str
    name: str
    version: str
    items: tuple[Item, ...]
    total_min: int | None
    total_max: int | None
    bands: tuple[Band, ...] = ()
    flag_rules: tuple[FlagRule, ...] = ()
    recall_period: str = ""
    instructions: str | None = None
    panel_loinc: Loinc | None = None
    total_loinc: Loinc | None = None
    other_loinc: tuple[tuple[str, Loinc], ...] = ()
    licence_note: str = ""
    source: str = ""
    full_wording: bool = False
    missing_item_rule: MissingItemRule | None = None
    wording_source: str | None = None
    notes: tuple[str, ...] = ()

    # -- lookups -------------------------------------------------------------------------

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise AnswerError(item_id, f"{self.code} has no such item")

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(item.id for item in self.items)

    @property
    def scored_items(self) -> tuple[Item, ...]:
        return tuple(item for item in self.items if item.scored)

    def band_for(self, total: int | None) -> Band | None:
        if total is None:
            return None
        for band in self.bands:
            if band.contains(total):
                return band
        return None

    def ordered_item_ids(self, answers_so_far: Mapping[str, int]) -> tuple[str, ...]:
        """The items asked, in order, given the answers so far (skip logic may drop some)."""
        del answers_so_far
        return self.item_ids

    def asked_after(self, item_id: str) -> tuple[str, int] | None:
        """For a question the skip logic asks only after one answer to another question: (that
        question's id, that answer). None for a question that is always asked."""
        del item_id
        return None

    @property
    def either_or_groups(self) -> tuple[tuple[str, ...], ...]:
        """Groups of optional items of which at least one must be answered (none by default)."""
        return ()

    def answers_from_sequence(self, values: Sequence[int]) -> dict[str, int]:
        """Map answers given in order (the CLI's positional answers) to item ids, following the
        scale's skip logic. Extra answers are an error; missing ones are left for `score`."""
        answers: dict[str, int] = {}
        remaining = list(values)
        while remaining:
            pending = [i for i in self.ordered_item_ids(answers) if i not in answers]
            if not pending:
                raise ValueError(
                    f"{self.code} takes {len(answers)} answers here, got {len(values)}"
                )
            answers[pending[0]] = remaining.pop(0)
        return answers

    # -- scoring -------------------------------------------------------------------------

    def score(
        self,
        answers: Mapping[str | int, Any],
        *,
        missing_item_rule: MissingItemRule | None = None,
    ) -> Score:
        """Validate and score. `missing_item_rule` overrides the scale's own rule (a clinic may
        opt into prorating where the scale's manual has none confirmed); without any rule every
        required item must be answered."""
        normalised = self._normalise(answers)
        self._validate_structure(normalised)
        rule = missing_item_rule or self.missing_item_rule
        complete, imputed = self._fill_missing(normalised, rule)
        total = self._total(complete)
        flags = self._flags(complete, total)
        return Score(
            instrument_code=self.code,
            instrument_version=self.version,
            answers=dict(normalised),
            total=total,
            total_min=self.total_min,
            total_max=self.total_max,
            band=self._band(complete, total),
            flags=flags,
            subscores=self._subscores(complete),
            imputed_items=imputed,
            missing_rule_applied=rule.describe() if imputed and rule else None,
        )

    def _normalise(self, answers: Mapping[str | int, Any]) -> dict[str, int]:
        known = {item.id: item for item in self.items}
        normalised: dict[str, int] = {}
        keys: dict[str, str | int] = {}
        for raw_id, raw_value in answers.items():
            item_id = str(raw_id).strip()
            item = known.get(item_id)
            if item is None:
                raise AnswerError(item_id, f"{self.code} has no such item")
            if item_id in keys:
                # "1" and " 1" (or 1 and "1") name the same item: refuse rather than let one
                # answer silently overwrite the other.
                raise AnswerError(
                    item_id,
                    f"given twice (keys {_short_key(keys[item_id])} and {_short_key(raw_id)} "
                    "both name this item): give each item once",
                )
            keys[item_id] = raw_id
            if raw_value is None:
                continue  # an explicit null is the same as no answer
            normalised[item_id] = _check_value(item, raw_value)
        return normalised

    def _validate_structure(self, answers: Mapping[str, int]) -> None:
        """Hook for skip logic; the default scale has none."""
        del answers

    def _fill_missing(
        self, answers: Mapping[str, int], rule: MissingItemRule | None
    ) -> tuple[dict[str, Fraction], tuple[str, ...]]:
        required = [i.id for i in self.items if i.scored and i.required]
        missing = [item_id for item_id in required if item_id not in answers]
        filled: dict[str, Fraction] = {k: Fraction(v) for k, v in answers.items()}
        if not missing:
            return filled, ()
        answered = [answers[i] for i in required if i in answers]
        if rule is None or len(missing) > rule.max_missing or not answered:
            raise AnswerError(missing[0], "missing answer")
        # A safety item (one a flag rule reads, e.g. PHQ-9 item 9) is never imputed: a missing
        # answer there must be asked, not averaged away.
        flagged_items = {flag_rule.item_id for flag_rule in self.flag_rules}
        for item_id in missing:
            if item_id in flagged_items:
                raise AnswerError(item_id, "missing answer (a safety item is never prorated)")
        mean = Fraction(sum(answered), len(answered))
        for item_id in missing:
            filled[item_id] = mean
        return filled, tuple(missing)

    def _total(self, answers: Mapping[str, Fraction]) -> int | None:
        scored = (answers[i.id] for i in self.scored_items if i.id in answers)
        return round_half_up(sum(scored, Fraction(0)))

    def _band(self, answers: Mapping[str, Fraction], total: int | None) -> Band | None:
        del answers
        return self.band_for(total)

    def _subscores(self, answers: Mapping[str, Fraction]) -> dict[str, int]:
        del answers
        return {}

    def _flags(self, answers: Mapping[str, Fraction], total: int | None) -> tuple[Flag, ...]:
        flags: list[Flag] = []
        for rule in self.flag_rules:
            if rule.item_id is None:
                value = total
            else:
                # A flag fires only on what the patient actually answered, never on an imputed
                # mean: an unanswered suicidality item is a missing answer, not a positive one.
                answered = answers.get(rule.item_id)
                value = (
                    int(answered) if answered is not None and answered.denominator == 1 else None
                )
            if value is not None and rule.fires(value):
                flags.append(rule.flag())
        flags.extend(self._extra_flags(answers, total))
        return tuple(flags)

    def _extra_flags(self, answers: Mapping[str, Fraction], total: int | None) -> list[Flag]:
        del answers, total
        return []

    # -- description ---------------------------------------------------------------------

    def with_item_wording(self, item_id: str, text: str, option_labels: Mapping[int, str]) -> Item:
        """A copy of one item with new wording (used by the licensed-wording loader)."""
        item = self.item(item_id)
        options = tuple(
            dataclasses.replace(option, label=option_labels.get(option.value, option.label))
            for option in item.options
        )
        return dataclasses.replace(item, text=text, options=options)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description: what the API and the questionnaire page render."""
        return {
            "code": self.code,
            "name": self.name,
            "version": self.version,
            "recall_period": self.recall_period,
            "instructions": self.instructions,
            "items": [item.as_dict() for item in self.items],
            # optional items of which at least one must be answered (QIDS-SR16 6/7, 8/9)
            "either_or_groups": [list(group) for group in self.either_or_groups],
            # questions asked only after one answer to another (C-SSRS skip logic)
            "asked_after": {
                item.id: {"item": gate[0], "answer": gate[1]}
                for item in self.items
                if (gate := self.asked_after(item.id)) is not None
            },
            "total_min": self.total_min,
            "total_max": self.total_max,
            "bands": [band.as_dict() for band in self.bands],
            "flag_rules": [rule.as_dict() for rule in self.flag_rules],
            "panel_loinc": self.panel_loinc.as_dict() if self.panel_loinc else None,
            "total_loinc": self.total_loinc.as_dict() if self.total_loinc else None,
            "other_loinc": {name: code.as_dict() for name, code in self.other_loinc},
            "licence_note": self.licence_note,
            "source": self.source,
            "full_wording": self.full_wording,
            "wording_source": self.wording_source,
            "missing_item_rule": (
                self.missing_item_rule.describe() if self.missing_item_rule else None
            ),
            "notes": list(self.notes),
        }


def _short_key(raw_id: str | int) -> str:
    text = repr(raw_id)
    return text if len(text) <= 24 else text[:20] + "...'"


def _check_value(item: Item, raw_value: Any) -> int:
    if item.is_yes_no and isinstance(raw_value, bool):
        return int(raw_value)
    if isinstance(raw_value, bool) or not isinstance(raw_value, int):
        raise AnswerError(item.id, f"{raw_value!r} is not a whole number")
    if raw_value not in item.values:
        if item.min_value <= raw_value <= item.max_value:
            allowed = ", ".join(str(v) for v in sorted(item.values))
            raise AnswerError(item.id, f"{raw_value} is not one of {allowed}")
        raise AnswerError(item.id, f"{raw_value} is outside {item.range_text()}")
    return raw_value


def frequency_options(
    labels: Sequence[str], loinc_codes: Sequence[str | None] = ()
) -> tuple[AnswerOption, ...]:
    """Options valued 0, 1, 2, ... in order, with optional LOINC answer codes."""
    codes = list(loinc_codes) or [None] * len(labels)
    return tuple(
        AnswerOption(value=value, label=label, loinc=Loinc(code) if code else None)
        for value, (label, code) in enumerate(zip(labels, codes, strict=True))
    )


def numeric_options(low: int, high: int) -> tuple[AnswerOption, ...]:
    """Options labelled by their number, for scales whose anchor wording we may not ship."""
    return tuple(AnswerOption(value=value, label=str(value)) for value in range(low, high + 1))


YES_NO_OPTIONS = (AnswerOption(value=0, label="No"), AnswerOption(value=1, label="Yes"))
