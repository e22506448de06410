"""`ketaflow simulate`: population PK summary of a planned dose (registered by the lead as
`app.command("simulate")(simulate_command)`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ketaflow.pharmacology.clinical import DEFAULT_THRESHOLD_NG_PER_ML, simulate
from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.kernel_cache import kernels_cached
from ketaflow.pharmacology.population import CENSORED_FIELDS

PROGRESS_FROM_PATIENTS = 10_000  # below this the run is too short for a bar

ROWS = (
    ("cmax_ng_per_ml", "Cmax (ng/mL)"),
    ("tmax_min", "Tmax (min)"),
    ("auc_ng_h_per_ml", "AUC 0-inf (ng·h/mL)"),
    ("half_life_h", "terminal half-life (h)"),
    ("time_above_threshold_min", "time above {thr:g} ng/mL (min)"),
    ("time_to_below_threshold_min", "time to fall below {thr:g} ng/mL (min)"),
)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _table(report: dict) -> Table:
    thr = report["threshold_ng_per_ml"]
    table = Table(
        title=f"{report['drug']} {report['route']} {report['dose']}, {report['weight_kg']:g} kg, "
        f"{report['patients']} virtual patients ({report['concentrations']})"
    )
    table.add_column("analyte")
    table.add_column("measure")
    table.add_column("median", justify="right")
    table.add_column("5th pct", justify="right")
    table.add_column("95th pct", justify="right")
    for analyte, block in (
        (report["drug"], report),
        (report["metabolite"]["name"], report["metabolite"]),
    ):
        for key, label in ROWS:
            band = block[key]
            # a time to fall below that lands among patients still above at the horizon
            beyond = f"> {report['auc_horizon_h'] * 60:g}" if key in CENSORED_FIELDS else "-"
            table.add_row(
                analyte,
                label.format(thr=thr),
                *(
                    _fmt(band[k]) if band[k] is not None else beyond
                    for k in ("median", "p5", "p95")
                ),
            )
    return table


def _fail(parameter: str, message: str) -> typer.Exit:
    # soft_wrap: one line whatever the terminal's width
    Console(stderr=True).print(
        f"error: --{parameter}: {message}", highlight=False, markup=False, soft_wrap=True
    )
    return typer.Exit(2)


def simulate_command(
    drug: Annotated[str, typer.Option("--drug", help="ketamine or esketamine")],
    route: Annotated[
        str, typer.Option("--route", help="iv, im, sc, intranasal, oral or sublingual")
    ],
    dose: Annotated[
        str, typer.Option("--dose", help="e.g. 0.5mg/kg, 35mg, or 2 devices (esketamine nasal)")
    ],
    weight: Annotated[float, typer.Option("--weight", help="body weight in kg")],
    duration: Annotated[
        str | None,
        typer.Option("--duration", help="IV infusion duration, e.g. 40min; none = bolus"),
    ] = None,
    patients: Annotated[int, typer.Option("--patients", help="virtual patients")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="random seed (reproducible)")] = 0,
    threshold: Annotated[
        float, typer.Option("--threshold", help="concentration for 'time above', ng/mL")
    ] = DEFAULT_THRESHOLD_NG_PER_ML,
    age: Annotated[float | None, typer.Option("--age", help="age in years")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="write the median curve and 90% band (.html self-contained, or .png)",
        ),
    ] = None,
) -> None:
    """Simulate a planned dose in virtual patients: median and 5th-95th percentiles of Cmax,
    Tmax, AUC, half-life and time above a threshold. Times count from the first dose."""
    if plot is not None and plot.suffix.lower() not in (".html", ".png"):
        raise _fail("plot", "the plot file must end in .html (interactive) or .png")
    if plot is not None and not plot.resolve().parent.is_dir():  # before the simulation runs
        raise _fail("plot", f"no such directory: {plot.resolve().parent}")
    err = Console(stderr=True)
    if not kernels_cached():
        err.print("first use: compiling the pharmacology kernels (about a minute, once)")
    try:
        if patients >= PROGRESS_FROM_PATIENTS:
            with Progress(
                TextColumn("simulating"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} patients"),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            ) as bar:
                task = bar.add_task("simulate", total=patients)
                report = simulate(
                    drug,
                    route,
                    dose,
                    weight,
                    duration,
                    patients,
                    seed,
                    threshold,
                    age,
                    progress=lambda done, total: bar.update(task, completed=done),
                )
        else:
            report = simulate(drug, route, dose, weight, duration, patients, seed, threshold, age)
        if plot is not None:
            write_plot(plot, drug, route, dose, weight, duration, patients, seed, age, report)
    except PKInputError as exc:
        raise _fail(exc.parameter, str(exc)) from exc
    except OSError as exc:  # the plot file: a read-only place, a full disk
        raise _fail("plot", f"cannot write {plot}: {exc.strerror or exc}") from exc
    if json_output:
        typer.echo(json.dumps(report, indent=2))
        return
    out = Console()
    out.print(_table(report))
    model = report["model"]
    out.print(f"model: {model['title']} ({model['sampling_site']} plasma) — {model['citation']}")
    out.print(f"route model: {model['route_model']}")
    for warning in report["warnings"]:
        out.print(f"[yellow]warning:[/yellow] {warning}")


def write_plot(
    path: Path, drug, route, dose, weight, duration, patients, seed, age, report: dict
) -> None:
    """Median and 5th-95th percentile curves of the drug and its metabolite over 24 h: a
    self-contained Plotly HTML file (Plotly's JavaScript inlined, no CDN) or a PNG drawn
    without a plotting dependency (kaleido, Plotly's image exporter, is not installed)."""
    from ketaflow.pharmacology.doses import plan_dose
    from ketaflow.pharmacology.models import model_for
    from ketaflow.pharmacology.population import PopulationSpec, curve_bands
    from ketaflow.pharmacology.solve import OUTPUT_METABOLITE, OUTPUT_PARENT

    model, _ = model_for(drug, route)
    plan = plan_dose(drug, route, dose, weight, duration)
    spec = PopulationSpec(
        model,
        route,
        plan.administrations,
        patients,
        weight,
        age if age is not None else 40.0,
        seed=seed,
    )
    times, bands = curve_bands(spec, (OUTPUT_PARENT, OUTPUT_METABOLITE), 2.0, 1440.0)
    hours = times / 60.0
    names = (drug, report["metabolite"]["name"])
    if path.suffix.lower() == ".png":
        from ketaflow.pharmacology.png import write_png

        series = [(name, *bands[row]) for row, name in enumerate(names)]
        write_png(path, hours, series, f"{drug} {route} {report['dose']}, {weight:g} KG")
        return
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=names)
    for row, name in enumerate(names):
        p5, p50, p95 = bands[row]
        fig.add_trace(go.Scatter(x=hours, y=p95, line={"width": 0}, showlegend=False), row + 1, 1)
        fig.add_trace(
            go.Scatter(
                x=hours, y=p5, fill="tonexty", line={"width": 0}, name=f"{name} 5th-95th pct"
            ),
            row + 1,
            1,
        )
        fig.add_trace(go.Scatter(x=hours, y=p50, name=f"{name} median"), row + 1, 1)
        fig.update_yaxes(title_text="ng/mL", row=row + 1, col=1)
    fig.update_xaxes(title_text="hours from the first dose", row=2, col=1)
    fig.update_layout(
        title=f"{drug} {route} {report['dose']}, {weight:g} kg — {report['model']['title']} "
        f"({report['concentrations']})"
    )
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
