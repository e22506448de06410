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
from the same closed form in `summary.py`, with no grid.

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

    The (N, k) tables are best built in column-major (Fortran) order, as the models do: the
    decomposition reads a parameter for a run of patients at once, and takes any other
    layout as a copy.
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
    """Poles (P, M, N) and residues (P, 3, M, N) of every path and output, patients last:
    the kernels work on patients in SIMD lanes, so a lane's values are read and written
    contiguously. `active` (P, M) marks the mode slots a path uses."""

    poles: np.ndarray
    residues: np.ndarray
    active: np.ndarray

    @property
    def n_patients(self) -> int:
        return self.poles.shape[-1]

    def take(self, index: np.ndarray | slice) -> ModalSystem:
        # contiguous copies: the kernels are compiled for C-contiguous arrays
        return ModalSystem(
            np.ascontiguousarray(self.poles[..., index]),
            np.ascontiguousarray(self.residues[..., index]),
            self.active,
        )


# ----------------------------------------------------------------------------------------------
# Eigen-decomposition of a small symmetric matrix (cyclic Jacobi): exact to rounding, no LAPACK
# call per patient, and fast for the 2-4 compartment blocks of PK models.


@njit(cache=True, error_model="numpy")
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


SQRT3_HALF = 0.8660254037844386  # sin(2 pi / 3)
TRIPLE_ANGLE_STEPS = 4
# Newton steps on the secular equation after the closed-form estimate (quadratic: one leaves
# errors of about 1e-11)
NEWTON_STEPS = 2


