"""Population PK benchmark: 100,000 virtual patients given ketamine 0.5 mg/kg IV over 40 min,
ketamine plus norketamine, two modes:

- full curves: 24 h at 1-minute resolution (1441 points), every patient, chunk by chunk;
- summaries only: Cmax, Tmax, AUC, time above a threshold and time to fall below it, from the
  closed form (no grid).

For each mode: wall time, patients per second, peak memory, and two ratios measured in this
run: against a per-patient solve_ivp (LSODA, rtol 1e-8) loop, timed on 200 patients and
extrapolated, and against the time NumPy needs for the same count of `exp` evaluations
(modes x time points x patients). The modes' runs and the loop's batches take turns, so that
a shared machine's slow and fast spells (30% apart within minutes on a 2-vCPU VM) fall on
both sides of a ratio alike.

Run: .venv/bin/python bench/pk_population.py [--patients 100000]
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from dataclasses import replace

import numpy as np
from scipy.integrate import solve_ivp

from ketaflow.pharmacology.doses import plan_dose
from ketaflow.pharmacology.models import MODELS, Covariates
from ketaflow.pharmacology.population import (
    CURVE_BLOCK,
    RNG_BLOCK,
    PopulationSpec,
    iter_curves,
    simulate_summaries,
)
from ketaflow.pharmacology.solve import (
    OUTPUT_METABOLITE,
    OUTPUT_PARENT,
    decompose,
    state_space,
)

OUTPUTS = (OUTPUT_PARENT, OUTPUT_METABOLITE)
THRESHOLD_NG_PER_ML = 50.0
N_POINTS = 1441
REPEATS = 6  # rounds: each runs both modes, and the first LOOP_BATCHES a batch of the loop
LOOP_BATCHES = 4
LOOP_PATIENTS = 200
STEP_MIN = 1.0


def _spec(n: int, seed: int = 2026) -> PopulationSpec:
    plan = plan_dose("ketamine", "iv", "0.5mg/kg", 70.0, "40min")
    return PopulationSpec(MODELS["ketamine"], "iv", plan.administrations, n, 70.0, seed=seed)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _wall_seconds(fn) -> float:
    """Wall time of fn(), nothing else running in the process. Its result is dropped before
    the next run, as timeit does: keeping every run's result alive (11 MB of summaries each)
    gave each run fresh pages to fault in, 2-3 ms that a program calling the engine again
    does not pay."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _peak_memory(fn) -> int:
    """Peak resident memory above the starting level while fn runs, sampled every 2 ms by a
    thread. A run of its own, not one of the timed runs: the kernels release the GIL, so the
    sampler would otherwise take CPU from them."""
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    fn()
    peak[0] = max(peak[0], _rss_bytes())
    done.set()
    sampler.join()
    return peak[0] - base


def full_curves(spec: PopulationSpec) -> float:
    checksum = 0.0
    for _, curves in iter_curves(spec, OUTPUTS, STEP_MIN, (N_POINTS - 1) * STEP_MIN):
        checksum += float(curves[0, 0, 600])  # touch the result; the consumer decides the rest
    return checksum


def summaries(spec: PopulationSpec):
    return simulate_summaries(spec, OUTPUTS, (THRESHOLD_NG_PER_ML,) * 2, 1440.0)


class IvpLoop:
    """The naive approach: integrate each patient's ODEs (LSODA, rtol 1e-8) over 24 h and read
    the curve at 1-minute resolution. Timed in batches, between the modes' runs; the best
    batch counts, as the modes' best run does."""

    def __init__(self, n: int = LOOP_PATIENTS, batches: int = LOOP_BATCHES) -> None:
        spec = _spec(n, seed=7)
        rng = np.random.default_rng([spec.seed, 0])
        cov = Covariates(np.full(n, 70.0), np.full(n, 40.0))
        self.ind = spec.model.individuals("iv", cov, rng)
        self.events = spec.model.events("iv", spec.doses, self.ind)
        self.times = np.arange(N_POINTS) * STEP_MIN
        self.per_batch = n // batches
        self.batch_seconds: list[float] = []

    def _patient(self, i: int) -> None:
        events, times = self.events, self.times
        infusion_end = float(events.start_min[i, 0] + events.duration_min[0])
        space = state_space(self.ind.system, i)
        k = space.k_matrix
        rate = np.zeros(k.shape[0])
        rate[space.path_state[0]] = events.amount_mg[i, 0] / events.duration_min[0]
        first = solve_ivp(
            lambda _t, y, k=k, rate=rate: k @ y + rate,
            (0.0, infusion_end),
            np.zeros(k.shape[0]),
            method="LSODA",
            rtol=1e-8,
            t_eval=times[times < infusion_end],
        )
        solve_ivp(
            lambda _t, y, k=k: k @ y,
            (infusion_end, times[-1]),
            first.y[:, -1] if first.y.size else np.zeros(k.shape[0]),
            method="LSODA",
            rtol=1e-8,
            t_eval=times[times >= infusion_end],
        )

    def run_batch(self) -> None:
        first = len(self.batch_seconds) * self.per_batch
        t0 = time.perf_counter()
        for i in range(first, first + self.per_batch):
            self._patient(i)
        self.batch_seconds.append(time.perf_counter() - t0)

    def seconds_per_patient(self) -> float:
        return min(self.batch_seconds) / self.per_batch


