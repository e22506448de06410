"""Typer commands for the rating scales: `ketaflow score` and `ketaflow instruments`.

The lead registers them on the main app with `app.command("score")(score_command)` and
`app.command("instruments")(instruments_command)`. Bad input prints one line on stderr naming
the item and exits with code 2; scripts and spreadsheets read `--json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from ketaflow.measures.instruments.base import AnswerError, Instrument, Item, Score
from ketaflow.measures.instruments.registry import (
    UnknownInstrument,
    all_instruments,
    get_instrument,
)

_YES = {"y", "yes", "1", "true"}
_NO = {"n", "no", "0", "false"}


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _parse_token(item: Item, token: str) -> int:
    text = token.strip().lower()
    if item.is_yes_no:
        if text in _YES:
            return 1
        if text in _NO:
            return 0
        raise AnswerError(item.id, f"{token!r} is not y/n (or 1/0)")
    try:
        return int(text, 10)
    except ValueError:
        raise AnswerError(item.id, f"{token!r} is not a whole number") from None


def parse_answers(instrument: Instrument, tokens: Sequence[str]) -> dict[str, int]:
    """Positional answers, in the order the scale asks its items (following skip logic)."""
    answers: dict[str, int] = {}
    for position, token in enumerate(tokens, start=1):
        pending = [i for i in instrument.ordered_item_ids(answers) if i not in answers]
        if not pending:
            raise ValueError(
                f"{instrument.code} takes {len(answers)} answers here, got {len(tokens)} "
                f"(answer {position} is extra)"
            )
        item = instrument.item(pending[0])
        answers[item.id] = _parse_token(item, token)
    return answers


def score_summary(score: Score) -> dict[str, Any]:
    """Exactly the four keys scripts rely on: instrument, total, band, flags."""
    return {
        "instrument": score.instrument_code,
        "total": score.total,
        "band": score.band.code if score.band else None,
        "flags": [
            {"code": flag.code, "severity": str(flag.severity), "message": flag.message}
            for flag in score.flags
        ],
    }


def _score_lines(instrument: Instrument, score: Score) -> list[str]:
    band = f"{score.band.code} ({score.band.label})" if score.band else "no bands"
    if score.total is None:
        lines = [f"{score.instrument_code}: {band}"]
    else:
        lines = [
            f"{score.instrument_code}: total {score.total} "
            f"(range {instrument.total_min}-{instrument.total_max}), band {band}"
        ]
    if score.subscores:
        parts = ", ".join(f"{name} {value}" for name, value in score.subscores.items())
        lines.append(f"subscores: {parts}")
    if score.missing_rule_applied:
        lines.append(
            f"imputed items {', '.join(score.imputed_items)}: {score.missing_rule_applied}"
        )
    if not score.flags:
        lines.append("flags: none")
    for flag in score.flags:
        lines.append(f"flag {flag.code} [{flag.severity}]: {flag.message}")
    return lines


def score_command(
    instrument: Annotated[str, typer.Argument(help="Scale code, e.g. PHQ-9, GAD-7, C-SSRS.")],
    answers: Annotated[
        list[str] | None,
        typer.Argument(
            help="Item answers in order (C-SSRS: y/n or 1/0, skipped questions left out).",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print {instrument, total, band, flags} as JSON.")
    ] = False,
) -> None:
    """Score a rating scale: prints the total, the band and any safety flags."""
    try:
        scale = get_instrument(instrument)
        score = scale.score(parse_answers(scale, answers or []))
    except UnknownInstrument as exc:
        raise _fail(str(exc)) from None
    except AnswerError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if json_output:
        typer.echo(json.dumps(score_summary(score), ensure_ascii=False))
        return
    for line in _score_lines(scale, score):
        typer.echo(line)


def instruments_command(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print each scale's full description as JSON.")
    ] = False,
) -> None:
    """List the rating scales with their codes, items, range and LOINC code."""
    scales = all_instruments()
    if json_output:
        typer.echo(json.dumps([scale.describe() for scale in scales], ensure_ascii=False))
        return
    rows = [("code", "name", "items", "range", "LOINC")]
    for scale in scales:
        scored = len(scale.scored_items)
        total_range = (
            f"{scale.total_min}-{scale.total_max}" if scale.total_min is not None else "risk level"
        )
        loinc = scale.total_loinc.code if scale.total_loinc else "-"
        if scale.total_loinc is None and scale.other_loinc:
            name, code = scale.other_loinc[0]
            loinc = f"{code.code} ({name})"
        rows.append((scale.code, scale.name, str(scored), total_range, loinc))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())
