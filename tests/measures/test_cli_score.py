"""`ketaflow score` and `ketaflow instruments`, on a Typer app built here as the lead will."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ketaflow.measures.cli import instruments_command, parse_answers, score_command
from ketaflow.measures.instruments import INSTRUMENT_CODES, get_instrument


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("score")(score_command)
    app.command("instruments")(instruments_command)
    return app


def run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, list(args))


def test_score_prints_total_band_and_flags(app):
    result = run(app, "score", "PHQ-9", "1", "2", "0", "1", "1", "1", "1", "1", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "PHQ-9: total 9 (range 0-27), band mild (Mild depression)"
    assert lines[1].startswith("flag suicidality_item_positive [critical]:")


def test_score_without_flags_says_so(app):
    result = run(app, "score", "gad7", "3", "3", "3", "3", "3", "0", "0")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "GAD-7: total 15 (range 0-21), band severe (Severe anxiety)",
        "flags: none",
    ]


def test_score_json_has_exactly_the_four_keys(app):
    result = run(app, "score", "PHQ-9", "--json", "3", "3", "3", "3", "3", "3", "3", "3", "2")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert list(data) == ["instrument", "total", "band", "flags"]
    assert data["instrument"] == "PHQ-9"
    assert data["total"] == 26
    assert data["band"] == "severe"
    assert [flag["code"] for flag in data["flags"]] == ["suicidality_item_positive"]
    assert data["flags"][0]["severity"] == "critical"


def test_cssrs_takes_yes_no_and_follows_skip_logic(app):
    result = run(app, "score", "C-SSRS", "--json", "y", "n", "yes", "NO")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # Q1 yes, Q2 no (3-5 skipped), Q6 yes, over 3 months ago -> moderate
    assert data == {
        "instrument": "C-SSRS",
        "total": None,
        "band": "moderate",
        "flags": [
            {
                "code": "cssrs_risk_moderate",
                "severity": "warning",
                "message": data["flags"][0]["message"],
            }
        ],
    }
    numeric = run(app, "score", "cssrs", "--json", "1", "1", "0", "1", "0", "0")
    assert json.loads(numeric.stdout)["band"] == "high"


def test_qids_and_cadss_show_subscores(app):
    result = run(app, "score", "QIDS-SR16", *["1"] * 16)
    assert result.exit_code == 0
    assert "total 9" in result.stdout
    assert "subscores: sleep 1," in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("PHQ-9", "1", "2", "4"), "error: item 3: 4 is outside 0-3"),
        (("PHQ-9", "1", "x"), "error: item 2: 'x' is not a whole number"),
        (("PHQ-9", "1", "1"), "error: item 3: missing answer"),
        (("PHQ-9", *["0"] * 11), "error: PHQ-9 takes 10 answers here, got 11"),
        (("C-SSRS", "y", "maybe"), "error: item 2: 'maybe' is not y/n (or 1/0)"),
        (("C-SSRS", "y", "n", "y"), "error: item 6b: missing answer"),
        (("HAM-D", "1"), "error: unknown instrument 'HAM-D'"),
        (("MOAAS", "6"), "error: item 1: 6 is outside 0-5"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(app, args, message):
    result = run(app, "score", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(message)


def test_parse_answers_maps_positions_to_items():
    assert parse_answers(get_instrument("MOAA/S"), ["4"]) == {"1": 4}
    assert parse_answers(get_instrument("C-SSRS"), ["n", "y", "n", "n", "n", "n"]) == {
        "1": 0,
        "2": 1,
        "3": 0,
        "4": 0,
        "5": 0,
        "6": 0,
    }


def test_instruments_lists_every_scale(app):
    result = run(app, "instruments")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["code", "name", "items", "range", "LOINC"]
    codes = [line.split()[0] for line in lines[1:]]
    assert codes == list(INSTRUMENT_CODES)
    phq9 = next(line for line in lines if line.startswith("PHQ-9 "))
    assert phq9.split()[-3:] == ["9", "0-27", "44261-6"]


def test_instruments_json_describes_items(app):
    result = run(app, "instruments", "--json")
    data = json.loads(result.stdout)
    assert [entry["code"] for entry in data] == list(INSTRUMENT_CODES)
    phq9 = data[0]
    assert phq9["items"][8]["text"].startswith("Thoughts that you would be better off dead")