def exp_floor_seconds(n_patients: int, n_modes: int) -> float:
    """Time for NumPy to evaluate n_modes x N_POINTS x n_patients exponentials (in chunks)."""
    chunk = 1000
    x = -np.random.default_rng(0).random((chunk, n_modes, N_POINTS))
    out = np.empty_like(x)
    full, rest = divmod(n_patients, chunk)
    t0 = time.perf_counter()
    for _ in range(full):
        np.exp(x, out=out)
    if rest:
        np.exp(x[:rest], out=out[:rest])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    args = parser.parse_args()
    n = args.patients
    spec = _spec(n)

    # compile (Numba) and warm up on a small population first
    t0 = time.perf_counter()
    full_curves(_spec(64))
    summaries(_spec(64))
    print(f"warm-up (Numba compile or cache load): {time.perf_counter() - t0:.2f} s")

    sample = _spec(1)
    system = sample.model.individuals(
        "iv", Covariates(np.array([70.0]), np.array([40.0])), None
    ).system
    modal = decompose(replace(system, ke0_per_min=0.0))  # as the engine does without effect site
    n_modes = int(modal.active.sum())
    print(f"model: {sample.model.title}; {n_modes} exponential modes (ketamine + norketamine)")

    # Each mode runs once for its peak memory (first, before its memory is resident), then
    # REPEATS times (the machine is shared) for the best and median wall times, in rounds
    # with the loop's batches.
    curves_peak = _peak_memory(lambda: full_curves(spec))
    summ_peak = _peak_memory(lambda: summaries(spec))
    loop = IvpLoop()
    curves_runs, summ_runs = [], []
    for round_ in range(REPEATS):
        curves_runs.append(_wall_seconds(lambda: full_curves(spec)))
        summ_runs.append(_wall_seconds(lambda: summaries(spec)))
        if round_ < LOOP_BATCHES:
            loop.run_batch()
    summary = summaries(spec)  # the figures printed at the end
    curves_wall = min(curves_runs)
    summ_wall = min(summ_runs)
    curves_median = float(np.median(curves_runs))
    summ_median = float(np.median(summ_runs))
    ivp_per_patient = loop.seconds_per_patient()
    ivp_total = ivp_per_patient * n
    floor = min(exp_floor_seconds(n, n_modes) for _ in range(3))  # best of 3, like the modes
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    load1, load5, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load1:.1f} (1 min) {load5:.1f} (5 min)")
    print(f"\n{n:,} patients, IV 0.5 mg/kg over 40 min, 70 kg, with inter-individual variability")
    print(
        f"solve_ivp loop (LSODA, rtol 1e-8): {ivp_per_patient * 1e3:.1f} ms/patient (best of "
        f"{LOOP_BATCHES} batches of {loop.per_batch} patients) -> {ivp_total:.0f} s "
        f"extrapolated to {n:,}"
    )
    print(
        f"NumPy exp floor: {n_modes} modes x {N_POINTS} points x {n:,} patients = "
        f"{n_modes * N_POINTS * n:.2e} exp in {floor:.2f} s"
    )
    header = (
        f"{'mode':<16}{'best s':>9}{'median s':>10}{'patients/s':>13}{'peak MB':>9}"
        f"{'x solve_ivp':>13}{'x exp floor':>13}"
    )
    print("\n" + header)
    for name, wall, median, peak in (
        ("full curves", curves_wall, curves_median, curves_peak),
        ("summaries only", summ_wall, summ_median, summ_peak),
    ):
        print(
            f"{name:<16}{wall:>9.3f}{median:>10.3f}{n / wall:>13,.0f}{peak / 2**20:>9.0f}"
            f"{ivp_total / wall:>13,.0f}{floor / wall:>13.2f}"
        )
    print(
        f"\nbest and median of {REPEATS} runs, in rounds with the loop's batches; ratios use "
        "the best of each"
    )
    print("peak MB: resident memory above the level before the mode ran (a separate run)")
    print(f"process peak RSS (everything above, incl. Python and Numba): {max_rss_mb:.0f} MB")
    big = 10 * n
    big_peak = _peak_memory(lambda: full_curves(_spec(big)))
    big_wall = _wall_seconds(lambda: full_curves(_spec(big)))
    print(
        f"memory bound: full curves for {big:,} patients in {big_wall:.2f} s, peak "
        f"{big_peak / 2**20:.0f} MB above start (chunks of {RNG_BLOCK:,}, curves in blocks of "
        f"{CURVE_BLOCK})"
    )
    pct = summary.percentiles()["parent"]
    print(
        "ketamine Cmax ng/mL p5/p50/p95: " + " / ".join(f"{v:.1f}" for v in pct["cmax_ng_per_ml"])
    )


if __name__ == "__main__":
    main()
