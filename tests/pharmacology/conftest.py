"""Fixtures for the pharmacology tests.

The reference the exact solver is checked against: SciPy's solve_ivp (LSODA) on the full
state-space model, restarted at every dose event. Tests only: the engine never integrates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from ketaflow.pharmacology.solve import DoseEvents, StateSpace


def ivp_curves(
    space: StateSpace, events: DoseEvents, times_min: np.ndarray, patient: int = 0
) -> np.ndarray:
    """(3, T) parent, metabolite and effect-site concentrations of one patient."""
    k = space.k_matrix
    n = k.shape[0]
    starts = events.start_min[patient]
    amounts = events.amount_mg[patient]
    ends = starts + events.duration_min
    times = np.asarray(times_min, dtype=float)
    breaks = np.unique(np.concatenate([[0.0], starts, ends, [times.max()]]))
    x = np.zeros(n)
    out = np.full((3, times.size), np.nan)
    for a, b in pairwise(breaks):
        for e in range(events.path.size):
            if events.duration_min[e] <= 0 and starts[e] == a:
                x[space.path_state[events.path[e]]] += amounts[e]
        rate = np.zeros(n)
        for e in range(events.path.size):
            d = events.duration_min[e]
            if d > 0 and starts[e] <= a and ends[e] >= b:
                rate[space.path_state[events.path[e]]] += amounts[e] / d
        inside = (times >= a) & (times < b)
        sol = solve_ivp(
            lambda _t, y, r=rate: k @ y + r,
            (a, b),
            x,
            method="LSODA",
            jac=lambda _t, _y: k,
            rtol=1e-11,
            atol=1e-13,
            t_eval=np.concatenate([times[inside], [b]]),
        )
        assert sol.success, sol.message
        out[:, inside] = space.observe @ sol.y[:, :-1]
        x = sol.y[:, -1]
    last = times == breaks[-1]
    for e in range(events.path.size):
        if events.duration_min[e] <= 0 and starts[e] == breaks[-1]:
            x[space.path_state[events.path[e]]] += amounts[e]
    out[:, last] = (space.observe @ x)[:, None]
    return out


@pytest.fixture
def ivp_oracle():
    return ivp_curves


def run_in_fresh_process(code: str, dropped, **env: str) -> dict:
    """Run `code` in a new interpreter, with the environment variables for which `dropped`
    (a name -> bool predicate) is true left out and `env` added; the JSON object it printed
    last."""
    clean = {k: v for k, v in os.environ.items() if not dropped(k)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def fresh_process():
    return run_in_fresh_process
