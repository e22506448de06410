"""Virtual populations: N patients with log-normal variability and covariate distributions,
simulated in chunks so memory stays bounded, seeded and reproducible.

Random numbers are drawn per block of RNG_BLOCK patients from a generator seeded by
(seed, block index), so a result depends on the seed and N only, not on how work is split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.models import Administration, Covariates, PKModel
from ketaflow.pharmacology.normals import standard_normals
from ketaflow.pharmacology.solve import (
    OUTPUT_EFFECT,
    OUTPUT_METABOLITE,
    OUTPUT_PARENT,
    DoseEvents,
    ModalSystem,
    decompose,
    grid_curves,
)
from ketaflow.pharmacology.summary import (
    AUC_HORIZON,
    AUC_INF,
    CMAX,
    HALF_LIFE,
    SUMMARY_FIELDS,
    TIME_ABOVE,
    TIME_TO_BELOW,
    TMAX,
    summarize,
)

RNG_BLOCK = 8192
SAMPLED_TOGETHER = 4  # blocks drawn back to back (see iter_chunks)
CURVE_BLOCK = 512
MAX_PATIENTS = 1_000_000  # summaries keep 7 floats per patient and output: ~170 MB at most
MAX_SEED = 2**32 - 1  # the HTTP API's bound too; NumPy takes any non-negative integer
OUTPUT_NAMES = {OUTPUT_PARENT: "parent", OUTPUT_METABOLITE: "metabolite", OUTPUT_EFFECT: "effect"}

ProgressCallback = Callable[[int, int], None]  # (patients done, total)


@dataclass(frozen=True)
class PopulationSpec:
    model: PKModel
    route: str
    doses: tuple[Administration, ...]
    n_patients: int
    weight_kg: float
    age_years: float = 40.0
    weight_sd_kg: float = 0.0  # 0: every virtual patient has the given weight
    age_sd_years: float = 0.0
    seed: int = 0
    variability: bool = True  # False: the typical patient, repeated

    def __post_init__(self) -> None:
        if not 1 <= self.n_patients <= MAX_PATIENTS:
            raise PKInputError(
                "patients", f"patients must be between 1 and {MAX_PATIENTS}, got {self.n_patients}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise PKInputError("seed", f"the seed must be a whole number, got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise PKInputError(
                "seed", f"the seed must be between 0 and {MAX_SEED}, got {self.seed}"
            )
        if self.weight_sd_kg < 0 or self.age_sd_years < 0:
            raise PKInputError("weight_sd", "standard deviations must be zero or positive")


@dataclass(frozen=True)
class Chunk:
    start: int  # index of the first patient
    modal: ModalSystem
    events: DoseEvents


def _covariates(spec: PopulationSpec, rng: np.random.Generator | None, n: int) -> Covariates:
    weight = np.full(n, spec.weight_kg)
    age = np.full(n, spec.age_years)
    if rng is not None and spec.weight_sd_kg > 0:
        # Truncated to the adult range the engine accepts (10-350 kg), resampled not clipped.
        weight = spec.weight_kg + spec.weight_sd_kg * standard_normals(rng, n)
        bad = (weight < 30) | (weight > 250)
        while bad.any():
            weight[bad] = spec.weight_kg + spec.weight_sd_kg * standard_normals(rng, int(bad.sum()))
            bad = (weight < 30) | (weight > 250)
    if rng is not None and spec.age_sd_years > 0:
        age = np.clip(spec.age_years + spec.age_sd_years * standard_normals(rng, n), 18.0, 95.0)
    return Covariates(weight, age)


def _block_generators(spec: PopulationSpec) -> list[np.random.Generator | None]:
    """The generator of every block, seeded by (seed, block index); None without variability.
    All made before the first block is drawn: made between two blocks, after a kernel has
    filled the caches with its data, each took ten times as long (120 us, not 10)."""
    n_blocks = -(-spec.n_patients // RNG_BLOCK)
    if not spec.variability:
        return [None] * n_blocks
    return [np.random.default_rng([spec.seed, block]) for block in range(n_blocks)]


def _sample_chunk(
    spec: PopulationSpec,
    outputs: tuple[int, ...],
    start: int,
    rng: np.random.Generator | None,
):
    """Covariates, individual parameters and dose events of the block starting at `start`,
    drawn from the block's generator `rng` (None: the typical patient)."""
    n = min(RNG_BLOCK, spec.n_patients - start)
    cov = _covariates(spec, rng, n)
    ind = spec.model.individuals(spec.route, cov, rng)
    events = spec.model.events(spec.route, spec.doses, ind)
    system = ind.system
    if OUTPUT_EFFECT not in outputs:
        system = replace(system, ke0_per_min=0.0)
    return system, events


