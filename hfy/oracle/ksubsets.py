"""k-subsets SparseMAP as a quadratic program over the capped simplex (cvxpy oracle)."""

from __future__ import annotations

import numpy as np

from .._structures import subset_barycentre
from ..reference._core import as_scores
from ..reference.fenchel_young import masked_dot
from ..reference.ksubsets import positive_k
from ._core import cvxpy, solve_quietly
from .fenchel_young import Regularizer

#: Slack of the polytope membership tests of :meth:`KSubsets.in_domain` and friends.
DOMAIN_TOL = 1e-9


def project_capped(theta: np.ndarray, upper: np.ndarray, total: float, exact: bool = True,
                   lower=None) -> np.ndarray:
    """argmin_μ ‖μ − θ‖² s.t. l <= μ <= u (l = 0 unless given), Σ μ = total (or <= total); −inf entries fixed
    to 0."""
    cp = cvxpy()
    finite = np.isfinite(theta)
    out = np.zeros_like(theta)
    th, u = theta[finite], upper[finite]
    low = np.zeros_like(th) if lower is None else np.asarray(lower, dtype=np.float64)[finite]
    if exact:  # the projection with Σ μ = total is invariant to shifting θ: keep the scores moderate
        th = th - th.max()
    mu = cp.Variable(th.size)
    budget = cp.sum(mu) == total if exact else cp.sum(mu) <= total
    # max θᵀμ − ½‖μ‖² (the SparseMAP form) rather than min ‖μ − θ‖², which squares large scores
    problem = cp.Problem(cp.Maximize(th @ mu - 0.5 * cp.sum_squares(mu)), [mu >= low, mu <= u, budget])
    solve_quietly(problem)
    if mu.value is None:
        raise RuntimeError(f"cvxpy failed: status {problem.status}")
    out[finite] = np.clip(mu.value, low, u)
    return out


def ksubsets(z, k: int, dim: int = -1, exactly_k: bool = True) -> np.ndarray:
    """The projection onto {0 <= μ <= 1, Σ μ = k} (or <= k), solved by CLARABEL.

    See Also
    --------
    hfy.ksubsets, hfy.reference.ksubsets
    """
    z = np.moveaxis(as_scores(z), dim, -1)
    flat = z.reshape(-1, z.shape[-1])
    k = positive_k(k)
    if exactly_k and flat.size and int(np.isfinite(flat).sum(-1).min()) < k:
        raise ValueError(f"`k`={k} exceeds the number of unmasked scores in some row")
    out = np.stack([project_capped(row, np.ones_like(row), float(k), exactly_k) for row in flat])
    return np.moveaxis(out.reshape(z.shape), -1, dim)


class KSubsets(Regularizer):
    """Ω(μ) = ½‖μ‖² on {0 <= μ <= 1, Σ μ = k} (or <= k): the prediction map and Ω* are the solution and the
    optimal value of the quadratic program.

    See Also
    --------
    hfy.KSubsets, hfy.reference.KSubsets
    """

    margin = 1.0
    simplex = False

    def __init__(self, k: int, exactly_k: bool = True):
        self.k, self.exactly_k = positive_k(k), bool(exactly_k)

    def solve(self, theta: np.ndarray):
        theta = np.asarray(theta, dtype=np.float64)
        if self.exactly_k and np.isfinite(theta).sum() < self.k:
            raise ValueError(f"`k`={self.k} exceeds the number of unmasked scores ({int(np.isfinite(theta).sum())})")
        mu = project_capped(theta, np.ones_like(theta), float(self.k), self.exactly_k)
        return mu, masked_dot(theta, mu) - 0.5 * float(mu @ mu)

    def omega_value(self, p: np.ndarray) -> float:
        return 0.5 * float(p @ p)

    def in_domain(self, p: np.ndarray) -> bool:
        total = p.sum()
        fits = total <= self.k + DOMAIN_TOL if not self.exactly_k else abs(total - self.k) <= DOMAIN_TOL
        return bool(np.all(p >= -DOMAIN_TOL) and np.all(p <= 1 + DOMAIN_TOL) and fits)

    def reference_point(self, n: int) -> np.ndarray:
        return subset_barycentre(n, self.k, self.exactly_k)
