"""The exact solver against the solve_ivp oracle, superposition and linearity (Hypothesis),
coincident poles, and the closed-form summaries against dense evaluation."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketaflow.pharmacology.models import MODELS, Administration, Covariates
from ketaflow.pharmacology.solve import (
    DoseEvents,
    decompose,
    evaluate,
    expm_solve,
    grid_curves,
    state_space,
)
from ketaflow.pharmacology.summary import (
    AUC_HORIZON,
    AUC_INF,
    CMAX,
    HALF_LIFE,
    TIME_ABOVE,
    TIME_TO_BELOW,
    TMAX,
    summarize,
)

TIMES = np.concatenate([np.arange(0.0, 240.0, 2.5), np.arange(240.0, 1441.0, 30.0)])

# (drug, route, dose history): single doses on every route, and histories the clinic meets:
# a series, an infusion paused and resumed, devices 5 minutes apart.
CASES = [
    ("ketamine", "iv", (Administration(0.0, 35.0, 40.0),)),
    ("ketamine", "iv", (Administration(0.0, 20.0),)),
    (
        "ketamine",
        "iv",
        (Administration(0.0, 17.5, 20.0), Administration(27.5, 17.5, 20.0)),  # paused 7.5 min
    ),
    ("ketamine", "iv", (Administration(0.0, 35.0, 40.0), Administration(180.0, 35.0, 40.0))),
    ("ketamine", "im", (Administration(0.0, 35.0),)),
    ("ketamine", "sc", (Administration(3.3, 35.0),)),
    ("ketamine", "intranasal", (Administration(0.0, 50.0), Administration(15.0, 50.0))),
    ("ketamine", "sublingual", (Administration(0.0, 50.0),)),
    ("ketamine", "oral", (Administration(0.0, 150.0),)),
    (
        "esketamine",
        "intranasal",
        tuple(Administration(5.0 * k, 28.0, 0.0, k) for k in range(3)),
    ),
    ("esketamine", "iv", (Administration(0.0, 28.0, 40.0),)),
    ("esketamine", "oral", (Administration(0.0, 84.0),)),
]


def _patients(drug: str, route: str, n: int = 3, seed: int = 11):
    model = MODELS[drug]
    cov = Covariates(np.array([70.0, 52.0, 96.0][:n]), np.array([40.0, 67.0, 30.0][:n]))
    return model, model.individuals(route, cov, np.random.default_rng(seed))


def _close(actual: np.ndarray, expected: np.ndarray, rel: float) -> None:
    scale = np.max(np.abs(expected), axis=-1, keepdims=True)
    assert np.all(np.abs(actual - expected) <= rel * scale + 1e-12)


@pytest.mark.parametrize(("drug", "route", "doses"), CASES)
def test_closed_form_matches_solve_ivp_oracle(drug, route, doses, ivp_oracle):
    model, ind = _patients(drug, route)
    events = model.events(route, doses, ind)
    modal = decompose(ind.system)
    grid = grid_curves(modal, events, 2.5, 577, (0, 1, 2))
    grid_times = np.arange(577) * 2.5
    for patient in range(ind.system.n_patients):
        space = state_space(ind.system, patient)
        oracle = ivp_oracle(space, events, TIMES, patient)
        exact = np.stack(
            [
                evaluate(
                    modal.take(slice(patient, patient + 1)),
                    events.take(slice(patient, patient + 1)),
                    TIMES,
                    o,
                )[0]
                for o in range(3)
            ]
        )
        _close(exact, oracle, 1e-6)
        _close(expm_solve(space, events, TIMES, patient), oracle, 1e-6)
        on_grid = ivp_oracle(space, events, grid_times, patient)
        _close(grid[:, patient, :], on_grid, 1e-6)


def test_coincident_poles_stay_exact(ivp_oracle):
    """ka equal to a disposition eigenvalue: the partial fractions would cancel; the solver
    separates the poles by 1e-7 relative and stays within 1e-6 of the exact solution."""
    model, ind = _patients("ketamine", "im", n=1)
    base = decompose(ind.system)
    parent_pole = base.poles[0, 1, 0]  # a parent disposition mode of path 0
    s = ind.system
    system = replace(s, path_ka=np.full_like(s.path_ka, -parent_pole))
    events = model.events("im", (Administration(0.0, 35.0),), ind)
    modal = decompose(system)
    space = state_space(system)
    reference = expm_solve(space, events, TIMES)
    for o in range(3):
        _close(evaluate(modal, events, TIMES, o)[0], reference[o], 1e-6)
    _close(reference, ivp_oracle(space, events, TIMES), 1e-6)


DOSE = st.tuples(
    st.floats(0.0, 300.0),  # start, min
    st.floats(0.5, 80.0),  # amount, mg
    st.sampled_from([0.0, 0.0, 7.5, 40.0, 61.3]),  # duration, min
)


def _events(doses, route="iv"):
    model, ind = _patients("ketamine", route, n=2)
    admin = tuple(Administration(s, a, d if route == "iv" else 0.0) for s, a, d in doses)
    return model.events(route, admin, ind), decompose(ind.system)


@settings(max_examples=25, deadline=None)
@given(st.lists(DOSE, min_size=1, max_size=4), st.sampled_from(["iv", "im", "oral"]))
def test_superposition_of_any_dose_history(doses, route):
    together, modal = _events(doses, route)
    total = evaluate(modal, together, TIMES, 1)
    parts = sum(evaluate(modal, _events([d], route)[0], TIMES, 1) for d in doses)
    assert np.allclose(total, parts, rtol=1e-10, atol=1e-10)
    grid_total = grid_curves(modal, together, 3.0, 400, (0, 1))
    grid_parts = sum(grid_curves(modal, _events([d], route)[0], 3.0, 400, (0, 1)) for d in doses)
    assert np.allclose(grid_total, grid_parts, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(DOSE, min_size=1, max_size=3), st.floats(0.1, 10.0))
def test_linearity_twice_the_dose_twice_the_curve(doses, factor):
    events, modal = _events(doses)
    one = evaluate(modal, events, TIMES, 0)
    scaled = evaluate(modal, events.scaled(factor), TIMES, 0)
    assert np.allclose(scaled, factor * one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("drug", "route", "doses"), [CASES[0], CASES[2], CASES[4], CASES[8], CASES[9]]
)
def test_summaries_agree_with_dense_evaluation(drug, route, doses):
    model, ind = _patients(drug, route)
    events = model.events(route, doses, ind)
    modal = decompose(ind.system)
    threshold = 20.0
    summary = summarize(modal, events, (0, 1, 2), (threshold, threshold, threshold), 1440.0)
    fine = np.arange(0.0, 1440.0 + 1e-9, 0.02)
    for o in range(3):
        curves = evaluate(modal, events, fine, o)
        for i in range(ind.system.n_patients):
            c = curves[i]
            s = summary[i, o]
            assert s[CMAX] >= c.max() * (1 - 1e-12)
            assert s[CMAX] == pytest.approx(c.max(), rel=1e-6)
            assert abs(s[TMAX] - fine[np.argmax(c)]) <= 0.05
            exact_at_tmax = evaluate(
                modal.take(slice(i, i + 1)), events.take(slice(i, i + 1)), np.array([s[TMAX]]), o
            )
            assert exact_at_tmax[0, 0] == pytest.approx(s[CMAX], rel=1e-12)
            assert s[AUC_HORIZON] == pytest.approx(np.trapezoid(c, fine), rel=1e-5)
            assert s[AUC_INF] >= s[AUC_HORIZON]
            above = (c > threshold).sum() * 0.02
            assert abs(s[TIME_ABOVE] - above) <= 0.1
            if c[-1] < threshold and c.max() > threshold:
                last = fine[np.nonzero(c > threshold)[0][-1]]
                assert abs(s[TIME_TO_BELOW] - last) <= 0.05
            slowest = -np.max(
                modal.poles[..., i][modal.active & (np.abs(modal.residues[:, o, :, i]) > 0)]
            )
            assert s[HALF_LIFE] == pytest.approx(math.log(2) / slowest, rel=1e-12)


def test_infusion_peak_is_at_the_end_of_the_infusion():
    model, ind = _patients("ketamine", "iv")
    events = model.events("iv", (Administration(0.0, 35.0, 40.0),), ind)
    summary = summarize(decompose(ind.system), events, (0,), (50.0,), 1440.0)
    assert np.allclose(summary[:, 0, TMAX], 40.0)


def test_events_scaled_and_taken_keep_shapes():
    events = DoseEvents(np.array([0]), np.zeros((3, 1)), np.array([40.0]), np.ones((3, 1)))
    assert events.take(slice(0, 2)).amount_mg.shape == (2, 1)
    assert events.scaled(2.0).amount_mg.sum() == 6.0
    assert events.last_end_min == 40.0


def test_horizon_inside_an_infusion_uses_the_closed_form_integral():
    model, ind = _patients("ketamine", "iv", n=2)
    doses = (Administration(0.0, 10.0), Administration(100.0, 35.0, 40.0))
    events = model.events("iv", doses, ind)
    modal = decompose(ind.system)
    summary = summarize(modal, events, (0, 1), (20.0, 20.0), 120.0)
    fine = np.arange(0.0, 120.0 + 1e-9, 0.005)
    for o in range(2):
        curves = evaluate(modal, events, fine, o)
        for i in range(2):
            assert summary[i, o, AUC_HORIZON] == pytest.approx(
                np.trapezoid(curves[i], fine), rel=1e-6
            )
            assert summary[i, o, CMAX] == pytest.approx(curves[i].max(), rel=1e-6)


def _disposition_matrix(volume, flow, clearance):
    """V^-1/2 M V^-1/2 of a mammillary block, built directly."""
    n = volume.shape[0]
    s = np.zeros((n, n))
    s[0, 0] = -(flow[1:].sum() + clearance[0]) / volume[0]
    for j in range(1, n):
        s[j, j] = -(flow[j] + clearance[j]) / volume[j]
        s[0, j] = s[j, 0] = flow[j] / math.sqrt(volume[0] * volume[j])
    return s


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    degenerate=st.sampled_from(["none", "equal peripherals", "no coupling", "tiny coupling"]),
)
def test_block_eigen_lanes_matches_lapack_in_every_lane(n, seed, degenerate):
    """Eigenpairs of a block of patients, lane by lane, including the lanes the closed form
    hands to Jacobi (coinciding peripheral compartments, a vanishing coupling)."""
    from ketaflow.pharmacology.solve import _block_eigen_lanes

    rng = np.random.default_rng(seed)
    lanes = 11  # fewer patients than the work arrays hold
    volume = rng.uniform(2.0, 300.0, (lanes, n))
    flow = rng.uniform(0.05, 3.0, (lanes, n))
    clearance = np.zeros((lanes, n))
    clearance[:, 0] = rng.uniform(0.2, 3.0, lanes)
    clearance[::3, -1] += 0.5  # elimination from a peripheral compartment too
    if n >= 3 and degenerate == "equal peripherals":
        volume[::2, 2], flow[::2, 2] = volume[::2, 1], flow[::2, 1]
    if n >= 2 and degenerate == "no coupling":
        flow[1::2, 1] = 0.0
    if n >= 2 and degenerate == "tiny coupling":
        flow[::2, 1] = 1e-11
    lam = np.empty((n, 16))
    vec = np.empty((n, n, 16))
    work = np.empty((n, n, 16))
    ok = np.empty(16, dtype=np.bool_)
    _block_eigen_lanes(volume, flow, clearance, 0, lanes, lam, vec, work, ok)
    for b in range(lanes):
        s = _disposition_matrix(volume[b], flow[b], clearance[b])
        expected = np.linalg.eigvalsh(s)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(np.sort(lam[:, b]), expected, rtol=1e-10, atol=1e-13 * scale)
        v = vec[:, :, b]
        np.testing.assert_allclose(s @ v, v * lam[:, b], atol=1e-10 * scale)
        np.testing.assert_allclose(v.T @ v, np.eye(n), atol=1e-10)


def test_a_patient_decomposes_alike_alone_and_among_others():
    """Patients are decomposed in SIMD lanes, 64 at a time: a block mixing patients with and
    without a depot (ka = 0: dosed straight into the compartment), and one whose depot pole
    coincides with a disposition pole, gives each patient what it gets alone."""
    _, ind = _patients("ketamine", "im", n=3)
    s = ind.system
    coincident = -decompose(s.take(slice(2, 3))).poles[0, 1, 0]
    ka = s.path_ka.copy()
    ka[1] = 0.0
    ka[2] = coincident
    system = replace(s, path_ka=ka)
    together = decompose(system)
    for i in range(3):
        alone = decompose(system.take(slice(i, i + 1)))
        active = together.active
        for p in range(active.shape[0]):
            np.testing.assert_allclose(
                together.poles[p, active[p], i], alone.poles[p, active[p], 0], rtol=1e-15
            )
            np.testing.assert_allclose(
                together.residues[p, :, active[p], i],
                alone.residues[p, :, active[p], 0],
                rtol=1e-12,
                atol=1e-12 * np.abs(alone.residues[p, ..., 0]).max(),
            )
