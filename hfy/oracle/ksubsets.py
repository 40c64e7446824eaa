"""k-subsets SparseMAP as a quadratic program over the capped simplex (cvxpy oracle)."""

from __future__ import annotations

import numpy as np

from ..reference._core import as_scores
from ._core import cvxpy, solve_quietly


def project_capped(theta: np.ndarray, upper: np.ndarray, total: float, exact: bool = True) -> np.ndarray:
    """argmin_μ ‖μ − θ‖² s.t. 0 <= μ <= u, Σ μ = total (or <= total); −inf entries fixed to 0."""
    cp = cvxpy()
    finite = np.isfinite(theta)
    out = np.zeros_like(theta)
    th, u = theta[finite], upper[finite]
    if exact:  # the projection with Σ μ = total is invariant to shifting θ: keep the scores moderate
        th = th - th.max()
    mu = cp.Variable(th.size)
    budget = cp.sum(mu) == total if exact else cp.sum(mu) <= total
    # max θᵀμ − ½‖μ‖² (the SparseMAP form) rather than min ‖μ − θ‖², which squares large scores
    problem = cp.Problem(cp.Maximize(th @ mu - 0.5 * cp.sum_squares(mu)), [mu >= 0, mu <= u, budget])
    solve_quietly(problem)
    if mu.value is None:
        raise RuntimeError(f"cvxpy failed: status {problem.status}")
    out[finite] = np.clip(mu.value, 0.0, u)
    return out


def ksubsets(z, k: int, dim: int = -1, exactly_k: bool = True) -> np.ndarray:
    """The projection onto {0 <= μ <= 1, Σ μ = k} (or <= k), solved by CLARABEL.

    See Also
    --------
    hfy.ksubsets, hfy.reference.ksubsets
    """
    z = np.moveaxis(as_scores(z), dim, -1)
    flat = z.reshape(-1, z.shape[-1])
    out = np.stack([project_capped(row, np.ones_like(row), float(k), exactly_k) for row in flat])
    return np.moveaxis(out.reshape(z.shape), -1, dim)
