"""The virtual patients' normal draws (`normals.py`): the AS 241 quantile against SciPy's
ndtri over the whole range, the draws' distribution, and the correlated log-normal factors
against the same draws combined by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import njit
from scipy import stats
from scipy.special import ndtri

from ketaflow.pharmacology.normals import (
    SMALLEST_TAIL,
    lognormal_factors,
    normal_quantile_lane,
    standard_normals,
)


@njit(error_model="numpy")
def _quantile_all(u, out):
    for i in range(u.shape[0]):
        out[i] = normal_quantile_lane(u[i])


def _quantile(u) -> np.ndarray:
    u = np.ascontiguousarray(u, dtype=np.float64)
    out = np.empty_like(u)
    _quantile_all(u, out)
    return out


def _relative_error(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    # at u = 0.5 both are 0: an absolute error there
    return np.abs(got - want) / np.maximum(np.abs(want), 1e-300)


def test_quantile_matches_ndtri_in_every_branch():
    rng = np.random.default_rng(1)
    u = np.concatenate(
        [
            rng.random(200_000),  # mostly the centre, |u - 0.5| <= 0.425
            rng.random(50_000) * 0.075,  # the lower tail
            1.0 - rng.random(50_000) * 0.075,  # the upper tail
            10.0 ** -rng.uniform(11, 16, 20_000),  # the far tail (sqrt(-log u) > 5)
            [0.075, np.nextafter(0.075, 0), 0.925, np.nextafter(0.925, 1), 1.4e-11],
            [2.0**-53, 1.0 - 2.0**-53, 0.5 + 2.0**-53, 0.5 - 2.0**-54],
        ]
    )
    want = ndtri(u)
    assert np.all(_relative_error(_quantile(u), want) < 4e-15)


@given(st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_quantile_is_finite_and_exact_for_any_uniform_draw(u):
    z = float(_quantile([u])[0])
    assert math.isfinite(z)
    want = ndtri(max(u, SMALLEST_TAIL))
    assert abs(z - want) <= 4e-15 * max(abs(want), 1e-300)


def test_a_draw_of_zero_counts_as_the_smallest_tail():
    assert _quantile([0.0])[0] == pytest.approx(ndtri(SMALLEST_TAIL), rel=1e-14)
    assert _quantile([0.5])[0] == 0.0


def test_draws_are_standard_normal_and_seeded():
    a = standard_normals(np.random.default_rng(7), (4, 50_000))
    b = standard_normals(np.random.default_rng(7), (4, 50_000))
    assert a.shape == (4, 50_000)
    np.testing.assert_array_equal(a, b)
    flat = a.ravel()
    assert abs(flat.mean()) < 0.01
    assert flat.std() == pytest.approx(1.0, abs=0.01)
    assert stats.kstest(flat, "norm").pvalue > 0.01
    # the rows are independent of each other
    assert abs(np.corrcoef(a)[np.triu_indices(4, 1)]).max() < 0.02


def test_lognormal_factors_are_the_same_draws_combined_by_cholesky():
    cov = np.array([[0.084177, 0.02261], [0.02261, 0.026048]])
    got = lognormal_factors(np.random.default_rng(11), 1000, cov)
    z = standard_normals(np.random.default_rng(11), (2, 1000))
    want = np.exp(np.linalg.cholesky(cov) @ z)
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_lognormal_factors_have_the_covariance_asked_for():
    cov = np.array([[0.09, 0.03, 0.0], [0.03, 0.04, -0.01], [0.0, -0.01, 0.25]])
    eta = np.log(lognormal_factors(np.random.default_rng(3), 200_000, cov))
    assert np.abs(eta.mean(axis=1)).max() < 0.005
    np.testing.assert_allclose(np.cov(eta), cov, atol=0.003)