@njit(cache=True, error_model="numpy")
def _block_eigen_lanes(volume, flow, clearance, i0, nb, lam, vec, s, ok):  # pragma: no cover
    """Eigen-decompositions of V^-1/2 M V^-1/2 for the mammillary blocks (elimination from any
    compartment) of patients i0 .. i0 + nb - 1, patient b in lane b of lam (n, L) and
    vec (n, n, L); s (n, n, L) is work space. Every loop runs over lanes, so LLVM vectorises
    the arithmetic across patients (one patient at a time is latency-bound on its divisions).

    2 or 3 compartments: an arrowhead matrix (central row and column, the rest diagonal) in
    closed form, eigenvalues from the characteristic polynomial (quadratic, or the
    trigonometric form of the cubic) refined by Newton steps on the secular equation
    lam - s00 - sum_j s0j^2 / (lam - sjj) = 0, eigenvectors (1, s0j / (lam - sjj)) normalised.
    Where a coupling vanishes or two peripheral diagonals almost coincide those formulas lose
    accuracy (ok[b] False), and for more compartments, the patient gets cyclic Jacobi."""
    n = volume.shape[1]
    for b in range(nb):
        ok[b] = True
    for j in range(n):
        for k in range(n):
            for b in range(nb):
                s[j, k, b] = 0.0
    for b in range(nb):
        s[0, 0, b] = clearance[i0 + b, 0]  # plus the flows, then over the volume
    for j in range(1, n):
        for b in range(nb):
            i = i0 + b
            s[0, 0, b] += flow[i, j]
            s[j, j, b] = -(flow[i, j] + clearance[i, j]) / volume[i, j]
            off = flow[i, j] / math.sqrt(volume[i, 0] * volume[i, j])
            s[0, j, b] = off
            s[j, 0, b] = off
    for b in range(nb):
        s[0, 0, b] = -s[0, 0, b] / volume[i0 + b, 0]
    if n == 1:
        for b in range(nb):
            lam[0, b] = s[0, 0, b]
            vec[0, 0, b] = 1.0
        return
    # inner loops over lanes throughout (a loop over j inside would stop the vectorising)
    scale = np.empty(nb)
    acc = np.empty(nb)  # the secular function, then the eigenvector's squared norm
    slope = np.empty(nb)
    if n <= 3:
        for b in range(nb):
            scale[b] = abs(s[0, 0, b])
        for j in range(1, n):
            for b in range(nb):
                scale[b] = max(scale[b], abs(s[j, j, b]), abs(s[0, j, b]))
        for j in range(1, n):
            for b in range(nb):
                ok[b] = ok[b] & (abs(s[0, j, b]) > 1e-8 * scale[b])
            for k in range(j + 1, n):
                for b in range(nb):
                    ok[b] = ok[b] & (abs(s[j, j, b] - s[k, k, b]) > 1e-6 * scale[b])
    if n == 2:
        for b in range(nb):
            d0 = s[0, 0, b]
            d1 = s[1, 1, b]
            half_tr = 0.5 * (d0 + d1)
            half_gap = 0.5 * (d0 - d1)
            gap = math.sqrt(half_gap * half_gap + s[0, 1, b] * s[0, 1, b])
            lam[0, b] = half_tr - gap
            lam[1, b] = half_tr + gap
    elif n == 3:
        cos_t = np.empty(nb)
        for b in range(nb):
            d0 = s[0, 0, b]
            d1 = s[1, 1, b]
            d2 = s[2, 2, b]
            z1 = s[0, 1, b] * s[0, 1, b]
            z2 = s[0, 2, b] * s[0, 2, b]
            # det(lam I - S) = lam^3 + a lam^2 + b lam + c
            a = -(d0 + d1 + d2)
            bb = d0 * d1 + d0 * d2 + d1 * d2 - z1 - z2
            c = -(d0 * d1 * d2 - z1 * d2 - z2 * d1)
            p = bb - a * a / 3.0
            q = 2.0 * a * a * a / 27.0 - a * bb / 3.0 + c
            ok[b] = ok[b] & (p < 0.0)  # a symmetric matrix with distinct roots has p < 0
            p = min(p, -1e-300)
            r = 2.0 * math.sqrt(-p / 3.0)
            lam[0, b] = r  # the radius and the offset, until the angle is known
            lam[1, b] = -a / 3.0
            cos_t[b] = min(1.0, max(-1.0, 3.0 * q / (p * r)))
        # cos(acos(c) / 3), in lanes (libm's acos and cos go one lane at a time): the root in
        # [1/2, 1] of 4 y^3 - 3 y = c (the triple-angle formula) by Newton's method from
        # 1/2 + sqrt((1 + c) / 6), at or above the root for every c in [-1, 1] (exact at -1),
        # where the cubic is increasing and convex: the iterates fall monotonically onto the
        # root, within 5e-9 after 4 steps (as near c = -1 is libm's, where two eigenvalues
        # nearly coincide), and the Newton steps on the secular equation below finish it
        for b in range(nb):
            c = cos_t[b]
            y = 0.5 + math.sqrt((1.0 + c) / 6.0)
            for _step in range(TRIPLE_ANGLE_STEPS):
                rise = 12.0 * y * y - 3.0
                y -= (4.0 * y * y * y - 3.0 * y - c) / rise if rise > 0.0 else 0.0
            cos_t[b] = y
        for b in range(nb):
            r = lam[0, b]
            shift = lam[1, b]
            ct = cos_t[b]
            st = math.sqrt(max(0.0, 1.0 - ct * ct))  # theta in [0, pi / 3]: sin >= 0
            # r cos(theta - 2 pi k / 3) - a / 3 for k = 0, 1, 2
            lam[0, b] = r * ct + shift
            lam[1, b] = r * (-0.5 * ct + SQRT3_HALF * st) + shift
            lam[2, b] = r * (-0.5 * ct - SQRT3_HALF * st) + shift
    if n <= 3:
        for k in range(n):
            for _it in range(NEWTON_STEPS):
                for b in range(nb):
                    acc[b] = lam[k, b] - s[0, 0, b]
                    slope[b] = 1.0
                for j in range(1, n):
                    for b in range(nb):
                        inv = 1.0 / (lam[k, b] - s[j, j, b])
                        zz = s[0, j, b] * s[0, j, b]
                        acc[b] -= zz * inv
                        slope[b] += zz * inv * inv
                for b in range(nb):
                    x = lam[k, b]
                    x_new = x - acc[b] / slope[b]
                    # a lane that failed the checks may divide by zero: kept finite
                    lam[k, b] = x_new if abs(x_new) < math.inf else x
            for b in range(nb):
                acc[b] = 1.0
            for j in range(1, n):
                for b in range(nb):
                    v = s[0, j, b] / (lam[k, b] - s[j, j, b])
                    vec[j, k, b] = v
                    acc[b] += v * v
            for b in range(nb):
                acc[b] = 1.0 / math.sqrt(acc[b])
                vec[0, k, b] = acc[b]
            for j in range(1, n):
                for b in range(nb):
                    vec[j, k, b] *= acc[b]
    work = np.empty((n, n))
    w = np.empty(n)
    v = np.empty((n, n))
    for b in range(nb):
        if n <= 3 and ok[b]:
            continue
        for j in range(n):
            for k in range(n):
                work[j, k] = s[j, k, b]
        _jacobi_eigh(work, w, v)
        for k in range(n):
            lam[k, b] = w[k]
            for j in range(n):
                vec[j, k, b] = v[j, k]


