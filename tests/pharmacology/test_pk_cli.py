"""`ketaflow simulate` through Typer's CliRunner on a small app that registers the command."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import typer
from typer.testing import CliRunner

from ketaflow.pharmacology.cli import simulate_command

app = typer.Typer()
app.command("simulate")(simulate_command)
app.command("noop")(lambda: None)  # two commands keep "simulate" a subcommand
runner = CliRunner()

BASE = [
    "simulate",
    "--drug",
    "ketamine",
    "--route",
    "iv",
    "--dose",
    "0.5mg/kg",
    "--duration",
    "40min",
    "--weight",
    "70",
]


def test_json_output_has_the_issue_keys():
    result = runner.invoke(app, [*BASE, "--patients", "300", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("cmax_ng_per_ml", "tmax_min", "auc_ng_h_per_ml", "half_life_h"):
        assert set(data[key]) == {"median", "p5", "p95"}
    assert data["model"]["sampling_site"] == "venous"


def test_table_output_names_model_and_sampling():
    result = runner.invoke(app, [*BASE, "--patients", "200"])
    assert result.exit_code == 0, result.output
    assert "Cmax" in result.stdout
    assert "venous plasma" in result.stdout
    assert "norketamine" in result.stdout


def test_large_run_keeps_stdout_pure_json():
    result = runner.invoke(app, [*BASE, "--patients", "10000", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["patients"] == 10000


def test_bad_input_exits_2_with_one_line():
    # a narrow terminal must not fold the message either (scripts read the one line)
    narrow = {"COLUMNS": "40"}
    for args, parameter in (
        ([*BASE[:6], "lots", *BASE[7:]], "dose"),
        ([*BASE[:6], "0.5", *BASE[7:]], "dose"),  # a dose without its unit
        ([*BASE, "--route", "rectal"], "route"),
        ([*BASE[:-1], "-4"], "weight"),
        ([*BASE, "--seed", "-1"], "seed"),  # was a NumPy traceback
    ):
        result = runner.invoke(app, args, env=narrow)
        assert result.exit_code == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: --{parameter}:"), result.stderr
        assert result.stdout == ""


def test_plot_html_and_png_are_written(tmp_path):
    out = tmp_path / "curve.html"
    result = runner.invoke(app, [*BASE, "--patients", "100", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    # self-contained: Plotly's JavaScript is inlined, no script is fetched from elsewhere
    assert "<script src=" not in html
    assert len(html) > 1_000_000
    png = tmp_path / "curve.png"
    result = runner.invoke(app, [*BASE, "--patients", "100", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (900, 520)
    raw = zlib.decompress(data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8])
    assert len(raw) == height * (1 + width * 3)
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * 3)[:, 1:]
    assert (pixels != 255).any()  # something was drawn
    result = runner.invoke(app, [*BASE, "--plot", str(tmp_path / "curve.svg")])
    assert result.exit_code == 2
    assert "error: --plot:" in result.stderr


def test_a_plot_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path):
    missing = tmp_path / "no" / "such" / "curve.png"
    taken = tmp_path / "taken.html"
    taken.mkdir()  # a directory where the file should go (refused even to root)
    for path, says in ((missing, "no such directory"), (taken, "cannot write")):
        result = runner.invoke(app, [*BASE, "--patients", "50", "--plot", str(path)])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --plot: " + says), result.stderr


def test_first_use_says_the_kernels_are_compiling(monkeypatch):
    import ketaflow.pharmacology.cli as cli

    monkeypatch.setattr(cli, "kernels_cached", lambda: False)
    result = runner.invoke(app, [*BASE, "--patients", "50", "--json"])
    assert result.exit_code == 0, result.output
    assert "compiling the pharmacology kernels" in result.stderr
    json.loads(result.stdout)  # the figures themselves are unchanged
    monkeypatch.setattr(cli, "kernels_cached", lambda: True)
    assert "compiling" not in runner.invoke(app, [*BASE, "--patients", "50"]).stderr


def test_the_kernel_cache_is_seen_once_the_kernels_ran():
    from ketaflow.pharmacology.kernel_cache import kernels_cached

    runner.invoke(app, [*BASE, "--patients", "50"])
    assert kernels_cached()
