"""Keeps Numba's disk cache of the PK kernels consistent with their sources.

Numba keys a cached function on its own source file only, so a kernel that inlines or calls a
function from another module keeps the old compiled code when only that other module changes
(`summary` inlines `vecmath` and calls `roots`; `normals` inlines `vecmath`). The kernels of
these modules are therefore dropped together whenever any of the sources changes, before any
of them is loaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from numba import njit

KERNEL_SOURCES = ("vecmath.py", "normals.py", "roots.py", "solve.py", "summary.py")
STAMP_NAME = "ketaflow-kernels.sha256"


@njit(cache=True)
def _locate():  # pragma: no cover - never called: Numba's cache object says where caches go
    return 0


def cache_directory() -> Path | None:
    """Where Numba keeps this package's cached kernels (all the sources share one folder)."""
    path = getattr(getattr(_locate, "_cache", None), "_cache_path", None)
    return Path(path) if path else None


def kernels_cached(directory: Path | None = None) -> bool:
    """Whether the summary kernel (the last to compile) is in Numba's disk cache, so a first
    PK computation will load kernels rather than compile them (about 40 s)."""
    directory = directory if directory is not None else cache_directory()
    return directory is not None and any(directory.glob("summary._summarize-*.nbi"))


def sources_digest() -> str:
    here = Path(__file__).parent
    return hashlib.sha256(
        b"".join((here / name).read_bytes() for name in KERNEL_SOURCES)
    ).hexdigest()


def drop_stale_kernels(directory: Path | None = None) -> bool:
    """Delete the kernels' cache files if the sources changed since they were written; True
    if it did. A folder that cannot be written is left alone (Numba then compiles in memory)."""
    directory = directory if directory is not None else cache_directory()
    if directory is None:
        return False
    digest = sources_digest()
    stamp = directory / STAMP_NAME
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    try:
        for name in KERNEL_SOURCES:
            for cached in directory.glob(f"{Path(name).stem}.*.nb[ic]"):
                cached.unlink(missing_ok=True)
        directory.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest)
    except OSError:
        return False
    return True
