"""Property tests of the grid-free summary kernel (`summary.py`): Laguerre's rule of signs
against densely sampled exponential sums, every summary against dense closed-form evaluation
for random dose histories, linearity in the dose, and the input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st

from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.models import MODELS, Administration, Covariates
from ketaflow.pharmacology.solve import DoseEvents, decompose, evaluate
from ketaflow.pharmacology.summary import (
    AUC_HORIZON,
    AUC_INF,
    CMAX,
    DCOEF,
    EM,
    HALF_LIFE,
    LAM,
    SUMMARY_FIELDS,
    TIME_ABOVE,
    TIME_TO_BELOW,
    TMAX,
    _ranks_lanes,
    _sign_changes_lanes,
    summarize,
)
from ketaflow.pharmacology.summary import _isolate as _isolate_kernel

# ----------------------------------------------------------------------------------------------
# The rule of signs


@st.composite
def exponential_sums(draw):
    """2-6 terms: distinct poles in [-2, -1e-3], consecutive ones (sorted) at least 1e-3
    apart relative; coefficients in [-10, 10] of magnitude at least 1e-3, random or chosen to
    alternate in sign along the poles, or so that their partial sums do (the sums with the
    most zeros)."""
    n = draw(st.integers(2, 6))
    log_lo, log_hi = math.log(1e-3), math.log(2.0)
    gap = -math.log1p(-1.001e-3)  # consecutive magnitudes a < b: (b - a) / b > 1e-3
    slack = log_hi - log_lo - (n - 1) * gap
    # sorted offsets in [0, 1] spread the slack; equal ones leave exactly the minimal gap
    cuts = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    magnitudes = [min(math.exp(log_lo + slack * cuts[k] + k * gap), 2.0) for k in range(n)]
    poles = [-m for m in draw(st.permutations(magnitudes))]
    slowest_first = np.argsort(poles)[::-1]
    shape = draw(st.sampled_from(["random", "alternating", "alternating partial sums"]))
    event(f"coefficients: {shape}")
    coef = [0.0] * n
    if shape == "alternating partial sums":
        # partial sums A_k of alternating sign: the bound is n - 1, c_k = A_k - A_{k-1}
        sums = draw(st.lists(st.floats(0.01, 5.0), min_size=n, max_size=n))
        first = draw(st.sampled_from([-1.0, 1.0]))
        previous = 0.0
        for k, m in enumerate(slowest_first):
            partial = first * (-1.0) ** k * sums[k]
            coef[m] = partial - previous
            previous = partial
    else:
        sizes = draw(st.lists(st.floats(1e-3, 10.0), min_size=n, max_size=n))
        if shape == "alternating":
            first = draw(st.sampled_from([-1.0, 1.0]))
            signs = [first * (-1.0) ** k for k in range(n)]
        else:
            signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n))
        for k, m in enumerate(slowest_first):
            coef[m] = signs[k] * sizes[k]
    return np.array(coef, dtype=np.float64), np.array(poles, dtype=np.float64)


# Dense samples of t in (0, 200]: log-spaced to resolve the fast start, linear for the rest.
SAMPLES = np.unique(
    np.concatenate([np.geomspace(1e-6, 200.0, 100_000), np.linspace(0, 200, 100_001)[1:]])
)


def _sampled_sign_changes(coef: np.ndarray, lam: np.ndarray, t: np.ndarray) -> int:
    """Sign changes of sum_m coef_m exp(lam_m t) over the samples, counting only values clearly
    above rounding (|value| > 1e-9 times the sum of the terms' sizes)."""
    terms = coef[None, :] * np.exp(np.outer(t, lam))
    value = terms.sum(axis=1)
    size = np.abs(terms).sum(axis=1)
    signs = np.sign(value[np.abs(value) > 1e-9 * size])
    return int(np.count_nonzero(signs[1:] != signs[:-1]))


def _bounds(coefs: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """The kernel's bounds for sums given one per column of (n, lanes) arrays, all lanes in
    one call, as the summary kernel calls it."""
    coefs = np.ascontiguousarray(coefs, dtype=np.float64)
    lams = np.ascontiguousarray(lams, dtype=np.float64)
    n, lanes = coefs.shape
    rank = np.empty((n, lanes))
    _ranks_lanes(lams, n, lanes, rank)
    changes = np.empty(lanes)
    _sign_changes_lanes(coefs, rank, n, lanes, changes, np.empty((4, lanes)))
    return changes


def _sign_changes(coef, lam, t=0.0) -> int:
    """The bound on the zeros beyond t of one sum: that of the sum shifted to t."""
    return int(_bounds((coef * np.exp(lam * t))[:, None], lam[:, None])[0])


def _order(lam: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.argsort(-lam, kind="stable"), dtype=np.int64)


@settings(max_examples=100, deadline=None)
@given(st.lists(exponential_sums(), min_size=1, max_size=9))
def test_rule_of_signs_bounds_the_sign_changes_of_an_exponential_sum(cases):
    """Sums of different lengths side by side in lanes, the shorter ones padded with zero
    coefficients (as modes a patient's output does not carry): each lane's bound is its sum's
    alone, and covers the sum's sign changes."""
    n = max(lam.shape[0] for _, lam in cases)
    coefs = np.zeros((n, len(cases)))
    lams = np.empty((n, len(cases)))
    for b, (coef, lam) in enumerate(cases):
        coefs[: lam.shape[0], b] = coef
        lams[:, b] = -5.0 - np.arange(n)  # padding: distinct poles, no coefficient
        lams[: lam.shape[0], b] = lam
    together = _bounds(coefs, lams)
    for b, (coef, lam) in enumerate(cases):
        bound = _sign_changes(coef, lam)
        sampled = _sampled_sign_changes(coef, lam, SAMPLES)
        note(f"lane {b}: bound {bound}, sampled sign changes {sampled}")
        event(f"bound {bound}, sampled {sampled}")
        assert together[b] == bound
        assert 0 <= bound <= lam.shape[0] - 1
        assert sampled <= bound


@settings(max_examples=100, deadline=None)
@given(exponential_sums(), st.floats(0.0, 50.0))
def test_rule_of_signs_from_a_shifted_origin(case, t0):
    """From t0 > 0 the bound of the sum shifted to t0 covers the zeros beyond t0."""
    coef, lam = case
    bound = _sign_changes(coef, lam, t0)
    sampled = _sampled_sign_changes(coef, lam, t0 + SAMPLES)
    note(f"bound {bound}, sampled sign changes {sampled}")
    event(f"bound {bound}, sampled {sampled}")
    assert sampled <= bound


def _isolate(coef: np.ndarray, lam: np.ndarray, delta: float):
    """The kernel's brackets of the zeros in (0, delta), as (lo, hi, sign just right of lo)."""
    wk = np.zeros((4, lam.shape[0]))
    wk[LAM], wk[EM], wk[DCOEF] = lam, np.expm1(lam * delta), coef
    n = lam.shape[0]
    lo, hi, side = np.empty(n), np.empty(n), np.empty(n)
    count = _isolate_kernel(wk, delta, n, _order(lam), lo, hi, side)
    return [(lo[k], hi[k], side[k]) for k in range(count)]


def _value(coef, lam, t):
    return float(np.sum(coef * np.exp(lam * t)))


@settings(max_examples=200, deadline=None)
@given(exponential_sums())
def test_isolation_brackets_every_zero_once(case):
    """Every sign change of a densely sampled sum falls in exactly one bracket, and each
    bracket holds a sign change: no zero missed, however close two zeros are."""
    coef, lam = case
    delta = 200.0
    brackets = _isolate(coef, lam, delta)
    note(f"brackets {brackets}")
    assert len(brackets) <= lam.shape[0] - 1
    for k, (lo, hi, side) in enumerate(brackets):
        assert 0.0 <= lo < hi <= delta
        if k:
            assert lo >= brackets[k - 1][1]  # in order, not overlapping
        inside = SAMPLES[(lo < SAMPLES) & (hi > SAMPLES)]
        if inside.size >= 2:
            values = coef[None, :] * np.exp(np.outer(inside, lam))
            total = values.sum(axis=1)
            size = np.abs(values).sum(axis=1)
            clear = total[np.abs(total) > 1e-9 * size]
            if clear.size:
                assert np.sign(clear[0]) == side or abs(clear[0]) < 1e-6 * size.max()
    terms = coef[None, :] * np.exp(np.outer(SAMPLES, lam))
    value = terms.sum(axis=1)
    clear = np.abs(value) > 1e-9 * np.abs(terms).sum(axis=1)
    t_clear, v_clear = SAMPLES[clear], value[clear]
    for k in np.flatnonzero(np.sign(v_clear[1:]) != np.sign(v_clear[:-1])):
        a, b = t_clear[k], t_clear[k + 1]
        hits = [br for br in brackets if br[0] <= b and br[1] >= a]
        assert hits, f"the sign change between {a} and {b} is in no bracket"


def test_isolation_separates_two_zeros_half_a_minute_apart():
    lam = np.array([-0.01, -0.1, -1.0])
    t1, t2 = 5.0, 5.5
    # c0 = 1; c1, c2 such that the sum vanishes at t1 and t2
    basis = np.exp(np.outer([t1, t2], lam[1:]))
    c12 = np.linalg.solve(basis, -np.exp(lam[0] * np.array([t1, t2])))
    coef = np.concatenate([[1.0], c12])
    brackets = _isolate(coef, lam, 1440.0)
    assert len(brackets) == 2
    for (lo, hi, _), t in zip(brackets, (t1, t2), strict=True):
        assert lo < t < hi
    assert brackets[0][1] <= brackets[1][0]


def test_rule_of_signs_counts_the_known_cases():
    """Hand-made sums with known zero counts: the bound is exact on them."""
    lam = np.array([-0.01, -0.1, -1.0])
    # all positive: no zero, no sign change
    assert _sign_changes(np.array([1.0, 2.0, 3.0]), lam) == 0
    # biexponential difference (oral absorption shape) exp(-0.01 t) - exp(-0.1 t): no zero in
    # t > 0 and partial sums 1, 0 -> the zero sum is rounding-level and skipped
    assert _sign_changes(np.array([1.0, -1.0, 0.0]), lam) == 0
    # 1 - 3 + 2.5: partial sums 1, -2, 0.5: two changes, and the sum has two zeros in t > 0
    coef = np.array([1.0, -3.0, 2.5])
    assert _sign_changes(coef, lam) == 2
    assert _sampled_sign_changes(coef, lam, SAMPLES) == 2
    # the poles' order decides, not the modes': poles given unsorted
    shuffled = np.array([-1.0, -0.01, -0.1])
    coef_shuffled = np.array([2.5, 1.0, -3.0])
    assert _sign_changes(coef_shuffled, shuffled) == 2
    # equal poles keep the modes' order (a stable sort)
    assert _sign_changes(np.array([1.0, -2.0, 3.0]), np.array([-0.1, -0.1, -0.1])) == 2


# ----------------------------------------------------------------------------------------------
# Summaries against dense evaluation

HORIZON = 720.0
STEP = 0.01  # dense grid step, minutes

ROUTES = [("ketamine", r) for r in ("iv", "im", "oral", "sublingual", "intranasal")] + [
    ("esketamine", r) for r in ("intranasal", "iv", "oral")
]
DOSE = st.tuples(
    st.floats(0.0, 300.0),  # start, min
    st.floats(1.0, 100.0),  # amount, mg
    st.sampled_from([0.0, 5.0, 40.0, 61.3]),  # IV duration, min (ignored off IV)
)
THRESHOLDS = st.tuples(*[st.floats(1.0, 150.0)] * 3)
# (drug and route, doses, a threshold per output, the seed of the three patients' variability)
HISTORIES = (
    st.sampled_from(ROUTES),
    st.lists(DOSE, min_size=1, max_size=4),
    THRESHOLDS,
    st.integers(0, 2**16),
)


def _history(drug: str, route: str, doses, seed: int):
    model = MODELS[drug]
    cov = Covariates(np.array([70.0, 52.0, 96.0]), np.array([40.0, 67.0, 30.0]))
    ind = model.individuals(route, cov, np.random.default_rng(seed))
    admin = tuple(
        Administration(
            s,
            a,
            d if route == "iv" else 0.0,
            k if (drug, route) == ("esketamine", "intranasal") else 0,
        )
        for k, (s, a, d) in enumerate(doses)
    )
    return decompose(ind.system), model.events(route, admin, ind)


def _varied_iv_patients(n: int, seed: int, weight_kg=(55.0, 95.0)):
    """n racemic-ketamine patients of varied weight and age, with variability: the model, the
    individuals, and the generator for further draws."""
    model = MODELS["ketamine"]
    rng = np.random.default_rng(seed)
    cov = Covariates(rng.uniform(*weight_kg, n), rng.uniform(20.0, 70.0, n))
    return model, model.individuals("iv", cov, rng), rng


def _dense_times(events: DoseEvents, horizon: float) -> np.ndarray:
    """A uniform grid plus every dose edge and the instant before it (the left limit of a
    bolus jump), so the trapezoid and the maximum see every jump and kink."""
    edges = np.concatenate(
        [events.start_min.ravel(), (events.start_min + events.duration_min[None, :]).ravel()]
    )
    edges = edges[(edges > 0.0) & (edges < horizon)]
    grid = np.arange(0.0, horizon + STEP / 2, STEP)
    grid[-1] = horizon
    return np.unique(np.concatenate([grid, edges, np.nextafter(edges, -np.inf)]))


def _one(modal, events, i):
    return modal.take(slice(i, i + 1)), events.take(slice(i, i + 1))


def _refined_max(modal, events, times, curve, output) -> float:
    """The dense maximum, refined on a much finer grid around the dense argmax."""
    k = int(np.argmax(curve))
    lo = times[max(k - 1, 0)]
    hi = times[min(k + 1, times.size - 1)]
    local = np.linspace(lo, hi, 2001)
    return max(float(curve.max()), float(evaluate(modal, events, local, output).max()))


def _ambiguous(curve: np.ndarray, thr: float) -> bool:
    """Whether the grid cannot settle the threshold crossings: a run above (or below) of at
    most two samples between crossings, or a local extremum within 1e-4 relative of the
    threshold (a crossing pair narrower than the step could hide there)."""
    above = curve > thr
    flips = np.flatnonzero(above[1:] != above[:-1])
    if flips.size >= 2 and np.min(np.diff(flips)) <= 2:
        return True
    inner = curve[1:-1]
    extremum = ((inner >= curve[:-2]) & (inner >= curve[2:])) | (
        (inner <= curve[:-2]) & (inner <= curve[2:])
    )
    return bool(np.any(extremum & (np.abs(inner - thr) <= 1e-4 * thr)))


@settings(max_examples=40, deadline=None)
@given(*HISTORIES)
# the metabolite after four IM doses: its slope turns down, up and down again within 10 min
# of the last dose (two critical points that a 10-min scan missed)
@example(
    ("ketamine", "im"),
    [(0.0, 1.0, 0.0), (51.0, 100.0, 0.0), (135.0, 28.0, 0.0), (171.0, 5.0, 0.0)],
    (1.0, 1.0, 1.0),
    26576,
)
def test_summaries_agree_with_dense_evaluation(drug_route, doses, thresholds, seed):
    drug, route = drug_route
    modal, events = _history(drug, route, doses, seed)
    outputs = (0, 1, 2)
    summary = summarize(modal, events, outputs, thresholds, HORIZON)
    n = modal.n_patients
    assert summary.shape == (n, len(outputs), len(SUMMARY_FIELDS))
    times = _dense_times(events, HORIZON)
    dt = np.diff(times)
    for q, o in enumerate(outputs):
        thr = thresholds[q]
        curves = evaluate(modal, events, times, o)
        for i in range(n):
            c = curves[i]
            s = summary[i, q]
            one_modal, one_events = _one(modal, events, i)
            where = f"{drug} {route} doses {doses} patient {i} output {o} threshold {thr}"
            note(f"{where}: summary {dict(zip(SUMMARY_FIELDS, s, strict=True))}")
            # Cmax: the true maximum, never below any dense sample
            dense_max = _refined_max(one_modal, one_events, times, c, o)
            assert s[CMAX] >= dense_max * (1 - 1e-9), where
            assert s[CMAX] == pytest.approx(dense_max, rel=1e-6), where
            # Tmax: inside the horizon, and the curve there is Cmax
            assert 0.0 <= s[TMAX] <= HORIZON, where
            at_tmax = evaluate(one_modal, one_events, np.array([s[TMAX]]), o)[0, 0]
            assert at_tmax == pytest.approx(s[CMAX], rel=1e-9), where
            # AUC to the horizon against the trapezoid (jumps resolved by the edge samples)
            assert s[AUC_HORIZON] == pytest.approx(np.trapezoid(c, times), rel=1e-4), where
            assert s[AUC_INF] >= s[AUC_HORIZON] * (1 - 1e-9), where
            assert s[HALF_LIFE] > 0.0, where
            inner = c[1:-1]
            peaks = int(np.count_nonzero((inner > c[:-2]) & (inner >= c[2:])))
            event(f"dense local maxima: {min(peaks, 3)}{'+' if peaks >= 3 else ''}")
            if _ambiguous(c, thr):
                event("threshold assertions skipped: crossing narrower than the grid")
                continue
            above = c > thr
            n_cross = int(np.count_nonzero(above[1:] != above[:-1]))
            event(f"threshold crossings: {min(n_cross, 4)}{'+' if n_cross >= 4 else ''}")
            # time above: left-point rule on the grid, off by at most a step per crossing
            dense_above = float(np.sum(dt[above[:-1]]))
            assert abs(s[TIME_ABOVE] - dense_above) <= 1.5 * STEP * (n_cross + 1), where
            # time to fall below: NaN exactly when still above at the horizon
            if abs(c[-1] - thr) <= 1e-9 * thr:
                continue
            if c[-1] > thr:
                assert math.isnan(s[TIME_TO_BELOW]), where
            else:
                assert not math.isnan(s[TIME_TO_BELOW]), where
                if above.any():
                    last = times[np.flatnonzero(above)[-1]]
                    assert abs(s[TIME_TO_BELOW] - last) <= 2 * STEP, where
                else:
                    assert s[TIME_TO_BELOW] == 0.0, where
                    assert s[TIME_ABOVE] == 0.0, where


@settings(max_examples=30, deadline=None)
@given(*HISTORIES)
def test_twice_the_dose_twice_the_exposure(drug_route, doses, thresholds, seed):
    drug, route = drug_route
    modal, events = _history(drug, route, doses, seed)
    outputs = (0, 1, 2)
    one = summarize(modal, events, outputs, thresholds, HORIZON)
    two = summarize(modal, events.scaled(2.0), outputs, tuple(2.0 * t for t in thresholds), HORIZON)
    for field in (CMAX, AUC_INF, AUC_HORIZON):
        np.testing.assert_allclose(two[..., field], 2.0 * one[..., field], rtol=1e-9, atol=0)
    np.testing.assert_allclose(two[..., TMAX], one[..., TMAX], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(two[..., TIME_ABOVE], one[..., TIME_ABOVE], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        two[..., TIME_TO_BELOW], one[..., TIME_TO_BELOW], rtol=0, atol=1e-6, equal_nan=True
    )
    np.testing.assert_array_equal(two[..., HALF_LIFE], one[..., HALF_LIFE])


# ----------------------------------------------------------------------------------------------
# Bad input


@pytest.fixture(scope="module")
def iv_history():
    return _history("ketamine", "iv", [(0.0, 35.0, 40.0)], 3)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"horizon_min": 0.0}, "horizon"),
        ({"horizon_min": -60.0}, "horizon"),
        ({"horizon_min": math.nan}, "horizon"),
        ({"thresholds_ng_per_ml": (20.0,)}, "threshold"),
        ({"thresholds_ng_per_ml": (20.0, 20.0, 20.0)}, "threshold"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(iv_history, kwargs, parameter):
    modal, events = iv_history
    args = {
        "outputs": (0, 1),
        "thresholds_ng_per_ml": (20.0, 20.0),
        "horizon_min": 720.0,
        **kwargs,
    }
    with pytest.raises(PKInputError) as info:
        summarize(modal, events, **args)
    assert info.value.parameter == parameter


def test_a_negative_dose_start_is_refused():
    modal, events = _history("ketamine", "iv", [(0.0, 35.0, 40.0), (-5.0, 10.0, 0.0)], 3)
    with pytest.raises(PKInputError) as info:
        summarize(modal, events, (0,), (20.0,), 720.0)
    assert info.value.parameter == "start"
    # the same history from time 0 is accepted
    modal, events = _history("ketamine", "iv", [(0.0, 35.0, 40.0), (5.0, 10.0, 0.0)], 3)
    assert summarize(modal, events, (0,), (20.0,), 720.0).shape == (3, 1, len(SUMMARY_FIELDS))


def test_a_block_with_more_roots_than_its_storage_is_solved_patient_by_patient():
    """Three IV infusions 8 h apart, each crossing both analytes' thresholds up and down,
    with the metabolite's peak between: five roots per dose, where a block's task storage
    holds four per dose and patient. The kernel falls back to one patient at a time for such
    a block, and every patient's summary equals the one computed alone."""
    n = 300
    model, ind, _ = _varied_iv_patients(n, 11, (60.0, 80.0))
    admin = tuple(Administration(480.0 * k, 35.0, 40.0) for k in range(3))
    modal, events = decompose(ind.system), model.events("iv", admin, ind)
    thresholds = (50.0, 45.0)
    together = summarize(modal, events, (0, 1), thresholds, 1440.0)
    for i in range(0, n, 7):
        one = slice(i, i + 1)
        alone = summarize(modal.take(one), events.take(one), (0, 1), thresholds, 1440.0)
        np.testing.assert_array_equal(together[i], alone[0])


def test_a_block_whose_doses_start_at_different_times_matches_each_patient_alone():
    """A block works out its intervals between dose edges once when every patient's doses
    start at the same times, and patient by patient otherwise. Here the second infusion
    starts at one of three times, or is not given (amount 0), so the block takes the
    per-patient way, while each patient alone takes the shared one: both must agree."""
    n = 60
    _, ind, rng = _varied_iv_patients(n, 5)
    modal = decompose(ind.system)
    second_start = rng.choice([60.0, 90.0, 150.0], n)
    second_amount = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(10.0, 40.0, n))
    events = DoseEvents(
        np.array([0, 0], dtype=np.int64),
        np.column_stack([np.zeros(n), second_start]),
        np.array([40.0, 20.0]),
        np.column_stack([rng.uniform(25.0, 45.0, n), second_amount]),
    )
    thresholds = (60.0, 40.0)
    together = summarize(modal, events, (0, 1), thresholds, 1440.0)
    for i in range(n):
        one = slice(i, i + 1)
        alone = summarize(modal.take(one), events.take(one), (0, 1), thresholds, 1440.0)
        np.testing.assert_array_equal(together[i], alone[0])
    # and the shared way agrees with the per-patient one where the block is uniform
    same = np.flatnonzero((second_start == 90.0) & (second_amount > 0.0))
    part = summarize(modal.take(same), events.take(same), (0, 1), thresholds, 1440.0)
    np.testing.assert_array_equal(part, together[same])


def test_summaries_written_into_a_store_at_an_offset_match_the_returned_ones():
    """A population's blocks write into one field-major store; the patients before and after
    the block are left as they were, and a store of the wrong shape is refused."""
    n = 40
    model, ind, _ = _varied_iv_patients(n, 8)
    modal = decompose(ind.system)
    events = model.events("iv", (Administration(0.0, 40.0, 35.0),), ind)
    thresholds = (50.0, 40.0)
    alone = summarize(modal, events, (0, 1), thresholds, 1440.0)
    store = np.full((2, len(SUMMARY_FIELDS), n + 25), -1.0)
    view = summarize(modal, events, (0, 1), thresholds, 1440.0, out=store, offset=10)
    np.testing.assert_array_equal(view, alone)
    np.testing.assert_array_equal(store[:, :, 10 : 10 + n].transpose(2, 0, 1), alone)
    assert np.all(store[:, :, :10] == -1.0) and np.all(store[:, :, 10 + n :] == -1.0)
    for bad_store, offset in (
        (store, 26),  # runs past the end
        (store[:, :, ::2], 0),  # not contiguous
        (np.zeros((1, len(SUMMARY_FIELDS), 100)), 0),  # one output, two asked for
    ):
        with pytest.raises(ValueError, match="out must be"):
            summarize(modal, events, (0, 1), thresholds, 1440.0, out=bad_store, offset=offset)
