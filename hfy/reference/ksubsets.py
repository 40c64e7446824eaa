"""SparseMAP over k-subsets: the projection onto the capped simplex (numpy reference).

The structures are the k-hot vectors; their convex hull (the marginal
polytope) is {μ : 0 <= μ <= 1, Σ μ = k}, and SparseMAP is the Euclidean
projection onto it (eq-ksubsets-map):

    μ = clip(θ − τ, 0, 1),   Σ_i clip(θ_i − τ, 0, 1) = k.

``exactly_k=False`` projects onto {0 <= μ <= 1, Σ μ <= k} instead (the
"at most k" budget of LP-SparseMAP): τ = 0 when Σ clip(θ, 0, 1) <= k.
"""

from __future__ import annotations

import numpy as np

from .._structures import subset_barycentre
from ._core import apply_along, as_scores, capped_threshold, common_offset


def positive_k(k, name: str = "k") -> int:
    """``k`` as an int, for a positive (numpy) int; a clear error naming it otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`{name}` must be a positive int; got {k!r}")
    return int(k)


def _check_k(k, n_finite: int, name: str = "k") -> int:
    k = positive_k(k, name)
    if k > n_finite:
        raise ValueError(f"`{name}`={k} exceeds the number of unmasked scores ({n_finite})")
    return int(k)


def ksubsets_1d(theta: np.ndarray, k: int, exactly_k: bool = True) -> np.ndarray:
    """k-subsets SparseMAP of one score vector; −inf entries are masked (output 0)."""
    finite = np.isfinite(theta)
    n_finite = int(finite.sum())
    # ("at most k" is feasible with fewer unmasked scores: at most all of them)
    k = _check_k(k, n_finite) if exactly_k else min(positive_k(k), n_finite)
    th = theta[finite]
    out = np.zeros_like(theta)
    if th.size == 0:
        return out
    if not exactly_k and np.clip(th, 0.0, 1.0).sum() <= k:
        out[finite] = np.clip(th, 0.0, 1.0)
        return out
    th = th - common_offset(th)  # (the result is shift-invariant)
    tau = capped_threshold(th, np.ones_like(th), float(k))
    out[finite] = np.clip(th - tau, 0.0, 1.0)
    return out


def ksubsets(z, k: int, dim: int = -1, exactly_k: bool = True) -> np.ndarray:
    """SparseMAP over k-subsets along ``dim`` (eq-ksubsets-map).

    Parameters
    ----------
    z : array_like, shape (..., N, ...)
        Scores; −inf masks an entry.  Fewer than ``k`` unmasked entries raise.
    k : int
        Subset size.
    dim : int
    exactly_k : bool
        True: Σ μ = k (the HFY experiments); False: Σ μ <= k.

    See Also
    --------
    hfy.ksubsets, hfy.oracle.ksubsets
    """
    return apply_along(lambda row: ksubsets_1d(row, k, exactly_k), as_scores(z), dim)


def ksubsets_jacobian(theta, k: int, exactly_k: bool = True) -> np.ndarray:
    """∂μ/∂θ: with A = {0 < μ_i < 1}, diag(1_A) − 1_A 1_Aᵀ/|A| (eq-ksubsets-jacobian).

    For ``exactly_k=False`` with an inactive budget it is diag(1_A); it is 0
    when the output is integral.
    """
    theta = as_scores(theta, "theta")
    mu = ksubsets_1d(theta, k, exactly_k)
    a = ((mu > 0) & (mu < 1)).astype(np.float64)
    if not a.any():
        return np.zeros((theta.size, theta.size))
    budget_active = exactly_k or mu.sum() >= k - 1e-12 and not np.clip(theta, 0, 1).sum() <= k
    if not budget_active:
        return np.diag(a)
    return np.diag(a) - np.outer(a, a) / a.sum()


class KSubsets:
    """Ω(μ) = ½‖μ‖² on the k-subsets polytope {0 <= μ <= 1, Σ μ = k}; ŷ_Ω = :func:`ksubsets`.

    Ω*(θ) = ½‖θ‖² − ½‖θ − μ‖² (Moreau).  Structured margin 1; reference point: the barycentre of the structures.
    """

    margin = 1.0
    simplex = False

    def __init__(self, k: int, exactly_k: bool = True):
        self.k, self.exactly_k = positive_k(k), bool(exactly_k)

    def predict(self, theta, dim: int = -1) -> np.ndarray:
        return ksubsets(theta, self.k, dim, self.exactly_k)

    def omega(self, mu, dim: int = -1) -> np.ndarray:
        mu = np.asarray(mu, dtype=np.float64)
        return 0.5 * np.sum(mu * mu, axis=dim)

    def conjugate(self, theta, dim: int = -1) -> np.ndarray:
        theta = as_scores(theta, "theta")
        mu = self.predict(theta, dim)
        used = mu != 0
        return np.sum(np.where(used, theta * np.where(used, mu, 0.0), 0.0), axis=dim) - self.omega(mu, dim)

    def loss(self, theta, y, dim: int = -1) -> np.ndarray:
        theta, y = as_scores(theta, "theta"), np.asarray(y, dtype=np.float64)
        return self.conjugate(theta, dim) + self.omega(y, dim) - np.sum(theta * y, axis=dim)

    def reference_point(self, n: int) -> np.ndarray:
        """The barycentre of the structures: (k/N)·1, or the average of the subsets of at most k entries."""
        return subset_barycentre(n, self.k, self.exactly_k)

    def jacobian(self, theta) -> np.ndarray:
        return ksubsets_jacobian(theta, self.k, self.exactly_k)

    def __repr__(self) -> str:
        return f"KSubsets(k={self.k}, exactly_k={self.exactly_k})"
