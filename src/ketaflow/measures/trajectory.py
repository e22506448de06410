"""The score trajectory figure: a patient's totals on one scale over time, the scale's severity
bands shaded behind them, each dose a vertical line, and the baseline, response and remission
levels of the current course as dashed lines. Pure: plain values in, a Plotly figure (as a
JSON-ready dict) out; the API returns it and the web page draws it with plotly.js.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import plotly.graph_objects as go

# Light fills from calm to alarming, one per band in order; more bands than colours repeat the last.
BAND_COLOURS = ("#e8f5e9", "#f1f8e9", "#fffde7", "#fff3e0", "#fbe9e7", "#ffebee")
LINE_COLOUR = "#1f5f8b"
SELF_REPORT_COLOUR = "#7b3f98"
DOSE_COLOUR = "rgba(120, 120, 120, 0.55)"


@dataclass(frozen=True)
class TrajectoryPoint:
    taken_at: datetime
    total: int
    band_label: str | None
    source: str  # "staff" or "self_report"


@dataclass(frozen=True)
class DoseLine:
    dose_started_at: datetime
    label: str  # e.g. "IV #3 (induction)"


@dataclass(frozen=True)
class BandArea:
    label: str
    low: int
    high: int


@dataclass(frozen=True)
class Levels:
    """The current course's reference levels, drawn as dashed horizontal lines."""

    baseline_total: int | None = None
    response_reduction: Fraction | None = None  # response at or below baseline x (1 - this)
    remission_max_total: int | None = None


def build_figure(
    instrument_code: str,
    instrument_name: str,
    points: Sequence[TrajectoryPoint],
    doses: Sequence[DoseLine],
    bands: Sequence[BandArea],
    total_min: int | None,
    total_max: int | None,
    levels: Levels = Levels(),
) -> dict[str, Any]:
    """The figure as a plain dict (`{"data": [...], "layout": {...}}`), ready for JSON."""
    figure = go.Figure()
    y_low = total_min if total_min is not None else 0
    y_high = total_max if total_max is not None else max((p.total for p in points), default=1)

    # Bands are whole-number ranges; shade each from low - 0.5 to high + 0.5 so they meet.
    for index, band in enumerate(bands):
        figure.add_hrect(
            y0=band.low - 0.5 if band.low > y_low else y_low,
            y1=band.high + 0.5 if band.high < y_high else y_high,
            fillcolor=BAND_COLOURS[min(index, len(BAND_COLOURS) - 1)],
            opacity=1.0,
            layer="below",
            line_width=0,
            annotation_text=band.label,
            annotation_position="top left",
            annotation_font_size=10,
            annotation_font_color="#666666",
        )

    ordered = sorted(points, key=lambda p: p.taken_at)
    figure.add_trace(
        go.Scatter(
            x=[p.taken_at.isoformat() for p in ordered],
            y=[p.total for p in ordered],
            mode="lines+markers",
            name=instrument_code,
            line={"color": LINE_COLOUR, "width": 2},
            marker={
                "size": 8,
                "color": [
                    SELF_REPORT_COLOUR if p.source == "self_report" else LINE_COLOUR
                    for p in ordered
                ],
                "symbol": ["diamond" if p.source == "self_report" else "circle" for p in ordered],
            },
            text=[
                f"{p.band_label or ''}{' (self-report)' if p.source == 'self_report' else ''}"
                for p in ordered
            ],
            hovertemplate="%{x|%Y-%m-%d %H:%M}<br>total %{y}<br>%{text}<extra></extra>",
        )
    )

    # Doses: vertical lines across the plot (shapes, so they need no data range of their own).
    for dose in doses:
        x = dose.dose_started_at.isoformat()
        figure.add_shape(
            type="line",
            xref="x",
            yref="paper",
            x0=x,
            x1=x,
            y0=0,
            y1=1,
            line={"color": DOSE_COLOUR, "width": 1, "dash": "dot"},
            layer="below",
        )
    if doses:
        # One invisible trace gives the dose lines a legend entry and a hover label each.
        figure.add_trace(
            go.Scatter(
                x=[d.dose_started_at.isoformat() for d in doses],
                y=[y_high] * len(doses),
                mode="markers",
                name="dose",
                marker={"symbol": "triangle-down", "size": 9, "color": DOSE_COLOUR},
                text=[d.label for d in doses],
                hovertemplate="%{x|%Y-%m-%d %H:%M}<br>%{text}<extra></extra>",
            )
        )

    for y, label in _level_lines(levels):
        figure.add_hline(
            y=y,
            line={"color": "#444444", "width": 1, "dash": "dash"},
            annotation_text=label,
            annotation_position="bottom right",
            annotation_font_size=10,
        )

    figure.update_layout(
        title={"text": f"{instrument_name}", "x": 0.01},
        xaxis={"title": "date", "type": "date"},
        yaxis={"title": f"{instrument_code} total", "range": [y_low - 0.5, y_high + 0.5]},
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
        template="simple_white",
        hovermode="closest",
    )
    # Round-trip through Plotly's JSON encoder: plain lists, strings and numbers only.
    return json.loads(figure.to_json())


def _level_lines(levels: Levels) -> list[tuple[float, str]]:
    lines: list[tuple[float, str]] = []
    if levels.baseline_total is not None:
        lines.append((levels.baseline_total, f"baseline {levels.baseline_total}"))
        if levels.response_reduction is not None and levels.baseline_total > 0:
            response_at = float(levels.baseline_total * (1 - levels.response_reduction))
            lines.append((response_at, f"response ≤ {response_at:g}"))
    if levels.remission_max_total is not None:
        lines.append((levels.remission_max_total, f"remission ≤ {levels.remission_max_total}"))
    return lines
