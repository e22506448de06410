"""Exact solutions of linear compartment models: sums of exponentials, no ODE integrator.

Every model in `models.py` is linear, so a patient's concentrations are sums of exponentials.
The state is split into blocks that feed each other in one direction only:

    depot (first-order absorption) -> parent disposition -> metabolite disposition
                                   \\-> effect compartment (fed by the parent's central level)

A disposition block (central compartment plus peripherals, with elimination from any of them)
satisfies V dc/dt = M c with M symmetric, so V^-1/2 M V^-1/2 is symmetric and its eigen-
decomposition is real and well conditioned (clinical reference §6). Each block is a transfer
function given by poles and residues; a chain of blocks is their product, whose partial
fractions follow from the residue theorem. When two poles of different blocks almost coincide
(ka close to a disposition eigenvalue) the partial fractions cancel catastrophically; we move
the later pole by 1e-7 relative, which changes the curve by about 1e-7 relative and keeps the
cancellation error near 1e-9 (both far inside the engine's 1e-6 accuracy target).

Dose histories are superposed: a bolus, or a zero-order infusion of any duration, into a depot
or straight into a compartment, at any time. On a uniform time grid the modal states are carried
forward by multiplication (x_{k+1} = p x_k + q), so a 24 h curve needs one `exp` per mode, not
one per point. Summaries (Cmax, Tmax, AUC, time above a threshold, time to fall below it) come
from the closed form: maxima and crossings by safeguarded Newton iterations, AUC analytically.

`expm_solve` is the general matrix-exponential solution (Van Loan's augmented matrix) for any
linear system, singular or defective, used for single patients and as a cross-check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from scipy.linalg import expm

from ketaflow.pharmacology.errors import PKInputError

# mg per L is ug/mL; x 1000 gives ng/mL.
NG_PER_ML_PER_MG_PER_L = 1000.0

OUTPUT_PARENT = 0
OUTPUT_METABOLITE = 1
OUTPUT_EFFECT = 2
N_OUTPUTS = 3

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

# Relative gap under which two poles of different blocks are treated as coincident.
POLE_GAP = 1e-7

FACTOR_DEPOT = 0
FACTOR_PARENT = 1
FACTOR_METABOLITE = 2
FACTOR_EFFECT = 3
N_FACTORS = 4


@dataclass(frozen=True)
class SystemArrays:
    """Individual parameters of N patients, in minutes, litres and milligrams.

    Disposition blocks: compartment 0 is central; `*_flow` is the inter-compartmental clearance
    between the central compartment and compartment j (entry 0 unused); `*_clearance` is the
    elimination clearance out of compartment j; `parent_formation` is the part of it that forms
    the metabolite. Paths are the ways a dose enters: `path_block` 0 = parent, 1 = metabolite,
    `path_compartment` the compartment it reaches, `path_ka` the first-order absorption rate
    from its depot (0 = no depot: straight into the compartment).
    """

    parent_volume: np.ndarray  # (N, n_parent) L
    parent_flow: np.ndarray  # (N, n_parent) L/min
    parent_clearance: np.ndarray  # (N, n_parent) L/min
    parent_formation: np.ndarray  # (N, n_parent) L/min
    metabolite_volume: np.ndarray  # (N, n_met) L, n_met may be 0
    metabolite_flow: np.ndarray
    metabolite_clearance: np.ndarray
    path_block: np.ndarray  # (P,) int
    path_compartment: np.ndarray  # (P,) int
    path_ka: np.ndarray  # (N, P) 1/min
    ke0_per_min: float
    effect_scale: float  # fraction of the parent level that drives the effect site

    @property
    def n_patients(self) -> int:
        return int(self.parent_volume.shape[0])

    def take(self, index: np.ndarray | slice) -> SystemArrays:
        return SystemArrays(
            self.parent_volume[index],
            self.parent_flow[index],
            self.parent_clearance[index],
            self.parent_formation[index],
            self.metabolite_volume[index],
            self.metabolite_flow[index],
            self.metabolite_clearance[index],
            self.path_block,
            self.path_compartment,
            self.path_ka[index],
            self.ke0_per_min,
            self.effect_scale,
        )


@dataclass(frozen=True)
class DoseEvents:
    """A dose history for N patients: E events, each a bolus (duration 0) or a zero-order
    infusion into one path. Amounts are what enters the path (bioavailability applied)."""

    path: np.ndarray  # (E,) int
    start_min: np.ndarray  # (N, E)
    duration_min: np.ndarray  # (E,)
    amount_mg: np.ndarray  # (N, E)

    def take(self, index: np.ndarray | slice) -> DoseEvents:
        return DoseEvents(
            self.path, self.start_min[index], self.duration_min, self.amount_mg[index]
        )

    def scaled(self, factor: float) -> DoseEvents:
        return DoseEvents(self.path, self.start_min, self.duration_min, self.amount_mg * factor)

    @property
    def last_end_min(self) -> float:
        return float(np.max(self.start_min + self.duration_min[None, :]))


@dataclass(frozen=True)
class ModalSystem:
    """Poles (N, P, M) and residues (N, P, 3, M) of every path and output; `active` (P, M)
    marks the mode slots a path uses."""

    poles: np.ndarray
    residues: np.ndarray
    active: np.ndarray

    def take(self, index: np.ndarray | slice) -> ModalSystem:
        return ModalSystem(self.poles[index], self.residues[index], self.active)


# ----------------------------------------------------------------------------------------------
# Eigen-decomposition of a small symmetric matrix (cyclic Jacobi): exact to rounding, no LAPACK
# call per patient, and fast for the 2-4 compartment blocks of PK models.


@njit(cache=True)
def _jacobi_eigh(a, w, v):  # pragma: no cover - compiled
    n = a.shape[0]
    for i in range(n):
        for j in range(n):
            v[i, j] = 1.0 if i == j else 0.0
    for _sweep in range(60):
        off = 0.0
        diag = 0.0
        for i in range(n):
            diag += a[i, i] * a[i, i]
            for j in range(i + 1, n):
                off += a[i, j] * a[i, j]
        if off <= 1e-32 * diag:  # off-diagonal below 1e-16 relative: converged
            break
        for p in range(n):
            for q in range(p + 1, n):
                apq = a[p, q]
                if apq == 0.0:
                    continue
                theta = (a[q, q] - a[p, p]) / (2.0 * apq)
                if theta >= 0.0:
                    t = 1.0 / (theta + math.sqrt(theta * theta + 1.0))
                else:
                    t = -1.0 / (-theta + math.sqrt(theta * theta + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for k in range(n):
                    akp = a[k, p]
                    akq = a[k, q]
                    a[k, p] = c * akp - s * akq
                    a[k, q] = s * akp + c * akq
                for k in range(n):
                    apk = a[p, k]
                    aqk = a[q, k]
                    a[p, k] = c * apk - s * aqk
                    a[q, k] = s * apk + c * aqk
                for k in range(n):
                    vkp = v[k, p]
                    vkq = v[k, q]
                    v[k, p] = c * vkp - s * vkq
                    v[k, q] = s * vkp + c * vkq
    for i in range(n):
        w[i] = a[i, i]


@njit(cache=True)
def _block_eigen(volume, flow, clearance, lam, vec, s):  # pragma: no cover - compiled
    """Eigen-decomposition of V^-1/2 M V^-1/2 for a mammillary block with elimination from
    any compartment (s: n x n work array)."""
    n = volume.shape[0]
    s[:, :] = 0.0
    total_flow = 0.0
    for j in range(1, n):
        total_flow += flow[j]
        s[j, j] = -(flow[j] + clearance[j]) / volume[j]
        off = flow[j] / math.sqrt(volume[0] * volume[j])
        s[0, j] = off
        s[j, 0] = off
    s[0, 0] = -(total_flow + clearance[0]) / volume[0]
    _jacobi_eigh(s, lam, vec)


@njit(cache=True)
def _separate_pole(mu, fac, slot, n_slots):  # pragma: no cover - compiled
    """Move mu[slot] away from poles of other factors in slots before it (see module doc)."""
    for _attempt in range(8):
        moved = False
        for m in range(n_slots):
            if m == slot:
                break
            if fac[m] < 0 or fac[m] == fac[slot]:
                continue
            scale = max(abs(mu[m]), abs(mu[slot]))
            if abs(mu[slot] - mu[m]) <= POLE_GAP * scale:
                mu[slot] = mu[m] * (1.0 + 4.0 * POLE_GAP)
                moved = True
        if not moved:
            return


@njit(cache=True)
def _combine(mu, rf, fac, use, out):  # pragma: no cover - compiled
    """Residues of the product of the factors flagged in `use`: at a pole of factor f, its own
    residue times the other factors' transfer functions evaluated there."""
    m_slots = mu.shape[0]
    for slot in range(m_slots):
        out[slot] = 0.0
        f = fac[slot]
        if f < 0 or not use[f]:
            continue
        value = rf[slot]
        for g in range(N_FACTORS):
            if g == f or not use[g]:
                continue
            h = 0.0
            for m in range(m_slots):
                if fac[m] == g:
                    h += rf[m] / (mu[slot] - mu[m])
            value *= h
        out[slot] = value


