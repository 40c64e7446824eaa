"""Shared plumbing of the cvxpy oracle.

Each oracle solves the defining convex program of a map literally:

    ŷ_Ω(θ) = argmax_{p ∈ △} ⟨θ, p⟩ − Ω(p),     Ω*(θ) = the optimal value.

Solver: CLARABEL (interior point; handles the exponential and power cones of
the Shannon and Tsallis programs and the second-order cones of the norms),
with gap and feasibility tolerances tightened from the defaults (1e-8) to
1e-12 and the KKT-ratio tolerance to 1e-10.  At these settings the solver
often stops with the status "optimal_inaccurate" (it met its reduced
tolerances, not the requested ones); we accept that status, and the tests
measure what it delivers: optimal values agree with the exact algorithms to
``hfy.testing.ORACLE_VALUE_ATOL``, maximisers of the quadratic, linear and
exponential-cone programs to ``hfy.testing.ORACLE_ATOL``, and maximisers of
the power-cone and p-norm programs (whose solutions are ill-conditioned at
the edge of the support) to ``hfy.testing.ORACLE_POWER_ATOL``.  Masked scores (−inf) are not
variables: their probability is fixed to 0.
"""

from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

from ..reference._core import apply_along, as_scores

SOLVER = "CLARABEL"
SOLVER_OPTIONS = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, tol_ktratio=1e-10, max_iter=500)


def solve_quietly(problem) -> None:
    """Solve with the oracle's settings; "optimal_inaccurate" is accepted without a warning (see above)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        problem.solve(solver=SOLVER, **SOLVER_OPTIONS)


def cvxpy():
    """Import cvxpy lazily, with a clear message when the oracle extra is missing."""
    try:
        import cvxpy as cp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("hfy.oracle needs cvxpy: pip install 'hfy[oracle]'") from err
    return cp


def solve_simplex_program(theta: np.ndarray, neg_omega: Callable) -> Tuple[np.ndarray, float]:
    """max_{p ∈ △} ⟨θ, p⟩ + neg_omega(p) over the unmasked entries of a 1-D ``theta``.

    ``neg_omega(p)`` builds the concave cvxpy expression −Ω(p).  Returns the
    maximiser (zeros on masked entries) and the optimal value.
    """
    cp = cvxpy()
    finite = np.isfinite(theta)
    out = np.zeros_like(theta)
    if not finite.any():
        return out, -np.inf
    th = theta[finite]
    shift = th.max()  # solve on shifted scores (better conditioned), add the shift back
    p = cp.Variable(th.size, nonneg=True)
    problem = cp.Problem(cp.Maximize((th - shift) @ p + neg_omega(p)), [cp.sum(p) == 1])
    solve_quietly(problem)
    if problem.status not in ("optimal", "optimal_inaccurate") or p.value is None:
        raise RuntimeError(f"cvxpy/{SOLVER} failed: status {problem.status}")
    sol = np.clip(p.value, 0.0, None)
    out[finite] = sol / sol.sum()
    return out, float(problem.value) + shift


def map_along(fn_1d: Callable[[np.ndarray], np.ndarray], z, dim: int) -> np.ndarray:
    return apply_along(fn_1d, as_scores(z), dim)