@njit(cache=True, inline="always", error_model="numpy")
def _lane_factor(fac, slot, depot_slot, depot_on, b):  # pragma: no cover - compiled
    """The factor of a slot in lane b: the depot's slot is unused in a lane without one."""
    if slot == depot_slot and not depot_on[b]:
        return -1
    return fac[slot]


@njit(cache=True, error_model="numpy")
def _separate_poles(mu, fac, depot_slot, depot_on, nb):  # pragma: no cover - compiled
    """Move each slot's pole away from poles of other factors in slots before it (see module
    doc), lane by lane; a vectorised test first finds the (rare) lanes that need it."""
    m_slots = mu.shape[0]
    close = np.zeros(nb, dtype=np.bool_)
    for slot in range(m_slots):
        for m in range(slot):
            if fac[m] < 0 or fac[slot] < 0 or fac[m] == fac[slot]:
                continue
            for b in range(nb):
                scale = max(abs(mu[m, b]), abs(mu[slot, b]))
                close[b] = close[b] | (abs(mu[slot, b] - mu[m, b]) <= POLE_GAP * scale)
    for b in range(nb):
        if not close[b]:
            continue
        for slot in range(m_slots):
            f = _lane_factor(fac, slot, depot_slot, depot_on, b)
            if f < 0:
                continue
            for _attempt in range(8):
                moved = False
                for m in range(slot):
                    g = _lane_factor(fac, m, depot_slot, depot_on, b)
                    if g < 0 or g == f:
                        continue
                    scale = max(abs(mu[m, b]), abs(mu[slot, b]))
                    if abs(mu[slot, b] - mu[m, b]) <= POLE_GAP * scale:
                        mu[slot, b] = mu[m, b] * (1.0 + 4.0 * POLE_GAP)
                        moved = True
                if not moved:
                    break


@njit(cache=True, error_model="numpy")
def _combine_lanes(mu, rf, fac, use, depot_slot, depot_on, nb, res, value, h):  # pragma: no cover
    """Residues of the product of the factors flagged in `use`, into res[slot, lane]: at a
    pole of factor f, its own residue times the other factors' transfer functions evaluated
    there. Lanes without a depot leave its factor out."""
    m_slots = mu.shape[0]
    for slot in range(m_slots):
        f = fac[slot]
        if f < 0 or not use[f]:
            for b in range(nb):
                res[slot, b] = 0.0
            continue
        for b in range(nb):
            value[b] = rf[slot, b]
        for g in range(N_FACTORS):
            if g == f or not use[g]:
                continue
            for b in range(nb):
                h[b] = 0.0
            for m in range(m_slots):
                if fac[m] != g:
                    continue
                for b in range(nb):
                    h[b] += rf[m, b] / (mu[slot, b] - mu[m, b])
            if g == FACTOR_DEPOT:
                for b in range(nb):
                    value[b] *= h[b] if depot_on[b] else 1.0
            else:
                for b in range(nb):
                    value[b] *= h[b]
        for b in range(nb):
            res[slot, b] = value[b]


