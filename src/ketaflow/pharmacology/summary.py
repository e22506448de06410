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
interval's ends say whether it holds a critical point; elsewhere the interval is scanned every
`scan_step_min`, re-applying the rule from each sample (the bound falls as fast modes decay),
and only there can two critical points closer together than the step be missed.

Between consecutive critical points f is monotone, so every threshold crossing is bracketed
exactly. Roots are solved by safeguarded Newton iterations on log P - log N, where P and N are
the positive and negative parts of the exponential sum: each part is log-convex, so the
iteration behaves almost linearly even from the far end of a long interval.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.solve import DoseEvents, ModalSystem, event_arrays

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

MAX_CRITICAL = 64  # critical points kept per interval and output (a curve has far fewer)
# Relative size under which a derivative or partial sum counts as zero (rounding noise).
NOISE = 1e-12


# 1 / (k + 2)! for the series of (exp(x) - 1 - x) / x^2
_PHI2_SERIES = tuple(1.0 / math.factorial(k + 2) for k in range(10))


@njit(cache=True, inline="always", error_model="numpy")
def _expm1_integral(x, em, delta):  # pragma: no cover - compiled
    """Integral of expm1(x t / delta) for t from 0 to delta (em = expm1(x)): delta times
    (em - x) / x, by its series where that difference would cancel."""
    if abs(x) > 0.1:
        return delta * (em - x) / x
    # Horner on sum_k x^k / (k + 2)!: ten terms reach rounding for |x| <= 0.1
    total = 0.0
    for k in range(9, -1, -1):
        total = total * x + _PHI2_SERIES[k]
    return delta * x * total


@njit(cache=True, inline="always", error_model="numpy")
def _exp_at(lam_m, t, em_m, delta):  # pragma: no cover - compiled
    """exp(lam_m t), free at the interval's ends (em_m = expm1(lam_m delta))."""
    if t == 0.0:
        return 1.0
    if t == delta:
        return 1.0 + em_m
    return math.exp(lam_m * t)


# Rows of the per-interval work array `wk` (one row per quantity, one column per mode): a
# single array crosses the one call that is not inlined (`_root`), since every array passed
# to a compiled call costs two atomic reference-count updates.
LAM, EM, ALPHA, DCOEF = range(4)


@njit(cache=True, inline="always", error_model="numpy")
def _eval(t, wk, coef, level, delta, n, const):  # pragma: no cover - compiled
    """g(t) = sum_m wk[coef, m] exp(lam_m t) + const as its positive and negative parts P and
    N, their first and second derivatives, and sum_m wk[level, m] exp(lam_m t) (the level
    itself where g is its slope)."""
    pos = max(const, 0.0)
    neg = -min(const, 0.0)
    pos1 = 0.0
    neg1 = 0.0
    pos2 = 0.0
    neg2 = 0.0
    anti = 0.0
    for m in range(n):
        c = wk[coef, m]
        if c == 0.0:
            continue
        lm = wk[LAM, m]
        x = _exp_at(lm, t, wk[EM, m], delta)
        anti += wk[level, m] * x
        e = c * x
        # branch-free split: the signs of the terms are not predictable
        ep = max(e, 0.0)
        en = min(e, 0.0)
        pos += ep
        neg -= en
        pos1 += lm * ep
        neg1 -= lm * en
        pos2 += lm * lm * ep
        neg2 -= lm * lm * en
    return pos, neg, pos1, neg1, pos2, neg2, anti


@njit(cache=True, inline="always", error_model="numpy")
def _sign_changes(wk, coef, delta, n, t, order):  # pragma: no cover - compiled
    """Laguerre's bound on the zeros beyond t of sum_m wk[coef, m] exp(lam_m x): sign changes
    of the partial sums of the coefficients shifted to t, poles in decreasing order."""
    scale = 0.0
    for m in range(n):
        scale += abs(wk[coef, m]) * _exp_at(wk[LAM, m], t, wk[EM, m], delta)
    changes = 0
    sign = 0
    partial = 0.0
    for k in range(n):
        m = order[k]
        if wk[coef, m] == 0.0:
            continue
        partial += wk[coef, m] * _exp_at(wk[LAM, m], t, wk[EM, m], delta)
        if abs(partial) <= NOISE * scale:
            continue
        s = 1 if partial > 0.0 else -1
        if sign != 0 and s != sign:
            changes += 1
        sign = s
    return changes


