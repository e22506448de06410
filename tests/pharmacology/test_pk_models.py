"""Model numbers against their sources: the esketamine label model's published predictions,
the racemic model's anchors, ranges and unsupported routes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.models import (
    C50_S_KETAMINE_NG_PER_ML,
    KE0_PER_MIN,
    MODELS,
    Administration,
    Covariates,
    model_for,
    typical_ka_per_min,
)
from ketaflow.pharmacology.solve import decompose
from ketaflow.pharmacology.summary import AUC_HORIZON, CMAX, TMAX, summarize

TYPICAL = Covariates(np.array([70.0]), np.array([40.0]))


def _typical_summary(drug, route, doses, outputs=(0,), horizon=1440.0):
    model = MODELS[drug]
    ind = model.individuals(route, TYPICAL, None)
    events = model.events(route, doses, ind)
    return summarize(decompose(ind.system), events, outputs, (1.0,) * len(outputs), horizon)[0]


@pytest.mark.parametrize(
    ("devices", "cmax", "auc24"),
    # Perez-Ruixo 2021 Table 4: typical adult under 60, model predictions (reference §6).
    [(1, 43.8, 147.0), (2, 72.5, 255.0), (3, 101.0, 362.0)],
)
def test_esketamine_reproduces_perez_ruixo_table_4(devices, cmax, auc24):
    doses = tuple(Administration(5.0 * k, 28.0, 0.0, k) for k in range(devices))
    s = _typical_summary("esketamine", "intranasal", doses)
    assert s[0, CMAX] == pytest.approx(cmax, rel=0.01)
    assert s[0, AUC_HORIZON] / 60.0 == pytest.approx(auc24, rel=0.015)


def test_esketamine_nasal_bioavailability_matches_table_4():
    """F = FRn + (1 - FRn) Fgut (1 - E): 62% for one device, 54% for two (Table 4)."""
    model = MODELS["esketamine"]
    iv = _typical_summary("esketamine", "iv", (Administration(0.0, 28.0),))
    for devices, f in ((1, 0.62), (2, 0.54), (3, 0.51)):
        doses = tuple(Administration(5.0 * k, 28.0, 0.0, k) for k in range(devices))
        nasal = _typical_summary("esketamine", "intranasal", doses)
        auc_inf_ratio = nasal[0, 2] / (iv[0, 2] * devices)
        assert auc_inf_ratio == pytest.approx(f, abs=0.01)
    assert model.sampling_site == "venous"


def test_racemic_iv_standard_dose_near_observed():
    """0.5 mg/kg over 40 min: 185 ng/mL observed (Zarate 2006); published racemic models
    disagree by +/-30% (reference §6)."""
    s = _typical_summary("ketamine", "iv", (Administration(0.0, 35.0, 40.0),))
    assert 0.7 * 185 <= s[0, CMAX] <= 1.3 * 185
    assert s[0, TMAX] == pytest.approx(40.0)


@pytest.mark.parametrize("route", ["im", "sc", "intranasal", "sublingual", "oral"])
def test_assumed_absorption_reproduces_its_tmax(route):
    model = MODELS["ketamine"]
    target = model.ABSORPTION[route].tmax_min
    assert typical_ka_per_min(model.model_id, route) > 0
    s = _typical_summary("ketamine", route, (Administration(0.0, 25.0),))
    assert s[0, TMAX] == pytest.approx(target, abs=1e-6)
    assert model.routes[route].assumption


def test_effect_compartment_from_olofsen():
    assert math.log(2) / KE0_PER_MIN == pytest.approx(8.3)
    assert pytest.approx(0.51 * 237.7, rel=0.01) == C50_S_KETAMINE_NG_PER_ML


def test_weight_scales_racemic_but_not_esketamine():
    light = Covariates(np.array([50.0]), np.array([40.0]))
    heavy = Covariates(np.array([100.0]), np.array([40.0]))
    for drug, ratio in (("ketamine", 2.0), ("esketamine", 1.0)):
        model = MODELS[drug]
        v_light = model.individuals("iv", light, None).system.parent_volume[0, 0]
        v_heavy = model.individuals("iv", heavy, None).system.parent_volume[0, 0]
        assert v_heavy / v_light == pytest.approx(ratio)


def test_age_lowers_hepatic_flow_over_60():
    model = MODELS["esketamine"]
    young = model.individuals("iv", Covariates(np.array([70.0]), np.array([50.0])), None)
    old = model.individuals("iv", Covariates(np.array([70.0]), np.array([80.0])), None)
    qh_young = young.system.parent_flow[0, 3] * 60
    qh_old = old.system.parent_flow[0, 3] * 60
    assert qh_young == pytest.approx(151.0)
    assert qh_old == pytest.approx(151.0 - 2.19 * 20)


def test_variability_is_lognormal_around_typical():
    model = MODELS["ketamine"]
    cov = Covariates(np.full(20000, 70.0), np.full(20000, 40.0))
    ind = model.individuals("iv", cov, np.random.default_rng(3))
    log_cl = np.log(ind.system.parent_clearance[:, 0] * 60 / 95.2)
    assert np.mean(log_cl) == pytest.approx(0.0, abs=0.01)
    assert np.var(log_cl) == pytest.approx(0.026048, rel=0.05)


@pytest.mark.parametrize(
    ("drug", "route", "parameter"),
    [("esketamine", "im", "route"), ("ketamine", "rectal", "route"), ("heroin", "iv", "drug")],
)
def test_unsupported_combinations_name_the_parameter(drug, route, parameter):
    with pytest.raises(PKInputError) as err:
        model_for(drug, route)
    assert err.value.parameter == parameter


def test_range_warnings():
    model = MODELS["ketamine"]
    assert model.range_warnings(70.0, 40.0) == []
    assert "outside" in model.range_warnings(25.0, 40.0)[0]
    assert len(MODELS["esketamine"].range_warnings(200.0, 90.0)) == 2


def test_absorption_lag_shifts_the_curve():
    """First-order absorption with a lag: the same curve, later by the lag."""
    from dataclasses import replace

    from ketaflow.pharmacology.models import RacemicKetamine
    from ketaflow.pharmacology.solve import evaluate

    class Lagged(RacemicKetamine):
        ABSORPTION = RacemicKetamine.ABSORPTION | {
            "oral": replace(RacemicKetamine.ABSORPTION["oral"], lag_min=12.5)
        }

    times = np.arange(0.0, 600.0, 2.5)
    curves = []
    for model in (MODELS["ketamine"], Lagged()):
        ind = model.individuals("oral", TYPICAL, None)
        events = model.events("oral", (Administration(0.0, 150.0),), ind)
        curves.append(evaluate(decompose(ind.system), events, times, 1)[0])
    shift = 5  # 12.5 min on a 2.5 min grid
    assert np.allclose(curves[1][:shift], 0.0)
    assert np.allclose(curves[1][shift:], curves[0][:-shift], rtol=1e-12, atol=1e-12)
