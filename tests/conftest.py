"""Shared test configuration: Hypothesis profiles and named tolerances.

Profiles
--------
``default``  deterministic (derandomized, no deadline, no example database); used by CI.
``thorough`` opt-in, many more random examples: ``HYPOTHESIS_PROFILE=thorough pytest``.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    derandomize=False,
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Named tolerances, per dtype and backend (STYLE.md §6).
# Numba vs its NumPy twin: same arithmetic up to reassociation.
NUMBA_VS_NUMPY_RTOL = {np.float64: 1e-12, np.float32: 1e-5}
NUMBA_VS_NUMPY_ATOL = {np.float64: 1e-12, np.float32: 1e-5}
# Converged ADMM iterate vs a centralized high-accuracy solution.
ADMM_SOLUTION_RTOL = 1e-5
ADMM_SOLUTION_ATOL = 1e-6
# KKT certificate of a returned point (gradient of the sum at the consensus point).
ADMM_KKT_ATOL = 1e-4
# Explicit Fisher / Hessian comparisons on tiny networks (float64).
FISHER_RTOL = 1e-6
FISHER_ATOL = 1e-8
# mpe2 oracle: trajectories must agree to this absolute tolerance.
MPE2_ORACLE_ATOL = 1e-6
# consensus_admm over MPI vs the in-process solve on the same problem, graph, settings and seed (float64).
MPI_ORACLE_ATOL = 1e-12