@njit(cache=True, inline="always", error_model="numpy")
def _sign_from(value, size, slope, slope_size, right):  # pragma: no cover - compiled
    """The sign of a sum just right (or left) of a point, from its value and slope there and
    the sums of their terms' magnitudes: the value's sign unless it is rounding noise, then
    the slope's (flipped on the left); 0 if both are noise."""
    if abs(value) > NOISE * size:
        return 1 if value > 0.0 else -1
    if abs(slope) <= NOISE * slope_size or slope == 0.0:
        return 0
    s = 1 if slope > 0.0 else -1
    return s if right else -s


@njit(cache=True, inline="always", error_model="numpy")
def _side_sign(wk, coef, delta, n, t, right):  # pragma: no cover - compiled
    """Sign of sum_m wk[coef, m] exp(lam_m x) just right (or left) of x = t (`_sign_from`)."""
    value = 0.0
    size = 0.0
    slope = 0.0
    slope_size = 0.0
    for m in range(n):
        lm = wk[LAM, m]
        e = wk[coef, m] * _exp_at(lm, t, wk[EM, m], delta)
        value += e
        size += abs(e)
        slope += lm * e
        slope_size += abs(lm * e)
    return _sign_from(value, size, slope, slope_size, right)


@njit(cache=True, inline="always", error_model="numpy")
def _log_ratio(x, wk, coef, level, delta, n, const):  # pragma: no cover - compiled
    """For g = P - N at x: the sign of g, phi = log(P / N), its Newton and Halley steps, whether
    g is at rounding level (its sign then means nothing), and the level there."""
    p, q, p1, q1, p2, q2, anti = _eval(x, wk, coef, level, delta, n, const)
    if p <= 0.0 or q <= 0.0:
        return (1 if p > q else -1), math.nan, math.nan, p == q, anti
    diff = p - q
    side = 0 if diff == 0.0 else (1 if diff > 0.0 else -1)
    # two divisions where six would do: divisions cost as much as the exps here
    inv_p = 1.0 / p
    inv_q = 1.0 / q
    phi = math.log(p * inv_q)
    dp = p1 * inv_p
    dq = q1 * inv_q
    d1 = dp - dq
    if d1 == 0.0:
        return side, phi, math.nan, abs(diff) <= NOISE * (p + q), anti
    d2 = p2 * inv_p - dp * dp - q2 * inv_q + dq * dq
    inv_d1 = 1.0 / d1
    newton = phi * inv_d1
    # Halley's correction when it is a modest one; plain Newton otherwise
    h = 0.5 * newton * d2 * inv_d1
    step = newton / (1.0 - h) if abs(h) < 0.5 else newton
    return side, phi, step, abs(diff) <= NOISE * (p + q), anti


@njit(cache=True, error_model="numpy")
def _root(wk, coef, level, delta, n, const, lo, hi, s_lo):  # pragma: no cover - compiled
    """The zero in (lo, hi) of g(t) = sum_m wk[coef, m] exp(lam_m t) + const, given that g has
    the sign s_lo just right of lo and the opposite sign just left of hi, and no other zero.
    Returns it, the last point evaluated (within the final step of it) and the level there
    (so a maximum's time and value agree to rounding). Halley steps on log P - log N kept
    inside a shrinking bracket, starting from the lower end (from the upper one if that step
    leaves the bracket); bisection whenever a step would leave it. An end can be a zero of g
    itself (the slope of a level that starts at zero): rounding-level values within 1e-6 of
    the bracket from an end count as that end's side."""
    lo0 = lo
    hi0 = hi
    guard = 1e-6 * (hi - lo)
    x = math.nan
    # the first one or two evaluations are at the ends (free there: see _exp_at), through the
    # loop's single call site so that _eval is inlined once
    phase = 0
    anti = 0.0
    for _it in range(202):
        at = lo if phase == 0 else (hi if phase == 1 else x)
        side, _, step, noisy, anti = _log_ratio(at, wk, coef, level, delta, n, const)
        if phase == 0:
            if not noisy and math.isfinite(step):
                x = lo - step
            phase = 2 if lo < x < hi else 1
            continue
        if phase == 1:
            if not noisy and math.isfinite(step):
                x = hi - step
            if not (lo < x < hi):
                x = 0.5 * (lo + hi)
            phase = 2
            continue
        if noisy:
            if x - lo0 > guard and hi0 - x > guard:
                return x, x, anti
            side = s_lo if x - lo0 <= hi0 - x else -s_lo
            step = math.nan
        if side == s_lo:
            lo = x
        else:
            hi = x
        x_new = x - step if math.isfinite(step) else 0.5 * (lo + hi)
        if not (lo < x_new < hi):
            x_new = 0.5 * (lo + hi)
        # Halley converges cubically, Newton quadratically (log P - log N bends on the scale
        # of the modes, minutes to hours): after a step under 1e-5 relative the error is
        # below 1e-9 relative; a bracket under 1e-12 relative is far below a second
        if abs(x_new - x) <= 1e-5 * max(1.0, abs(x)) or hi - lo <= 1e-12 * max(1.0, abs(x)):
            return x_new, x, anti
        x = x_new
    return x, x, anti