def iter_chunks(
    spec: PopulationSpec,
    outputs: tuple[int, ...] = (OUTPUT_PARENT, OUTPUT_METABOLITE, OUTPUT_EFFECT),
) -> Iterator[Chunk]:
    """Patients in blocks of RNG_BLOCK: modal decomposition and dose events of each block.
    The effect-site mode is left out when the effect site is not among `outputs`."""
    generators = _block_generators(spec)
    starts = range(0, spec.n_patients, RNG_BLOCK)
    # SAMPLED_TOGETHER blocks are drawn one after the other, then decomposed and handed out:
    # Python after a kernel runs from cold caches, so drawing blocks back to back pays that
    # once per group instead of once per block (a few MB more held at a time)
    for first in range(0, len(starts), SAMPLED_TOGETHER):
        group = range(first, min(first + SAMPLED_TOGETHER, len(starts)))
        drawn = [_sample_chunk(spec, outputs, starts[b], generators[b]) for b in group]
        for b, (system, events) in zip(group, drawn, strict=True):
            yield Chunk(starts[b], decompose(system), events)


# NaN here means "still above the threshold at the horizon": a right-censored time, not a
# missing one.
CENSORED_FIELDS = frozenset({"time_to_below_threshold_min"})


def censored_percentiles(arr: np.ndarray, q: tuple[float, ...]) -> list[float]:
    """Percentiles of a time where NaN is "beyond the horizon": those patients count, as later
    than every observed time, and a percentile that lands among them is NaN (unknown, beyond
    the horizon). Dropping them instead would bias every percentile early, the unsafe side
    for a time to fall below a level."""
    observed = np.isfinite(arr)
    if not observed.any():
        return [math.nan] * len(q)
    latest = float(arr[observed].max())
    # a sentinel far above every observed time, so linear interpolation stays finite
    filled = np.where(observed, arr, 2.0 * abs(latest) + 1e12)
    return [float(v) if v <= latest else math.nan for v in np.percentile(filled, q)]


@dataclass(frozen=True)
class PopulationSummary:
    """Per-patient summaries: `values[name][field]` arrays of length N (units in the names)."""

    n_patients: int
    threshold_ng_per_ml: dict[str, float]
    values: dict[str, dict[str, np.ndarray]]

    def percentiles(
        self, q: tuple[float, ...] = (5.0, 50.0, 95.0)
    ) -> dict[str, dict[str, list[float]]]:
        result: dict[str, dict[str, list[float]]] = {}
        for name, fields in self.values.items():
            result[name] = {}
            for field_name, arr in fields.items():
                if field_name in CENSORED_FIELDS:
                    result[name][field_name] = censored_percentiles(arr, q)
                    continue
                finite = arr[np.isfinite(arr)]
                result[name][field_name] = (
                    [float(v) for v in np.percentile(finite, q)]
                    if finite.size
                    else [math.nan] * len(q)
                )
        return result

    def still_above_fraction(self, name: str) -> float:
        """Fraction of patients whose level of `name` is above its threshold at the horizon."""
        return float(np.isnan(self.values[name]["time_to_below_threshold_min"]).mean())