@njit(cache=True, parallel=True)
def _decompose(
    par_v,
    par_q,
    par_cl,
    par_fm,
    met_v,
    met_q,
    met_cl,
    path_block,
    path_cmt,
    path_ka,
    ke0,
    effect_scale,
    poles,
    residues,
):  # pragma: no cover - compiled
    n_patients = par_v.shape[0]
    n_par = par_v.shape[1]
    n_met = met_v.shape[1]
    m_slots = poles.shape[2]
    block = 64  # patients per task: work arrays allocated once per block
    for blk in prange((n_patients + block - 1) // block):
        lam_p = np.empty(n_par)
        vec_p = np.empty((n_par, n_par))
        work_p = np.empty((n_par, n_par))
        lam_m = np.empty(n_met)
        vec_m = np.empty((n_met, n_met))
        work_m = np.empty((n_met, n_met))
        mu = np.empty(m_slots)
        fac = np.full(m_slots, -1, dtype=np.int64)
        r_conc = np.zeros(m_slots)
        r_form = np.zeros(m_slots)
        use = np.zeros(N_FACTORS, dtype=np.bool_)
        out = np.empty(m_slots)
        for i in range(blk * block, min(n_patients, (blk + 1) * block)):
            _decompose_one(
                i,
                par_v,
                par_q,
                par_cl,
                par_fm,
                met_v,
                met_q,
                met_cl,
                path_block,
                path_cmt,
                path_ka,
                ke0,
                effect_scale,
                poles,
                residues,
                lam_p,
                vec_p,
                work_p,
                lam_m,
                vec_m,
                work_m,
                mu,
                fac,
                r_conc,
                r_form,
                use,
                out,
            )


@njit(cache=True)
def _decompose_one(
    i,
    par_v,
    par_q,
    par_cl,
    par_fm,
    met_v,
    met_q,
    met_cl,
    path_block,
    path_cmt,
    path_ka,
    ke0,
    effect_scale,
    poles,
    residues,
    lam_p,
    vec_p,
    work_p,
    lam_m,
    vec_m,
    work_m,
    mu,
    fac,
    r_conc,
    r_form,
    use,
    out,
):  # pragma: no cover - compiled
    n_par = par_v.shape[1]
    n_met = met_v.shape[1]
    n_paths = path_block.shape[0]
    m_slots = poles.shape[2]
    _block_eigen(par_v[i], par_q[i], par_cl[i], lam_p, vec_p, work_p)
    if n_met > 0:
        _block_eigen(met_v[i], met_q[i], met_cl[i], lam_m, vec_m, work_m)
    for p in range(n_paths):
        ka = path_ka[i, p]
        j = path_cmt[p]
        for s in range(m_slots):
            mu[s] = -1.0
            fac[s] = -1
            r_conc[s] = 0.0
            r_form[s] = 0.0
        # slot layout: [parent modes][depot][metabolite modes][effect]; parent poles come
        # first so the others are moved away from them, never the reverse.
        if path_block[p] == 0:
            for k in range(n_par):
                mu[k] = lam_p[k]
                fac[k] = FACTOR_PARENT
                r_conc[k] = (
                    vec_p[0, k] * vec_p[j, k] / math.sqrt(par_v[i, 0] * par_v[i, j])
                ) * NG_PER_ML_PER_MG_PER_L
                form = 0.0
                for o in range(n_par):
                    if par_fm[i, o] != 0.0:
                        form += (
                            par_fm[i, o]
                            * vec_p[o, k]
                            * vec_p[j, k]
                            / math.sqrt(par_v[i, o] * par_v[i, j])
                        )
                r_form[k] = form
        depot_slot = n_par
        if ka > 0.0:
            mu[depot_slot] = -ka
            fac[depot_slot] = FACTOR_DEPOT
            r_conc[depot_slot] = ka
            r_form[depot_slot] = ka
            _separate_pole(mu, fac, depot_slot, m_slots)
        for k in range(n_met):
            s = n_par + 1 + k
            mu[s] = lam_m[k]
            fac[s] = FACTOR_METABOLITE
            r_conc[s] = vec_m[0, k] * vec_m[0, k] / met_v[i, 0] * NG_PER_ML_PER_MG_PER_L
            r_form[s] = r_conc[s]
            _separate_pole(mu, fac, s, m_slots)
        effect_slot = m_slots - 1
        if ke0 > 0.0:
            mu[effect_slot] = -ke0
            fac[effect_slot] = FACTOR_EFFECT
            r_conc[effect_slot] = ke0 * effect_scale
            r_form[effect_slot] = ke0 * effect_scale
            _separate_pole(mu, fac, effect_slot, m_slots)
        for s in range(m_slots):
            poles[i, p, s] = mu[s]
        for o in range(N_OUTPUTS):
            for s in range(m_slots):
                residues[i, p, o, s] = 0.0
        if path_block[p] == 0:
            # parent concentration: depot x parent
            use[:] = False
            use[FACTOR_DEPOT] = ka > 0.0
            use[FACTOR_PARENT] = True
            _combine(mu, r_conc, fac, use, out)
            for s in range(m_slots):
                residues[i, p, OUTPUT_PARENT, s] = out[s]
            # effect site: depot x parent x effect
            if ke0 > 0.0:
                use[FACTOR_EFFECT] = True
                _combine(mu, r_conc, fac, use, out)
                for s in range(m_slots):
                    residues[i, p, OUTPUT_EFFECT, s] = out[s]
                use[FACTOR_EFFECT] = False
            # metabolite: depot x parent (formation rate) x metabolite
            if n_met > 0:
                use[FACTOR_METABOLITE] = True
                _combine(mu, r_form, fac, use, out)
                for s in range(m_slots):
                    residues[i, p, OUTPUT_METABOLITE, s] = out[s]
        elif n_met > 0:
            use[:] = False
            use[FACTOR_DEPOT] = ka > 0.0
            use[FACTOR_METABOLITE] = True
            _combine(mu, r_conc, fac, use, out)
            for s in range(m_slots):
                residues[i, p, OUTPUT_METABOLITE, s] = out[s]


def mode_slots(system: SystemArrays) -> int:
    return system.parent_volume.shape[1] + 1 + system.metabolite_volume.shape[1] + 1


def active_slots(system: SystemArrays) -> np.ndarray:
    """(P, M) mask of the mode slots each path uses (same for every patient)."""
    n_par = system.parent_volume.shape[1]
    n_met = system.metabolite_volume.shape[1]
    m_slots = mode_slots(system)
    active = np.zeros((system.path_block.shape[0], m_slots), dtype=np.bool_)
    for p, block in enumerate(system.path_block):
        if block == 0:
            active[p, :n_par] = True
            if system.ke0_per_min > 0:
                active[p, m_slots - 1] = True
        if np.any(system.path_ka[:, p] > 0):
            active[p, n_par] = True
        if n_met:
            active[p, n_par + 1 : n_par + 1 + n_met] = True
    return active


def decompose(system: SystemArrays) -> ModalSystem:
    """Poles and residues of every patient, path and output (parent, metabolite, effect)."""
    n = system.n_patients
    n_paths = system.path_block.shape[0]
    m_slots = mode_slots(system)
    poles = np.empty((n, n_paths, m_slots))
    residues = np.empty((n, n_paths, N_OUTPUTS, m_slots))
    _decompose(
        _plain(system.parent_volume, np.float64),
        _plain(system.parent_flow, np.float64),
        _plain(system.parent_clearance, np.float64),
        _plain(system.parent_formation, np.float64),
        _plain(system.metabolite_volume, np.float64),
        _plain(system.metabolite_flow, np.float64),
        _plain(system.metabolite_clearance, np.float64),
        _plain(system.path_block, np.int64),
        _plain(system.path_compartment, np.int64),
        _plain(system.path_ka, np.float64),
        float(system.ke0_per_min),
        float(system.effect_scale),
        poles,
        residues,
    )
    return ModalSystem(poles, residues, active_slots(system))


# ----------------------------------------------------------------------------------------------
# Closed-form responses of one mode (pole lam, unit residue) to a unit amount given at tau = 0
# as a bolus (dur = 0) or spread evenly over dur minutes.


@njit(cache=True)
def _g(lam, tau, dur):  # pragma: no cover - compiled
    if tau < 0.0:
        return 0.0
    if dur <= 0.0:
        return math.exp(lam * tau)
    if tau == 0.0:
        return 0.0
    u = min(tau, dur)
    return math.exp(lam * (tau - u)) * math.expm1(lam * u) / (lam * dur)


@njit(cache=True)
def _g_integral(lam, tau, dur):  # pragma: no cover - compiled
    """Integral of _g from 0 to tau."""
    if tau <= 0.0:
        return 0.0
    if dur <= 0.0:
        return math.expm1(lam * tau) / lam
    if tau <= dur:
        return (math.expm1(lam * tau) / lam - tau) / (lam * dur)
    head = (math.expm1(lam * dur) / lam - dur) / (lam * dur)
    return head + math.expm1(lam * dur) * math.expm1(lam * (tau - dur)) / (lam * lam * dur)


@njit(cache=True)
def _value(i, o, t, poles, residues, active, ev_path, ev_start, ev_dur, ev_amt):  # pragma: no cover
    total = 0.0
    for e in range(ev_path.shape[0]):
        p = ev_path[e]
        amt = ev_amt[i, e]
        if amt == 0.0:
            continue
        tau = t - ev_start[i, e]
        if tau < 0.0:
            continue
        acc = 0.0
        for s in range(poles.shape[2]):
            if active[p, s]:
                r = residues[i, p, o, s]
                if r != 0.0:
                    acc += r * _g(poles[i, p, s], tau, ev_dur[e])
        total += amt * acc
    return total


@njit(cache=True, parallel=True)
def _evaluate(
    poles, residues, active, ev_path, ev_start, ev_dur, ev_amt, times, o, out
):  # pragma: no cover
    for i in prange(poles.shape[0]):
        for k in range(times.shape[0]):
            out[i, k] = _value(
                i, o, times[k], poles, residues, active, ev_path, ev_start, ev_dur, ev_amt
            )


@njit(cache=True)
def _classify(
    j, i0, width, ev_path, ev_start, ev_dur, ev_amt, t0, dt, rate, partial
):  # pragma: no cover
    """Infusion rate covering all of step j per path and lane, and which lanes have a dose
    starting or ending inside it (returned: whether any has)."""
    a = t0 + (j - 1) * dt
    b = t0 + j * dt
    any_partial = False
    rate[:, :] = 0.0
    partial[:, :] = False
    for e in range(ev_path.shape[0]):
        p = ev_path[e]
        d = ev_dur[e]
        for w in range(width):
            amt = ev_amt[i0 + w, e]
            if amt == 0.0:
                continue
            s0 = ev_start[i0 + w, e]
            if d <= 0.0:
                if a < s0 <= b:
                    partial[p, w] = True
                    any_partial = True
            elif s0 < b and s0 + d > a:
                if s0 <= a and s0 + d >= b:
                    rate[p, w] += amt / d
                else:
                    partial[p, w] = True
                    any_partial = True
    return any_partial


LANES = 8  # patients advanced together so the per-step arithmetic runs as SIMD


@njit(cache=True, fastmath=True)
def _grid_block(
    i0,
    width,
    poles,
    residues,
    active,
    ev_path,
    ev_start,
    ev_dur,
    ev_amt,
    t0,
    dt,
    outputs,
    out,
    row0,
    work,
):  # pragma: no cover - compiled
    """Curves of patients i0 .. i0 + width - 1 (width <= LANES) on t0 + k dt, written to
    out[q, row0 + w, k]. Every modal state is carried forward by multiplication: one exp per
    mode, then a multiply-add per mode and step, with the patient index innermost so each one
    is a vector instruction. Steps that a dose starts or ends inside get their exact partial
    term (closed form). Work arrays come from `_workspace` (reused across blocks)."""
    n_paths = poles.shape[1]
    m_slots = poles.shape[2]
    n_points = out.shape[2]
    n_out = outputs.shape[0]
    n_ev = ev_path.shape[0]
    n_modes = 0
    for p in range(n_paths):
        for s in range(m_slots):
            if active[p, s]:
                n_modes += 1
    lam, mult, incr, z, res, rate, rate_seg, partial, special, mode_path, mode_slot, cvec = work
    lam[:, :] = 1.0
    mult[:, :] = 0.0
    incr[:, :] = 0.0
    z[:, :] = 0.0
    res[:, :, :] = 0.0
    special[: n_points + 1] = False
    k = 0
    for p in range(n_paths):
        for s in range(m_slots):
            if active[p, s]:
                mode_path[k] = p
                mode_slot[k] = s
                k += 1
    for m in range(n_modes):
        p = mode_path[m]
        s = mode_slot[m]
        for w in range(width):
            i = i0 + w
            lm = poles[i, p, s]
            lam[m, w] = lm
            mult[m, w] = math.exp(lm * dt)
            incr[m, w] = math.expm1(lm * dt) / lm
            for q in range(n_out):
                res[q, m, w] = residues[i, p, outputs[q], s]
            acc = 0.0
            for e in range(n_ev):
                if ev_path[e] == p and ev_amt[i, e] != 0.0:
                    acc += ev_amt[i, e] * _g(lm, t0 - ev_start[i, e], ev_dur[e])
            z[m, w] = acc
    for q in range(n_out):
        for w in range(LANES):
            c = 0.0
            for m in range(n_modes):
                c += res[q, m, w] * z[m, w]
            cvec[w] = c
        for w in range(width):
            out[q, row0 + w, 0] = cvec[w]
    # Steps where a dose may start or end inside the step get the full treatment; between them
    # the infusion rates are constant and the step is a pure multiply-add.
    for e in range(n_ev):
        for w in range(width):
            for edge in (ev_start[i0 + w, e], ev_start[i0 + w, e] + ev_dur[e]):
                jj = math.floor((edge - t0) / dt)
                for jk in range(jj - 1, jj + 3):
                    if 1 <= jk < n_points:
                        special[jk] = True
    _classify(1, i0, width, ev_path, ev_start, ev_dur, ev_amt, t0, dt, rate_seg, partial)
    j = 1
    while j < n_points:
        if not special[j] and n_modes <= 8 and n_out <= 3:
            # a run of plain steps: per patient, the unrolled recurrence in registers
            j_end = j + 1
            while j_end < n_points and not special[j_end]:
                j_end += 1
            for w in range(width):
                _run8(
                    mult,
                    incr,
                    rate_seg,
                    mode_path,
                    z,
                    res,
                    n_modes,
                    n_out,
                    w,
                    j,
                    j_end,
                    out,
                    row0 + w,
                )
            j = j_end
            continue
        if special[j]:
            a = t0 + (j - 1) * dt
            b = t0 + j * dt
            any_partial = _classify(
                j, i0, width, ev_path, ev_start, ev_dur, ev_amt, t0, dt, rate, partial
            )
            for m in range(n_modes):
                p = mode_path[m]
                for w in range(LANES):
                    z[m, w] = mult[m, w] * z[m, w] + rate[p, w] * incr[m, w]
            if any_partial:
                for m in range(n_modes):
                    p = mode_path[m]
                    for w in range(width):
                        if not partial[p, w]:
                            continue
                        i = i0 + w
                        lm = lam[m, w]
                        for e in range(n_ev):
                            if ev_path[e] != p or ev_amt[i, e] == 0.0:
                                continue
                            s0 = ev_start[i, e]
                            d = ev_dur[e]
                            if d <= 0.0:
                                if a < s0 <= b:
                                    z[m, w] += ev_amt[i, e] * math.exp(lm * (b - s0))
                            elif s0 < b and s0 + d > a and not (s0 <= a and s0 + d >= b):
                                lo = max(a, s0)
                                hi = min(b, s0 + d)
                                z[m, w] += (
                                    (ev_amt[i, e] / d)
                                    * math.exp(lm * (b - hi))
                                    * math.expm1(lm * (hi - lo))
                                    / lm
                                )
            if j + 1 < n_points and not special[j + 1]:
                _classify(
                    j + 1, i0, width, ev_path, ev_start, ev_dur, ev_amt, t0, dt, rate_seg, partial
                )
        else:
            for m in range(n_modes):
                p = mode_path[m]
                for w in range(LANES):
                    z[m, w] = mult[m, w] * z[m, w] + rate_seg[p, w] * incr[m, w]
        for q in range(n_out):
            for w in range(LANES):
                cvec[w] = 0.0
            for m in range(n_modes):
                for w in range(LANES):
                    cvec[w] += res[q, m, w] * z[m, w]
            for w in range(width):
                out[q, row0 + w, j] = cvec[w]
        j += 1


@njit(cache=True, fastmath=True)
def _run8(
    mult, incr, rate, mode_path, z, res, n_modes, n_out, w, j0, j1, out, row
):  # pragma: no cover
    """Steps j0 .. j1 - 1 of lane w with constant input: up to 8 modes and 3 outputs held in
    scalar locals so the recurrence stays in registers (3-4 ns a step instead of ~15)."""
    m = np.zeros(8)
    r = np.zeros(8)
    zz = np.zeros(8)
    c = np.zeros((3, 8))
    for k in range(n_modes):
        m[k] = mult[k, w]
        r[k] = rate[mode_path[k], w] * incr[k, w]
        zz[k] = z[k, w]
        for q in range(n_out):
            c[q, k] = res[q, k, w]
    m0, m1, m2, m3, m4, m5, m6, m7 = m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]
    r0, r1, r2, r3, r4, r5, r6, r7 = r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
    z0, z1, z2, z3, z4, z5, z6, z7 = zz[0], zz[1], zz[2], zz[3], zz[4], zz[5], zz[6], zz[7]
    a0, a1, a2, a3, a4, a5, a6, a7 = (
        c[0, 0],
        c[0, 1],
        c[0, 2],
        c[0, 3],
        c[0, 4],
        c[0, 5],
        c[0, 6],
        c[0, 7],
    )
    b0, b1, b2, b3, b4, b5, b6, b7 = (
        c[1, 0],
        c[1, 1],
        c[1, 2],
        c[1, 3],
        c[1, 4],
        c[1, 5],
        c[1, 6],
        c[1, 7],
    )
    d0, d1, d2, d3, d4, d5, d6, d7 = (
        c[2, 0],
        c[2, 1],
        c[2, 2],
        c[2, 3],
        c[2, 4],
        c[2, 5],
        c[2, 6],
        c[2, 7],
    )
    for j in range(j0, j1):
        z0 = m0 * z0 + r0
        z1 = m1 * z1 + r1
        z2 = m2 * z2 + r2
        z3 = m3 * z3 + r3
        z4 = m4 * z4 + r4
        z5 = m5 * z5 + r5
        z6 = m6 * z6 + r6
        z7 = m7 * z7 + r7
        out[0, row, j] = (
            a0 * z0 + a1 * z1 + a2 * z2 + a3 * z3 + a4 * z4 + a5 * z5 + a6 * z6 + a7 * z7
        )
        if n_out > 1:
            out[1, row, j] = (
                b0 * z0 + b1 * z1 + b2 * z2 + b3 * z3 + b4 * z4 + b5 * z5 + b6 * z6 + b7 * z7
            )
        if n_out > 2:
            out[2, row, j] = (
                d0 * z0 + d1 * z1 + d2 * z2 + d3 * z3 + d4 * z4 + d5 * z5 + d6 * z6 + d7 * z7
            )
    zz[0], zz[1], zz[2], zz[3], zz[4], zz[5], zz[6], zz[7] = z0, z1, z2, z3, z4, z5, z6, z7
    for k in range(n_modes):
        z[k, w] = zz[k]