@njit(cache=True, error_model="numpy")
def _critical_points(wk, delta, n, order, scan_step, crit, crit_anti):  # pragma: no cover
    """Zeros of f'(t) = sum_m wk[DCOEF, m] exp(lam_m t) in (0, delta), in increasing order,
    written to crit (with the level f there, less its constant, to crit_anti); returns their
    number."""
    n_crit = 0
    t_lo = 0.0
    s_lo = _side_sign(wk, DCOEF, delta, n, 0.0, True)
    while n_crit < crit.shape[0]:
        if _sign_changes(wk, DCOEF, delta, n, t_lo, order) <= 1:
            t_hi = delta
            last = True
        else:
            t_hi = min(delta, t_lo + scan_step)
            last = t_hi >= delta
        s_hi = _side_sign(wk, DCOEF, delta, n, t_hi, False)
        if s_lo != 0 and s_hi != 0 and s_lo != s_hi:
            _, crit[n_crit], crit_anti[n_crit] = _root(
                wk, DCOEF, ALPHA, delta, n, 0.0, t_lo, t_hi, s_lo
            )
            n_crit += 1
        if last:
            break
        t_lo = t_hi
        s_lo = _side_sign(wk, DCOEF, delta, n, t_lo, True)
    return n_crit


@njit(cache=True, parallel=True, error_model="numpy")
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
    scan_step,
    out,
):  # pragma: no cover - compiled
    n = poles.shape[0]
    block = 256  # patients per task: work arrays allocated once per task
    for blk in prange((n + block - 1) // block):
        _summarize_block(
            blk * block,
            min(n, (blk + 1) * block),
            poles,
            residues,
            ev_path,
            ev_start,
            ev_dur,
            ev_amt,
            outputs,
            thresholds,
            horizon,
            scan_step,
            out,
            mode_path,
            mode_slot,
        )


@njit(cache=True, error_model="numpy")
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
    scan_step,
    out,
    mode_path,
    mode_slot,
):  # pragma: no cover - compiled
    """Patients i0 .. i1 - 1, with work arrays allocated once. The body is not a function of
    its own, and the helpers it calls take the work array `wk` alone, because every array that
    crosses a compiled call costs atomic reference-count updates."""
    n_modes = mode_path.shape[0]
    n_out = outputs.shape[0]
    n_ev = ev_path.shape[0]
    wk = np.empty((4, n_modes))
    lam = wk[LAM]
    em = wk[EM]
    alpha = wk[ALPHA]
    dcoef = wk[DCOEF]
    res = np.empty((n_out, n_modes))
    z = np.empty(n_modes)
    w = np.empty(n_modes)
    steady = np.empty(n_modes)  # input rate / pole: minus the mode's steady state
    integ = np.empty(n_modes)
    order = np.empty(n_modes, dtype=np.int64)
    rate = np.empty(poles.shape[1])
    edges = np.empty(2 * n_ev + 2)
    crit = np.empty(MAX_CRITICAL)
    crit_anti = np.empty(MAX_CRITICAL)
    state = np.empty((n_out, 6))
    for i in range(i0, i1):
        for m in range(n_modes):
            lam[m] = poles[i, mode_path[m], mode_slot[m]]
            for q in range(n_out):
                res[q, m] = residues[i, mode_path[m], outputs[q], mode_slot[m]]
            z[m] = 0.0
        # modes by decreasing pole (slowest first), for the rule of signs
        for m in range(n_modes):
            order[m] = m
        for a_ in range(1, n_modes):
            key = order[a_]
            b_ = a_ - 1
            while b_ >= 0 and lam[order[b_]] < lam[key]:
                order[b_ + 1] = order[b_]
                b_ -= 1
            order[b_ + 1] = key
        # dose edges inside (0, horizon), with both ends
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
        for q in range(n_out):
            state[q, S_CMAX] = 0.0
            state[q, S_TMAX] = 0.0
            state[q, S_ABOVE] = 0.0
            state[q, S_SINCE] = 0.0
            state[q, S_TIME_ABOVE] = 0.0
            state[q, S_LAST_DOWN] = 0.0
            out[i, q, AUC_HORIZON] = 0.0
        for k in range(n_edges - 1):
            a = edges[k]
            b = edges[k + 1]
            if b <= a:
                continue  # a repeated edge: its boluses are given with the next interval
            # boluses given at a, and the infusion rates that hold over (a, b)
            for p in range(rate.shape[0]):
                rate[p] = 0.0
            for e in range(n_ev):
                amt = ev_amt[i, e]
                if amt == 0.0:
                    continue
                s0 = ev_start[i, e]
                d = ev_dur[e]
                if d <= 0.0:
                    if s0 == a:
                        for m in range(n_modes):
                            if mode_path[m] == ev_path[e]:
                                z[m] += amt
                elif s0 <= a and s0 + d >= b:
                    rate[ev_path[e]] += amt / d
            delta = b - a
            for m in range(n_modes):
                lm = lam[m]
                steady[m] = rate[mode_path[m]] / lm
                w[m] = z[m] + steady[m]
                em[m] = math.expm1(lm * delta)
                integ[m] = _expm1_integral(lm * delta, em[m], delta)
            for q in range(n_out):
                thr = thresholds[q]
                f_a = 0.0
                const = 0.0
                auc = 0.0
                for m in range(n_modes):
                    r = res[q, m]
                    alpha[m] = r * w[m]
                    f_a += r * z[m]
                    const -= r * steady[m]
                    auc += alpha[m] * integ[m]
                out[i, q, AUC_HORIZON] += f_a * delta + auc
                # a bolus may carry the level across the threshold at the instant it is given
                if (f_a > thr) != (state[q, S_ABOVE] > 0.0):
                    up = f_a > thr
                    since, above_for, down_at = _crossing(
                        a, up, state[q, S_SINCE], state[q, S_TIME_ABOVE], state[q, S_LAST_DOWN]
                    )
                    state[q, S_SINCE] = since
                    state[q, S_TIME_ABOVE] = above_for
                    state[q, S_LAST_DOWN] = down_at
                    state[q, S_ABOVE] = 1.0 if up else 0.0
                if f_a > state[q, S_CMAX]:
                    state[q, S_CMAX] = f_a
                    state[q, S_TMAX] = a
                # critical points: the slope's sign at both ends and the rule of signs at the
                # start need no exp (exp(0) = 1, exp(lam delta) = 1 + em); only where the bound
                # exceeds 1 does the general scan run
                for m in range(n_modes):
                    dcoef[m] = alpha[m] * lam[m]
                changes = _sign_changes(wk, DCOEF, delta, n_modes, 0.0, order)
                if changes <= 1:
                    n_crit = 0
                    s_lo = _side_sign(wk, DCOEF, delta, n_modes, 0.0, True)
                    s_hi = _side_sign(wk, DCOEF, delta, n_modes, delta, False)
                    if s_lo != 0 and s_hi != 0 and s_lo != s_hi:
                        _, crit[0], crit_anti[0] = _root(
                            wk, DCOEF, ALPHA, delta, n_modes, 0.0, 0.0, delta, s_lo
                        )
                        n_crit = 1
                else:
                    n_crit = _critical_points(wk, delta, n_modes, order, scan_step, crit, crit_anti)
                # threshold: f is monotone between consecutive critical points, where
                # f = const + sum_m alpha_m exp(lam_m t) = const + (level of f')
                t0 = 0.0
                v0 = f_a
                for c in range(n_crit + 1):
                    if c < n_crit:
                        t1 = crit[c]
                        v1 = const + crit_anti[c]
                    else:
                        t1 = delta
                        v1 = f_a
                        for m in range(n_modes):
                            v1 += alpha[m] * em[m]
                    if v1 > state[q, S_CMAX]:
                        state[q, S_CMAX] = v1
                        state[q, S_TMAX] = a + t1
                    if (v0 > thr) != (v1 > thr):
                        up = v1 > thr
                        x, _, _ = _root(
                            wk, ALPHA, ALPHA, delta, n_modes, const - thr, t0, t1, -1 if up else 1
                        )
                        tc = a + x
                        since, above_for, down_at = _crossing(
                            tc, up, state[q, S_SINCE], state[q, S_TIME_ABOVE], state[q, S_LAST_DOWN]
                        )
                        state[q, S_SINCE] = since
                        state[q, S_TIME_ABOVE] = above_for
                        state[q, S_LAST_DOWN] = down_at
                        state[q, S_ABOVE] = 1.0 if up else 0.0
                    t0 = t1
                    v0 = v1
            for m in range(n_modes):
                z[m] += w[m] * em[m]
        for q in range(n_out):
            o = outputs[q]
            out[i, q, CMAX] = state[q, S_CMAX]
            out[i, q, TMAX] = state[q, S_TMAX]
            if state[q, S_ABOVE] > 0.0:
                out[i, q, TIME_ABOVE] = state[q, S_TIME_ABOVE] + horizon - state[q, S_SINCE]
                out[i, q, TIME_TO_BELOW] = np.nan
            else:
                out[i, q, TIME_ABOVE] = state[q, S_TIME_ABOVE]
                out[i, q, TIME_TO_BELOW] = state[q, S_LAST_DOWN]
            # AUC to infinity of every dose; terminal half-life: the slowest mode the output carries
            largest = 0.0
            for m in range(n_modes):
                largest = max(largest, abs(res[q, m]))
            auc_inf = 0.0
            slowest = 0.0
            for e in range(n_ev):
                amt = ev_amt[i, e]
                if amt == 0.0:
                    continue
                for m in range(n_modes):
                    if mode_path[m] != ev_path[e]:
                        continue
                    r = residues[i, mode_path[m], o, mode_slot[m]]
                    auc_inf += amt * r / (-lam[m])
                    if abs(r) > 1e-12 * largest and (slowest == 0.0 or -lam[m] < slowest):
                        slowest = -lam[m]
            out[i, q, AUC_INF] = auc_inf
            out[i, q, HALF_LIFE] = math.log(2.0) / slowest if slowest > 0.0 else np.nan


# Columns of the per-output running state in `_summarize_block`.
S_CMAX, S_TMAX, S_ABOVE, S_SINCE, S_TIME_ABOVE, S_LAST_DOWN = range(6)


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
    scan_step_min: float = 10.0,
) -> np.ndarray:
    """Per-patient summaries (N, len(outputs), 7), columns as in SUMMARY_FIELDS (minutes),
    over doses from time 0 to `horizon_min`. `scan_step_min` is used only where the rule of
    signs cannot exclude several critical points in one interval (see the module doc)."""
    if not horizon_min > 0:
        raise PKInputError("horizon", "the horizon must be positive")
    if not scan_step_min > 0:
        raise PKInputError("scan_step", "the scan step must be positive")
    if len(outputs) != len(thresholds_ng_per_ml):
        raise PKInputError("threshold", "one threshold per output is needed")
    n = modal.poles.shape[0]
    ev = event_arrays(events, n)
    if ev[1].size and float(ev[1].min()) < 0:
        raise PKInputError("start", "dose times count from the first dose and cannot be negative")
    out = np.empty((n, len(outputs), len(SUMMARY_FIELDS)))
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
        float(scan_step_min),
        out,
    )
    return out
