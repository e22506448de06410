"""Keeps freed memory in the process between a population's chunks, rather than handing it back
to the system after each one and faulting it in again (glibc's malloc only).

A population is simulated chunk by chunk, and every chunk allocates and frees a few MB: the
draws and parameters, poles and residues, the kernels' work arrays. By default glibc returns
free memory at the top of a heap to the system once it exceeds the trim threshold, and moves
that threshold and the mmap threshold with the largest block freed; the next chunk then takes
its memory back page by page, a page fault each. Measured on a 2-vCPU VM, the summaries of
100,000 patients took 4,000 page faults and 15-28 ms of system time a run, 70 ms in all; with
the two thresholds fixed as here, no fault and 52 ms. Fixing the mmap threshold alone is
worse (the trim threshold then stays at 128 KB: 27,000 faults, 113 ms).

What it costs: up to TRIM_THRESHOLD of free memory stays with each of malloc's arenas (the
main one and one per thread that allocates) instead of going back to the system, and blocks
under MMAP_THRESHOLD come from the heaps. Set nothing where the user chose malloc's settings
(GLIBC_TUNABLES or the MALLOC_*_ variables).
"""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# The summaries' store of 100,000 patients (11 MB) and a block of full curves (12 MB) fit
# under the mmap threshold; the trim threshold is twice it, as glibc's own adjustment makes it.
MMAP_THRESHOLD = 16 * 2**20
TRIM_THRESHOLD = 32 * 2**20
USER_SETTINGS = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
)


def on_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def user_chose_malloc_settings(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return "glibc.malloc." in environ.get("GLIBC_TUNABLES", "") or any(
        name in environ for name in USER_SETTINGS
    )


def retain_freed_memory() -> bool:
    """Fix glibc's trim and mmap thresholds for this process (see the module doc); True if it
    did. Called once, from the package's __init__."""
    if not on_glibc() or user_chose_malloc_settings():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # the mmap threshold first: setting it turns glibc's adjustment of both off
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
