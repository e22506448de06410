"""Summaries of concentration curves from the closed form, with no time grid: Cmax, Tmax, AUC,
time above a threshold, time to fall below it, terminal half-life.

Between two consecutive dose edges (a dose starting or ending) every input rate u is constant,
so each modal state (pole l) moves as z(a + t) = z(a) + w expm1(l t), w = z(a) + u / l, and a
concentration is f(a + t) = f(a) + sum_m alpha_m expm1(l_m t), alpha_m = R_m w_m: a constant
plus a sum of exponentials, integrated analytically.

Critical points (f' = 0) are isolated without sampling by a rule of signs. f'(t) =
sum_m d_m exp(l_m t), d_m = alpha_m l_m; with the poles in decreasing order and A_j the partial
sums of the d's, Abel summation gives f'(t) / t = integral of H(s) exp(-s t) ds for t > 0,
where the step function H takes the values A_j in order (H = A_last beyond the last pole).
The Laplace kernel is variation-diminishing (Descartes' rule for Laplace transforms), so f' has
at most as many zeros in t > 0 as the A_j have sign changes (Laguerre's rule). Where that bound
is 0 or 1 (every single-dose curve of the models, and most histories) the signs of f' at the
interval's ends say whether it holds a critical point; elsewhere the critical points are
isolated exactly by eliminating one exponential at a time (`_isolate`): no scan, no step that
two close critical points could hide in.

Between consecutive critical points f is monotone, so every threshold crossing is bracketed
exactly. Every root is solved by `roots.py`, for all the patients of a block at once in SIMD
lanes: Halley steps on log P - log N, where P and N are the positive and negative parts of the
exponential sum.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.roots import (
    MODE_COEF,
    MODE_LEVEL,
    MODE_POLE,
    N_MODE_ROWS,
    N_TASK_ROWS,
    NOISE,
    START_GUESS,
    START_HI,
    START_LO,
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
from ketaflow.pharmacology.solve import DoseEvents, ModalSystem, event_arrays
from ketaflow.pharmacology.vecmath import expm1_lane

# Columns of the summary array returned by `summarize`.
SUMMARY_FIELDS = (
    "cmax_ng_per_ml",
    "tmax_min",
    "auc_inf_ng_min_per_ml",
    "auc_horizon_ng_min_per_ml",
    "time_above_min",
    "time_to_below_min",
    "terminal_half_life_min",
)
CMAX, TMAX, AUC_INF, AUC_HORIZON, TIME_ABOVE, TIME_TO_BELOW, HALF_LIFE = range(7)


# 1 / (k + 2)! for the series of (exp(x) - 1 - x) / x^2
_PHI2_SERIES = tuple(1.0 / math.factorial(k + 2) for k in range(10))


@njit(cache=True, inline="always", error_model="numpy")
def _expm1_integral(x, em, delta):  # pragma: no cover - compiled
    """Integral of expm1(x t / delta) for t from 0 to delta (em = expm1(x)): delta times
    (em - x) / x, by its series where that difference would cancel. Branch-free, for loops
    over patients that vectorise."""
    small = abs(x) <= 0.1
    xs = x if small else 0.0
    # Horner on sum_k x^k / (k + 2)!: ten terms reach rounding for |x| <= 0.1
    total = 0.0
    for k in range(9, -1, -1):
        total = total * xs + _PHI2_SERIES[k]
    x_safe = 1.0 if small else x
    return delta * xs * total if small else delta * (em - x) / x_safe


# Rows of the per-interval work array `wk` (one row per quantity, one column per mode), so
# that the helpers take one array for all of them.
LAM, EM, ALPHA, DCOEF = range(4)


@njit(cache=True, inline="always", error_model="numpy")
def _sign_from(value, size, slope, slope_size, right):  # pragma: no cover - compiled
    """The sign (1.0, -1.0 or 0.0) of a sum just right (or left) of a point, from its value
    and slope there and the sums of their terms' magnitudes: the value's sign unless it is
    rounding noise, then the slope's (flipped on the left); 0 if both are noise. Branch-free,
    for loops over lanes."""
    value_sign = 1.0 if value > 0.0 else -1.0
    slope_sign = 1.0 if slope > 0.0 else -1.0
    slope_sign = slope_sign if right else -slope_sign
    flat = (abs(slope) <= NOISE * slope_size) | (slope == 0.0)
    from_slope = 0.0 if flat else slope_sign
    return value_sign if abs(value) > NOISE * size else from_slope


MANY = -1.0  # a bracket count: the rule of signs allows several critical points


@njit(cache=True, error_model="numpy")
def _ranks_lanes(lam, n, nb, rank):  # pragma: no cover - compiled
    """rank[m, b]: the place of mode m in lane b with the poles in decreasing order (slowest
    first), ties in mode order."""
    for m in range(n):
        for b in range(nb):
            rank[m, b] = 0.0
        for j in range(n):
            if j == m:
                continue
            for b in range(nb):
                before = (lam[j, b] > lam[m, b]) | ((lam[j, b] == lam[m, b]) & (j < m))
                rank[m, b] += 1.0 if before else 0.0


@njit(cache=True, error_model="numpy")
def _sign_changes_lanes(coef, rank, n, nb, changes, work):  # pragma: no cover - compiled
    """Laguerre's bound on the zeros in t > 0 of sum_m coef[m, b] exp(lam_m t), lane by
    lane: the sign changes of the partial sums of the coefficients taken in `rank` order,
    skipping zero coefficients and partial sums at rounding level. `work` (4, nb)."""
    scale = work[0]
    partial = work[1]
    sign = work[2]
    pick = work[3]
    for b in range(nb):
        scale[b] = 0.0
        partial[b] = 0.0
        sign[b] = 0.0
        changes[b] = 0.0
    for m in range(n):
        for b in range(nb):
            scale[b] += abs(coef[m, b])
    for place in range(n):
        # the coefficient at this place: exactly one mode has it, so the sum is that
        # coefficient exactly, and the partial sums are added in the scalar order
        for b in range(nb):
            pick[b] = 0.0
        for m in range(n):
            for b in range(nb):
                pick[b] += coef[m, b] if rank[m, b] == place else 0.0
        for b in range(nb):
            partial[b] += pick[b]
            clear = (pick[b] != 0.0) & (abs(partial[b]) > NOISE * scale[b])
            s = 1.0 if partial[b] > 0.0 else -1.0
            flip = clear & (sign[b] != 0.0) & (s != sign[b])
            changes[b] += 1.0 if flip else 0.0
            sign[b] = s if clear else sign[b]


@njit(cache=True, error_model="numpy")
def _end_sign_lanes(dcoef, lam, em, at_end, n, nb, out, work):  # pragma: no cover - compiled
    """Lane by lane, the sign (`_sign_from`) of sum_m dcoef[m, b] exp(lam_m t) just right of
    t = 0 (every exp is 1) or, if at_end, just left of t = delta (exp = 1 + em). `work`
    (4, nb)."""
    value = work[0]
    size = work[1]
    slope = work[2]
    slope_size = work[3]
    for b in range(nb):
        value[b] = 0.0
        size[b] = 0.0
        slope[b] = 0.0
        slope_size[b] = 0.0
    for m in range(n):
        for b in range(nb):
            e = dcoef[m, b] * (1.0 + em[m, b]) if at_end else dcoef[m, b]
            value[b] += e
            size[b] += abs(e)
            slope[b] += lam[m, b] * e
            slope_size[b] += abs(lam[m, b] * e)
    for b in range(nb):
        out[b] = _sign_from(value[b], size[b], slope[b], slope_size[b], not at_end)


@njit(cache=True, error_model="numpy")
def _slope_brackets_lanes(
    dcoef, lam, em, mixed, rank, n, nb, count, side, work
):  # pragma: no cover - compiled
    """Per lane, the critical points of an interval [0, delta] from the slope's coefficients
    dcoef[m, b] (em[m, b] = expm1(lam delta)): count[b] 0 or 1 where the rule of signs allows
    at most one (then the slope's signs just inside the ends decide, side[b] the one at 0),
    MANY where it allows more; 0 where the coefficients have one sign (not mixed).
    `work` (5, nb)."""
    _sign_changes_lanes(dcoef, rank, n, nb, count, work)
    s_hi = work[4]
    _end_sign_lanes(dcoef, lam, em, False, n, nb, side, work)
    _end_sign_lanes(dcoef, lam, em, True, n, nb, s_hi, work)
    for b in range(nb):
        s_lo = side[b]
        one = 1.0 if (s_lo != 0.0) & (s_hi[b] != 0.0) & (s_lo != s_hi[b]) else 0.0
        several = MANY if count[b] > 1.0 else one
        count[b] = several if mixed[b] else 0.0


@njit(cache=True, inline="always", error_model="numpy")
def _scaled_side_sign(levels, row, n, t, right):  # pragma: no cover - compiled
    """The sign (`_sign_from`) of sum_m levels[row, m] exp(lam_m x) just right (or left) of
    x = t, computed as the sum times exp(-p t), p its slowest pole: the same sign, without
    the underflow that zeroes every term of a long interval's far end."""
    slowest = -math.inf
    for m in range(n):
        if levels[row, m] != 0.0:
            slowest = max(slowest, levels[LAM, m])
    value = 0.0
    size = 0.0
    slope = 0.0
    slope_size = 0.0
    for m in range(n):
        lm = levels[LAM, m]
        c = levels[row, m]
        if c == 0.0:
            continue
        e = c * math.exp((lm - slowest) * t)
        value += e
        size += abs(e)
        slope += lm * e
        slope_size += abs(lm * e)
    return _sign_from(value, size, slope, slope_size, right)


@njit(cache=True, error_model="numpy")
def _isolate(wk, delta, n, order, out_lo, out_hi, out_side):  # pragma: no cover - compiled
    """Brackets of every zero in (0, delta) of f'(t) = sum_m wk[DCOEF, m] exp(lam_m t), one
    zero in each (written to out_*; returns their number), for when the rule of signs allows
    several. Zeros of S_0 = f' are separated by those of S_1 = exp(p t) d/dt (exp(-p t) S_0),
    p the slowest pole: a sum over the other poles, with coefficients d_m (lam_m - p). So the
    zeros are found level by level from S_(k-1), which has one term and none, up: each level's
    zeros split (0, delta) into pieces where the level above is monotone once multiplied by a
    positive exponential, so its signs at a piece's ends say whether the piece holds a zero.
    Levels below the top are solved here; the top level's brackets go back to the caller.
    A zero of even multiplicity (a slope that touches zero without changing sign) is no
    extremum and is not reported."""
    sel = np.empty(n, dtype=np.int64)  # modes with a nonzero coefficient, slowest first
    n_sel = 0
    for j in range(n):
        if wk[DCOEF, order[j]] != 0.0:
            sel[n_sel] = order[j]
            n_sel += 1
    if n_sel <= 1:
        return 0
    # row LAM as in wk, then level j in row 1 + j
    levels = np.zeros((1 + n_sel, n))
    for m in range(n):
        levels[LAM, m] = wk[LAM, m]
        levels[1, m] = wk[DCOEF, m]
    for j in range(n_sel - 1):
        p = wk[LAM, sel[j]]
        for m in range(n):
            levels[2 + j, m] = levels[1 + j, m] * (wk[LAM, m] - p)
    modes = np.zeros((n, N_MODE_ROWS, n))
    scalars = np.zeros((n, N_TASK_ROWS))
    points = np.empty(n)  # zeros of the level below, in increasing order
    n_points = 0
    for j in range(n_sel - 2, -1, -1):
        row = 1 + j
        n_br = 0
        t_prev = 0.0
        s_prev = _scaled_side_sign(levels, row, n, 0.0, True)
        for k in range(n_points + 1):
            t = points[k] if k < n_points else delta
            s_left = _scaled_side_sign(levels, row, n, t, False)
            if s_prev != 0 and s_left != 0 and s_prev != s_left:
                out_lo[n_br] = t_prev
                out_hi[n_br] = t
                out_side[n_br] = s_prev
                n_br += 1
            t_prev = t
            if k < n_points:
                s_prev = _scaled_side_sign(levels, row, n, t, True)
        if j == 0:
            return n_br
        for k in range(n_br):
            for m in range(n):
                modes[k, MODE_POLE, m] = wk[LAM, m]
                modes[k, MODE_COEF, m] = levels[row, m]
                modes[k, MODE_LEVEL, m] = 0.0
            scalars[k, TASK_CONST] = 0.0
            scalars[k, TASK_LO] = out_lo[k]
            scalars[k, TASK_HI] = out_hi[k]
            scalars[k, TASK_SIDE] = out_side[k]
            scalars[k, TASK_START] = START_LO
        solve_tasks(modes, scalars, 0, n_br, n)
        n_points = n_br
        for k in range(n_br):
            points[k] = scalars[k, TASK_ROOT]
    return 0


INPUT_NONE, INPUT_BOLUS, INPUT_RATE = range(3)  # what a dose event gives over an interval


@njit(cache=True, inline="always", error_model="numpy")
def _intervals(i, ev_start, ev_dur, ev_amt, horizon, edges, starts, lens, kind):  # pragma: no cover
    """Patient i's intervals between dose edges (a dose starting or ending) inside
    (0, horizon): their starts and lengths, and kind[k, e], what event e gives over interval
    k (INPUT_BOLUS: a bolus at its start; INPUT_RATE: an infusion over all of it). Returns
    their number."""
    n_ev = ev_start.shape[1]
    n_edges = 0
    edges[n_edges] = 0.0
    n_edges += 1
    for e in range(n_ev):
        if ev_amt[i, e] == 0.0:
            continue
        s0 = ev_start[i, e]
        if 0.0 < s0 < horizon:
            edges[n_edges] = s0
            n_edges += 1
        if ev_dur[e] > 0.0 and 0.0 < s0 + ev_dur[e] < horizon:
            edges[n_edges] = s0 + ev_dur[e]
            n_edges += 1
    edges[n_edges] = horizon
    n_edges += 1
    for a_ in range(1, n_edges):  # insertion sort: a handful of edges
        key = edges[a_]
        b_ = a_ - 1
        while b_ >= 0 and edges[b_] > key:
            edges[b_ + 1] = edges[b_]
            b_ -= 1
        edges[b_ + 1] = key
    n_k = 0
    for k_ in range(n_edges - 1):
        a = edges[k_]
        delta = edges[k_ + 1] - a
        if delta <= 0.0:
            continue  # a repeated edge: its boluses are given with the next interval
        starts[n_k] = a
        lens[n_k] = delta
        for e in range(n_ev):
            given = INPUT_NONE
            if ev_amt[i, e] != 0.0:
                s0 = ev_start[i, e]
                d = ev_dur[e]
                if d <= 0.0:
                    if s0 == a:
                        given = INPUT_BOLUS
                elif s0 <= a and s0 + d >= a + delta:
                    given = INPUT_RATE
            kind[n_k, e] = given
        n_k += 1
    return n_k


# nogil: the server's other requests go on while a simulation runs
@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _summarize(
    poles,
    residues,
    mode_path,
    mode_slot,
    ev_path,
    ev_start,
    ev_dur,
    ev_amt,
    outputs,
    thresholds,
    horizon,
    out,
    offset,
):  # pragma: no cover - compiled
    n = poles.shape[2]
    block = 256  # patients per task: work arrays allocated once per task
    for blk in prange((n + block - 1) // block):
        hi = min(n, (blk + 1) * block)
        size = hi - blk * block
        i = blk * block
        while i < hi:
            end = min(hi, i + size)
            ok = _summarize_block(
                i,
                end,
                poles,
                residues,
                ev_path,
                ev_start,
                ev_dur,
                ev_amt,
                outputs,
                thresholds,
                horizon,
                out,
                offset,
                mode_path,
                mode_slot,
            )
            if ok or size == 1:
                i = end
            else:
                size = 1  # more roots than the block had room for: one patient at a time


# contract: fused multiply-adds in the sums over modes
@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _summarize_block(
    i0,
    i1,
    poles,
    residues,
    ev_path,
    ev_start,
    ev_dur,
    ev_amt,
    outputs,
    thresholds,
    horizon,
    out,
    offset,
    mode_path,
    mode_slot,
):  # pragma: no cover - compiled
    """Patients i0 .. i1 - 1 in three passes, so that every root is solved in SIMD lanes with
    roots of other patients (`roots.py`):
    1. per patient and interval between dose edges, for all the block's patients at once in
       lanes: the closed form, AUC, and brackets of the critical points of every output; the
       critical points are then solved together, output by output with the modes it carries;
    2. the levels at the ends and critical points: Cmax, and brackets of the threshold
       crossings, listed in order; the crossings are then solved together, output by output;
    3. the list of crossings, now with their times: time above, time to fall below.
    Work arrays are allocated once per block. Returns False, having written nothing usable,
    when the block has more roots than its task storage holds (the caller then runs it patient
    by patient)."""
    n_modes = mode_path.shape[0]
    n_out = outputs.shape[0]
    n_ev = ev_path.shape[0]
    nb = i1 - i0
    n_iv = 2 * n_ev + 1  # intervals between dose edges, at most
    wk = np.empty((4, n_modes))
    lam = wk[LAM]
    em = wk[EM]
    alpha = wk[ALPHA]
    dcoef = wk[DCOEF]
    order = np.empty(n_modes, dtype=np.int64)
    edges = np.empty(2 * n_ev + 2)
    iv_len = np.empty(n_iv)  # one patient's interval lengths
    kind = np.empty((n_iv, n_ev), dtype=np.int64)  # INPUT_* of each event over each interval
    bracket_lo = np.empty(n_modes)  # brackets of the critical points of one interval
    bracket_hi = np.empty(n_modes)
    bracket_side = np.empty(n_modes)
    iv_count = np.zeros(nb, dtype=np.int64)
    iv_start = np.empty((nb, n_iv))
    cp_first = np.empty((nb, n_iv, n_out), dtype=np.int64)  # task of its first critical point
    cp_count = np.empty((nb, n_iv, n_out), dtype=np.int64)
    # Per mode, interval and output, one patient per lane (the last index): the loops over
    # patients vectorise. Intervals beyond a patient's last have length 0, and no input.
    lam_l = np.empty((n_modes, nb))
    res_l = np.empty((n_out, n_modes, nb))
    len_l = np.zeros((n_iv, nb))
    bolus_l = np.zeros((n_iv, n_modes, nb))  # amount given into the mode at the start
    rate_l = np.zeros((n_iv, n_modes, nb))  # infusion rate into the mode's path
    em_l = np.empty((n_iv, n_modes, nb))  # expm1(lam delta)
    integ_l = np.empty((n_iv, n_modes, nb))  # and its integral over the interval
    z_l = np.zeros((n_modes, nb))  # modal states at the interval's start
    w_l = np.empty((n_modes, nb))
    steady_l = np.empty((n_modes, nb))  # input rate / pole: minus the mode's steady state
    alpha_l = np.empty((n_iv, n_out, n_modes, nb))
    const_l = np.empty((n_iv, n_out, nb))
    first_l = np.empty((n_iv, n_out, nb))  # level at the interval's start
    last_l = np.empty((n_iv, n_out, nb))  # and at its end
    mixed_l = np.empty((n_iv, n_out, nb), dtype=np.bool_)  # slope coefficients of both signs
    rank_l = np.empty((n_modes, nb))  # place of each pole, decreasing
    dcoef_l = np.empty((n_modes, nb))  # slope coefficients of one interval and output
    count_l = np.empty((n_iv, n_out, nb))  # critical points: 0, 1 or MANY
    side_l = np.empty((n_iv, n_out, nb))  # the slope's sign just right of the start
    lane_work = np.empty((5, nb))
    auc_h = np.zeros((n_out, nb))
    f_a = np.empty(nb)
    const = np.empty(nb)
    auc = np.empty(nb)
    f_b = np.empty(nb)
    d_min = np.empty(nb)
    d_max = np.empty(nb)
    # room for every root of one patient, or for the usual few per interval and output of
    # each: the caller runs a block that needs more patient by patient
    capacity = max(nb * n_iv * n_out, n_iv * n_out * 2 * n_modes)
    modes = np.empty((capacity, N_MODE_ROWS, n_modes))
    scalars = np.empty((capacity, N_TASK_ROWS))
    n_tasks = 0
    n_carried = np.empty(n_out, dtype=np.int64)  # modes each output carries (a prefix)
    crit_from = np.empty(n_out + 1, dtype=np.int64)  # its critical points' tasks from here
    cross_from = np.empty(n_out + 1, dtype=np.int64)  # and its crossings'
    # the crossings of the threshold in order, output by output and patient by patient: an
    # interval's start plus the root of task event_task (or, -1, plus nothing: a bolus's)
    event_capacity = capacity + nb * n_out * n_iv  # room for a bolus crossing per interval
    event_at = np.empty(event_capacity)
    event_task = np.empty(event_capacity, dtype=np.int64)
    event_up = np.empty(event_capacity, dtype=np.bool_)
    events_from = np.empty(n_out * nb + 1, dtype=np.int64)  # first event of (output, patient)

    # --- pass 1a: poles and residues into lanes; the intervals between dose edges and the
    # inputs over each, once for the block when its patients' doses start at the same times
    # (the usual case: amounts may differ), else patient by patient
    for m in range(n_modes):
        path = mode_path[m]
        slot = mode_slot[m]
        for b in range(nb):
            lam_l[m, b] = poles[path, slot, i0 + b]
        for q in range(n_out):
            o = outputs[q]
            for b in range(nb):
                res_l[q, m, b] = residues[path, o, slot, i0 + b]
    # the modes each output carries: a prefix of the mode order (the parent's come before the
    # metabolite's), up to the last with a residue in any patient of the block; its root
    # tasks are solved with those modes only
    for q in range(n_out):
        n_carried[q] = 0
        for m in range(n_modes):
            nonzero = False
            for b in range(nb):
                nonzero = nonzero | (res_l[q, m, b] != 0.0)
            if nonzero:
                n_carried[q] = m + 1
    uniform = True
    for e in range(n_ev):
        start_ref = ev_start[i0, e]
        given_ref = ev_amt[i0, e] != 0.0
        for b in range(nb):
            same = (ev_start[i0 + b, e] == start_ref) & ((ev_amt[i0 + b, e] != 0.0) == given_ref)
            uniform = uniform & same
    if uniform:
        n_k = _intervals(i0, ev_start, ev_dur, ev_amt, horizon, edges, iv_start[0], iv_len, kind)
        for b in range(nb):
            iv_count[b] = n_k
            for k in range(n_k):
                iv_start[b, k] = iv_start[0, k]
        for k in range(n_k):
            for b in range(nb):
                len_l[k, b] = iv_len[k]
            for e in range(n_ev):
                if kind[k, e] == INPUT_NONE:
                    continue
                into = bolus_l if kind[k, e] == INPUT_BOLUS else rate_l
                spread = ev_dur[e] if kind[k, e] == INPUT_RATE else 1.0
                for m in range(n_modes):
                    if mode_path[m] != ev_path[e]:
                        continue
                    for b in range(nb):
                        into[k, m, b] += ev_amt[i0 + b, e] / spread
    else:
        for b in range(nb):
            i = i0 + b
            n_k = _intervals(i, ev_start, ev_dur, ev_amt, horizon, edges, iv_start[b], iv_len, kind)
            iv_count[b] = n_k
            for k in range(n_k):
                len_l[k, b] = iv_len[k]
                for e in range(n_ev):
                    if kind[k, e] == INPUT_NONE:
                        continue
                    into = bolus_l if kind[k, e] == INPUT_BOLUS else rate_l
                    spread = ev_dur[e] if kind[k, e] == INPUT_RATE else 1.0
                    for m in range(n_modes):
                        if mode_path[m] == ev_path[e]:
                            into[k, m, b] += ev_amt[i, e] / spread
    n_used = 0  # intervals of the patient with the most
    for b in range(nb):
        n_used = max(n_used, iv_count[b])

    # --- pass 1b, every patient at once: the closed form over each interval, AUC, the
    # levels at its ends, and whether the slope's coefficients have both signs
    for k in range(n_used):
        for m in range(n_modes):
            for b in range(nb):
                delta = len_l[k, b]
                x = lam_l[m, b] * delta
                e_x = expm1_lane(x)
                em_l[k, m, b] = e_x
                integ_l[k, m, b] = _expm1_integral(x, e_x, delta)
                zz = z_l[m, b] + bolus_l[k, m, b]
                z_l[m, b] = zz
                st = rate_l[k, m, b] / lam_l[m, b]
                steady_l[m, b] = st
                w_l[m, b] = zz + st
        for q in range(n_out):
            for b in range(nb):
                f_a[b] = 0.0
                const[b] = 0.0
                auc[b] = 0.0
                f_b[b] = 0.0
                d_min[b] = 0.0
                d_max[b] = 0.0
            # the modes the output does not carry add nothing (their residues are 0 in every
            # lane): only their coefficients are written, as zeros, for the rule of signs
            for m in range(n_carried[q], n_modes):
                for b in range(nb):
                    alpha_l[k, q, m, b] = 0.0
            for m in range(n_carried[q]):
                for b in range(nb):
                    r = res_l[q, m, b]
                    al = r * w_l[m, b]
                    alpha_l[k, q, m, b] = al
                    dc = al * lam_l[m, b]
                    f_a[b] += r * z_l[m, b]
                    const[b] -= r * steady_l[m, b]
                    auc[b] += al * integ_l[k, m, b]
                    f_b[b] += al * em_l[k, m, b]
                    d_min[b] = min(d_min[b], dc)
                    d_max[b] = max(d_max[b], dc)
            for b in range(nb):
                auc_h[q, b] += f_a[b] * len_l[k, b] + auc[b]
                const_l[k, q, b] = const[b]
                first_l[k, q, b] = f_a[b]
                last_l[k, q, b] = f_a[b] + f_b[b]
                mixed_l[k, q, b] = (d_min[b] < 0.0) & (d_max[b] > 0.0)
        for m in range(n_modes):
            for b in range(nb):
                z_l[m, b] += w_l[m, b] * em_l[k, m, b]

    # AUC to infinity of every dose; terminal half-life: the slowest mode the output carries
    largest = f_a  # work arrays reused
    auc_inf = f_b
    slowest = d_min
    for q in range(n_out):
        for b in range(nb):
            largest[b] = 0.0
            auc_inf[b] = 0.0
            slowest[b] = 0.0
        for m in range(n_carried[q]):
            for b in range(nb):
                largest[b] = max(largest[b], abs(res_l[q, m, b]))
        for e in range(n_ev):
            for m in range(n_carried[q]):
                if mode_path[m] != ev_path[e]:
                    continue
                for b in range(nb):
                    amt = ev_amt[i0 + b, e]
                    r = res_l[q, m, b]
                    rate_m = -lam_l[m, b]
                    given = amt != 0.0
                    auc_inf[b] += amt * r / rate_m if given else 0.0
                    carried = given & (abs(r) > 1e-12 * largest[b])
                    slower = (slowest[b] == 0.0) | (rate_m < slowest[b])
                    slowest[b] = rate_m if carried & slower else slowest[b]
        for b in range(nb):
            out[q, AUC_HORIZON, offset + i0 + b] = auc_h[q, b]
            out[q, AUC_INF, offset + i0 + b] = auc_inf[b]
            out[q, HALF_LIFE, offset + i0 + b] = (
                math.log(2.0) / slowest[b] if slowest[b] > 0.0 else np.nan
            )

    # --- pass 1c: brackets of the critical points (zeros of f'). None where every
    # coefficient of f' has one sign; where the rule of signs allows at most one, the slope's
    # signs at the ends decide (no exp: exp(0) = 1 and exp(lam delta) = 1 + em): both for
    # every patient at once. Where it allows more, they are isolated exactly (_isolate),
    # patient by patient, as the tasks are written
    _ranks_lanes(lam_l, n_modes, nb, rank_l)
    for k in range(n_used):
        for q in range(n_out):
            any_mixed = False
            for b in range(nb):
                any_mixed = any_mixed | mixed_l[k, q, b]
            if not any_mixed:
                # one sign in every lane (a parent's rise during an infusion, its fall
                # after): no critical point in any, and no need of the rule of signs
                for b in range(nb):
                    count_l[k, q, b] = 0.0
                continue
            for m in range(n_modes):
                for b in range(nb):
                    dcoef_l[m, b] = alpha_l[k, q, m, b] * lam_l[m, b]
            _slope_brackets_lanes(
                dcoef_l,
                lam_l,
                em_l[k],
                mixed_l[k, q],
                rank_l,
                n_modes,
                nb,
                count_l[k, q],
                side_l[k, q],
                lane_work,
            )
    # tasks in order of output, so that each output's are solved with the modes it carries
    for q in range(n_out):
        crit_from[q] = n_tasks
        for b in range(nb):
            for k in range(iv_count[b]):
                delta = len_l[k, b]
                cp_first[b, k, q] = n_tasks
                count = 0
                if count_l[k, q, b] != 0.0:
                    for m in range(n_modes):
                        lam[m] = lam_l[m, b]
                        em[m] = em_l[k, m, b]
                        alpha[m] = alpha_l[k, q, m, b]
                        dcoef[m] = alpha[m] * lam[m]
                    if count_l[k, q, b] == MANY:
                        for m in range(n_modes):  # modes by decreasing pole (slowest first)
                            order[int(rank_l[m, b])] = m
                        count = _isolate(
                            wk, delta, n_modes, order, bracket_lo, bracket_hi, bracket_side
                        )
                    else:
                        bracket_lo[0] = 0.0
                        bracket_hi[0] = delta
                        bracket_side[0] = side_l[k, q, b]
                        count = 1
                for c in range(count):
                    if n_tasks < capacity:
                        for m in range(n_modes):
                            modes[n_tasks, MODE_POLE, m] = lam[m]
                            modes[n_tasks, MODE_COEF, m] = dcoef[m]
                            modes[n_tasks, MODE_LEVEL, m] = alpha[m]
                        scalars[n_tasks, TASK_CONST] = 0.0
                        scalars[n_tasks, TASK_LO] = bracket_lo[c]
                        scalars[n_tasks, TASK_HI] = bracket_hi[c]
                        scalars[n_tasks, TASK_SIDE] = bracket_side[c]
                        scalars[n_tasks, TASK_START] = START_LO
                    n_tasks += 1
                cp_count[b, k, q] = count
    n_critical = n_tasks
    crit_from[n_out] = n_critical
    if n_critical > capacity:
        return False
    for q in range(n_out):
        solve_tasks(modes, scalars, crit_from[q], crit_from[q + 1], n_carried[q])

    # --- pass 2: f is monotone between consecutive critical points, so a crossing of the
    # threshold is bracketed exactly by the levels there. Cmax and Tmax, and every crossing in
    # order: at an interval's start (a bolus), its time known; inside, a root task
    n_events = 0
    for q in range(n_out):
        cross_from[q] = n_tasks
        thr = thresholds[q]
        for b in range(nb):
            events_from[q * nb + b] = n_events
            cmax = 0.0
            tmax = 0.0
            above = False
            for k in range(iv_count[b]):
                a = iv_start[b, k]
                const = const_l[k, q, b]
                v0 = first_l[k, q, b]
                # a bolus may carry the level across the threshold at the instant it is given
                if (v0 > thr) != above:
                    above = v0 > thr
                    if n_events < event_capacity:
                        event_at[n_events] = a
                        event_task[n_events] = -1
                        event_up[n_events] = above
                    n_events += 1
                if v0 > cmax:
                    cmax = v0
                    tmax = a
                t0 = 0.0
                first = cp_first[b, k, q]
                n_crit = cp_count[b, k, q]
                for c in range(n_crit + 1):
                    if c < n_crit:
                        t1 = scalars[first + c, TASK_AT]
                        v1 = const + scalars[first + c, TASK_LEVEL]
                    else:
                        t1 = len_l[k, b]
                        v1 = last_l[k, q, b]
                    if v1 > cmax:
                        cmax = v1
                        tmax = a + t1
                    if (v0 > thr) != (v1 > thr):
                        above = v1 > thr
                        if n_tasks < capacity:
                            for m in range(n_carried[q]):  # all the solver reads
                                modes[n_tasks, MODE_POLE, m] = lam_l[m, b]
                                modes[n_tasks, MODE_COEF, m] = alpha_l[k, q, m, b]
                                modes[n_tasks, MODE_LEVEL, m] = alpha_l[k, q, m, b]
                            scalars[n_tasks, TASK_CONST] = const - thr
                            scalars[n_tasks, TASK_LO] = t0
                            scalars[n_tasks, TASK_HI] = t1
                            scalars[n_tasks, TASK_SIDE] = -1.0 if above else 1.0
                            start = START_LO
                            if c > 0:
                                # t0 is a critical point: Newton's step from its zero slope
                                # is no guide. Start where the level would cross if it moved
                                # exponentially between the ends (else from t1)
                                start = START_HI
                                if v0 > 0.0 and v1 > 0.0 and v0 != v1:
                                    scalars[n_tasks, TASK_GUESS] = t0 + (t1 - t0) * math.log(
                                        v0 / thr
                                    ) / math.log(v0 / v1)
                                    start = START_GUESS
                            scalars[n_tasks, TASK_START] = start
                        if n_events < event_capacity:
                            event_at[n_events] = a
                            event_task[n_events] = n_tasks
                            event_up[n_events] = above
                        n_events += 1
                        n_tasks += 1
                    t0 = t1
                    v0 = v1
            out[q, CMAX, offset + i0 + b] = cmax
            out[q, TMAX, offset + i0 + b] = tmax
    events_from[n_out * nb] = n_events
    cross_from[n_out] = n_tasks
    if n_tasks > capacity or n_events > event_capacity:
        return False
    for q in range(n_out):
        solve_tasks(modes, scalars, cross_from[q], cross_from[q + 1], n_carried[q])

    # --- pass 3: time above the threshold and time to fall below it, from the crossings
    for q in range(n_out):
        for b in range(nb):
            above = False
            since = 0.0
            time_above = 0.0
            last_down = 0.0
            for e in range(events_from[q * nb + b], events_from[q * nb + b + 1]):
                j = event_task[e]
                t = event_at[e] + scalars[j, TASK_ROOT] if j >= 0 else event_at[e]
                above = event_up[e]
                since, time_above, last_down = _crossing(t, above, since, time_above, last_down)
            i = offset + i0 + b
            if above:
                out[q, TIME_ABOVE, i] = time_above + horizon - since
                out[q, TIME_TO_BELOW, i] = np.nan
            else:
                out[q, TIME_ABOVE, i] = time_above
                out[q, TIME_TO_BELOW, i] = last_down
    return True


@njit(cache=True, inline="always", error_model="numpy")
def _crossing(t, now_above, since, time_above, last_down):  # pragma: no cover - compiled
    """(since, time above, last down-crossing) after crossing the threshold at t."""
    if now_above:
        return t, time_above, last_down
    return since, time_above + t - since, t


def summarize(
    modal: ModalSystem,
    events: DoseEvents,
    outputs: tuple[int, ...],
    thresholds_ng_per_ml: tuple[float, ...],
    horizon_min: float,
    out: np.ndarray | None = None,
    offset: int = 0,
) -> np.ndarray:
    """Per-patient summaries (N, len(outputs), 7), columns as in SUMMARY_FIELDS (minutes),
    over doses from time 0 to `horizon_min`.

    Written into `out` when given, a C-contiguous float64 array (len(outputs), 7, M), at
    patients offset .. offset + N - 1 (a population's store, which then needs no copy); the
    result is a view of it."""
    if not horizon_min > 0:
        raise PKInputError("horizon", "the horizon must be positive")
    if len(outputs) != len(thresholds_ng_per_ml):
        raise PKInputError("threshold", "one threshold per output is needed")
    n = modal.n_patients
    ev = event_arrays(events, n)
    if ev[1].size and float(ev[1].min()) < 0:
        raise PKInputError("start", "dose times count from the first dose and cannot be negative")
    # field-major in the kernel (writes along patients, and a consumer taking one field reads
    # contiguous memory); returned as the (N, outputs, fields) view
    shape = (len(outputs), len(SUMMARY_FIELDS))
    if out is None:
        out = np.empty((*shape, n))
        offset = 0
    elif (
        out.dtype != np.float64
        or not out.flags.c_contiguous
        or out.shape[:2] != shape
        or not 0 <= offset <= out.shape[2] - n
    ):
        raise ValueError(f"out must be C-contiguous float64 {shape} + (>= {offset + n},)")
    # the (path, slot) of every mode in use, in row-major order
    mode_path, mode_slot = (
        np.ascontiguousarray(a, dtype=np.int64) for a in np.nonzero(modal.active)
    )
    _summarize(
        modal.poles,
        modal.residues,
        mode_path,
        mode_slot,
        *ev,
        np.asarray(outputs, dtype=np.int64),
        np.asarray(thresholds_ng_per_ml, dtype=np.float64),
        float(horizon_min),
        out,
        int(offset),
    )
    return out[:, :, offset : offset + n].transpose(2, 0, 1)