SUPER = 8  # lane blocks (of LANES patients) per parallel task


@njit(cache=True, parallel=True)
def _grid(
    poles, residues, active, ev_path, ev_start, ev_dur, ev_amt, t0, dt, outputs, out
):  # pragma: no cover
    n = poles.shape[0]
    n_blocks = (n + LANES - 1) // LANES
    for sup in prange((n_blocks + SUPER - 1) // SUPER):
        work = _workspace(poles.shape[1], poles.shape[2], outputs.shape[0], out.shape[2])
        for blk in range(sup * SUPER, min(n_blocks, (sup + 1) * SUPER)):
            i0 = blk * LANES
            width = min(LANES, n - i0)
            _grid_block(
                i0,
                width,
                poles,
                residues,
                active,
                ev_path,
                ev_start,
                ev_dur,
                ev_amt,
                t0,
                dt,
                outputs,
                out,
                i0,
                work,
            )


@njit(cache=True)
def _workspace(n_paths, m_slots, n_out, n_points):  # pragma: no cover - compiled
    """Work arrays of `_grid_block`, allocated once per parallel task rather than per block."""
    dim = n_paths * m_slots
    return (
        np.ones((dim, LANES)),  # poles
        np.zeros((dim, LANES)),  # one-step multipliers
        np.zeros((dim, LANES)),  # one-step input gains
        np.zeros((dim, LANES)),  # modal states
        np.zeros((n_out, dim, LANES)),  # residues per output
        np.zeros((n_paths, LANES)),  # infusion rate of a special step
        np.zeros((n_paths, LANES)),  # infusion rate between special steps
        np.zeros((n_paths, LANES), dtype=np.bool_),  # a dose starts or ends inside the step
        np.zeros(n_points + 1, dtype=np.bool_),  # steps needing the full treatment
        np.zeros(dim, dtype=np.int64),  # path of each mode
        np.zeros(dim, dtype=np.int64),  # slot of each mode
        np.empty(LANES),  # outputs of one step
    )


@njit(cache=True)
def _vdd(t, coef, lam, start, dur, after, n_terms):  # pragma: no cover - compiled
    """C, dC/dt and d2C/dt2 at t from a patient's compact term list (one term per dose and
    mode: coefficient, pole, start, duration, and expm1(pole x duration) / duration for the
    time after an infusion), right-hand limits at kinks."""
    v = 0.0
    d1 = 0.0
    d2 = 0.0
    for k in range(n_terms):
        tau = t - start[k]
        if tau < 0.0:
            continue
        lm = lam[k]
        d = dur[k]
        if d <= 0.0:
            g = math.exp(lm * tau)
            g1 = lm * g
        elif tau < d:
            em = math.expm1(lm * tau)
            g = em / (lm * d)
            g1 = (em + 1.0) / d
        else:
            g1 = math.exp(lm * (tau - d)) * after[k]
            g = g1 / lm
        c = coef[k]
        v += c * g
        d1 += c * g1
        d2 += c * lm * g1
    return v, d1, d2


@njit(cache=True)
def _terms(
    i, o, poles, residues, active, ev_path, ev_start, ev_dur, ev_amt, coef, lam, start, dur, after
):  # pragma: no cover
    """Fill the compact term list of patient i, output o; returns the number of terms."""
    n = 0
    for e in range(ev_path.shape[0]):
        p = ev_path[e]
        amt = ev_amt[i, e]
        if amt == 0.0:
            continue
        for s in range(poles.shape[2]):
            if active[p, s]:
                r = residues[i, p, o, s]
                if r != 0.0:
                    coef[n] = amt * r
                    lam[n] = poles[i, p, s]
                    start[n] = ev_start[i, e]
                    dur[n] = ev_dur[e]
                    after[n] = math.expm1(lam[n] * dur[n]) / dur[n] if dur[n] > 0.0 else 1.0
                    n += 1
    return n


@njit(cache=True)
def _refine(lo, hi, f_lo, f_hi, target, on_derivative, terms):  # pragma: no cover
    """Root in (lo, hi) of C(t) - target, or of C'(t) when `on_derivative`, given the values
    f_lo, f_hi of opposite signs at the ends: Newton steps kept inside a shrinking bracket,
    starting from the secant point; bisection whenever Newton would leave the bracket."""
    coef, lam, start, dur, after, n_terms = terms
    c_lo = f_lo + target
    c_hi = f_hi + target
    if not on_derivative and target > 0.0 and c_lo > 0.0 and c_hi > 0.0 and c_lo != c_hi:
        # levels fall (or rise) about exponentially between samples: interpolate log C
        x = lo + (hi - lo) * math.log(c_lo / target) / math.log(c_lo / c_hi)
    elif f_hi != f_lo:
        x = lo - f_lo * (hi - lo) / (f_hi - f_lo)
    else:
        x = 0.5 * (lo + hi)
    if not (lo < x < hi):
        x = 0.5 * (lo + hi)
    for _it in range(100):
        v, d1, d2 = _vdd(x, coef, lam, start, dur, after, n_terms)
        if on_derivative:
            f = d1
            fp = d2
        else:
            f = v - target
            fp = d1
        if f == 0.0:
            return x
        if (f > 0.0) == (f_lo > 0.0):
            lo = x
            f_lo = f
        else:
            hi = x
        x_new = x - f / fp if fp != 0.0 else 0.5 * (lo + hi)
        if not (lo < x_new < hi):
            x_new = 0.5 * (lo + hi)
        # Newton converges quadratically: once a step is below 1e-8 relative the new point is
        # good to about 1e-14; a bisection bracket below 1e-9 relative is far below a second
        if abs(x_new - x) <= 1e-8 * max(1.0, abs(x)) or hi - lo <= 1e-9 * max(1.0, abs(x)):
            return x_new
        x = x_new
    return x


@njit(cache=True, parallel=True)
def _summarize(
    poles,
    residues,
    active,
    ev_path,
    ev_start,
    ev_dur,
    ev_amt,
    outputs,
    thresholds,
    horizon,
    tc,
    near,
    far,
    out,
):  # pragma: no cover - compiled
    """Per-patient summaries from the closed form; `near` then `far` (its first point dropped)
    hold the curves at the
    bracketing times tc[k] (from `_grid`)."""
    n = poles.shape[0]
    n_ev = ev_path.shape[0]
    block = 256  # patients per task: work arrays allocated once per task
    for blk in prange((n + block - 1) // block):
        breaks = np.empty(2 * n_ev + 2)
        max_terms = n_ev * poles.shape[2]
        t_coef = np.empty(max_terms)
        t_lam = np.empty(max_terms)
        t_start = np.empty(max_terms)
        t_dur = np.empty(max_terms)
        t_after = np.empty(max_terms)
        for i in range(blk * block, min(n, (blk + 1) * block)):
            _summarize_one(
                i,
                poles,
                residues,
                active,
                ev_path,
                ev_start,
                ev_dur,
                ev_amt,
                outputs,
                thresholds,
                horizon,
                tc,
                near,
                far,
                out,
                breaks,
                t_coef,
                t_lam,
                t_start,
                t_dur,
                t_after,
            )


@njit(cache=True)
def _summarize_one(
    i,
    poles,
    residues,
    active,
    ev_path,
    ev_start,
    ev_dur,
    ev_amt,
    outputs,
    thresholds,
    horizon,
    tc,
    near,
    far,
    out,
    breaks,
    t_coef,
    t_lam,
    t_start,
    t_dur,
    t_after,
):  # pragma: no cover - compiled
    n_ev = ev_path.shape[0]
    n_paths = poles.shape[1]
    m_slots = poles.shape[2]
    n_out = outputs.shape[0]
    n_coarse = tc.shape[0] - 1
    for q in range(n_out):
        o = outputs[q]
        n_terms = _terms(
            i,
            o,
            poles,
            residues,
            active,
            ev_path,
            ev_start,
            ev_dur,
            ev_amt,
            t_coef,
            t_lam,
            t_start,
            t_dur,
            t_after,
        )
        terms = (t_coef, t_lam, t_start, t_dur, t_after, n_terms)
        # ---- maximum: near the coarse maximum, between kinks (dose starts and ends)
        n_near = near.shape[2] - 1
        j = 0
        best = near[q, i, 0]
        for k in range(1, n_near + 1):
            if near[q, i, k] > best:
                best = near[q, i, k]
                j = k
        for k in range(1, far.shape[2]):
            if far[q, i, k] > best:
                best = far[q, i, k]
                j = n_near + k
        lo = tc[max(0, j - 1)]
        hi = tc[min(n_coarse, j + 1)]
        nb = 0
        breaks[nb] = lo
        nb += 1
        for e in range(n_ev):
            for edge in (ev_start[i, e], ev_start[i, e] + ev_dur[e]):
                if lo < edge < hi:
                    breaks[nb] = edge
                    nb += 1
        breaks[nb] = hi
        nb += 1
        breaks[:nb].sort()
        c_max = -1.0
        t_max = 0.0
        d_prev = 0.0
        for b in range(nb):
            c, d_right, _ = _vdd(breaks[b], *terms)
            if c > c_max:
                c_max = c
                t_max = breaks[b]
            # an interior maximum of (breaks[b-1], breaks[b]) needs C' > 0 just after the
            # left end and C' < 0 just before the right end (one-sided at kinks)
            if b > 0 and d_prev > 0.0:
                a_t = breaks[b - 1]
                b_t = breaks[b]
                if b_t - a_t > 1e-9:
                    d_b = _vdd(b_t - 1e-9 * (b_t - a_t), *terms)[1]
                    if d_b < 0.0:
                        x = _refine(a_t, b_t, d_prev, d_b, 0.0, True, terms)
                        cx = _vdd(x, *terms)[0]
                        if cx > c_max:
                            c_max = cx
                            t_max = x
            d_prev = d_right
        out[i, q, CMAX] = c_max
        out[i, q, TMAX] = t_max
        # ---- AUC: analytic to infinity; to the horizon by subtracting the tail, which
        # the modal states the grid left at the horizon give in closed form
        auc_inf = 0.0
        largest = 0.0
        for p in range(n_paths):
            for s in range(m_slots):
                if active[p, s]:
                    largest = max(largest, abs(residues[i, p, o, s]))
        slowest = 0.0
        doses_done = True
        for e in range(n_ev):
            p = ev_path[e]
            amt = ev_amt[i, e]
            if amt == 0.0:
                continue
            if ev_start[i, e] + ev_dur[e] > horizon:
                doses_done = False
            for s in range(m_slots):
                if active[p, s]:
                    r = residues[i, p, o, s]
                    lam = poles[i, p, s]
                    auc_inf += amt * r / (-lam)
                    # terminal half-life: the slowest mode the output carries
                    if abs(r) > 1e-12 * largest and (slowest == 0.0 or -lam < slowest):
                        slowest = -lam
        auc_h = 0.0
        if doses_done:
            auc_h = auc_inf
            for k in range(n_terms):
                # tail beyond the horizon of a finished dose: (C's part) / -pole
                tau = horizon - t_start[k]
                d = t_dur[k]
                lm = t_lam[k]
                if d <= 0.0:
                    auc_h += t_coef[k] * math.exp(lm * tau) / lm
                else:
                    auc_h += t_coef[k] * math.exp(lm * (tau - d)) * t_after[k] / (lm * lm)
        else:
            for k in range(n_terms):
                auc_h += t_coef[k] * _g_integral(t_lam[k], horizon - t_start[k], t_dur[k])
        out[i, q, AUC_INF] = auc_inf
        out[i, q, AUC_HORIZON] = auc_h
        out[i, q, HALF_LIFE] = math.log(2.0) / slowest if slowest > 0.0 else np.nan
        # ---- threshold: crossings bracketed on the coarse grid plus the exact maximum
        thr = thresholds[q]
        above = near[q, i, 0] > thr
        time_above = 0.0
        since = 0.0
        last_down = 0.0
        prev_t = 0.0
        prev_c = near[q, i, 0]
        inserted = False
        k = 1
        while k <= n_coarse:
            if not inserted and prev_t < t_max < tc[k]:
                cur_t = t_max
                cur_c = c_max
                inserted = True
            else:
                cur_t = tc[k]
                cur_c = near[q, i, k] if k <= n_near else far[q, i, k - n_near]
                k += 1
            now_above = cur_c > thr
            if now_above != above:
                x = _refine(prev_t, cur_t, prev_c - thr, cur_c - thr, thr, False, terms)
                if now_above:
                    since = x
                else:
                    time_above += x - since
                    last_down = x
                above = now_above
            prev_t = cur_t
            prev_c = cur_c
        if above:
            time_above += horizon - since
            last_down = np.nan
        out[i, q, TIME_ABOVE] = time_above
        out[i, q, TIME_TO_BELOW] = last_down


# ----------------------------------------------------------------------------------------------
# Python entry points


def _plain(array, dtype, shape=None) -> np.ndarray:
    """C-contiguous and writeable: one array type for the kernels, so Numba compiles each
    kernel once (a read-only or strided view would be a new type and a new compilation)."""
    if shape is not None:
        array = np.broadcast_to(array, shape)
    return np.require(array, dtype=dtype, requirements=("C", "W"))


def _event_arrays(events: DoseEvents, n: int):
    e = events.path.shape[0]
    return (
        _plain(events.path, np.int64),
        _plain(events.start_min, np.float64, (n, e)),
        _plain(events.duration_min, np.float64),
        _plain(events.amount_mg, np.float64, (n, e)),
    )


def evaluate(
    modal: ModalSystem, events: DoseEvents, times_min: np.ndarray, output: int = OUTPUT_PARENT
) -> np.ndarray:
    """Concentrations (N, T) in ng/mL at arbitrary times (closed form, superposed doses)."""
    times = np.ascontiguousarray(times_min, dtype=np.float64)
    n = modal.poles.shape[0]
    out = np.empty((n, times.shape[0]))
    _evaluate(
        modal.poles, modal.residues, modal.active, *_event_arrays(events, n), times, output, out
    )
    return out


def grid_curves(
    modal: ModalSystem,
    events: DoseEvents,
    step_min: float,
    n_points: int,
    outputs: tuple[int, ...] = (OUTPUT_PARENT,),
    start_min: float = 0.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Curves (len(outputs), N, n_points) on start + k step, by multiplication per step.
    `out` may be a reused buffer of at least that shape (the result is a view of it)."""
    if step_min <= 0 or n_points < 1:
        raise PKInputError("step", "the time grid needs a positive step and at least one point")
    n = modal.poles.shape[0]
    if out is None:
        out = np.empty((len(outputs), n, n_points))
    elif (
        out.ndim != 3
        or out.shape[0] != len(outputs)
        or out.shape[1] < n
        or out.shape[2] != n_points
        or not out.flags.c_contiguous
    ):
        raise PKInputError("out", "the curve buffer must be C-contiguous (outputs, >= N, points)")
    # The kernel fills rows 0..n-1 of the whole buffer: a sliced view would be a differently
    # laid-out array and cost a fresh compilation.
    _grid(
        modal.poles,
        modal.residues,
        modal.active,
        *_event_arrays(events, n),
        float(start_min),
        float(step_min),
        np.asarray(outputs, dtype=np.int64),
        out,
    )
    return out[:, :n, :]


def summarize(
    modal: ModalSystem,
    events: DoseEvents,
    outputs: tuple[int, ...],
    thresholds_ng_per_ml: tuple[float, ...],
    horizon_min: float,
    near_step_min: float = 10.0,
    far_step_min: float = 60.0,
    near_span_min: float = 180.0,
) -> np.ndarray:
    """Per-patient summaries (N, len(outputs), 7), columns as in SUMMARY_FIELDS (minutes).

    Maxima and threshold crossings are bracketed on samples every `near_step_min` until
    `near_span_min` after the last dose ends, every `far_step_min` after that (plus the dose
    starts and ends, and the exact maximum), then solved by Newton iterations on the closed
    form. A crossing pair closer together than the sampling step can be missed."""
    if horizon_min <= 0:
        raise PKInputError("horizon", "the horizon must be positive")
    n = modal.poles.shape[0]
    active_until = min(horizon_min, events.last_end_min + near_span_min) if n else horizon_min
    n_near = max(1, math.ceil(max(active_until, near_step_min) / near_step_min))
    dt_near = near_step_min
    if n_near * dt_near >= horizon_min:
        n_near = max(2, math.ceil(horizon_min / near_step_min))
        dt_near = horizon_min / n_near
        n_far = 0
        dt_far = 1.0
    else:
        n_far = math.ceil((horizon_min - n_near * dt_near) / far_step_min)
        dt_far = (horizon_min - n_near * dt_near) / n_far
    # bracketing samples: the curves every dt_near while doses act, every dt_far after
    near = grid_curves(modal, events, dt_near, n_near + 1, outputs)
    times = [np.arange(n_near + 1) * dt_near]
    parts = [near]
    if n_far:
        far_grid = grid_curves(
            modal, events, dt_far, n_far + 1, outputs, start_min=n_near * dt_near
        )
        times.append(n_near * dt_near + np.arange(1, n_far + 1) * dt_far)
        parts.append(far_grid)
    tc = np.concatenate(times)
    tc[-1] = horizon_min
    far = parts[1] if n_far else np.empty((len(outputs), n, 0))
    far = np.require(far, dtype=np.float64, requirements=("C", "W"))
    out = np.empty((n, len(outputs), len(SUMMARY_FIELDS)))
    _summarize(
        modal.poles,
        modal.residues,
        modal.active,
        *_event_arrays(events, n),
        np.asarray(outputs, dtype=np.int64),
        np.asarray(thresholds_ng_per_ml, dtype=np.float64),
        float(horizon_min),
        tc,
        near,
        far,
        out,
    )
    return out


# ----------------------------------------------------------------------------------------------
# General state-space form and the matrix-exponential solution (single patient).


@dataclass(frozen=True)
class StateSpace:
    """dx/dt = K x + inputs. `path_state[p]` is where a dose on path p enters; `observe`
    (3, n) maps the state to parent, metabolite and effect-site concentrations (ng/mL)."""

    k_matrix: np.ndarray
    path_state: np.ndarray
    observe: np.ndarray


def state_space(system: SystemArrays, patient: int = 0) -> StateSpace:
    """The full linear system of one patient: depots, parent, metabolite, effect site."""
    n_par = system.parent_volume.shape[1]
    n_met = system.metabolite_volume.shape[1]
    n_paths = system.path_block.shape[0]
    depots = [p for p in range(n_paths) if system.path_ka[patient, p] > 0]
    n_dep = len(depots)
    has_effect = system.ke0_per_min > 0
    n = n_dep + n_par + n_met + (1 if has_effect else 0)
    par0 = n_dep
    met0 = n_dep + n_par
    eff = n - 1
    k = np.zeros((n, n))
    path_state = np.zeros(n_paths, dtype=np.int64)
    for p in range(n_paths):
        target = (par0 if system.path_block[p] == 0 else met0) + int(system.path_compartment[p])
        if p in depots:
            d = depots.index(p)
            ka = system.path_ka[patient, p]
            k[d, d] -= ka
            k[target, d] += ka
            path_state[p] = d
        else:
            path_state[p] = target

    def block(first, volume, flow, clearance):
        for j in range(1, volume.shape[0]):
            k[first, first + j] += flow[j] / volume[j]
            k[first + j, first] += flow[j] / volume[0]
            k[first, first] -= flow[j] / volume[0]
            k[first + j, first + j] -= flow[j] / volume[j]
        for j in range(volume.shape[0]):
            k[first + j, first + j] -= clearance[j] / volume[j]

    block(
        par0,
        system.parent_volume[patient],
        system.parent_flow[patient],
        system.parent_clearance[patient],
    )
    observe = np.zeros((N_OUTPUTS, n))
    observe[OUTPUT_PARENT, par0] = NG_PER_ML_PER_MG_PER_L / system.parent_volume[patient, 0]
    if n_met:
        block(
            met0,
            system.metabolite_volume[patient],
            system.metabolite_flow[patient],
            system.metabolite_clearance[patient],
        )
        for o in range(n_par):
            k[met0, par0 + o] += (
                system.parent_formation[patient, o] / system.parent_volume[patient, o]
            )
        observe[OUTPUT_METABOLITE, met0] = (
            NG_PER_ML_PER_MG_PER_L / system.metabolite_volume[patient, 0]
        )
    if has_effect:
        ke0 = system.ke0_per_min
        k[eff, par0] += ke0 * system.effect_scale * observe[OUTPUT_PARENT, par0]
        k[eff, eff] -= ke0
        observe[OUTPUT_EFFECT, eff] = 1.0
    return StateSpace(k, path_state, observe)


def expm_solve(
    space: StateSpace, events: DoseEvents, times_min: np.ndarray, patient: int = 0
) -> np.ndarray:
    """Concentrations (3, T) of one patient by matrix exponentials between dose events.

    Between consecutive breakpoints the input is constant, so x(t + h) = e^{Kh} x(t) +
    (integral_0^h e^{Ks} ds) r, both blocks of expm([[K, r], [0, 0]] h) (Van Loan); exact for
    any K, singular or defective.
    """
    k = space.k_matrix
    n = k.shape[0]
    times = np.asarray(times_min, dtype=np.float64)
    starts = events.start_min[patient] if events.start_min.ndim == 2 else events.start_min
    amounts = events.amount_mg[patient] if events.amount_mg.ndim == 2 else events.amount_mg
    ends = starts + events.duration_min
    if times.size and times.min() < 0:
        raise PKInputError("times", "times count from the first dose and cannot be negative")
    breaks = np.unique(np.concatenate([starts, ends, times, [0.0]]))
    x = np.zeros(n)
    t = float(breaks[0])
    result = np.zeros((N_OUTPUTS, times.shape[0]))

    def add_boluses(at: float) -> None:
        for e in range(events.path.shape[0]):
            if events.duration_min[e] <= 0 and starts[e] == at:
                x[space.path_state[events.path[e]]] += amounts[e]

    add_boluses(t)
    for idx in np.nonzero(times == t)[0]:
        result[:, idx] = space.observe @ x
    for t_next in breaks[1:]:
        h = float(t_next - t)
        rate = np.zeros(n)
        for e in range(events.path.shape[0]):
            d = events.duration_min[e]
            if d > 0 and starts[e] <= t and ends[e] >= t_next:
                rate[space.path_state[events.path[e]]] += amounts[e] / d
        aug = np.zeros((n + 1, n + 1))
        aug[:n, :n] = k * h
        aug[:n, n] = rate * h
        e_aug = expm(aug)
        x = e_aug[:n, :n] @ x + e_aug[:n, n]
        t = float(t_next)
        add_boluses(t)
        for idx in np.nonzero(times == t)[0]:
            result[:, idx] = space.observe @ x
    return result
