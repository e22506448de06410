"""Lets LLVM compile the PK kernels with 512-bit vectors where the CPU has AVX-512.

LLVM's tuning for Intel cores since Skylake-X prefers 256-bit vectors even where 512-bit ones
exist (`prefer-256-bit`), a guard against the clock drop of early AVX-512 parts on code that
vectorises a little. The kernels here are long vector loops over patients (eight doubles a
register instead of four), and measured on a 2-vCPU Xeon with AVX-512 the summaries of 100,000
patients took 10% less time with the preference off, the results identical to the bit (every
lane is a patient of its own, so the width changes no sum's order).

It must run before Numba creates its code generator (at the first `@njit` decorator), and it
leaves alone a process where the user chose the CPU's name or features (NUMBA_CPU_NAME,
NUMBA_CPU_FEATURES) or where Numba's code generator already exists. Numba's disk cache keys
every kernel on the features it was compiled with, so the two never mix.
"""

from __future__ import annotations

import os

FEATURES_VARIABLE = "NUMBA_CPU_FEATURES"
WIDE_VECTORS = "-prefer-256-bit"  # an LLVM tuning feature, turned off


def allow_wide_vectors() -> bool:
    """Turn LLVM's 256-bit preference off for this process if the CPU has AVX-512; True if it
    did. Called once, from the package's __init__, before any kernel is defined."""
    if FEATURES_VARIABLE in os.environ or "NUMBA_CPU_NAME" in os.environ:
        return False
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features
    from numba.core.registry import cpu_target

    if "_toplevel_target_context" in vars(cpu_target):
        return False  # the code generator exists: its features are fixed for the process
    features = get_host_cpu_features()  # honours NUMBA_ENABLE_AVX=0
    if "+avx512f" not in features.split(","):
        return False
    os.environ[FEATURES_VARIABLE] = f"{features},{WIDE_VECTORS}"
    config.reload_config()
    return True