def simulate_summaries(
    spec: PopulationSpec,
    outputs: tuple[int, ...] = (OUTPUT_PARENT, OUTPUT_METABOLITE),
    thresholds_ng_per_ml: tuple[float, ...] = (50.0, 50.0),
    horizon_min: float = 1440.0,
    progress: ProgressCallback | None = None,
) -> PopulationSummary:
    """Cmax, Tmax, AUC (to infinity and to the horizon), time above the threshold, time to fall
    below it and terminal half-life of every virtual patient, from the closed form."""
    if len(outputs) != len(thresholds_ng_per_ml):
        raise PKInputError("threshold", "one threshold per output is needed")
    for thr in thresholds_ng_per_ml:
        if not math.isfinite(thr) or thr <= 0:
            raise PKInputError("threshold", f"the threshold must be positive, got {thr!r}")
    n = spec.n_patients
    # field-major, so that each summary is one contiguous array: picking columns out of a
    # patient-major array of 100,000 patients would stream all of it through the cache once
    # per column; each block's kernel writes its patients' part directly
    store = np.empty((len(outputs), len(SUMMARY_FIELDS), n))
    for chunk in iter_chunks(spec, outputs):
        block = summarize(
            chunk.modal,
            chunk.events,
            outputs,
            thresholds_ng_per_ml,
            horizon_min,
            out=store,
            offset=chunk.start,
        )
        if progress:
            progress(chunk.start + block.shape[0], n)
    values: dict[str, dict[str, np.ndarray]] = {}
    for q, o in enumerate(outputs):
        s = store[q]
        for field in (AUC_INF, AUC_HORIZON, HALF_LIFE):
            s[field] /= 60.0  # minutes to hours
        values[OUTPUT_NAMES[o]] = {
            "cmax_ng_per_ml": s[CMAX],
            "tmax_min": s[TMAX],
            "auc_ng_h_per_ml": s[AUC_INF],
            "auc_horizon_ng_h_per_ml": s[AUC_HORIZON],
            "time_above_threshold_min": s[TIME_ABOVE],
            "time_to_below_threshold_min": s[TIME_TO_BELOW],
            "half_life_h": s[HALF_LIFE],
        }
    return PopulationSummary(
        n,
        {OUTPUT_NAMES[o]: float(t) for o, t in zip(outputs, thresholds_ng_per_ml, strict=True)},
        values,
    )


def iter_curves(
    spec: PopulationSpec,
    outputs: tuple[int, ...] = (OUTPUT_PARENT, OUTPUT_METABOLITE),
    step_min: float = 1.0,
    horizon_min: float = 1440.0,
    progress: ProgressCallback | None = None,
    patients_per_yield: int = CURVE_BLOCK,
) -> Iterator[tuple[int, np.ndarray]]:
    """Full curves block by block: (first patient index, array (len(outputs), n, T)) on the
    grid 0, step, ..., horizon. The array is a reused buffer, valid until the next block is
    requested (copy to keep it). Blocks are small (CURVE_BLOCK patients: about 12 MB for two
    outputs over 24 h at 1 min) so the buffer stays in cache while the consumer reads it."""
    if step_min <= 0 or horizon_min <= 0:
        raise PKInputError("step", "the time step and horizon must be positive")
    if patients_per_yield < 1:
        raise PKInputError("patients_per_yield", "patients_per_yield must be positive")
    n_points = round(horizon_min / step_min) + 1
    size = min(patients_per_yield, spec.n_patients)
    buffer = np.empty((len(outputs), size, n_points))
    for chunk in iter_chunks(spec, outputs):
        n = chunk.modal.n_patients
        for lo in range(0, n, size):
            part = slice(lo, min(n, lo + size))
            curves = grid_curves(
                chunk.modal.take(part),
                chunk.events.take(part),
                step_min,
                n_points,
                outputs,
                out=buffer,
            )
            if progress:
                progress(chunk.start + part.stop, spec.n_patients)
            yield chunk.start + lo, curves


def curve_bands(
    spec: PopulationSpec,
    outputs: tuple[int, ...] = (OUTPUT_PARENT,),
    step_min: float = 1.0,
    horizon_min: float = 1440.0,
    q: tuple[float, ...] = (5.0, 50.0, 95.0),
    max_patients: int = 20_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bands over time: (times (T,), bands (len(outputs), len(q), T)). Computed on the
    first min(N, max_patients) patients, an independent random sample of the population, so
    the memory stays bounded whatever N."""
    n_points = round(horizon_min / step_min) + 1
    times = np.arange(n_points) * step_min
    sample = PopulationSpec(
        spec.model,
        spec.route,
        spec.doses,
        min(spec.n_patients, max_patients),
        spec.weight_kg,
        spec.age_years,
        spec.weight_sd_kg,
        spec.age_sd_years,
        spec.seed,
        spec.variability,
    )
    parts = [curves.copy() for _, curves in iter_curves(sample, outputs, step_min, horizon_min)]
    allc = np.concatenate(parts, axis=1)
    bands = np.percentile(allc, q, axis=1).transpose(1, 0, 2)
    return times, bands
