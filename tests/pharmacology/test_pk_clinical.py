"""Clinical outputs: the population report and one patient's observation advice."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ketaflow.pharmacology.clinical import observation_advice, simulate
from ketaflow.pharmacology.errors import PKInputError


def test_simulate_report_has_the_issue_keys_and_is_json():
    report = simulate("ketamine", "iv", "0.5mg/kg", 70.0, "40min", patients=400, seed=3)
    for key in ("cmax_ng_per_ml", "tmax_min", "auc_ng_h_per_ml", "half_life_h"):
        band = report[key]
        assert set(band) == {"median", "p5", "p95"}
        assert band["p5"] <= band["median"] <= band["p95"]
    assert report["model"]["sampling_site"] == "venous"
    assert report["concentrations"] == "venous plasma"
    assert report["metabolite"]["name"] == "norketamine"
    assert report["dose_mg"] == 35.0
    json.loads(json.dumps(report, allow_nan=False))


def test_patients_still_above_at_the_horizon_count_as_later_not_as_missing():
    # at 1 ng/mL most patients still have ketamine above it at 24 h, a few do not
    report = simulate(
        "ketamine", "iv", "0.5mg/kg", 70.0, "40min", patients=400, threshold_ng_per_ml=1.0
    )
    band = report["time_to_below_threshold_min"]
    assert band["p5"] is not None and band["p5"] < 1440.0
    assert band["median"] is None and band["p95"] is None  # beyond 24 h, not made up
    text = " ".join(report["warnings"])
    assert "still have ketamine above 1 ng/mL at 24 h" in text
    assert "still have norketamine above 1 ng/mL at 24 h" in text
    json.loads(json.dumps(report, allow_nan=False))


def test_assumed_routes_and_ranges_are_flagged():
    report = simulate("ketamine", "im", "0.5mg/kg", 25.0, patients=50)
    text = " ".join(report["warnings"])
    assert "assumption" in text
    assert "25 kg" in text
    assert report["model"]["assumption"] is True


def test_esketamine_report_counts_from_first_device():
    report = simulate("esketamine", "intranasal", "2 devices", 70.0, patients=200)
    assert report["time_origin"].endswith("(first device)")
    assert report["metabolite"]["name"] == "noresketamine"
    assert 7.0 <= report["half_life_h"]["median"] <= 12.0  # label: 7-12 h


def test_observation_advice_for_one_patient():
    advice = observation_advice("esketamine", "intranasal", None, 70.0, devices=2, n_virtual=200)
    assert advice.times_min[0] == 0.0
    assert np.all(advice.conc_p5_ng_per_ml <= advice.conc_p95_ng_per_ml + 1e-12)
    assert np.all(advice.effect_p5_ng_per_ml <= advice.effect_p95_ng_per_ml + 1e-12)
    thr = advice.dissociation_threshold_ng_per_ml
    assert thr == pytest.approx(0.5 * 121.0)
    # the typical effect-site curve crosses the threshold at the predicted end
    k = round(advice.end_of_dissociation_min)
    assert advice.effect_typical_ng_per_ml[k - 1] >= thr - 0.5
    assert advice.effect_typical_ng_per_ml[k + 1] <= thr + 0.5
    assert advice.end_of_dissociation_p95_min >= advice.end_of_dissociation_min - 1e-9
    assert advice.suggested_earliest_discharge_min >= advice.end_of_dissociation_p95_min
    assert "Advice only" in advice.note


def test_margin_and_fraction_move_the_advice():
    base = observation_advice("ketamine", "iv", 35.0, 70.0, duration_min=40.0, n_virtual=100)
    later = observation_advice(
        "ketamine",
        "iv",
        35.0,
        70.0,
        duration_min=40.0,
        n_virtual=100,
        fraction_of_c50=0.25,
        discharge_margin_min=15.0,
    )
    assert later.end_of_dissociation_min > base.end_of_dissociation_min
    assert later.suggested_earliest_discharge_min >= base.suggested_earliest_discharge_min + 15


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"fraction_of_c50": 0.0}, "fraction_of_c50"),
        ({"discharge_margin_min": -1.0}, "discharge_margin_min"),
        ({"n_virtual": 5}, "n_virtual"),
        ({"age_years": 300.0}, "age"),
    ],
)
def test_observation_advice_rejects_bad_input(kwargs, parameter):
    with pytest.raises(PKInputError) as err:
        observation_advice("ketamine", "iv", 35.0, 70.0, **kwargs)
    assert err.value.parameter == parameter


@pytest.mark.parametrize("dose_mg", [math.nan, math.inf, -35.0, 0.0, 1e-20, 1e20])
def test_observation_advice_rejects_a_bad_dose_naming_it(dose_mg):
    with pytest.raises(PKInputError) as err:
        observation_advice("ketamine", "iv", dose_mg, 70.0, duration_min=40.0)
    assert err.value.parameter == "dose"


def test_warm_up_compiles_every_kernel_a_request_reaches():
    from ketaflow.pharmacology import solve, summary
    from ketaflow.pharmacology.clinical import warm_up

    assert warm_up() >= 0.0
    for kernel in (solve._decompose, solve._grid, summary._summarize):
        assert kernel.signatures, kernel
