"""The vectorisable exp, expm1 and log of `vecmath.py` against libm, to within 2 ulp, and their
documented edge cases (Hypothesis over the whole range)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from numba import njit

from ketaflow.pharmacology.vecmath import EXP_MAX, EXP_MIN, exp_lane, expm1_lane, log_lane


@njit(error_model="numpy")
def _exp_all(x, out):
    for i in range(x.shape[0]):
        out[i] = exp_lane(x[i])


@njit(error_model="numpy")
def _expm1_all(x, out):
    for i in range(x.shape[0]):
        out[i] = expm1_lane(x[i])


@njit(error_model="numpy")
def _log_all(x, out):
    for i in range(x.shape[0]):
        out[i] = log_lane(x[i])


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(got - want) / np.spacing(np.abs(want))


def _exp(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _exp_all(np.ascontiguousarray(x, dtype=np.float64), out)
    return out


def _expm1(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _expm1_all(np.ascontiguousarray(x, dtype=np.float64), out)
    return out


def _log(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _log_all(np.ascontiguousarray(x, dtype=np.float64), out)
    return out


def test_exp_is_within_two_ulp_over_its_range():
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            rng.uniform(EXP_MIN, EXP_MAX, 200_000),
            rng.uniform(-1.0, 1.0, 100_000),
            rng.uniform(-1e-9, 1e-9, 10_000),
            # around the reduction's switch points k ln2 / 2, where r changes sign
            (np.arange(-2040, 2040) * math.log(2) / 2)[:, None]
            * (1 + rng.uniform(-1e-15, 1e-15, (1, 8))),
        ],
        axis=None,
    )
    x = x[(x >= EXP_MIN) & (x <= EXP_MAX)]
    assert _ulps(_exp(x), np.exp(x)).max() <= 2.0


def test_log_is_within_two_ulp_over_the_normal_numbers():
    rng = np.random.default_rng(6)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-708.0, 709.0, 200_000)),
            rng.uniform(0.5, 2.0, 100_000),
            1.0 + rng.uniform(-1e-10, 1e-10, 10_000),
            np.array(
                [math.sqrt(2.0), math.sqrt(0.5), 2.2250738585072014e-308, 1.7976931348623157e308]
            ),
        ]
    )
    want = np.log(x)
    got = _log(x)
    exact = want == 0.0
    assert np.all(got[exact] == 0.0)
    assert _ulps(got[~exact], want[~exact]).max() <= 2.0


@given(st.floats(EXP_MIN, EXP_MAX))
def test_exp_agrees_with_libm(x):
    assert _ulps(_exp(np.array([x])), np.array([math.exp(x)]))[0] <= 2.0


@given(st.floats(2.2250738585072014e-308, 1.7976931348623157e308))
def test_log_agrees_with_libm(x):
    got = _log(np.array([x]))[0]
    want = math.log(x)
    assert got == want or abs(got - want) <= 2.0 * np.spacing(abs(want))


def test_expm1_is_within_two_ulp_over_its_range():
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            rng.uniform(EXP_MIN, EXP_MAX, 200_000),
            rng.uniform(-1.0, 1.0, 200_000),
            rng.uniform(-1e-9, 1e-9, 10_000),
            # both sides of the switch from the series to exp(x) - 1
            0.7 + rng.uniform(-1e-3, 1e-3, 10_000),
            -0.7 + rng.uniform(-1e-3, 1e-3, 10_000),
        ]
    )
    want = np.expm1(x)
    got = _expm1(x)
    assert _ulps(got, want).max() <= 2.0


@given(st.floats(EXP_MIN, EXP_MAX))
def test_expm1_agrees_with_libm(x):
    got = _expm1(np.array([x]))[0]
    want = math.expm1(x)
    assert got == want or abs(got - want) <= 2.0 * np.spacing(abs(want))


def test_expm1_edge_cases():
    got = _expm1(np.array([0.0, -0.0, -800.0, -math.inf, math.nan, 710.0]))
    assert got[0] == 0.0 and got[1] == 0.0  # exact: an interval of length 0 adds nothing
    assert got[2] == -1.0 and got[3] == -1.0
    assert math.isnan(got[4])
    assert got[5] == math.inf


def test_exp_edge_cases():
    got = _exp(np.array([0.0, -800.0, EXP_MIN - 1e-9, 710.0, math.nan, -math.inf, math.inf]))
    assert got[0] == 1.0  # exact: the engine relies on exp(0) = 1 at interval starts
    assert got[1] == 0.0 and got[2] == 0.0  # would be subnormal: flushed to zero
    assert got[3] == math.inf
    assert math.isnan(got[4])
    assert got[5] == 0.0 and got[6] == math.inf


def test_exp_and_log_invert_each_other():
    x = np.linspace(-700.0, 700.0, 10_001)
    assert np.allclose(_log(_exp(x)), x, rtol=0, atol=1e-12 * 700)


def test_cached_kernels_are_dropped_when_any_kernel_source_changes(tmp_path, monkeypatch):
    from ketaflow.pharmacology import kernel_cache

    cached = [tmp_path / "summary._summarize-10.py311.nbi", tmp_path / "roots.solve-5.py311.1.nbc"]
    other = tmp_path / "cli.unrelated-3.py311.nbi"
    for path in (*cached, other):
        path.write_text("x")
    assert kernel_cache.drop_stale_kernels(tmp_path)  # no stamp yet: dropped, stamp written
    assert not any(path.exists() for path in cached) and other.exists()
    for path in cached:
        path.write_text("x")
    assert not kernel_cache.drop_stale_kernels(tmp_path)  # same sources: kept
    assert all(path.exists() for path in cached)
    monkeypatch.setattr(kernel_cache, "sources_digest", lambda: "changed")
    assert kernel_cache.drop_stale_kernels(tmp_path)
    assert not any(path.exists() for path in cached)


def test_the_kernel_cache_folder_is_numbas():
    from ketaflow.pharmacology import kernel_cache, summary

    assert kernel_cache.cache_directory() == Path(summary._summarize._cache._cache_path)


def test_every_module_with_cached_kernels_is_a_kernel_source():
    # a module left out would keep stale compiled code of the functions it inlines
    from ketaflow.pharmacology import kernel_cache

    here = Path(kernel_cache.__file__).parent
    with_kernels = {
        path.name
        for path in here.glob("*.py")
        if "cache=True" in path.read_text() and path.name != "kernel_cache.py"
    }
    assert with_kernels == set(kernel_cache.KERNEL_SOURCES)