@njit(cache=True, error_model="numpy")
def _residues_lanes(
    i0,
    nb,
    par_v,
    par_fm,
    met_v,
    path_block,
    path_cmt,
    path_ka,
    ke0,
    effect_scale,
    lam_p,
    vec_p,
    lam_m,
    vec_m,
    poles,
    residues,
):  # pragma: no cover - compiled
    """Poles and residues of patients i0 .. i0 + nb - 1 from their blocks' eigen-
    decompositions (lanes as in _block_eigen_lanes), every path and output."""
    n_par = par_v.shape[1]
    n_met = met_v.shape[1]
    n_paths = path_block.shape[0]
    m_slots = poles.shape[1]
    mu = np.empty((m_slots, nb))
    r_conc = np.empty((m_slots, nb))
    r_form = np.empty((m_slots, nb))
    res = np.empty((N_OUTPUTS, m_slots, nb))  # lane-major, written out patient by patient
    fac = np.empty(m_slots, dtype=np.int64)
    use = np.zeros(N_FACTORS, dtype=np.bool_)
    depot_on = np.empty(nb, dtype=np.bool_)
    value = np.empty(nb)
    h = np.empty(nb)
    into = np.empty(nb)
    # per compartment and lane, read once: 1 / sqrt(V) and the fraction forming metabolite
    inv_sqrt_v = np.empty((n_par, nb))
    fm = np.empty((n_par, nb))
    for o in range(n_par):
        for b in range(nb):
            inv_sqrt_v[o, b] = 1.0 / math.sqrt(par_v[i0 + b, o])
            fm[o, b] = par_fm[i0 + b, o]
    # slot layout: [parent modes][depot][metabolite modes][effect]; parent poles come first so
    # the others are moved away from them, never the reverse.
    depot_slot = n_par
    effect_slot = m_slots - 1
    for p in range(n_paths):
        j = path_cmt[p]
        for s in range(m_slots):
            fac[s] = -1
            for b in range(nb):
                mu[s, b] = -1.0
                r_conc[s, b] = 0.0
                r_form[s, b] = 0.0
        if path_block[p] == 0:
            for k in range(n_par):
                fac[k] = FACTOR_PARENT
                for b in range(nb):
                    mu[k, b] = lam_p[k, b]
                    into[b] = vec_p[j, k, b] * inv_sqrt_v[j, b]
                    r_conc[k, b] = (
                        vec_p[0, k, b] * inv_sqrt_v[0, b] * into[b] * NG_PER_ML_PER_MG_PER_L
                    )
                for o in range(n_par):
                    for b in range(nb):
                        r_form[k, b] += fm[o, b] * vec_p[o, k, b] * inv_sqrt_v[o, b] * into[b]
        any_depot = False
        for b in range(nb):
            ka = path_ka[i0 + b, p]
            depot_on[b] = ka > 0.0
            any_depot = any_depot | (ka > 0.0)
            mu[depot_slot, b] = -ka if ka > 0.0 else -1.0
            r_conc[depot_slot, b] = max(ka, 0.0)
            r_form[depot_slot, b] = max(ka, 0.0)
        if any_depot:
            fac[depot_slot] = FACTOR_DEPOT
        for k in range(n_met):
            s = n_par + 1 + k
            fac[s] = FACTOR_METABOLITE
            for b in range(nb):
                mu[s, b] = lam_m[k, b]
                r_conc[s, b] = (
                    vec_m[0, k, b] * vec_m[0, k, b] / met_v[i0 + b, 0] * NG_PER_ML_PER_MG_PER_L
                )
                r_form[s, b] = r_conc[s, b]
        if ke0 > 0.0:
            fac[effect_slot] = FACTOR_EFFECT
            for b in range(nb):
                mu[effect_slot, b] = -ke0
                r_conc[effect_slot, b] = ke0 * effect_scale
                r_form[effect_slot, b] = ke0 * effect_scale
        _separate_poles(mu, fac, depot_slot, depot_on, nb)
        res[:] = 0.0
        use[:] = False
        use[FACTOR_DEPOT] = any_depot
        if path_block[p] == 0:
            # parent concentration: depot x parent
            use[FACTOR_PARENT] = True
            _combine_lanes(
                mu, r_conc, fac, use, depot_slot, depot_on, nb, res[OUTPUT_PARENT], value, h
            )
            # effect site: depot x parent x effect
            if ke0 > 0.0:
                use[FACTOR_EFFECT] = True
                _combine_lanes(
                    mu, r_conc, fac, use, depot_slot, depot_on, nb, res[OUTPUT_EFFECT], value, h
                )
                use[FACTOR_EFFECT] = False
            # metabolite: depot x parent (formation rate) x metabolite
            if n_met > 0:
                use[FACTOR_METABOLITE] = True
                _combine_lanes(
                    mu, r_form, fac, use, depot_slot, depot_on, nb, res[OUTPUT_METABOLITE], value, h
                )
        elif n_met > 0:
            use[FACTOR_METABOLITE] = True
            _combine_lanes(
                mu, r_conc, fac, use, depot_slot, depot_on, nb, res[OUTPUT_METABOLITE], value, h
            )
        # patients last in poles and residues, as in the lanes: contiguous stores
        for s in range(m_slots):
            for b in range(nb):
                poles[p, s, i0 + b] = mu[s, b]
        for o in range(N_OUTPUTS):
            for s in range(m_slots):
                for b in range(nb):
                    residues[p, o, s, i0 + b] = res[o, s, b]


