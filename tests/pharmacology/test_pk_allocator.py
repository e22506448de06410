"""Freed memory kept between chunks (glibc): no page faults for memory the process just freed,
and never over the user's own malloc settings."""

from __future__ import annotations

import pytest

from ketaflow.pharmacology.allocator import (
    USER_SETTINGS,
    on_glibc,
    retain_freed_memory,
    user_chose_malloc_settings,
)

# Allocates and frees 24 arrays of 400 KB (over glibc's default mmap threshold) in rounds, as
# a population's chunks do, and counts the page faults of the rounds after the first.
PROBE = (
    "import json, resource, numpy as np, ketaflow.pharmacology\n"
    "def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "def chunk():\n"
    "    arrays = [np.ones(50_000) for _ in range(24)]\n"
    "    return sum(float(a[-1]) for a in arrays)\n"
    "chunk()\n"
    "before = faults()\n"
    "for _ in range(5): chunk()\n"
    "print(json.dumps({'faults': faults() - before}))"
)

glibc_only = pytest.mark.skipif(not on_glibc(), reason="the thresholds are glibc's malloc's")


def _later_rounds_faults(fresh_process, **env: str) -> int:
    def dropped(name: str) -> bool:  # the user's malloc settings of this process
        return name == "GLIBC_TUNABLES" or name.startswith("MALLOC_")

    return fresh_process(PROBE, dropped, **env)["faults"]


@glibc_only
def test_memory_freed_by_one_chunk_serves_the_next_without_page_faults(fresh_process):
    # 5 rounds of 9.6 MB: about 12,000 faults if every round's memory went back to the system
    assert _later_rounds_faults(fresh_process) < 100


@glibc_only
def test_with_the_users_own_thresholds_the_pages_are_faulted_in_again(fresh_process):
    # the user's settings are kept: here glibc's default thresholds, fixed, so every array is
    # mapped and unmapped again (the probe above is what tells them apart)
    tunables = "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072"
    assert _later_rounds_faults(fresh_process, GLIBC_TUNABLES=tunables) > 5 * 24 * 50


def test_the_users_malloc_settings_are_recognised():
    assert not user_chose_malloc_settings({})
    assert not user_chose_malloc_settings({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX"})
    assert user_chose_malloc_settings({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"})
    assert user_chose_malloc_settings({"MALLOC_ARENA_MAX": "2"})


@glibc_only
def test_the_thresholds_are_set_where_nothing_was_chosen(monkeypatch):
    for name in ("GLIBC_TUNABLES", *USER_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    assert retain_freed_memory()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert not retain_freed_memory()
