"""Standard normal draws for the virtual patients: NumPy's uniform doubles (PCG64) turned into
normals by inverting the normal distribution function, in SIMD lanes.

Inversion is exact in distribution (the quantile of a uniform draw is a normal draw) and, in
lanes, cheaper than NumPy's ziggurat: here the ziggurat takes about 12 ns a normal (branches
and table look-ups per draw), a uniform double about 2.7 ns and its inversion about 1 ns. The
four correlated normals a patient needs made the ziggurat the largest single cost of drawing
a population.

The quantile is Wichura's algorithm AS 241 (PPND16, about 1e-16 relative): M. J. Wichura,
"The percentage points of the normal distribution", Applied Statistics 37 (1988) 477-484;
the coefficients as in CPython's `statistics.NormalDist.inv_cdf`, which uses the same
algorithm. Its three branches (centre, tail, far tail) are all computed and one is selected,
so the loop has no branch. A uniform draw of exactly 0 (probability 2^-53) counts as 2^-54,
so every draw is finite (below -8.2 never occurs).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from ketaflow.pharmacology.vecmath import exp_lane, log_lane

SMALLEST_TAIL = 2.0**-54  # the tail probability of a uniform draw of 0 (else 0: -inf)

# AS 241 (PPND16): |p - 0.5| <= 0.425, r = 0.180625 - q^2; numerator and denominator in r,
# highest power first
_CENTRE_NUM = (
    2.5090809287301226727e3,
    3.3430575583588128105e4,
    6.7265770927008700853e4,
    4.5921953931549871457e4,
    1.3731693765509461125e4,
    1.9715909503065514427e3,
    1.3314166789178437745e2,
    3.3871328727963666080e0,
)
_CENTRE_DEN = (
    5.2264952788528545610e3,
    2.8729085735721942674e4,
    3.9307895800092710610e4,
    2.1213794301586595867e4,
    5.3941960214247511077e3,
    6.8718700749205790830e2,
    4.2313330701600911252e1,
    1.0,
)
# tails, in s - 1.6 for s = sqrt(-log(tail probability)) <= 5, and in s - 5 beyond
_TAIL_NUM = (
    7.74545014278341407640e-4,
    2.27238449892691845833e-2,
    2.41780725177450611770e-1,
    1.27045825245236838258e0,
    3.64784832476320460504e0,
    5.76949722146069140550e0,
    4.63033784615654529590e0,
    1.42343711074968357734e0,
)
_TAIL_DEN = (
    1.05075007164441684324e-9,
    5.47593808499534494600e-4,
    1.51986665636164571966e-2,
    1.48103976427480074590e-1,
    6.89767334985100004550e-1,
    1.67638483018380384940e0,
    2.05319162663775882187e0,
    1.0,
)
_FAR_NUM = (
    2.01033439929228813265e-7,
    2.71155556874348757815e-5,
    1.24266094738807843860e-3,
    2.65321895265761230930e-2,
    2.96560571828504891230e-1,
    1.78482653991729133580e0,
    5.46378491116411436990e0,
    6.65790464350110377720e0,
)
_FAR_DEN = (
    2.04426310338993978564e-15,
    1.42151175831644588870e-7,
    1.84631831751005468180e-5,
    7.86869131145613259100e-4,
    1.48753612908506148525e-2,
    1.36929880922735805310e-1,
    5.99832206555887937690e-1,
    1.0,
)


@njit(cache=True, inline="always", error_model="numpy")
def _horner(c, x):  # pragma: no cover - compiled
    """c[0] x^7 + ... + c[7]."""
    p = c[0]
    for k in range(1, 8):
        p = p * x + c[k]
    return p


CENTRE_HALF_WIDTH = 0.425  # AS 241's central branch: |u - 1/2| <= 0.425, 85% of draws


@njit(cache=True, inline="always", error_model="numpy")
def _centre_quantile(q):  # pragma: no cover - compiled
    """The quantile of u = 1/2 + q for |q| <= CENTRE_HALF_WIDTH."""
    r = 0.180625 - q * q
    return q * _horner(_CENTRE_NUM, r) / _horner(_CENTRE_DEN, r)


@njit(cache=True, inline="always", error_model="numpy")
def _tail_quantile(u):  # pragma: no cover - compiled
    """The quantile of u for |u - 1/2| > CENTRE_HALF_WIDTH, branch-free: both tail branches
    are computed and one is selected."""
    q = u - 0.5  # exact
    tail_p = u if q <= 0.0 else 1.0 - u  # exact for u in [0.5, 1)
    s = math.sqrt(-log_lane(max(tail_p, SMALLEST_TAIL)))
    near = s <= 5.0
    tail = _horner(_TAIL_NUM, s - 1.6) / _horner(_TAIL_DEN, s - 1.6)
    far = _horner(_FAR_NUM, s - 5.0) / _horner(_FAR_DEN, s - 5.0)
    tail = tail if near else far
    return -tail if q < 0.0 else tail


@njit(cache=True, inline="always", error_model="numpy")
def normal_quantile_lane(u):  # pragma: no cover - compiled
    """The standard normal quantile of u in [0, 1), branch-free (AS 241): the branches are
    computed and one is selected (measured faster than selecting coefficients first)."""
    q = u - 0.5  # exact
    centre = _centre_quantile(q)
    return centre if abs(q) <= CENTRE_HALF_WIDTH else _tail_quantile(u)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _quantiles_in_place(x):  # pragma: no cover - compiled
    """Uniform draws x (1-D, contiguous) replaced by their normal quantiles, the values of
    normal_quantile_lane: the central branch for every draw, the tails (15%) only for those
    in them, gathered into a contiguous buffer so that both loops vectorise. Computing every
    branch for every draw took half as long again."""
    n = x.shape[0]
    at = np.empty(n, dtype=np.int64)
    n_tail = 0
    for i in range(n):  # the tail draws' indices, without a branch
        at[n_tail] = i
        n_tail += 0 if abs(x[i] - 0.5) <= CENTRE_HALF_WIDTH else 1
    tail = np.empty(n_tail)
    for j in range(n_tail):
        tail[j] = x[at[j]]
    for j in range(n_tail):
        tail[j] = _tail_quantile(tail[j])
    for i in range(n):
        x[i] = _centre_quantile(x[i] - 0.5)
    for j in range(n_tail):
        x[at[j]] = tail[j]


def _quantiles(u: np.ndarray) -> None:
    """Uniform draws (a C-contiguous array) replaced by their normal quantiles."""
    _quantiles_in_place(u.reshape(u.size))


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _lognormal_rows(u, chol):  # pragma: no cover - compiled
    """Uniform draws u (k, n) replaced by exp(chol @ z), z their normal quantiles: row j only
    needs rows 0 .. j of z, so the rows are combined from the last one up, in place."""
    k, n = u.shape
    for j in range(k):
        _quantiles_in_place(u[j])
    for j in range(k - 1, -1, -1):
        for i in range(n):
            u[j, i] *= chol[j, j]
        for m in range(j):
            for i in range(n):
                u[j, i] += chol[j, m] * u[m, i]
        for i in range(n):
            u[j, i] = exp_lane(u[j, i])


def standard_normals(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    """Independent standard normal draws of the given shape, from `rng`'s uniform doubles."""
    draws = rng.random(shape)
    _quantiles(draws)
    return draws


@functools.lru_cache(maxsize=64)
def _cholesky_of(shape: tuple[int, ...], data: bytes) -> np.ndarray:
    chol = np.linalg.cholesky(np.frombuffer(data).reshape(shape))
    chol.setflags(write=False)  # shared by every later call
    return chol


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """The Cholesky factor of `cov`, computed once per matrix: a population draws block after
    block from the same few matrices (the models' constants), and LAPACK's call through
    NumPy costs more than the draws from a 2 x 2 factor."""
    return _cholesky_of(cov.shape, np.ascontiguousarray(cov).tobytes())


def lognormal_factors(rng: np.random.Generator, n: int, cov: np.ndarray) -> np.ndarray:
    """(k, n) multiplicative factors exp(eta), eta normal with mean 0 and covariance `cov`
    (k, k) on the log scale, for n patients: one row per parameter."""
    chol = _cholesky(np.asarray(cov, dtype=np.float64))
    draws = rng.random((chol.shape[0], n))
    _lognormal_rows(draws, chol)
    return draws
