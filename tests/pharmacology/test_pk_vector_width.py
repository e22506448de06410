"""The 512-bit vector preference: on where the CPU has AVX-512, never over the user's choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from numba.core.codegen import get_host_cpu_features

from ketaflow.pharmacology.vector_width import FEATURES_VARIABLE, WIDE_VECTORS, allow_wide_vectors

PROBE = (
    "import json, os, ketaflow.pharmacology\n"
    "from numba.core.registry import cpu_target\n"
    "print(json.dumps({'env': os.environ.get('NUMBA_CPU_FEATURES'),"
    " 'codegen': cpu_target.target_context.codegen()._tm_features}))"
)


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fresh_process_compiles_wide_exactly_when_the_cpu_has_avx512():
    seen = _probe()
    has_avx512 = "+avx512f" in get_host_cpu_features().split(",")
    assert seen["codegen"].endswith("," + WIDE_VECTORS) == has_avx512
    assert (seen["env"] is not None) == has_avx512


def test_the_users_features_are_kept():
    chosen = get_host_cpu_features()
    seen = _probe(**{FEATURES_VARIABLE: chosen})
    assert seen["env"] == chosen
    assert seen["codegen"] == chosen


def test_nothing_changes_once_numba_has_its_code_generator(monkeypatch):
    # this process imported the package: the code generator exists
    monkeypatch.delenv(FEATURES_VARIABLE, raising=False)
    monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
    assert allow_wide_vectors() is False
    assert FEATURES_VARIABLE not in os.environ