# nogil: the server's other requests go on while a simulation runs
@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
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
    # patients per task: work arrays allocated once per block (some forty small ones, 50 ns
    # each); 256 measured 8% faster than 64
    block = 256
    for blk in prange((n_patients + block - 1) // block):
        i0 = blk * block
        nb = min(n_patients, i0 + block) - i0
        lanes_lam_p = np.empty((n_par, block))
        lanes_vec_p = np.empty((n_par, n_par, block))
        lanes_s_p = np.empty((n_par, n_par, block))
        lanes_lam_m = np.empty((n_met, block))
        lanes_vec_m = np.empty((n_met, n_met, block))
        lanes_s_m = np.empty((n_met, n_met, block))
        lanes_ok = np.empty(block, dtype=np.bool_)
        _block_eigen_lanes(
            par_v, par_q, par_cl, i0, nb, lanes_lam_p, lanes_vec_p, lanes_s_p, lanes_ok
        )
        if n_met > 0:
            _block_eigen_lanes(
                met_v, met_q, met_cl, i0, nb, lanes_lam_m, lanes_vec_m, lanes_s_m, lanes_ok
            )
        _residues_lanes(
            i0,
            nb,
            par_v,
            par_fm,
            met_v,
            path_block,
            path_cmt,
            path_ka,
            ke0,
            effect_scale,
            lanes_lam_p,
            lanes_vec_p,
            lanes_lam_m,
            lanes_vec_m,
            poles,
            residues,
        )


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
    poles = np.empty((n_paths, m_slots, n))
    residues = np.empty((n_paths, N_OUTPUTS, m_slots, n))
    _decompose(
        _plain_lanes(system.parent_volume, np.float64),
        _plain_lanes(system.parent_flow, np.float64),
        _plain_lanes(system.parent_clearance, np.float64),
        _plain_lanes(system.parent_formation, np.float64),
        _plain_lanes(system.metabolite_volume, np.float64),
        _plain_lanes(system.metabolite_flow, np.float64),
        _plain_lanes(system.metabolite_clearance, np.float64),
        _plain(system.path_block, np.int64),
        _plain(system.path_compartment, np.int64),
        _plain_lanes(system.path_ka, np.float64),
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
        for s in range(poles.shape[1]):
            if active[p, s]:
                r = residues[p, o, s, i]
                if r != 0.0:
                    acc += r * _g(poles[p, s, i], tau, ev_dur[e])
        total += amt * acc
    return total


# nogil: the server's other requests go on while a simulation runs
@njit(cache=True, parallel=True, nogil=True)
def _evaluate(
    poles, residues, active, ev_path, ev_start, ev_dur, ev_amt, times, o, out
):  # pragma: no cover
    for i in prange(poles.shape[2]):
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
    n_paths = poles.shape[0]
    m_slots = poles.shape[1]
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
            lm = poles[p, s, i]
            lam[m, w] = lm
            mult[m, w] = math.exp(lm * dt)
            incr[m, w] = math.expm1(lm * dt) / lm
            for q in range(n_out):
                res[q, m, w] = residues[p, outputs[q], s, i]
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
    # modes in three groups (0-2, 3-4, 5-7) and outputs, each computed only if the model has
    # it: the tests are the same at every step, so LLVM moves them out of the loop (one copy
    # of the loop per case), and ketamine IV with norketamine (5 modes, 2 outputs) does 15
    # multiply-adds a step, not 24 (computing a third output's sums unused cost 5%)
    some = n_modes > 3
    many = n_modes > 5
    two = n_out > 1
    three = n_out > 2
    o1 = 0.0
    o2 = 0.0
    for j in range(j0, j1):
        z0 = m0 * z0 + r0
        z1 = m1 * z1 + r1
        z2 = m2 * z2 + r2
        o0 = a0 * z0 + a1 * z1 + a2 * z2
        if two:
            o1 = b0 * z0 + b1 * z1 + b2 * z2
        if three:
            o2 = d0 * z0 + d1 * z1 + d2 * z2
        if some:
            z3 = m3 * z3 + r3
            z4 = m4 * z4 + r4
            o0 += a3 * z3 + a4 * z4
            if two:
                o1 += b3 * z3 + b4 * z4
            if three:
                o2 += d3 * z3 + d4 * z4
        if many:
            z5 = m5 * z5 + r5
            z6 = m6 * z6 + r6
            z7 = m7 * z7 + r7
            o0 += a5 * z5 + a6 * z6 + a7 * z7
            if two:
                o1 += b5 * z5 + b6 * z6 + b7 * z7
            if three:
                o2 += d5 * z5 + d6 * z6 + d7 * z7
        out[0, row, j] = o0
        if two:
            out[1, row, j] = o1
        if three:
            out[2, row, j] = o2
    zz[0], zz[1], zz[2], zz[3], zz[4], zz[5], zz[6], zz[7] = z0, z1, z2, z3, z4, z5, z6, z7
    for k in range(n_modes):
        z[k, w] = zz[k]


SUPER = 8  # lane blocks (of LANES patients) per parallel task


# nogil: the server's other requests go on while a simulation runs
@njit(cache=True, parallel=True, nogil=True)
def _grid(
    poles, residues, active, ev_path, ev_start, ev_dur, ev_amt, t0, dt, outputs, out
):  # pragma: no cover
    n = poles.shape[2]
    n_blocks = (n + LANES - 1) // LANES
    for sup in prange((n_blocks + SUPER - 1) // SUPER):
        work = _workspace(poles.shape[0], poles.shape[1], outputs.shape[0], out.shape[2])
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


# ----------------------------------------------------------------------------------------------
# Python entry points


def _plain_lanes(array, dtype) -> np.ndarray:
    """A SystemArrays table (N, k) in column-major order and writeable, as the models build
    them: the decomposition reads each parameter of a run of patients (its lanes)
    contiguously. One array type, as for _plain."""
    return np.require(array, dtype=dtype, requirements=("F", "W"))


def _plain(array, dtype, shape=None) -> np.ndarray:
    """C-contiguous and writeable: one array type for the kernels, so Numba compiles each
    kernel once (a read-only or strided view would be a new type and a new compilation)."""
    if shape is not None and np.shape(array) != shape:
        # a read-only view: np.require copies it (an array of the right shape is kept as it is)
        array = np.broadcast_to(array, shape)
    return np.require(array, dtype=dtype, requirements=("C", "W"))


def event_arrays(events: DoseEvents, n: int):
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
    n = modal.n_patients
    out = np.empty((n, times.shape[0]))
    _evaluate(
        modal.poles, modal.residues, modal.active, *event_arrays(events, n), times, output, out
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
    n = modal.n_patients
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
        *event_arrays(events, n),
        float(start_min),
        float(step_min),
        np.asarray(outputs, dtype=np.int64),
        out,
    )
    return out[:, :n, :]


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
