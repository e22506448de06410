"""Load a clinic's licensed item wording from a JSON file (reference §3, licensing).

For scales whose terms are restrictive or unconfirmed (MADRS, QIDS-SR16, C-SSRS, CADSS, MOAA/S)
ketaflow ships short labels only; a clinic holding a licence supplies the wording in a file:

    {
      "format": "ketaflow-wording/1",
      "licence": "C-SSRS electronic sublicence no. 123, Example Clinic, to 2027-12-31",
      "instruments": [
        {
          "code": "C-SSRS",
          "instructions": "optional text shown above the items",
          "items": {
            "1": {"text": "...", "options": {"0": "No", "1": "Yes"}},
            ...
          }
        }
      ]
    }

Every item of a listed scale needs its text; option labels are optional. The result is a new
instrument per scale (same scoring, new wording); the registry is never changed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ketaflow.measures.instruments.base import Instrument
from ketaflow.measures.instruments.registry import UnknownInstrument, get_instrument

WORDING_FORMAT = "ketaflow-wording/1"
MAX_TEXT_CHARS = 2000  # a generous bound on one item's wording; longer is a broken file


class WordingError(ValueError):
    """The wording file is invalid; `where` is the path inside it, e.g. instruments[0].items.3."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise WordingError(where, "must be a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise WordingError(where, f"is longer than {MAX_TEXT_CHARS} characters")
    return value.strip()


def _only_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise WordingError(where, f"unknown key {extra[0]!r}")


def apply_wording(
    instrument: Instrument, entry: Mapping[str, Any], licence: str, where: str = ""
) -> Instrument:
    """A copy of `instrument` carrying the wording in one validated `entry` of the file."""
    if not isinstance(entry, Mapping):
        raise WordingError(where, "must be an object")
    _only_keys(entry, {"code", "instructions", "items"}, where)
    items_data = entry.get("items")
    if not isinstance(items_data, Mapping):
        raise WordingError(f"{where}.items", "must be an object keyed by item id")
    for item_id in items_data:
        if item_id not in instrument.item_ids:
            raise WordingError(f"{where}.items.{item_id}", f"{instrument.code} has no such item")
    new_items = []
    for item in instrument.items:
        item_where = f"{where}.items.{item.id}"
        item_data = items_data.get(item.id)
        if item_data is None:
            raise WordingError(item_where, "missing: every item needs its wording")
        if not isinstance(item_data, Mapping):
            raise WordingError(item_where, "must be an object with 'text'")
        _only_keys(item_data, {"text", "options"}, item_where)
        text = _text(item_data.get("text"), f"{item_where}.text")
        option_labels: dict[int, str] = {}
        options_data = item_data.get("options", {})
        if not isinstance(options_data, Mapping):
            raise WordingError(f"{item_where}.options", "must be an object keyed by value")
        for raw_value, label in options_data.items():
            option_where = f"{item_where}.options.{raw_value}"
            try:
                value = int(str(raw_value), 10)
            except ValueError:
                raise WordingError(option_where, "option keys are answer values") from None
            if value not in item.values:
                raise WordingError(option_where, f"item {item.id} has no answer {value}")
            option_labels[value] = _text(label, option_where)
        new_items.append(instrument.with_item_wording(item.id, text, option_labels))
    instructions = entry.get("instructions")
    if instructions is not None:
        instructions = _text(instructions, f"{where}.instructions")
    return dataclasses.replace(
        instrument,
        items=tuple(new_items),
        instructions=instructions if instructions is not None else instrument.instructions,
        full_wording=True,
        wording_source=licence,
    )


def parse_wording(
    data: Any, lookup: Callable[[str], Instrument] = get_instrument
) -> dict[str, Instrument]:
    """Validate a decoded wording document; returns the reworded instruments by code."""
    if not isinstance(data, Mapping):
        raise WordingError("", "the wording file must hold a JSON object")
    _only_keys(data, {"format", "licence", "instruments"}, "")
    if data.get("format") != WORDING_FORMAT:
        raise WordingError("format", f"must be {WORDING_FORMAT!r}")
    licence = _text(data.get("licence"), "licence")
    entries = data.get("instruments")
    if not isinstance(entries, list) or not entries:
        raise WordingError("instruments", "must be a non-empty list")
    reworded: dict[str, Instrument] = {}
    for index, entry in enumerate(entries):
        where = f"instruments[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("code"), str):
            raise WordingError(f"{where}.code", "must name a scale")
        try:
            instrument = lookup(entry["code"])
        except UnknownInstrument:
            raise WordingError(f"{where}.code", f"unknown scale {entry['code']!r}") from None
        if instrument.code in reworded:
            raise WordingError(f"{where}.code", f"{instrument.code} is listed twice")
        reworded[instrument.code] = apply_wording(instrument, entry, licence, where)
    return reworded


def load_wording_file(path: str | Path) -> dict[str, Instrument]:
    """Read and validate a clinic's wording file (UTF-8 JSON)."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise WordingError("", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise WordingError("", f"{path} is not UTF-8 text") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WordingError("", f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return parse_wording(data)
