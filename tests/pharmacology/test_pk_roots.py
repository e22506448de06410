"""The batched root solver (`roots.py`) against SciPy's brentq, task by task: sums of
exponentials with one zero in their bracket, in batches larger than the solver's slots so
that slots are refilled and compacted, in random order of difficulty."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from ketaflow.pharmacology.roots import (
    MODE_COEF,
    MODE_LEVEL,
    MODE_POLE,
    N_MODE_ROWS,
    N_TASK_ROWS,
    SLOTS,
    START_GUESS,
    START_HI,
    TASK_AT,
    TASK_CONST,
    TASK_GUESS,
    TASK_HI,
    TASK_LEVEL,
    TASK_LO,
    TASK_ROOT,
    TASK_SIDE,
    TASK_START,
    solve_tasks,
)


@st.composite
def monotone_tasks(draw):
    """g(t) = s (sum_m c_m exp(l_m t) - target), c_m > 0: monotone, so one zero in a bracket
    whose ends straddle it; s = +-1 picks falling or rising."""
    n = draw(st.integers(1, 6))
    poles = draw(st.lists(st.floats(-20.0, -1e-6), min_size=n, max_size=n))
    coef = draw(st.lists(st.floats(1e-6, 1e6), min_size=n, max_size=n))
    # levels stay far above the subnormal range, where vecmath works: exp(-400) at most (a
    # concentration that low is long gone)
    limit = 400.0 / max(-p for p in poles)
    lo = draw(st.floats(0.0, 1.0)) * min(100.0, 0.5 * limit)
    # and the level changes by at least 1e-6 of itself over the bracket: a zero is then
    # defined far above rounding
    shortest = 1e-6 / min(-p for p in poles)
    hi = min(lo + max(draw(st.floats(1e-6, 1440.0)), shortest), limit)
    g_lo = sum(c * math.exp(p * lo) for c, p in zip(coef, poles, strict=True))
    g_hi = sum(c * math.exp(p * hi) for c, p in zip(coef, poles, strict=True))
    # the zero at least 1e-3 of the level's range from either end (closer: see the example)
    fraction = draw(st.floats(1e-3, 1.0 - 1e-3))
    target = g_hi + fraction * (g_lo - g_hi)
    sign = draw(st.sampled_from([1.0, -1.0]))
    return np.array(poles), sign * np.array(coef), -sign * target, lo, hi, sign


def _storage(tasks, start="lo", junk=0):
    """Task storage as summary.py fills it; `junk` more modes after the tasks' own, with
    coefficients that would change every root: solve_tasks is told to ignore them."""
    n_modes = max(t[0].shape[0] for t in tasks)
    modes = np.zeros((len(tasks), N_MODE_ROWS, n_modes + junk))
    modes[:, MODE_POLE, n_modes:] = -0.5
    modes[:, MODE_COEF, n_modes:] = 1e3
    modes[:, MODE_LEVEL, n_modes:] = 1e3
    scalars = np.zeros((len(tasks), N_TASK_ROWS))
    for j, (poles, coef, const, lo, hi, sign) in enumerate(tasks):
        k = poles.shape[0]
        modes[j, MODE_POLE, :k] = poles
        modes[j, MODE_POLE, k:n_modes] = -1.0  # unused modes: coefficient 0
        modes[j, MODE_COEF, :k] = coef
        modes[j, MODE_LEVEL, :k] = coef * poles  # a second sum, returned at the root
        scalars[j, TASK_CONST] = const
        scalars[j, TASK_LO] = lo
        scalars[j, TASK_HI] = hi
        scalars[j, TASK_SIDE] = sign  # falling (+) starts positive, rising (-) negative
        if start == "hi":
            scalars[j, TASK_START] = START_HI
        elif start in ("guess", "outside"):
            # a point inside the bracket (a third of the way), or none (NaN: a caller's
            # estimate that failed), which starts from hi
            scalars[j, TASK_START] = START_GUESS
            scalars[j, TASK_GUESS] = lo + (hi - lo) / 3.0 if start == "guess" else math.nan
    return modes, scalars


@settings(max_examples=25, deadline=None)
@given(
    st.lists(monotone_tasks(), min_size=1, max_size=3 * SLOTS),
    st.sampled_from(["lo", "hi", "guess", "outside"]),
)
# a zero 2e-9 from the end of its bracket: once taken for a zero of the end itself
@example([(np.array([-1.0]), np.array([1.0]), -0.3678794418035629, 0.0, 1.0, 1.0)], "lo")
def test_every_root_agrees_with_brentq(tasks, start):
    """From either end first, or from a point inside the bracket (summaries start after a
    peak from an estimate), or from a failed estimate (then from hi). The storage has two
    modes more than the tasks use, which the solver is told to leave out (as summaries do
    for an output that does not carry them)."""
    modes, scalars = _storage(tasks, start, junk=2)
    solve_tasks(modes, scalars, 0, len(tasks), modes.shape[2] - 2)
    for j, (poles, coef, const, lo, hi, _) in enumerate(tasks):

        def g(t, poles=poles, coef=coef, const=const):
            return float(np.sum(coef * np.exp(poles * t)) + const)

        want = brentq(g, lo, hi, xtol=1e-13, rtol=4 * np.finfo(float).eps)
        got = scalars[j, TASK_ROOT]
        at = scalars[j, TASK_AT]
        assert lo <= got <= hi
        # the time to 1e-9 relative, or (where g is so flat that its zero is a matter of
        # rounding) a point where g is at rounding level: a few times the solver's 1e-12 of
        # the sizes of its parts
        size = float(np.sum(np.abs(coef) * np.exp(poles * got))) + abs(const)
        assert abs(got - want) <= 1e-9 * max(1.0, want) or abs(g(got)) <= 4e-12 * size, (
            j,
            got,
            want,
        )
        # the reported level is the second sum at the last point evaluated, next to the root
        assert abs(at - got) <= 1e-5 * max(1.0, abs(got)) + 1e-12 * (hi - lo)
        level = float(np.sum(coef * poles * np.exp(poles * at)))
        assert scalars[j, TASK_LEVEL] == np.float64(level) or math.isclose(
            scalars[j, TASK_LEVEL], level, rel_tol=1e-12, abs_tol=1e-300
        )


def test_a_subset_of_the_tasks_is_solved_and_the_rest_untouched():
    rng = np.random.default_rng(3)
    tasks = []
    for _ in range(10):
        poles = -rng.uniform(1e-3, 1.0, 3)
        coef = rng.uniform(1.0, 10.0, 3)
        total = float(np.sum(coef))
        tasks.append((poles, coef, -0.5 * total * math.exp(-1.0), 0.0, 1e4, 1.0))
    modes, scalars = _storage(tasks)
    scalars[:, TASK_ROOT] = -7.0
    solve_tasks(modes, scalars, 3, 7, modes.shape[2])
    assert np.all(scalars[:3, TASK_ROOT] == -7.0) and np.all(scalars[7:, TASK_ROOT] == -7.0)
    assert np.all(scalars[3:7, TASK_ROOT] > 0.0)


def test_roots_on_a_grid_of_extreme_tasks():
    """Every combination of extreme poles, coefficients, bracket positions and widths, and zeros
    next to either end (31,500 tasks): each root is right to 1e-9, or g is at rounding level
    there. Narrow brackets far from 0 once converged on a bisection midpoint, because the
    step tolerance (1e-5 of the time) exceeded the bracket."""
    poles_grid = [-1e-6, -1e-5, -1e-4, -0.015, -0.5, -1.0, -20.0]
    coef_grid = [1e-6, 1.0, 1e6]
    tasks = []
    for n in (1, 2):
        for poles in itertools.combinations(poles_grid, n):
            limit = 400.0 / max(-p for p in poles)
            for coef in itertools.product(coef_grid, repeat=n):
                p, c = np.array(poles), np.array(coef)
                for start in (0.0, 1.0, 100.0):
                    for width in (1e-6, 1e-3, 1.0, 100.0, 1440.0):
                        lo = min(start, 0.5 * limit)
                        hi = min(lo + width, limit)
                        g_lo = float(np.sum(c * np.exp(p * lo)))
                        g_hi = float(np.sum(c * np.exp(p * hi)))
                        for fraction in (1e-6, 1e-3, 0.5, 1 - 1e-3, 1 - 1e-6):
                            target = g_hi + fraction * (g_lo - g_hi)
                            for sign in (1.0, -1.0):
                                tasks.append((p, sign * c, -sign * target, lo, hi, sign))
    modes, scalars = _storage(tasks)
    solve_tasks(modes, scalars, 0, len(tasks), modes.shape[2])
    wrong = []
    for j, (poles, coef, const, lo, hi, _) in enumerate(tasks):
        got = scalars[j, TASK_ROOT]
        value = float(np.sum(coef * np.exp(poles * got)) + const)
        size = float(np.sum(np.abs(coef) * np.exp(poles * got))) + abs(const)
        if abs(value) <= 4e-12 * size:
            continue
        want = brentq(
            lambda t, p=poles, c=coef, k=const: float(np.sum(c * np.exp(p * t)) + k),
            lo,
            hi,
            xtol=1e-14,
            rtol=4 * np.finfo(float).eps,
        )
        if abs(got - want) > 1e-9 * max(1.0, want):
            wrong.append((j, got, want))
    assert not wrong, f"{len(wrong)} of {len(tasks)} roots off, e.g. {wrong[:3]}"
