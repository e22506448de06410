"""Zeros of many exponential sums at once, in SIMD lanes.

A task is g(t) = sum_m c_m exp(l_m t) + const on a bracket (lo, hi) where g has the sign s_lo
just right of lo, the opposite sign just left of hi, and no other zero: the brackets come from
`summary.py`, which isolates every zero first. Each task is solved by Halley steps on
phi = log P - log N, where P and N are the positive and negative parts of g: each part is
log-convex, so phi is close to linear and the steps converge from the far end of a long
bracket. A step that would leave the bracket, which shrinks with every evaluation, is replaced
by bisection.

Up to SLOTS tasks are in play at once, and every round evaluates all of them in loops over
the slots that LLVM vectorises (8 lanes with AVX-512; `vecmath` supplies an exp and a log it
can vectorise), then updates every bracket branch-free. A slot whose task has converged takes
the next task, so the lanes stay busy whatever the tasks' iteration counts. Scalar code is
latency-bound here: one task evaluated alone costs several times its share of a vector round.

Task storage (one row per task j, its values contiguous):
- `modes[j, row, m]`, rows MODE_POLE, MODE_COEF, MODE_LEVEL: the poles, c_m, and the
  coefficients of a second sum returned at the root (the level of f where g is its slope);
  a call solves its tasks with their first n_modes modes only (the parent's tasks leave out
  the metabolite's modes, whose coefficients are zero in them);
- `scalars[j, row]`, rows TASK_CONST .. TASK_LEVEL: const, the bracket, the sign s_lo and
  where to start (TASK_START: from lo, from hi, or at TASK_GUESS, a point inside the
  bracket; a guess outside it starts from hi) in,
  and out: the zero, the last point evaluated (within the final step of the zero) and the
  second sum there (so a maximum's time and value agree to rounding).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ketaflow.pharmacology.vecmath import exp_lane, log_lane

MODE_POLE, MODE_COEF, MODE_LEVEL = range(3)
N_MODE_ROWS = 3
(
    TASK_CONST,
    TASK_LO,
    TASK_HI,
    TASK_SIDE,
    TASK_START,
    TASK_GUESS,
    TASK_ROOT,
    TASK_AT,
    TASK_LEVEL,
) = range(9)
N_TASK_ROWS = 9
START_LO, START_HI, START_GUESS = 0.0, 1.0, 2.0  # values of TASK_START
MAX_EVALUATIONS = 202  # both ends, then up to 200 steps (bisection alone needs under 64)
# Relative size under which a sum counts as zero (rounding noise).
NOISE = 1e-12
RATIO_LIMIT = 1e300  # P / N clamped to [1 / limit, limit] so that log_lane sees normal numbers


# The tasks in play live in slots of one flat buffer, `row * SLOTS + slot`: the row offsets are
# compile-time constants, which lets LLVM prove that the rows never overlap and vectorise the
# loops over slots without run-time alias checks (it gives up on a dozen separate arrays).
# 56: a multiple of 8 lanes, small enough for the buffers to stay in L1, and not a power of two
# (rows 4 KiB apart would share cache sets and evict each other)
SLOTS = 56
(
    R_LO,
    R_HI,
    R_LO0,
    R_HI0,
    R_SIDE0,
    R_CONST,
    R_X,
    R_PHASE,
    R_EVALS,
    R_AT,
    R_POS,
    R_NEG,
    R_POS1,
    R_NEG1,
    R_POS2,
    R_NEG2,
    R_LEVEL,
    R_SIDE,
    R_STEP,
    R_NOISY,
    R_ROOT,
    R_ROOT_AT,
    R_ROOT_LEVEL,
    R_LO_ZERO,
    R_HI_ZERO,
) = (row * SLOTS for row in range(25))
N_ROWS = 25
PHASE_LO, PHASE_HI, PHASE_X, PHASE_DONE, PHASE_IDLE = 0.0, 1.0, 2.0, 3.0, 4.0


@njit(cache=True, inline="always", error_model="numpy")
def _load(modes, scalars, j, buf, mode_buf, slot, n_modes):  # pragma: no cover - compiled
    """Task j into a slot."""
    for m in range(n_modes):
        base = 3 * m * SLOTS + slot
        mode_buf[base] = modes[j, MODE_POLE, m]
        mode_buf[base + SLOTS] = modes[j, MODE_COEF, m]
        mode_buf[base + 2 * SLOTS] = modes[j, MODE_LEVEL, m]
    lo = scalars[j, TASK_LO]
    hi = scalars[j, TASK_HI]
    buf[R_LO + slot] = lo
    buf[R_HI + slot] = hi
    buf[R_LO0 + slot] = lo
    buf[R_HI0 + slot] = hi
    buf[R_SIDE0 + slot] = scalars[j, TASK_SIDE]
    buf[R_CONST + slot] = scalars[j, TASK_CONST]
    start = scalars[j, TASK_START]
    guess = scalars[j, TASK_GUESS]
    guessed = (start == START_GUESS) & (lo < guess) & (guess < hi)
    buf[R_X + slot] = guess if guessed else math.nan
    phase = PHASE_LO if start == START_LO else PHASE_HI
    buf[R_PHASE + slot] = PHASE_X if guessed else phase
    buf[R_EVALS + slot] = 0.0
    buf[R_LO_ZERO + slot] = 0.0  # whether g was at rounding level at lo (at hi), once seen
    buf[R_HI_ZERO + slot] = 0.0
    buf[R_ROOT + slot] = math.nan
    buf[R_ROOT_AT + slot] = math.nan
    buf[R_ROOT_LEVEL + slot] = math.nan


# contract: multiply-adds fused (FMA), one rounding instead of two: the exp polynomial and
# the sums cost half as many instructions
@njit(cache=True, error_model="numpy", fastmath={"contract"})
def solve_tasks(modes, scalars, first, last, n_modes):  # pragma: no cover - compiled
    """Solve tasks first .. last - 1 in place (see the module doc), with their first n_modes
    modes: those beyond must have zero coefficients in all of them (an output that does not
    carry them). Up to SLOTS tasks are in play; a slot whose task finishes takes the next
    one, so lanes stay busy."""
    n_modes = max(1, min(n_modes, modes.shape[2]))
    buf = np.empty(N_ROWS * SLOTS)
    mode_buf = np.empty(3 * n_modes * SLOTS)  # per mode m: rows 3m (pole), 3m+1, 3m+2
    task_of = np.empty(SLOTS, dtype=np.int64)
    done_slots = np.empty(SLOTS, dtype=np.int64)
    used = 0  # slots in use: 0 .. used - 1 (finished or idle ones included)
    next_task = first
    while used < SLOTS and next_task < last:
        _load(modes, scalars, next_task, buf, mode_buf, used, n_modes)
        task_of[used] = next_task
        used += 1
        next_task += 1
    while used > 0:
        # --- the evaluation (idle slots evaluate harmlessly at their last point); the first
        # mode's terms start the sums, so they need no zeroing pass
        for k in range(used):
            c = buf[R_CONST + k]
            ph = buf[R_PHASE + k]
            a = buf[R_LO + k]
            b = buf[R_HI + k]
            xk = buf[R_X + k]
            at_x = b if ph == PHASE_HI else xk
            at = a if ph == PHASE_LO else at_x
            buf[R_AT + k] = at
            lm = mode_buf[k]
            ex = exp_lane(lm * at)
            buf[R_LEVEL + k] = mode_buf[2 * SLOTS + k] * ex
            e = mode_buf[SLOTS + k] * ex
            # branch-free split: the signs of the terms are not predictable
            ep = e if e > 0.0 else 0.0
            en = e if e < 0.0 else 0.0
            buf[R_POS + k] = max(c, 0.0) + ep
            buf[R_NEG + k] = -min(c, 0.0) - en
            buf[R_POS1 + k] = lm * ep
            buf[R_NEG1 + k] = -lm * en
            buf[R_POS2 + k] = lm * lm * ep
            buf[R_NEG2 + k] = -lm * lm * en
        for m in range(1, n_modes):
            base = 3 * m * SLOTS
            for k in range(used):
                lm = mode_buf[base + k]
                c = mode_buf[base + SLOTS + k]
                wm = mode_buf[base + 2 * SLOTS + k]
                ex = exp_lane(lm * buf[R_AT + k])
                buf[R_LEVEL + k] += wm * ex
                e = c * ex
                ep = e if e > 0.0 else 0.0
                en = e if e < 0.0 else 0.0
                buf[R_POS + k] += ep
                buf[R_NEG + k] -= en
                buf[R_POS1 + k] += lm * ep
                buf[R_NEG1 + k] -= lm * en
                buf[R_POS2 + k] += lm * lm * ep
                buf[R_NEG2 + k] -= lm * lm * en
        for k in range(used):
            p = buf[R_POS + k]
            q = buf[R_NEG + k]
            p1 = buf[R_POS1 + k]
            q1 = buf[R_NEG1 + k]
            p2 = buf[R_POS2 + k]
            q2 = buf[R_NEG2 + k]
            both = (p > 0.0) & (q > 0.0)
            pp = p if both else 1.0
            qq = q if both else 1.0
            # three divisions in all, where eight would do
            inv_p = 1.0 / pp
            inv_q = 1.0 / qq
            ratio = min(max(pp * inv_q, 1.0 / RATIO_LIMIT), RATIO_LIMIT)
            phi = log_lane(ratio)
            dp = p1 * inv_p
            dq = q1 * inv_q
            d1 = dp - dq
            d2 = p2 * inv_p - dp * dp - q2 * inv_q + dq * dq
            # Halley's step phi d1 / (d1^2 - phi d2 / 2) when its correction to Newton's,
            # h = phi d2 / (2 d1^2), is a modest one (|h| < 1/2); Newton's phi / d1 otherwise.
            # One division for either (divisions are the slowest vector instructions here)
            d1_sq = d1 * d1
            modest = abs(phi * d2) < d1_sq
            halley = phi * d1 / (d1_sq - 0.5 * phi * d2 if modest else d1_sq)
            diff = p - q
            sign = 1.0 if diff > 0.0 else (-1.0 if diff < 0.0 else 0.0)
            sign_pq = 1.0 if p > q else -1.0
            buf[R_SIDE + k] = sign if both else sign_pq
            buf[R_STEP + k] = halley if both & (d1 != 0.0) else math.nan
            noisy_both = 1.0 if abs(diff) <= NOISE * (p + q) else 0.0
            noisy_one = 1.0 if p == q else 0.0
            buf[R_NOISY + k] = noisy_both if both else noisy_one
        # --- the brackets and the next points: branch-free, every value loaded first, so
        # that this loop vectorises too
        running = 0
        for k in range(used):
            ph = buf[R_PHASE + k]
            xk = buf[R_AT + k]
            a = buf[R_LO + k]
            b = buf[R_HI + k]
            st = buf[R_STEP + k]
            nz = buf[R_NOISY + k] != 0.0
            a0 = buf[R_LO0 + k]
            b0 = buf[R_HI0 + k]
            s0 = buf[R_SIDE0 + k]
            sd_eval = buf[R_SIDE + k]
            x_old = buf[R_X + k]
            level = buf[R_LEVEL + k]
            old_root = buf[R_ROOT + k]
            old_at = buf[R_ROOT_AT + k]
            old_level = buf[R_ROOT_LEVEL + k]
            evals = buf[R_EVALS + k] + 1.0
            usable = (not nz) & (abs(st) < math.inf)
            # after the evaluation at lo: the first step, kept if it lands inside the
            # bracket (else hi is evaluated next); after the one at hi: its step, or the
            # midpoint
            x_lo = a - st if usable else math.nan
            lo_inside = (a < x_lo) & (x_lo < b)
            x_hi = b - st if usable else math.nan
            x_hi = x_hi if (a < x_hi) & (x_hi < b) else 0.5 * (a + b)
            # after an evaluation at x. At rounding level x is the zero, unless it is within
            # 1e-6 of the bracket from an end where g was at rounding level too: that end
            # may itself be a zero of g (the slope of a level that starts at zero, flat as
            # t^2 after a chain of two absorptions), and x then counts as that end's side
            lo_zero = buf[R_LO_ZERO + k]
            hi_zero = buf[R_HI_ZERO + k]
            noisy_here = 1.0 if nz else 0.0
            buf[R_LO_ZERO + k] = noisy_here if ph == PHASE_LO else lo_zero
            buf[R_HI_ZERO + k] = noisy_here if ph == PHASE_HI else hi_zero
            guard = 1e-6 * (b0 - a0)
            near_lo = xk - a0 <= b0 - xk
            end_zero = lo_zero if near_lo else hi_zero
            interior = ((xk - a0 > guard) & (b0 - xk > guard)) | (end_zero == 0.0)
            side_noisy = s0 if near_lo else -s0
            sd = side_noisy if nz else sd_eval
            move_lo = sd == s0
            a2 = xk if move_lo else a
            b2 = b if move_lo else xk
            mid = 0.5 * (a2 + b2)
            x_step = xk - st if usable else mid
            stepped = usable & (a2 < x_step) & (x_step < b2)
            x_new = x_step if stepped else mid
            # Halley converges cubically, Newton quadratically (phi bends on the scale of the
            # modes, minutes to hours): after a step under 1e-5 relative the error is below
            # 1e-9 relative. A bisection says nothing of the sort, so after one only a bracket
            # under 1e-12 relative (far below a second) counts
            scale = max(1.0, abs(xk))
            converged = (stepped & (abs(x_new - xk) <= 1e-5 * scale)) | (b2 - a2 <= 1e-12 * scale)
            at_zero = nz & interior
            in_x = ph == PHASE_X
            finishes = in_x & (at_zero | converged)
            # evaluation budget spent (not seen): the last point
            spent = (evals >= MAX_EVALUATIONS) & (ph < PHASE_DONE) & (not finishes)
            root = xk if at_zero else x_new
            root = x_new if spent else root
            buf[R_ROOT + k] = root if (finishes | spent) else old_root
            buf[R_ROOT_AT + k] = xk if (finishes | spent) else old_at
            buf[R_ROOT_LEVEL + k] = level if (finishes | spent) else old_level
            buf[R_LO + k] = a2 if in_x else a
            buf[R_HI + k] = b2 if in_x else b
            x_next = x_new if in_x else x_old
            x_next = x_hi if ph == PHASE_HI else x_next
            buf[R_X + k] = x_lo if ph == PHASE_LO else x_next
            phase = 2.0 if lo_inside else 1.0
            phase = phase if ph == PHASE_LO else PHASE_X
            phase = PHASE_DONE if (finishes | spent) else phase
            phase = ph if ph >= PHASE_DONE else phase
            buf[R_PHASE + k] = phase
            buf[R_EVALS + k] = evals
            running += 1 if phase < PHASE_DONE else 0
        # --- finished tasks handed back, their slots given the next tasks; the finished
        # slots listed first without a branch (which slots finish is unpredictable)
        n_done = 0
        for k in range(used):
            done_slots[n_done] = k
            n_done += 1 if buf[R_PHASE + k] == PHASE_DONE else 0
        for d in range(n_done):
            k = done_slots[d]
            j = task_of[k]
            scalars[j, TASK_ROOT] = buf[R_ROOT + k]
            scalars[j, TASK_AT] = buf[R_ROOT_AT + k]
            scalars[j, TASK_LEVEL] = buf[R_ROOT_LEVEL + k]
            if next_task < last:
                _load(modes, scalars, next_task, buf, mode_buf, k, n_modes)
                task_of[k] = next_task
                next_task += 1
                running += 1
            else:
                buf[R_PHASE + k] = PHASE_IDLE
        if running == 0:
            break
        if next_task >= last and 2 * running <= used:
            # the last tasks: compact the running ones so the loops stop at them
            kept = 0
            for k in range(used):
                if buf[R_PHASE + k] >= PHASE_DONE:
                    continue
                if kept != k:
                    for r in range(N_ROWS):
                        buf[r * SLOTS + kept] = buf[r * SLOTS + k]
                    for r in range(3 * n_modes):
                        mode_buf[r * SLOTS + kept] = mode_buf[r * SLOTS + k]
                    task_of[kept] = task_of[k]
                kept += 1
            used = kept
