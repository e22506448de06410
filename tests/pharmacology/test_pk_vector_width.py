"""The 512-bit vector preference: on where the CPU has AVX-512, never over the user's choice."""

from __future__ import annotations

import os

from numba.core.codegen import get_host_cpu_features

from ketaflow.pharmacology.vector_width import FEATURES_VARIABLE, WIDE_VECTORS, allow_wide_vectors

PROBE = (
    "import json, os, ketaflow.pharmacology\n"
    "from numba.core.registry import cpu_target\n"
    "print(json.dumps({'env': os.environ.get('NUMBA_CPU_FEATURES'),"
    " 'codegen': cpu_target.target_context.codegen()._tm_features}))"
)


def _probe(fresh_process, **env: str) -> dict:
    return fresh_process(PROBE, lambda name: name.startswith("NUMBA_CPU_"), **env)


def test_a_fresh_process_compiles_wide_exactly_when_the_cpu_has_avx512(fresh_process):
    seen = _probe(fresh_process)
    has_avx512 = "+avx512f" in get_host_cpu_features().split(",")
    assert seen["codegen"].endswith("," + WIDE_VECTORS) == has_avx512
    assert (seen["env"] is not None) == has_avx512


def test_the_users_features_are_kept(fresh_process):
    chosen = get_host_cpu_features()
    seen = _probe(fresh_process, **{FEATURES_VARIABLE: chosen})
    assert seen["env"] == chosen
    assert seen["codegen"] == chosen


def test_nothing_changes_once_numba_has_its_code_generator(monkeypatch):
    # this process imported the package: the code generator exists
    monkeypatch.delenv(FEATURES_VARIABLE, raising=False)
    monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
    assert allow_wide_vectors() is False
    assert FEATURES_VARIABLE not in os.environ
