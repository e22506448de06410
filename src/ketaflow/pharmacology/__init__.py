"""Pharmacology engine: ketamine and esketamine PK on every route, solved exactly.

Pure: imports NumPy, SciPy and Numba only, nothing else of ketaflow. Entry points:
`clinical.simulate` (population summary of a planned dose), `clinical.observation_advice`
(one patient: curve, 90% band, effect site, end of dissociation, suggested discharge),
`population` (virtual populations in chunks), `solve` (the exact solutions).
"""

from ketaflow.pharmacology.allocator import retain_freed_memory
from ketaflow.pharmacology.vector_width import allow_wide_vectors

allow_wide_vectors()  # before the first kernel is defined (see vector_width)
retain_freed_memory()  # freed chunks stay in the process, not faulted in again (see allocator)

from ketaflow.pharmacology.kernel_cache import drop_stale_kernels  # noqa: E402

# before any kernel is loaded from Numba's disk cache (see kernel_cache)
drop_stale_kernels()
